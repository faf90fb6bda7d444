//! The real libc functions behind our hooks: a hand-written symbol table.
//!
//! Each entry is one `AtomicUsize` holding the address `dlsym(RTLD_NEXT, name)` returned
//! (`dlvsym` for a versioned compat symbol such as `sigvec@GLIBC_2.2.5`). The constructor fills
//! the whole table once ([`resolve_all`]); a call that arrives before that (from another
//! library's constructor, which runs before ours) resolves its own entry on the spot. Two threads
//! racing to resolve store the same value, so a plain atomic store is enough: no lock and no
//! once-cell that could block in a signal handler or a `vfork()` child.
//!
//! A missing optional symbol is skipped; a missing required one is reported by name with
//! `dlerror()`. Either way the hook then fails the call with `ENOSYS` and the host goes on.
//!
//! Why not `redhook`: it resolves inside a blocking `std::sync::Once`, aborts the host when a
//! symbol (such as `sigvec`) is missing, and cannot express the variadic `syscall`.

use libc::{c_char, c_int, c_long, id_t, idtype_t, pid_t, rusage, sighandler_t, siginfo_t};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// One row of the table.
pub struct Entry {
    pub name: &'static str,
    /// NUL-terminated copy of `name` for `dlsym`.
    cname: &'static [u8],
    /// NUL-terminated symbol version for `dlvsym`, if the symbol exists only as a versioned one.
    version: Option<&'static [u8]>,
    pub need: Need,
    slot: AtomicUsize,
}

impl Entry {
    /// Looks the symbol up in the libraries after us. Not for hooked paths once the constructor
    /// has run: `dlsym` takes the loader's lock.
    fn resolve(&self) -> usize {
        let name = self.cname.as_ptr() as *const c_char;
        // SAFETY: both strings are NUL-terminated literals; RTLD_NEXT is valid from a shared
        // object.
        let addr = unsafe {
            match self.version {
                Some(v) => libc::dlvsym(libc::RTLD_NEXT, name, v.as_ptr() as *const c_char),
                None => libc::dlsym(libc::RTLD_NEXT, name),
            }
        } as usize;
        if addr != 0 {
            self.slot.store(addr, Ordering::Relaxed);
        }
        addr
    }

    fn get(&self) -> usize {
        match self.slot.load(Ordering::Relaxed) {
            0 => self.resolve(),
            addr => addr,
        }
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

        /// One entry per function, named after it.
        #[allow(non_upper_case_globals)]
        mod entries {
            use super::*;
            $(
                pub static $name: Entry = Entry {
                    name: stringify!($name),
                    cname: concat!(stringify!($name), "\0").as_bytes(),
                    version: $version,
                    need: Need::$need,
                    slot: AtomicUsize::new(0),
                };
            )*
        }

        /// Every real function, in one table.
        pub static TABLE: &[&Entry] = &[$(&entries::$name),*];

        $(
            /// Calls the real function; when libc lacks it, fails with `ENOSYS`.
            ///
            /// # Safety
            /// The same contract as the libc function of that name.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                match entries::$name.get() {
                    0 => {
                        crate::guard::set_errno(libc::ENOSYS);
                        $fail
                    }
                    addr => {
                        // SAFETY: the address came from dlsym for this very symbol, whose
                        // prototype is `types::$name`.
                        let f: types::$name = unsafe { std::mem::transmute::<usize, types::$name>(addr) };
                        // SAFETY: the caller upholds the libc function's contract.
                        unsafe { f($($arg),*) }
                    }
                }
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

/// Resolves every entry; returns the required ones that are missing, with `dlerror()`'s text.
/// Called from the constructor (an ordinary context).
pub fn resolve_all(mut missing: impl FnMut(&Entry, &str)) {
    for entry in TABLE {
        if entry.resolve() == 0 && entry.need == Need::Required {
            // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc.
            let why = unsafe {
                let e = libc::dlerror();
                if e.is_null() {
                    "not found".into()
                } else {
                    std::ffi::CStr::from_ptr(e).to_string_lossy()
                }
            };
            missing(entry, &why);
        }
    }
}

/// The current action of `signo`, read with the real `sigaction` (`None` for an invalid signal).
pub fn query(signo: c_int) -> Option<libc::sigaction> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a NULL new action only reads; `old` is a valid out-pointer.
    let r = unsafe { sigaction(signo, std::ptr::null(), old.as_mut_ptr()) };
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
