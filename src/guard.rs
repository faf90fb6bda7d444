//! `errno` preservation and the process identity checks the hooks rely on.

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

#[inline(always)]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline(always)]
pub fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// Restores `errno` to what it was when the guard was made (or last [`ErrnoGuard::keep`]).
pub struct ErrnoGuard(i32);

impl ErrnoGuard {
    #[inline(always)]
    pub fn new() -> Self {
        ErrnoGuard(errno())
    }
    /// Makes the current `errno` (set by the real libc call) the one to restore.
    #[inline(always)]
    pub fn keep(&mut self) {
        self.0 = errno();
    }
}

impl Drop for ErrnoGuard {
    #[inline(always)]
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// The pid that owns this copy of our memory: set at the first look and, in a `fork()` child,
/// by our atfork child handler. A child that runs no atfork handler has another pid: one that
/// shares its parent's memory (`vfork()`, `posix_spawn`, `clone(CLONE_VM)`), and also one that
/// has a copy of its own (`clone()` without `CLONE_VM`, a raw `fork` system call).
/// [`in_shared_memory_child`] tells them apart by what is shared, not by the missing handler.
#[unsafe(link_section = ".data.sigaudit_load")]
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

pub fn set_owner_pid() {
    OWNER_PID.store(crate::sys::getpid(), Ordering::Relaxed);
}

/// True in a child that shares our memory with its parent (vfork, posix_spawn, clone(CLONE_VM)).
/// Such a child must not change our process-wide state: it is its parent's. A child with memory
/// of its own (made by `clone()` without `CLONE_VM`, or a raw `fork`, which run no atfork
/// handler) takes it over here, the first time it asks.
///
/// Whether this process and the owner share one address space is asked of the kernel
/// (`kcmp(KCMP_VM)`), only in such a child. Where that cannot be asked (no `kcmp` in the kernel,
/// or a seccomp filter that refuses it, as Docker's does) the child is taken for one that
/// shares: it reports its events, but keeps no cause.
pub fn in_shared_memory_child() -> bool {
    let owner = OWNER_PID.load(Ordering::Relaxed);
    let me = crate::sys::getpid();
    if owner == 0 || owner == me {
        return false;
    }
    const KCMP_VM: libc::c_int = 1;
    let own = match crate::sys::kcmp(me, owner, KCMP_VM, 0, 0) {
        Ok(0) => false,
        Ok(_) => true,
        // The owner is gone: no one else's memory is left to share.
        Err(e) => e == libc::ESRCH,
    };
    if own {
        after_fork_in_child();
    }
    !own
}

/// The atfork child handler, and a child with its own copy of our memory: it owns it now, and
/// state that a thread of the parent held at the fork (which does not exist here) is released.
pub extern "C" fn after_fork_in_child() {
    set_owner_pid();
    crate::stack::after_fork();
}

// ---- sandboxes --------------------------------------------------------------------------------

/// The seccomp mode at the first look, plus one (0: not looked yet).
#[unsafe(link_section = ".data.sigaudit_load")]
static SECCOMP_AT_LOAD: AtomicI32 = AtomicI32::new(0);

/// Whether an event may open files (module files, `/proc/self/...`, the output file) or
/// sockets. Not when the program has installed a seccomp filter since it started: it sandboxed
/// itself, knowing what it will call, and an `openat` it did not plan for can be fatal (a filter
/// that kills on it). A filter that was there at load (a container's, a service manager's) is
/// the program's environment, under which its own files open as usual.
pub fn files_allowed() -> bool {
    let now = crate::sys::seccomp_mode();
    now <= 0 || SECCOMP_AT_LOAD.load(Ordering::Relaxed) == now + 1
}

/// What the process is like when we first run: its stderr, its sandbox, who owns its memory.
/// From the constructor, or from a hook that runs before it (in another library's constructor);
/// once.
pub fn first_look() {
    #[unsafe(link_section = ".data.sigaudit_load")]
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    SECCOMP_AT_LOAD.store(crate::sys::seccomp_mode().max(0) + 1, Ordering::Relaxed);
    crate::report::note_stderr();
    set_owner_pid();
}
