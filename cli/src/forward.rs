//! Passing SIGINT, SIGTERM, SIGHUP and SIGQUIT on to the command while sigaudit waits for it.
//!
//! A signal the terminal generates (Ctrl-C, Ctrl-\, hang-up) goes to the whole foreground process
//! group, which the command shares with us: it already has its copy, so that one is not sent
//! again. The kernel marks those `SI_KERNEL`; a signal some process sent to sigaudit alone
//! (`kill`, `timeout`, a supervisor) comes as `SI_USER` or `SI_QUEUE` and is forwarded.
//!
//! The handler only reads and writes atomics and calls `kill(2)`, which is async-signal-safe.
//! The pid is published before anything can reap the child and withdrawn (set to -1) before it
//! is reaped, so a forwarded signal never reaches a recycled pid. A signal that arrives before
//! the child exists is kept and sent once it does. A signal that was ignored when sigaudit
//! started is left ignored, so the command inherits that as it would without us (`nohup`, `&`).
//!
//! Once the child is gone, there is no one to pass a signal to: it is sigaudit's own to obey.
//! The handler stays and only notes it ([`Forwarding::restore`] returns it), so that sigaudit
//! stops what it is doing, removes its folder, and then dies of that signal, as a killed
//! command would: never stuck, never leaving its folder behind.

use libc::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

const SIGNALS: [c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The child's pid; 0 before it is started, -1 once it has exited.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal received before the child existed.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// A signal received after the child was gone: sigaudit ends with it.
static TERMINATE: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; we only read and restore it.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo_t (checked for null
    // all the same).
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    match CHILD.load(Ordering::SeqCst) {
        -1 => TERMINATE.store(sig, Ordering::SeqCst),
        _ if from_terminal => {}
        0 => PENDING.store(sig, Ordering::SeqCst),
        pid => {
            // SAFETY: kill is async-signal-safe; pid is our unreaped child.
            unsafe { libc::kill(pid, sig) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The dispositions found at start, restored by [`Forwarding::finish`].
pub struct Forwarding {
    saved: Vec<(c_int, libc::sigaction)>,
}

impl Forwarding {
    /// Installs the handlers (before the child is started).
    pub fn install() -> Forwarding {
        let mut saved = Vec::new();
        for sig in SIGNALS {
            // SAFETY: zeroed sigaction is a valid "no handler, no flags, empty mask" value; all
            // pointers passed are valid for the calls.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                for s in SIGNALS {
                    libc::sigaddset(&mut sa.sa_mask, s);
                }
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0 {
                    saved.push((sig, old));
                }
            }
        }
        Forwarding { saved }
    }

    /// The child is running: forward to it from now on, and send what came before.
    pub fn started(&self, pid: u32) {
        let pid = pid as i32;
        CHILD.store(pid, Ordering::SeqCst);
        let pending = PENDING.swap(0, Ordering::SeqCst);
        if pending != 0 {
            // SAFETY: plain system call on our own unreaped child.
            unsafe { libc::kill(pid, pending) };
        }
    }

    /// The child has exited (not yet reaped): stop forwarding; a signal from now on ends sigaudit
    /// (see [`terminating`]).
    pub fn finish(&self) {
        CHILD.store(-1, Ordering::SeqCst);
    }

    /// Puts the old dispositions back; returns the signal that came for sigaudit itself after the
    /// child was gone, for the caller to die of once it has cleaned up.
    pub fn restore(self) -> Option<c_int> {
        CHILD.store(-1, Ordering::SeqCst);
        for (sig, old) in &self.saved {
            // SAFETY: restores an action read from the kernel earlier.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        terminating()
    }
}

/// A signal that came for sigaudit itself (after the child was gone), if one did.
pub fn terminating() -> Option<c_int> {
    match TERMINATE.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Dies of `sig` as if it had never been caught (its disposition is the default again).
pub fn die_of(sig: c_int) {
    // SAFETY: resets one disposition and raises the signal in this process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Whether child `pid` has ended, without reaping it (so its pid stays ours until we do).
pub fn has_exited(pid: u32) -> bool {
    // SAFETY: a zeroed siginfo_t is valid; waitid writes into it.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r != 0 {
            // ECHILD (already reaped) means there is nothing left to wait for.
            return std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR);
        }
        info.si_pid() != 0
    }
}
