//! The path every hook takes: decide, and for a watched change capture, report and act.
//!
//! The fast path, for a signal that is not watched, is in the hooks themselves (`hooks.rs`): one
//! atomic load, a bit test and a tail call into libc. What reaches [`intercept`] is a call about
//! a watched signal, or any call before the configuration is published; the rest is in cold
//! functions: reading the current action, capturing the stacks, rendering and writing the
//! event, and the veto.
//!
//! Results are libc's: in `log` mode the real function runs with the caller's own arguments and
//! its return value and `errno` are handed back untouched. In `veto` mode the real function is
//! not called (or called with `SA_NOCLDWAIT` removed), and the caller is told what libc would
//! have told it had the change succeeded: success, and the real current action as the old one.

use crate::cause;
use crate::config::{self, Config, Mode, Problems};
use crate::guard::{self, ErrnoGuard};
use crate::policy::{self, Action, Decision, Disposition};
use crate::real;
use crate::report::{self, Event, Kind, Note, Outcome};
use crate::script::{self, Language};
use crate::signals::{MAX_SIGNAL, SigSet};
use crate::stack;
use crate::unwind;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use libc::{c_int, c_long, sighandler_t};

/// A call that may change `signo`'s action, as one entry point expressed it.
#[derive(Clone, Copy)]
pub struct Request {
    pub via: &'static str,
    pub signo: c_int,
    /// The action asked for; `None` when the call only reads, or changes something else.
    pub new: Option<Action>,
}

impl Request {
    pub fn handler(via: &'static str, signo: c_int, handler: sighandler_t, flags: c_int) -> Self {
        Request {
            via,
            signo,
            new: Some(Action::new(Disposition::from_raw(handler), flags)),
        }
    }

    /// # Safety
    /// `act` is null or points to a readable `struct sigaction`.
    pub unsafe fn sigaction(via: &'static str, signo: c_int, act: *const libc::sigaction) -> Self {
        Request {
            via,
            signo,
            // SAFETY: non-null, readable per the contract (libc would read it too).
            new: (!act.is_null()).then(|| report::action_of(unsafe { &*act })),
        }
    }

    pub fn other(via: &'static str, signo: c_int) -> Self {
        Request {
            via,
            signo,
            new: None,
        }
    }
}

/// How the hook should make its real call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// With the caller's own arguments.
    AsAsked,
    /// With this action instead (veto mode: `SA_NOCLDWAIT` removed, the rest as asked).
    Instead(Action),
}

/// A libc return value: how a call says it failed.
pub trait Ret: Copy {
    fn succeeded(self) -> bool;
}
impl Ret for sighandler_t {
    fn succeeded(self) -> bool {
        self != libc::SIG_ERR
    }
}
impl Ret for c_int {
    fn succeeded(self) -> bool {
        self != -1
    }
}
impl Ret for c_long {
    fn succeeded(self) -> bool {
        self != -1
    }
}

/// Audits one call. `apply` makes the real call; `keep` is what veto mode returns instead of
/// installing an ignore (success, with the current action as the old one).
#[inline(always)]
pub fn intercept<R: Ret>(
    req: Request,
    apply: impl FnOnce(Apply) -> R,
    keep: impl FnOnce() -> R,
) -> R {
    match config::loaded() {
        Some(cfg) => match policy::decide(cfg, req.signo, req.new) {
            Decision::Pass => apply(Apply::AsAsked),
            d => watched(cfg, d, req, apply, keep),
        },
        None => before_constructor(req, apply, keep),
    }
}

/// A hook called before our constructor, from another library's constructor: note how the
/// process started before anything changes, and use a private copy of the configuration.
#[cold]
#[inline(never)]
fn before_constructor<R: Ret>(
    req: Request,
    apply: impl FnOnce(Apply) -> R,
    keep: impl FnOnce() -> R,
) -> R {
    snapshot_initial(SigSet(u64::MAX));
    guard::first_look();
    let cfg = config::from_process_env(&mut Problems::new());
    match policy::decide(&cfg, req.signo, req.new) {
        Decision::Pass => apply(Apply::AsAsked),
        d => watched(&cfg, d, req, apply, keep),
    }
}

#[cold]
#[inline(never)]
fn watched<R: Ret>(
    cfg: &Config,
    decision: Decision,
    req: Request,
    apply: impl FnOnce(Apply) -> R,
    keep: impl FnOnce() -> R,
) -> R {
    let mut errno = ErrnoGuard::new();
    // An invalid signal number or a failing read: let libc give its own answer.
    let Some(old) = current(req.signo) else {
        drop(errno);
        return apply(Apply::AsAsked);
    };
    let new = req.new.unwrap_or(old);
    match decision {
        Decision::Pass => {
            let r = apply(Apply::AsAsked);
            errno.keep();
            r
        }
        Decision::WatchChange => {
            let r = apply(Apply::AsAsked);
            errno.keep();
            // A vfork child resetting handlers before it execs is routine hygiene (CPython does it
            // for every signal in every subprocess): not worth a report. An ignore there still
            // is, since it survives the exec.
            if !guard::in_shared_memory_child() {
                // A failed call can still have changed the action (`rt_sigaction` with an `old`
                // the kernel cannot write back), so what counts is the action now.
                let now = current(req.signo).unwrap_or(old);
                // `sigset(SIG_HOLD)` blocks the signal and leaves its action alone: a change
                // all the same.
                if new.disposition == Disposition::Hold && r.succeeded() {
                    event(cfg, Kind::Change, &req, old, new, Outcome::Logged);
                } else if old.differs_from(now) {
                    event(cfg, Kind::Change, &req, old, now, Outcome::Logged);
                }
            }
            r
        }
        Decision::Ignore(Mode::Log) => {
            let r = apply(Apply::AsAsked);
            errno.keep();
            // As above: a failed call may have changed the action all the same.
            let now = current(req.signo).unwrap_or(if r.succeeded() { new } else { old });
            if r.succeeded() || (now != old && now.ignores(req.signo)) {
                event(cfg, Kind::Ignore, &req, old, now, Outcome::Logged);
            }
            r
        }
        Decision::Ignore(Mode::Veto) => {
            event(cfg, Kind::Ignore, &req, old, new, Outcome::Vetoed);
            match policy::vetoed(new) {
                None => {
                    let r = keep();
                    // The read can fail too (a bad `old` pointer): its errno is the answer.
                    if !r.succeeded() {
                        errno.keep();
                    }
                    r
                }
                Some(instead) => {
                    let r = apply(Apply::Instead(instead));
                    errno.keep();
                    r
                }
            }
        }
        Decision::Ignore(Mode::Abort) => {
            event(cfg, Kind::Ignore, &req, old, new, Outcome::Aborted);
            // SAFETY: abort never returns; the report is already written.
            unsafe { libc::abort() }
        }
    }
}

/// The current action of `signo`.
fn current(signo: c_int) -> Option<Action> {
    real::query(signo).map(|sa| report::action_of(&sa))
}

/// Captures the stacks, renders and writes one event, and keeps it as the cause for a later
/// `echild` when it is an ignore that took effect. An `inherited` event has no stack to show:
/// it happened before this program ran. All of it runs on the event's own stack with signals
/// held (`stack.rs`).
fn event(cfg: &Config, kind: Kind, req: &Request, old: Action, new: Action, outcome: Outcome) {
    let started = if cfg.trace() { report::clock() } else { 0 };
    let shared = guard::in_shared_memory_child();
    let r = report::with_scratch(|s, frame| {
        let files = guard::files_allowed();
        let mut language = Language::None;
        if kind != Kind::Inherited {
            unwind::capture(&mut s.backtrace);
            language = script::capture(&mut s.python, &mut s.missing, s.backtrace.frames());
        } else {
            // From the reserve, the scratch holds an earlier event's stacks.
            s.backtrace.len = 0;
            s.backtrace.truncated = false;
            s.python.len = 0;
            s.python.truncated = false;
            s.missing.clear();
        }
        let notes = notes(cfg, frame, files);
        let ev = Event {
            kind,
            signo: req.signo,
            via: req.via,
            old,
            new,
            outcome,
            backtrace: &s.backtrace,
            python: &s.python,
            language,
            missing: &s.missing,
            cause: None,
            notes: &notes,
        };
        let cause_len = report::publish(cfg, &ev, &mut s.text, frame, files, started);
        if outcome == Outcome::Logged && cause_len > 0 && !shared && req.signo == libc::SIGCHLD {
            cause::record(s.text.cause.get(..cause_len).unwrap_or(&[]));
        }
    });
    if let Err(errno) = r {
        report::unreported(kind, req.via, errno);
    }
}

/// What an event says about itself: memory from the reserve, no files opened, no addresses.
fn notes(cfg: &Config, frame: &stack::Frame, files: bool) -> [Note; 3] {
    [
        match frame.source {
            stack::Source::Reserve(e) => Note::NoMemory(report::Errno(e)),
            stack::Source::Mapped => Note::None,
        },
        if files { Note::None } else { Note::Sandboxed },
        if cfg.secure {
            Note::AddressesWithheld
        } else {
            Note::None
        },
    ]
}

/// Called by the wait hooks after the real call: a failure with `ECHILD` while SIGCHLD is
/// ignored becomes an `echild` event naming the cause. A successful wait costs one compare.
#[inline(always)]
pub fn after_wait<R: Ret>(via: &'static str, r: R) -> R {
    if !r.succeeded() && guard::errno() == libc::ECHILD {
        echild(via);
    }
    r
}

#[cold]
#[inline(never)]
fn echild(via: &'static str) {
    let _errno = ErrnoGuard::new();
    let Some(cfg) = config::loaded() else { return };
    if !cfg.watches(libc::SIGCHLD) {
        return;
    }
    let Some(now) = current(libc::SIGCHLD) else {
        return;
    };
    if !now.ignores(libc::SIGCHLD) {
        return;
    }
    let started = if cfg.trace() { report::clock() } else { 0 };
    let r = report::with_scratch(|s, frame| {
        let files = guard::files_allowed();
        let cause_len = cause::read(&mut s.prior_cause);
        unwind::capture(&mut s.backtrace);
        let language = script::capture(&mut s.python, &mut s.missing, s.backtrace.frames());
        let cause = cause_len.and_then(|n| s.prior_cause.get(..n));
        let notes = notes(cfg, frame, files);
        let ev = Event {
            kind: Kind::Echild,
            signo: libc::SIGCHLD,
            via,
            old: now,
            new: now,
            outcome: Outcome::Logged,
            backtrace: &s.backtrace,
            python: &s.python,
            language,
            missing: &s.missing,
            cause,
            notes: &notes,
        };
        report::publish(cfg, &ev, &mut s.text, frame, files, started);
    });
    if let Err(errno) = r {
        report::unreported(Kind::Echild, via, errno);
    }
}

// ---- how the process started -----------------------------------------------------------------

/// 0: not taken; 1: being taken; 2: taken.
#[unsafe(link_section = ".data.sigaudit_load")]
static SNAPSHOT_STATE: AtomicU8 = AtomicU8::new(0);
/// Signals that were `SIG_IGN` when the process started (bit n-1 for signal n).
#[unsafe(link_section = ".data.sigaudit_load")]
static INITIAL_IGNORED: AtomicU64 = AtomicU64::new(0);

/// Records which of `signals` were ignored when the process started, once, before any hook lets
/// a change through. Called by the first hook that runs before our constructor (with every
/// signal, since the configuration is not known to be final yet) or by the constructor.
pub fn snapshot_initial(signals: SigSet) {
    if SNAPSHOT_STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let mut ignored = 0u64;
    for signo in signals.iter() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP || signo > MAX_SIGNAL {
            continue;
        }
        if current(signo).is_some_and(|a| a.disposition == Disposition::Ignore) {
            ignored |= 1 << (signo - 1);
        }
    }
    INITIAL_IGNORED.store(ignored, Ordering::Relaxed);
    SNAPSHOT_STATE.store(2, Ordering::Release);
}

/// Reports each watched signal the process started with ignored; in veto mode resets it to
/// `SIG_DFL` if it still is ignored. Constructor only.
pub fn check_inherited(cfg: &Config) {
    snapshot_initial(cfg.watch);
    if SNAPSHOT_STATE.load(Ordering::Acquire) != 2 {
        return;
    }
    let ignored = SigSet(INITIAL_IGNORED.load(Ordering::Relaxed) & cfg.watch.0);
    for signo in ignored.iter() {
        let was = Action::new(Disposition::Ignore, 0);
        let req = Request::other("execve", signo);
        let veto = cfg.mode == Mode::Veto
            && current(signo).is_some_and(|a| a.disposition == Disposition::Ignore);
        let (outcome, new) = if veto {
            let mut dfl = core::mem::MaybeUninit::<libc::sigaction>::zeroed();
            // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask and no flags.
            let r = unsafe { real::sigaction(signo, dfl.as_mut_ptr(), core::ptr::null_mut()) };
            if r == 0 {
                (Outcome::Vetoed, Action::new(Disposition::Default, 0))
            } else {
                (Outcome::Logged, was)
            }
        } else {
            (Outcome::Logged, was)
        };
        event(cfg, Kind::Inherited, &req, was, new, outcome);
    }
}
