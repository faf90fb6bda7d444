//! Signal actions as the kernel stores them, and what the supervisor knows of each process's.
//!
//! `/proc/PID/status` tells only the class of a signal's action (ignored, caught, default), not
//! the handler's address, flags or mask, which a vetoed call must hand back as its old action.
//! They are known all the same: every change of a watched signal with a new action reaches the
//! supervisor (that is the filter), from the moment the command started. So the supervisor keeps,
//! per process and program image, the action it last let through, and knows the rules that
//! change it without a call: `exec` resets every handler to `SIG_DFL` and clears flags and mask
//! (an ignore stays ignored); `fork` copies the parent's; `SA_RESETHAND` resets a handler to
//! `SIG_DFL` when the signal arrives. What is kept is checked against the class in `status`
//! before it is used, which catches the last two.

use super::tracee::{Image, Status};
use std::collections::HashMap;

/// `struct sigaction` as `rt_sigaction` takes it on x86_64 and arm64: handler, flags, restorer,
/// mask (the sizes are those of `unsigned long` and of a 64-signal set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

pub const SIZE: usize = 32;
/// The only `sigsetsize` the kernel takes.
pub const SIGSET_SIZE: u64 = 8;

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

const SA_NOCLDSTOP: u64 = 1;
const SA_NOCLDWAIT: u64 = 2;
const SA_SIGINFO: u64 = 4;
const SA_EXPOSE_TAGBITS: u64 = 0x800;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTART: u64 = 0x1000_0000;
const SA_NODEFER: u64 = 0x4000_0000;
const SA_RESETHAND: u64 = 0x8000_0000;
/// The flags the kernel keeps (`UAPI_SA_FLAGS`); it clears the others since Linux 5.11.
const KEPT_FLAGS: u64 = SA_NOCLDSTOP
    | SA_NOCLDWAIT
    | SA_SIGINFO
    | SA_EXPOSE_TAGBITS
    | SA_RESTORER
    | SA_ONSTACK
    | SA_RESTART
    | SA_NODEFER
    | SA_RESETHAND;

/// Flag names, in the library's order; `SA_RESTORER` (the C library's business) is not shown.
const FLAG_NAMES: [(&str, u64); 8] = [
    ("SA_NOCLDSTOP", SA_NOCLDSTOP),
    ("SA_NOCLDWAIT", SA_NOCLDWAIT),
    ("SA_SIGINFO", SA_SIGINFO),
    ("SA_EXPOSE_TAGBITS", SA_EXPOSE_TAGBITS),
    ("SA_ONSTACK", SA_ONSTACK),
    ("SA_RESTART", SA_RESTART),
    ("SA_NODEFER", SA_NODEFER),
    ("SA_RESETHAND", SA_RESETHAND),
];

/// SIGKILL and SIGSTOP, which the kernel removes from every handler's mask.
const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));

impl KernelAction {
    pub const DEFAULT: KernelAction = KernelAction {
        handler: SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    pub const IGNORE: KernelAction = KernelAction {
        handler: SIG_IGN,
        ..KernelAction::DEFAULT
    };

    pub fn from_bytes(b: &[u8; SIZE]) -> KernelAction {
        let word = |i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        KernelAction {
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: word(3),
        }
    }

    pub fn to_bytes(self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    /// What the kernel stores when asked to install `self`.
    pub fn as_stored(self) -> KernelAction {
        KernelAction {
            flags: self.flags & KEPT_FLAGS,
            mask: self.mask & !UNBLOCKABLE,
            ..self
        }
    }

    /// Whether installing this on `signo` makes the kernel drop the signal or, for SIGCHLD, reap
    /// children without a wait (`SA_NOCLDWAIT`): the library's rule.
    pub fn ignores(self, signo: i32) -> bool {
        self.handler == SIG_IGN || (signo == libc::SIGCHLD && self.flags & SA_NOCLDWAIT != 0)
    }

    /// The same request without `SA_NOCLDWAIT` (what veto mode installs instead of a handler
    /// with that flag), or `None` for a request to ignore, which veto installs nothing for.
    pub fn vetoed(self) -> Option<KernelAction> {
        (self.handler != SIG_IGN).then_some(KernelAction {
            flags: self.flags & !SA_NOCLDWAIT,
            ..self
        })
    }

    /// Whether the handler or the visible flags differ.
    pub fn differs_from(self, other: KernelAction) -> bool {
        self.handler != other.handler || (self.flags & !SA_RESTORER) != (other.flags & !SA_RESTORER)
    }

    /// `SIG_DFL`, `SIG_IGN` or `handler`, as the library names them.
    pub fn disposition(self) -> &'static str {
        match self.handler {
            SIG_DFL => "SIG_DFL",
            SIG_IGN => "SIG_IGN",
            _ => "handler",
        }
    }

    /// The flags' names, as the library writes them (unknown bits in hex).
    pub fn flag_names(self) -> Vec<String> {
        let mut out: Vec<String> = FLAG_NAMES
            .iter()
            .filter(|(_, bit)| self.flags & bit != 0)
            .map(|(name, _)| name.to_string())
            .collect();
        let known = FLAG_NAMES
            .iter()
            .fold(SA_RESTORER, |acc, (_, bit)| acc | bit);
        let unknown = self.flags & !known;
        if unknown != 0 {
            out.push(format!("{unknown:#x}"));
        }
        out
    }

    fn class(self) -> Class {
        match self.handler {
            SIG_DFL => Class::Default,
            SIG_IGN => Class::Ignored,
            _ => Class::Caught,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Default,
    Ignored,
    Caught,
}

fn class_in(status: &Status, signo: i32) -> Class {
    let bit = 1u64 << (signo - 1);
    if status.ignored & bit != 0 {
        Class::Ignored
    } else if status.caught & bit != 0 {
        Class::Caught
    } else {
        Class::Default
    }
}

/// One process's actions as last let through, for one program image.
#[derive(Clone, Default)]
struct Known {
    image: Image,
    actions: HashMap<i32, KernelAction>,
}

/// What the supervisor knows of every process it has heard from.
#[derive(Default)]
pub struct Actions {
    by_pid: HashMap<u32, Known>,
}

impl Actions {
    /// The current action of `signo` in process `st.tgid` running `image`, or `None` when it has
    /// a handler installed before the supervisor could see it (not known, so not claimed).
    pub fn current(&mut self, st: &Status, image: Image, signo: i32) -> Option<KernelAction> {
        let known = self.known(st, image);
        let now = class_in(st, signo);
        match known.actions.get(&signo) {
            Some(a) if a.class() == now => Some(*a),
            // A handler with SA_RESETHAND that has run: back to SIG_DFL, flags kept.
            Some(a) if a.class() == Class::Caught && now == Class::Default => Some(KernelAction {
                handler: SIG_DFL,
                ..*a
            }),
            // Not seen changed in this image: as `exec` left it.
            None | Some(_) => match now {
                Class::Default => Some(KernelAction::DEFAULT),
                Class::Ignored => Some(KernelAction::IGNORE),
                Class::Caught => None,
            },
        }
    }

    /// Records that `action` was installed on `signo` in `st.tgid`.
    pub fn installed(&mut self, st: &Status, image: Image, signo: i32, action: KernelAction) {
        self.known(st, image)
            .actions
            .insert(signo, action.as_stored());
    }

    /// Forgets processes that are gone (called now and then).
    pub fn prune(&mut self) {
        self.by_pid
            .retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    /// The entry for this process and image: a new image (an `exec`) starts afresh; a process
    /// seen for the first time starts from its parent's when it runs the same image (a `fork`).
    fn known(&mut self, st: &Status, image: Image) -> &mut Known {
        let current = self.by_pid.get(&st.tgid).is_some_and(|k| k.image == image);
        if !current {
            let inherited = self
                .by_pid
                .get(&st.ppid)
                .filter(|k| k.image == image && !self.by_pid.contains_key(&st.tgid))
                .cloned();
            let fresh = inherited.unwrap_or(Known {
                image,
                actions: HashMap::new(),
            });
            self.by_pid.insert(st.tgid, fresh);
        }
        self.by_pid.get_mut(&st.tgid).expect("inserted just above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHLD: i32 = libc::SIGCHLD;
    const BIT: u64 = 1 << (CHLD - 1);

    fn st(tgid: u32, ppid: u32, ignored: u64, caught: u64) -> Status {
        Status {
            tgid,
            ppid,
            ignored,
            caught,
        }
    }

    #[test]
    fn bytes_round_trip_and_the_kernel_rules() {
        let a = KernelAction {
            handler: 0x401136,
            flags: SA_RESTART | SA_RESTORER | 0x400,
            restorer: 0x401000,
            mask: u64::MAX,
        };
        assert_eq!(KernelAction::from_bytes(&a.to_bytes()), a);
        let stored = a.as_stored();
        assert_eq!(stored.flags, SA_RESTART | SA_RESTORER);
        assert_eq!(stored.mask, !UNBLOCKABLE);
        assert_eq!(stored.flag_names(), ["SA_RESTART"]);
        assert_eq!(a.flag_names(), ["SA_RESTART", "0x400"]);
        assert!(KernelAction::IGNORE.ignores(CHLD));
        let nowait = KernelAction {
            handler: 0x401136,
            flags: SA_NOCLDWAIT,
            ..KernelAction::DEFAULT
        };
        assert!(nowait.ignores(CHLD) && !nowait.ignores(libc::SIGPIPE));
        assert_eq!(KernelAction::IGNORE.vetoed(), None);
        assert_eq!(nowait.vetoed().unwrap().flags, 0);
    }

    #[test]
    fn what_was_installed_is_known_until_exec() {
        let mut k = Actions::default();
        let image = (1, 2, 3);
        let h = KernelAction {
            handler: 0x401136,
            flags: SA_RESTART,
            ..KernelAction::DEFAULT
        };
        assert_eq!(
            k.current(&st(10, 1, 0, 0), image, CHLD),
            Some(KernelAction::DEFAULT)
        );
        k.installed(&st(10, 1, 0, 0), image, CHLD, h);
        assert_eq!(k.current(&st(10, 1, 0, BIT), image, CHLD), Some(h));
        // A fork child of the same image inherits it.
        assert_eq!(k.current(&st(11, 10, 0, BIT), image, CHLD), Some(h));
        // SA_RESETHAND ran: back to the default.
        assert_eq!(
            k.current(&st(10, 1, 0, 0), image, CHLD).unwrap().handler,
            SIG_DFL
        );
        // After exec: an ignore survives with no flags, a handler is not known.
        assert_eq!(
            k.current(&st(10, 1, BIT, 0), (4, 5, 6), CHLD),
            Some(KernelAction::IGNORE)
        );
        assert_eq!(k.current(&st(12, 1, 0, BIT), (7, 8, 9), CHLD), None);
    }
}
