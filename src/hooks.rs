//! Every exported symbol. Each hook is two paths:
//!
//! - the unwatched path, for a signal that is not watched once the configuration is published:
//!   one load and a bit test ([`config::unwatched`]), then a tail call into libc with the
//!   caller's own arguments (a jump: the hook leaves no frame, and libc returns straight to the
//!   caller). About ten instructions; nothing is read from the caller's arguments.
//! - everything else, in a cold function of its own, out of line: it states what the call asks
//!   for and hands the real call to [`audit::intercept`], which decides.
//!
//! glibc's own `signal()` family calls its internal `__sigaction`, not the exported `sigaction`,
//! so each public entry point is interposed under its own name. Signatures are checked at
//! compile time against the table in `real.rs`, and that table against the `libc` crate where it
//! declares the function.

use crate::audit::{self, Apply, Request};
use crate::config;
use crate::policy::{Action, Disposition};
use crate::real::{self, KERNEL_SIGSET_SIZE, KernelSigaction, SigVec, types};
use crate::sys;
use core::ptr;
use libc::{
    c_int, c_long, id_t, idtype_t, pid_t, rusage, sigaction as Sigaction, sighandler_t, siginfo_t,
};

// The table's prototypes agree with the libc crate's declarations.
const _: types::signal = libc::signal;
const _: types::sigaction = libc::sigaction;
const _: types::wait = libc::wait;
const _: types::waitpid = libc::waitpid;
const _: types::wait4 = libc::wait4;
const _: types::waitid = libc::waitid;

/// Flags glibc's BSD-style `signal`, `bsd_signal` and `ssignal` install.
const BSD_FLAGS: c_int = libc::SA_RESTART;
/// Flags glibc's `sysv_signal` installs: one-shot, not masked during the handler, interruptible.
const SYSV_FLAGS: c_int = libc::SA_RESETHAND | libc::SA_NODEFER | 0x2000_0000;

macro_rules! signal_family {
    ($($name:ident => $flags:expr;)*) => {$(
        const _: types::$name = $name;
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(signo: c_int, handler: sighandler_t) -> sighandler_t {
            #[cold]
            #[inline(never)]
            fn looked_at(signo: c_int, handler: sighandler_t) -> sighandler_t {
                let req = Request::handler(stringify!($name), signo, handler, $flags);
                // SAFETY: the caller's arguments go to the real function unchanged.
                audit::intercept(req, |_| unsafe { real::$name(signo, handler) }, || current_handler(signo))
            }
            if config::unwatched(signo) {
                // SAFETY: the caller's arguments go to the real function unchanged.
                return unsafe { real::$name(signo, handler) };
            }
            looked_at(signo, handler)
        }
    )*};
}

signal_family! {
    signal => BSD_FLAGS;
    ssignal => BSD_FLAGS;
    bsd_signal => BSD_FLAGS;
    sysv_signal => SYSV_FLAGS;
    __sysv_signal => SYSV_FLAGS;
}

macro_rules! sigaction_family {
    ($($name:ident;)*) => {$(
        const _: types::$name = $name;
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(signo: c_int, act: *const Sigaction, old: *mut Sigaction) -> c_int {
            /// # Safety
            /// The caller's pointers, as libc takes them.
            #[cold]
            #[inline(never)]
            unsafe fn looked_at(signo: c_int, act: *const Sigaction, old: *mut Sigaction) -> c_int {
                // SAFETY: `act` is the caller's, which libc reads the same way.
                let req = unsafe { Request::sigaction(stringify!($name), signo, act) };
                audit::intercept(
                    req,
                    // SAFETY: the caller's arguments, or a copy of `act` with other flags.
                    |how| unsafe { with_action(act, how, |act| real::$name(signo, act, old)) },
                    // SAFETY: a read of the current action into the caller's `old`.
                    || unsafe { real::$name(signo, ptr::null(), old) },
                )
            }
            if config::unwatched(signo) {
                // SAFETY: the caller's arguments go to the real function unchanged.
                return unsafe { real::$name(signo, act, old) };
            }
            // SAFETY: the caller's arguments.
            unsafe { looked_at(signo, act, old) }
        }
    )*};
}

sigaction_family! {
    sigaction;
    __sigaction;
}

const _: types::sigset = sigset;
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigset(signo: c_int, disp: sighandler_t) -> sighandler_t {
    #[cold]
    #[inline(never)]
    fn looked_at(signo: c_int, disp: sighandler_t) -> sighandler_t {
        let req = Request::handler("sigset", signo, disp, 0);
        // SAFETY: the caller's arguments go to the real function unchanged.
        audit::intercept(
            req,
            |_| unsafe { real::sigset(signo, disp) },
            || sigset_vetoed(signo),
        )
    }
    if config::unwatched(signo) {
        // SAFETY: the caller's arguments go to the real function unchanged.
        return unsafe { real::sigset(signo, disp) };
    }
    looked_at(signo, disp)
}

const _: types::sigignore = sigignore;
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigignore(signo: c_int) -> c_int {
    #[cold]
    #[inline(never)]
    fn looked_at(signo: c_int) -> c_int {
        let req = Request::handler("sigignore", signo, libc::SIG_IGN, 0);
        // SAFETY: the caller's argument goes to the real function unchanged.
        audit::intercept(req, |_| unsafe { real::sigignore(signo) }, || 0)
    }
    if config::unwatched(signo) {
        // SAFETY: the caller's argument goes to the real function unchanged.
        return unsafe { real::sigignore(signo) };
    }
    looked_at(signo)
}

const _: types::siginterrupt = siginterrupt;
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siginterrupt(signo: c_int, flag: c_int) -> c_int {
    #[cold]
    #[inline(never)]
    fn looked_at(signo: c_int, flag: c_int) -> c_int {
        // It re-installs the current handler with SA_RESTART changed: never an ignore, so
        // never vetoed, and `keep` is unused.
        let req = Request::other("siginterrupt", signo);
        // SAFETY: the caller's arguments go to the real function unchanged.
        audit::intercept(req, |_| unsafe { real::siginterrupt(signo, flag) }, || 0)
    }
    if config::unwatched(signo) {
        // SAFETY: the caller's arguments go to the real function unchanged.
        return unsafe { real::siginterrupt(signo, flag) };
    }
    looked_at(signo, flag)
}

const _: types::sigvec = sigvec;
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigvec(signo: c_int, vec: *const SigVec, old: *mut SigVec) -> c_int {
    /// # Safety
    /// The caller's pointers, as libc takes them.
    #[cold]
    #[inline(never)]
    unsafe fn looked_at(signo: c_int, vec: *const SigVec, old: *mut SigVec) -> c_int {
        // SAFETY: `vec` is the caller's, which libc reads the same way.
        let req = unsafe { request_from_sigvec(signo, vec) };
        audit::intercept(
            req,
            // SAFETY: the caller's arguments go to the real function unchanged.
            |_| unsafe { real::sigvec(signo, vec, old) },
            // SAFETY: a read of the current action into the caller's `old`.
            || unsafe { real::sigvec(signo, ptr::null(), old) },
        )
    }
    if config::unwatched(signo) {
        // SAFETY: the caller's arguments go to the real function unchanged.
        return unsafe { real::sigvec(signo, vec, old) };
    }
    // SAFETY: the caller's arguments.
    unsafe { looked_at(signo, vec, old) }
}

const _: types::syscall = syscall;
/// `long syscall(long number, ...)`. On x86_64 and arm64 variadic integer arguments travel like
/// fixed ones, so six are taken and all six forwarded, as glibc's own `syscall` does. Only
/// `rt_sigaction` is looked at.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    /// # Safety
    /// The caller's arguments, as the kernel takes them.
    #[cold]
    #[inline(never)]
    unsafe fn looked_at(n: c_long, [a1, a2, a3, a4, a5, a6]: [c_long; 6]) -> c_long {
        let act = a2 as *const KernelSigaction;
        // A size the kernel refuses (EINVAL), or an action it cannot read (EFAULT), is its to
        // refuse; reading such an action here would crash.
        let new = match a4 {
            KERNEL_SIGSET_SIZE => read_kernel_action(act),
            _ => None,
        };
        let Some(new) = new else {
            // SAFETY: forwarded untouched.
            return unsafe { real::syscall(n, a1, a2, a3, a4, a5, a6) };
        };
        let req = request_from_kernel(a1 as c_int, new);
        audit::intercept(
            req,
            // SAFETY: the caller's arguments, or a copy of `act` with other flags.
            |how| unsafe {
                with_kernel_action(act, how, |act| {
                    real::syscall(n, a1, act as c_long, a3, a4, a5, a6)
                })
            },
            // SAFETY: a read of the current action into the caller's `old`.
            || unsafe { real::syscall(n, a1, 0, a3, a4, a5, a6) },
        )
    }
    if n != libc::SYS_rt_sigaction || config::unwatched(a1 as c_int) {
        // SAFETY: forwarded untouched.
        return unsafe { real::syscall(n, a1, a2, a3, a4, a5, a6) };
    }
    // SAFETY: the caller's arguments.
    unsafe { looked_at(n, [a1, a2, a3, a4, a5, a6]) }
}

macro_rules! wait_family {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        const _: types::$name = $name;
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller's arguments go to the real function unchanged.
            audit::after_wait(stringify!($name), unsafe { real::$name($($arg),*) })
        }
    )*};
}

wait_family! {
    wait(status: *mut c_int) -> pid_t;
    waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t;
    wait3(status: *mut c_int, options: c_int, usage: *mut rusage) -> pid_t;
    wait4(pid: pid_t, status: *mut c_int, options: c_int, usage: *mut rusage) -> pid_t;
    waitid(idtype: idtype_t, id: id_t, info: *mut siginfo_t, options: c_int) -> c_int;
}

// ---- helpers ---------------------------------------------------------------------------------

/// The handler currently installed, which the `signal` family returns as the previous one.
fn current_handler(signo: c_int) -> sighandler_t {
    real::query(signo).map_or(libc::SIG_ERR, |sa| sa.sa_sigaction)
}

/// Calls `f` with the caller's `act`, or with a copy carrying the flags veto mode installs.
///
/// # Safety
/// `act` is null or readable.
unsafe fn with_action(
    act: *const Sigaction,
    how: Apply,
    f: impl FnOnce(*const Sigaction) -> c_int,
) -> c_int {
    match how {
        Apply::Instead(a) if !act.is_null() => {
            // SAFETY: readable per the contract.
            let mut copy = unsafe { *act };
            copy.sa_flags = a.flags;
            f(&copy)
        }
        _ => f(act),
    }
}

/// [`with_action`] for the kernel's layout.
///
/// # Safety
/// `act` is null or readable.
unsafe fn with_kernel_action(
    act: *const KernelSigaction,
    how: Apply,
    f: impl FnOnce(*const KernelSigaction) -> c_long,
) -> c_long {
    match how {
        Apply::Instead(a) if !act.is_null() => {
            // SAFETY: readable per the contract.
            let mut copy = unsafe { *act };
            copy.flags = a.flags as u32 as libc::c_ulong;
            f(&copy)
        }
        _ => f(act),
    }
}

fn request_from_kernel(signo: c_int, act: Option<KernelSigaction>) -> Request {
    let mut req = Request::other("syscall", signo);
    req.new = act.map(|k| Action::new(Disposition::from_raw(k.handler), k.flags as c_int));
    req
}

/// Copies the caller's kernel sigaction without trusting the pointer: `Some(None)` for null,
/// `None` when the memory cannot be read (the kernel will say EFAULT for it). The copy is made by
/// `process_vm_readv` on our own process, which fails instead of faulting; where that system call
/// is not allowed (a seccomp filter), the pointer is read directly, as glibc's wrappers would.
fn read_kernel_action(act: *const KernelSigaction) -> Option<Option<KernelSigaction>> {
    if act.is_null() {
        return Some(None);
    }
    let mut copy = core::mem::MaybeUninit::<KernelSigaction>::zeroed();
    let size = core::mem::size_of::<KernelSigaction>();
    // SAFETY: `copy` is our own, writable for `size` bytes.
    let n = unsafe { sys::read_own_memory(act.cast(), copy.as_mut_ptr().cast(), size) };
    match n {
        // SAFETY: all of it was filled by the kernel (and it was zeroed before).
        Ok(n) if n == size => Some(Some(unsafe { copy.assume_init() })),
        // Partly readable, or not at all.
        Ok(_) | Err(libc::EFAULT) => None,
        // SAFETY: the kernel would read the same memory; a program that passes a bad pointer
        // here gets the crash glibc's own wrappers would give it.
        _ => Some(Some(unsafe { *act })),
    }
}

/// `sv_flags` bits of `struct sigvec`.
const SV_ONSTACK: c_int = 1;
const SV_INTERRUPT: c_int = 2;
const SV_RESETHAND: c_int = 4;

/// # Safety
/// `vec` is null or readable.
unsafe fn request_from_sigvec(signo: c_int, vec: *const SigVec) -> Request {
    let mut req = Request::other("sigvec", signo);
    if !vec.is_null() {
        // SAFETY: readable per the contract.
        let v = unsafe { &*vec };
        let mut flags = if v.sv_flags & SV_INTERRUPT != 0 {
            0
        } else {
            libc::SA_RESTART
        };
        if v.sv_flags & SV_ONSTACK != 0 {
            flags |= libc::SA_ONSTACK;
        }
        if v.sv_flags & SV_RESETHAND != 0 {
            flags |= libc::SA_RESETHAND;
        }
        req.new = Some(Action::new(Disposition::from_raw(v.sv_handler), flags));
    }
    req
}

/// What glibc's `sigset` does after installing a disposition, without installing it: unblock the
/// signal, and return `SIG_HOLD` if it was blocked, else the current handler.
fn sigset_vetoed(signo: c_int) -> sighandler_t {
    let Some(set) = sigset_of(signo) else {
        return libc::SIG_ERR;
    };
    // A mask change that glibc's sigset would make too.
    let Ok(was) = sys::unblock(&set) else {
        return libc::SIG_ERR;
    };
    if sigset_of(signo).is_some_and(|set| words(&was)[0] & words(&set)[0] != 0) {
        return crate::policy::SIG_HOLD;
    }
    current_handler(signo)
}

/// A `sigset_t` holding `signo` alone (1 to 64), made as glibc's `sigaddset` would: signal n is
/// bit n-1 of the first word.
fn sigset_of(signo: c_int) -> Option<libc::sigset_t> {
    if !(1..=64).contains(&signo) {
        return None;
    }
    let mut bits = [0u64; SIGSET_WORDS];
    bits[0] = 1 << (signo - 1);
    // SAFETY: glibc's sigset_t is an array of this many unsigned longs (the sizes are checked
    // by transmute itself).
    Some(unsafe { core::mem::transmute::<[u64; SIGSET_WORDS], libc::sigset_t>(bits) })
}

fn words(set: &libc::sigset_t) -> [u64; SIGSET_WORDS] {
    // SAFETY: as in `sigset_of`.
    unsafe { core::mem::transmute::<libc::sigset_t, [u64; SIGSET_WORDS]>(*set) }
}

const SIGSET_WORDS: usize = core::mem::size_of::<libc::sigset_t>() / 8;
