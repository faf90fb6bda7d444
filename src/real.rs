//! The real libc functions behind our hooks: a hand-written symbol table.
//!
//! Each entry is one atomic pointer holding the function a call runs. It starts as a small
//! resolver of its own, which finds the function on the first call, then stores it: from then
//! on a call is a load and an indirect jump, which the hooks make as a tail call. A call that
//! arrives before our constructor (from another library's constructor, which runs before ours)
//! resolves the way `dlsym(RTLD_NEXT)` would; after it, in the objects the constructor kept
//! (see [`resolve_all`]), without a lock, so that a first call in a signal handler or a
//! `vfork()` child is safe. Two threads racing to resolve store the same value, so
//! a plain atomic store is enough: no lock and no once-cell that could block in a signal
//! handler or a `vfork()` child.
//!
//! Symbols are found as `dlsym(RTLD_NEXT, name)` would find them (`dlvsym` for a versioned
//! compat symbol such as `sigvec@GLIBC_2.2.5`), but by reading the loader's hash tables
//! ([`objects::lookup`]): about 900 instructions a symbol saved on every exec. Where that
//! cannot answer for certain, `dlsym`/`dlvsym` do (see `objects.rs`).
//!
//! A missing optional symbol is skipped; a missing required one is reported by name (without
//! `dlerror()`'s text, which says no more than "undefined symbol" and would cost an import
//! that the loader binds on every exec). Either way
//! the entry then holds a stub that fails the call with `ENOSYS`, and the host goes on.
//!
//! Why not `redhook`: it resolves inside a blocking `std::sync::Once`, aborts the host when a
//! symbol (such as `sigvec`) is missing, and cannot express the variadic `syscall`.

use crate::objects::{self, Found, Name, Objects, Scope};
use core::sync::atomic::{AtomicPtr, Ordering};
use libc::{c_int, c_long, id_t, idtype_t, pid_t, rusage, sighandler_t, siginfo_t};

/// `struct sigvec` from glibc's `<signal.h>` (BSD compatibility).
#[repr(C)]
pub struct SigVec {
    pub sv_handler: sighandler_t,
    pub sv_mask: c_int,
    pub sv_flags: c_int,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    Required,
    Optional,
}

/// A function pointer with its type erased (each entry knows its own).
type Erased = unsafe extern "C" fn();

/// One row of the table.
pub struct Entry {
    pub name: &'static str,
    /// NUL-terminated copy of `name` for `dlsym`.
    cname: &'static [u8],
    /// `name` and its hash, for our own lookup.
    symbol: Name<'static>,
    /// NUL-terminated symbol version for `dlvsym`, if the symbol exists only as a versioned one.
    version: Option<&'static [u8]>,
    pub need: Need,
    /// What a call runs: the entry's resolver until it is resolved, then the real function, or
    /// [`Entry::missing`].
    /// (Its own static: the entry itself is read-only, beside the other relocated constants,
    /// and the few writable words a process touches at load stay together.)
    slot: &'static AtomicPtr<()>,
    /// Fails a call with `ENOSYS`, for a function libc does not have.
    missing: Erased,
}

/// How a symbol was found.
#[derive(Clone, Copy)]
enum Lookup {
    At(usize),
    /// Not in the objects after ours, for certain.
    Missing,
    /// The hash tables could not answer: ask the loader.
    AskLoader,
}

impl Entry {
    /// Looks the symbol up in the objects after ours, without the loader.
    fn find(&self, next: &mut Objects) -> Lookup {
        let version = self
            .version
            .map(|v| v.split_last().map_or(v, |(_, rest)| rest));
        match next.lookup(&self.symbol, version) {
            Found::At(addr) => Lookup::At(addr),
            Found::Missing => Lookup::Missing,
            Found::Unknown => Lookup::AskLoader,
        }
    }

    /// Asks the loader (`dlsym(RTLD_NEXT)`, or `dlvsym`), which takes its lock.
    fn ask_loader(&self) -> usize {
        objects::ask_loader(libc::RTLD_NEXT, self.cname, self.version)
    }

    /// Makes calls run the function at `addr`, or the `ENOSYS` stub for 0; returns it.
    fn set(&self, addr: usize) -> *mut () {
        let f = match addr {
            0 => self.missing as *mut (),
            addr => addr as *mut (),
        };
        self.slot.store(f, Ordering::Relaxed);
        f
    }

    /// Resolves this entry alone, on its first call. After the constructor that can be in a
    /// hook (a signal handler, a `vfork()` child), so it looks only in the objects the
    /// constructor kept, lock-free, and never asks the loader; before it (a call from another
    /// library's constructor), as `dlsym(RTLD_NEXT)` would, asking the loader where the hash
    /// tables cannot answer.
    fn resolve(&self) -> *mut () {
        let version = self
            .version
            .map(|v| v.split_last().map_or(v, |(_, rest)| rest));
        match objects::lookup_kept(&self.symbol, version) {
            Some(Found::At(addr)) => self.set(addr),
            Some(_) => {
                // Where the bloom filters said libc may have it, but it has not, or not as a
                // plain symbol (an indirect function): nothing to call without the loader.
                crate::diag::ensure();
                log::error!(
                    "libc has no {} that can be called; calls to it will fail with ENOSYS",
                    self.name
                );
                self.set(0)
            }
            None => self.set(match self.find(&mut Objects::new(Scope::Next)) {
                Lookup::At(addr) => addr,
                Lookup::Missing | Lookup::AskLoader => self.ask_loader(),
            }),
        }
    }

    /// What a call runs now.
    #[inline(always)]
    fn current(&self) -> *mut () {
        self.slot.load(Ordering::Relaxed)
    }
}

macro_rules! real_functions {
    ($(
        $name:ident ($($arg:ident : $ty:ty),*) -> $ret:ty,
            $need:ident, version $version:expr, on missing $fail:expr;
    )*) => {
        /// The function-pointer type of each entry, from glibc's prototypes. `hooks.rs` checks
        /// every hook, and the `libc` crate's declaration where it has one, against these.
        #[allow(non_camel_case_types)]
        pub mod types {
            use super::*;
            $( pub type $name = unsafe extern "C" fn($($ty),*) -> $ret; )*
        }

        /// What an entry runs until it is resolved: it resolves itself, then calls.
        mod resolve_then_call {
            use super::*;
            $(
                /// # Safety
                /// The same contract as the libc function of that name.
                #[allow(clippy::too_many_arguments)]
                pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                    let f = entries::$name.resolve();
                    // SAFETY: the entry holds a function of this prototype.
                    let f = unsafe { core::mem::transmute::<*mut (), types::$name>(f) };
                    // SAFETY: the caller upholds the libc function's contract.
                    unsafe { f($($arg),*) }
                }
            )*
        }

        /// What an entry runs when libc does not have the function.
        mod enosys {
            use super::*;
            $(
                /// # Safety
                /// None: it touches only `errno`; `unsafe` for the entry's function type.
                #[allow(clippy::too_many_arguments, unused_variables)]
                pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                    crate::guard::set_errno(libc::ENOSYS);
                    $fail
                }
            )*
        }

        /// What each entry runs.
        #[allow(non_upper_case_globals)]
        mod slots {
            use super::*;
            $(
                #[unsafe(link_section = ".data.sigaudit_load")]
                pub static $name: AtomicPtr<()> = AtomicPtr::new(resolve_then_call::$name as *mut ());
            )*
        }

        /// One entry per function, named after it.
        #[allow(non_upper_case_globals)]
        mod entries {
            use super::*;
            $(
                pub static $name: Entry = Entry {
                    name: stringify!($name),
                    cname: concat!(stringify!($name), "\0").as_bytes(),
                    symbol: Name::new(stringify!($name).as_bytes()),
                    version: $version,
                    need: Need::$need,
                    slot: &slots::$name,
                    // SAFETY: only a function pointer's type is erased; `set` stores it back in
                    // this entry, whose calls restore the type.
                    missing: unsafe {
                        core::mem::transmute::<types::$name, Erased>(enosys::$name as types::$name)
                    },
                };
            )*
        }

        /// Every real function, in one table.
        pub static TABLE: [&Entry; COUNT] = [$(&entries::$name),*];
        const COUNT: usize = [$(stringify!($name)),*].len();

        $(
            /// Calls the real function; when libc lacks it, fails with `ENOSYS`.
            ///
            /// # Safety
            /// The same contract as the libc function of that name.
            #[allow(clippy::too_many_arguments)]
            #[inline(always)]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the entry holds a function of this prototype: its resolver, the real
                // function, or its ENOSYS stub.
                let f = unsafe { core::mem::transmute::<*mut (), types::$name>(entries::$name.current()) };
                // SAFETY: the caller upholds the libc function's contract.
                unsafe { f($($arg),*) }
            }
        )*
    };
}

/// The version of the compat-only `sigvec` symbol (absent on architectures newer than glibc 2.21).
#[cfg(target_arch = "x86_64")]
const SIGVEC_VERSION: Option<&[u8]> = Some(b"GLIBC_2.2.5\0");
#[cfg(not(target_arch = "x86_64"))]
const SIGVEC_VERSION: Option<&[u8]> = None;

const SIG_ERR: sighandler_t = libc::SIG_ERR;

real_functions! {
    signal(signo: c_int, handler: sighandler_t) -> sighandler_t, Required, version None, on missing SIG_ERR;
    ssignal(signo: c_int, handler: sighandler_t) -> sighandler_t, Optional, version None, on missing SIG_ERR;
    bsd_signal(signo: c_int, handler: sighandler_t) -> sighandler_t, Optional, version None, on missing SIG_ERR;
    sysv_signal(signo: c_int, handler: sighandler_t) -> sighandler_t, Optional, version None, on missing SIG_ERR;
    __sysv_signal(signo: c_int, handler: sighandler_t) -> sighandler_t, Optional, version None, on missing SIG_ERR;
    sigaction(signo: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int, Required, version None, on missing -1;
    __sigaction(signo: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int, Optional, version None, on missing -1;
    sigset(signo: c_int, disp: sighandler_t) -> sighandler_t, Optional, version None, on missing SIG_ERR;
    sigignore(signo: c_int) -> c_int, Optional, version None, on missing -1;
    siginterrupt(signo: c_int, flag: c_int) -> c_int, Optional, version None, on missing -1;
    sigvec(signo: c_int, vec: *const SigVec, old: *mut SigVec) -> c_int, Optional, version SIGVEC_VERSION, on missing -1;
    syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long) -> c_long,
        Required, version None, on missing -1;
    wait(status: *mut c_int) -> pid_t, Required, version None, on missing -1;
    waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t, Required, version None, on missing -1;
    wait3(status: *mut c_int, options: c_int, usage: *mut rusage) -> pid_t, Optional, version None, on missing -1;
    wait4(pid: pid_t, status: *mut c_int, options: c_int, usage: *mut rusage) -> pid_t,
        Required, version None, on missing -1;
    waitid(idtype: idtype_t, id: id_t, info: *mut siginfo_t, options: c_int) -> c_int,
        Required, version None, on missing -1;
}

/// Prepares the table, and calls `missing` for each required function that libc lacks. Called
/// from the constructor (an ordinary context).
///
/// Only `sigaction` is resolved now (the constructor needs it); the object that defines it
/// (libc) and the ones between ours and it (loaded at start-up, so never unloaded) are kept, and
/// every other entry resolves itself there on its first call, lock-free: a process pays only for
/// the functions it calls (about 300 instructions each), not for all of them on every exec.
/// An entry that those objects' bloom filters say they do not define is resolved now instead,
/// as `dlsym(RTLD_NEXT)` would find it (in an object further on, or by asking the loader).
///
/// A name the objects after ours do not define is missing for certain only if they are the
/// ones `dlsym(RTLD_NEXT)` searches, which is so when libc is among them. Otherwise (our
/// library `dlopen`ed, say) the loader is asked, and everything is resolved now.
#[inline(never)] // a name of its own in profiles (scripts/bench)
pub fn resolve_all(mut missing: impl FnMut(&Entry)) {
    let mut next = Objects::new(Scope::Next);
    let first = &entries::sigaction;
    let (found, at) = next.lookup_where(&first.symbol, None);
    let libc_follows = matches!(found, Found::At(_));
    if let Found::At(addr) = found {
        first.set(addr);
        // Unless libc is further away than the objects a lookup keeps (then all is done now).
        next.keep(at + 1);
    }
    for entry in TABLE {
        let lazy = objects::kept_may_define(&entry.symbol).unwrap_or(false);
        if core::ptr::eq(entry, first) && libc_follows || lazy {
            continue;
        }
        let addr = match entry.find(&mut next) {
            Lookup::At(addr) => addr,
            Lookup::Missing if libc_follows => 0,
            Lookup::Missing | Lookup::AskLoader => entry.ask_loader(),
        };
        entry.set(addr);
        if addr == 0 && entry.need == Need::Required {
            missing(entry);
        }
    }
}

/// The current action of `signo`, read with the real `sigaction` (`None` for an invalid signal).
pub fn query(signo: c_int) -> Option<libc::sigaction> {
    let mut old = core::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a NULL new action only reads; `old` is a valid out-pointer.
    let r = unsafe { sigaction(signo, core::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled by libc on success.
    (r == 0).then(|| unsafe { old.assume_init() })
}

/// For `python.rs`, until it moves (issue 10): the lookup lives with the loaded objects.
pub use crate::objects::lookup_global;

/// The kernel's `struct sigaction` for `rt_sigaction` (x86_64 and arm64), which differs from
/// glibc's: flags before the handler's restorer, and a 64-bit mask.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KernelSigaction {
    pub handler: sighandler_t,
    pub flags: libc::c_ulong,
    pub restorer: usize,
    pub mask: u64,
}

/// The `sigsetsize` the kernel accepts for `rt_sigaction`.
pub const KERNEL_SIGSET_SIZE: c_long = 8;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("sigaudit knows the kernel's sigaction layout for x86_64 and aarch64 only");
