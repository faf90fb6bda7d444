//! The decision, separated from every process trick so it can be unit-tested: what a requested
//! change of a signal's disposition is, and what the hook must do about it.

use crate::config::{Config, Mode};
use crate::signals::SA_RESTORER;
use libc::{c_int, sighandler_t};

/// `SIG_HOLD` from `<signal.h>` (only `sigset` takes it).
pub const SIG_HOLD: sighandler_t = 2;

/// A signal's disposition, converted once from the raw `sighandler_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    Default,
    Ignore,
    /// `sigset`'s `SIG_HOLD`: the signal is blocked; its action is not changed.
    Hold,
    Handler(sighandler_t),
}

impl Disposition {
    pub fn from_raw(h: sighandler_t) -> Self {
        match h {
            libc::SIG_DFL => Disposition::Default,
            libc::SIG_IGN => Disposition::Ignore,
            SIG_HOLD => Disposition::Hold,
            h => Disposition::Handler(h),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Disposition::Default => "SIG_DFL",
            Disposition::Ignore => "SIG_IGN",
            Disposition::Hold => "SIG_HOLD",
            Disposition::Handler(_) => "handler",
        }
    }
}

/// A disposition with its `sa_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub disposition: Disposition,
    pub flags: c_int,
}

impl Action {
    pub const fn new(disposition: Disposition, flags: c_int) -> Self {
        Action { disposition, flags }
    }

    /// The flags as a program set them, without glibc's `SA_RESTORER`.
    pub fn visible_flags(self) -> c_int {
        self.flags & !SA_RESTORER
    }

    /// Whether installing this action on `signo` makes the kernel discard the signal or, for
    /// SIGCHLD, reap children without a wait (`SA_NOCLDWAIT` has the same effect on `wait`).
    pub fn ignores(self, signo: c_int) -> bool {
        self.disposition == Disposition::Ignore
            || (signo == libc::SIGCHLD && self.flags & libc::SA_NOCLDWAIT != 0)
    }

    /// Whether going from `self` to `new` changes the handler or the flags.
    pub fn differs_from(self, new: Action) -> bool {
        self.disposition != new.disposition || self.visible_flags() != new.visible_flags()
    }
}

/// What a hook must do with a request for `signo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not watched, or watched without `:any` and not an ignore: call libc, say nothing.
    Pass,
    /// Watched with `:any` and not an ignore: call libc, then report a `change` if the
    /// disposition or flags changed.
    WatchChange,
    /// A watched signal is being ignored: report it and act per the mode.
    Ignore(Mode),
}

/// The decision for a request to install `new` on `signo` (`new` is `None` for a call that only
/// reads, or that changes something other than the action, such as `siginterrupt`).
#[inline(always)]
pub fn decide(config: &Config, signo: c_int, new: Option<Action>) -> Decision {
    if !config.watches(signo) {
        return Decision::Pass;
    }
    match new {
        Some(a) if a.ignores(signo) => Decision::Ignore(config.mode),
        _ if config.watch_any.contains(signo) => Decision::WatchChange,
        _ => Decision::Pass,
    }
}

/// What veto mode installs instead of `new`: `None` to install nothing (the request was for
/// `SIG_IGN`), or the request with `SA_NOCLDWAIT` removed (the rest still applies).
pub fn vetoed(new: Action) -> Option<Action> {
    match new.disposition {
        Disposition::Ignore => None,
        _ => Some(Action::new(
            new.disposition,
            new.flags & !libc::SA_NOCLDWAIT,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Problems;

    fn config(watch: &str, mode: &str) -> Config {
        let vars = [
            ("SIGAUDIT_WATCH", watch.as_bytes()),
            ("SIGAUDIT_MODE", mode.as_bytes()),
        ];
        Config::parse(
            |n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
            false,
            &mut Problems::new(),
        )
    }

    const IGN: Action = Action::new(Disposition::Ignore, 0);
    const DFL: Action = Action::new(Disposition::Default, 0);
    const HANDLER: Action = Action::new(Disposition::Handler(0x1234), libc::SA_RESTART);

    #[test]
    fn ignoring_a_watched_signal_is_an_ignore_in_every_mode() {
        for (mode, want) in [
            ("log", Mode::Log),
            ("veto", Mode::Veto),
            ("abort", Mode::Abort),
        ] {
            let c = config("CHLD", mode);
            assert_eq!(decide(&c, libc::SIGCHLD, Some(IGN)), Decision::Ignore(want));
        }
    }

    #[test]
    fn nocldwait_is_an_ignore_only_for_sigchld() {
        let c = config("CHLD,USR1", "log");
        let nowait = Action::new(Disposition::Handler(0x1234), libc::SA_NOCLDWAIT);
        assert_eq!(
            decide(&c, libc::SIGCHLD, Some(nowait)),
            Decision::Ignore(Mode::Log)
        );
        assert_eq!(decide(&c, libc::SIGUSR1, Some(nowait)), Decision::Pass);
        let dfl_nowait = Action::new(Disposition::Default, libc::SA_NOCLDWAIT);
        assert_eq!(
            decide(&c, libc::SIGCHLD, Some(dfl_nowait)),
            Decision::Ignore(Mode::Log)
        );
    }

    #[test]
    fn unwatched_and_other_changes_pass() {
        let c = config("CHLD", "veto");
        assert_eq!(decide(&c, libc::SIGPIPE, Some(IGN)), Decision::Pass);
        assert_eq!(decide(&c, libc::SIGCHLD, Some(HANDLER)), Decision::Pass);
        assert_eq!(decide(&c, libc::SIGCHLD, Some(DFL)), Decision::Pass);
        assert_eq!(decide(&c, libc::SIGCHLD, None), Decision::Pass);
        assert_eq!(decide(&c, 0, Some(IGN)), Decision::Pass);
        assert_eq!(decide(&c, 65, Some(IGN)), Decision::Pass);
        assert_eq!(decide(&c, -1, Some(IGN)), Decision::Pass);
    }

    #[test]
    fn any_watches_see_every_change() {
        let c = config("CHLD:any,PIPE", "veto");
        assert_eq!(
            decide(&c, libc::SIGCHLD, Some(HANDLER)),
            Decision::WatchChange
        );
        assert_eq!(decide(&c, libc::SIGCHLD, None), Decision::WatchChange);
        assert_eq!(
            decide(&c, libc::SIGCHLD, Some(IGN)),
            Decision::Ignore(Mode::Veto)
        );
        assert_eq!(decide(&c, libc::SIGPIPE, Some(HANDLER)), Decision::Pass);
    }

    #[test]
    fn veto_drops_an_ignore_and_strips_nocldwait() {
        assert_eq!(vetoed(IGN), None);
        let both = Action::new(Disposition::Ignore, libc::SA_NOCLDWAIT);
        assert_eq!(vetoed(both), None);
        let nowait = Action::new(
            Disposition::Handler(0x1234),
            libc::SA_NOCLDWAIT | libc::SA_SIGINFO,
        );
        assert_eq!(
            vetoed(nowait),
            Some(Action::new(Disposition::Handler(0x1234), libc::SA_SIGINFO))
        );
    }

    #[test]
    fn changes_ignore_glibc_restorer_bit() {
        let a = Action::new(Disposition::Default, SA_RESTORER);
        assert!(!a.differs_from(DFL));
        assert!(DFL.differs_from(IGN));
        assert!(HANDLER.differs_from(Action::new(Disposition::Handler(0x1234), 0)));
    }
}
