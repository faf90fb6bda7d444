//! `errno` preservation and the process identity checks the hooks rely on.

use core::sync::atomic::{AtomicI32, Ordering};

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

/// The pid this copy of our memory belongs to: set by the constructor and, in a `fork()` child,
/// by our `pthread_atfork` child handler. A `vfork()` or `clone(CLONE_VM)` child runs no atfork
/// handler, so there `getpid()` differs from it: that is how we tell a child that shares its
/// parent's memory (see [`in_shared_memory_child`]).
#[unsafe(link_section = ".data.sigaudit_load")]
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

pub fn set_owner_pid() {
    OWNER_PID.store(crate::sys::getpid(), Ordering::Relaxed);
}

/// True in a child that shares our memory with its parent (vfork, posix_spawn, clone(CLONE_VM)),
/// or a child made by a raw `fork` system call, which runs no atfork handler either. Such a child
/// must not change our process-wide state: it is its parent's.
pub fn in_shared_memory_child() -> bool {
    let owner = OWNER_PID.load(Ordering::Relaxed);
    owner != 0 && owner != crate::sys::getpid()
}

/// The `pthread_atfork` child handler: this process now owns its copy of our memory.
pub extern "C" fn after_fork_in_child() {
    set_owner_pid();
}
