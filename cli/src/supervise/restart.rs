//! A call counted once, although the kernel may run it again.
//!
//! A caller waits in the kernel for our answer. If a signal interrupts that wait, the kernel
//! abandons the notification (answering it then fails with `ENOENT`), runs the handler, and
//! restarts the system call (with `SA_RESTART` or no handler; otherwise the call fails with
//! `EINTR`), which makes a new notification, with a new id, for the same call.
//!
//! Where the kernel has `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19), the filter asks
//! for it: once we have received a notification, only a fatal signal ends the wait, and the
//! handler of any other runs when the call returns, as after a call that does not sleep. A
//! signal that comes before we receive it still interrupts the call, which then comes again
//! before we have seen it: nothing to count twice.
//!
//! Without it, a signal can abandon a notification we are answering (and a fatal signal can on
//! any kernel). The event is written before the answer, so that it is in the record file before
//! the program can go on (and, say, fail a `waitpid()` that the command links to it). So when
//! the answer finds the notification abandoned, the event of that call is already written: the
//! call is remembered here, and when the same thread's next notification is the same call (same
//! start time, call site, arguments and requested action), it is the kernel's restart of it (or
//! the program's retry of a call that failed with `EINTR`), answered as before without a second
//! event or a second `SIGABRT`. Any other notification of that thread forgets it. A restart is
//! the same call only while what it asks is unchanged: a vetoed handler with `SA_NOCLDWAIT`
//! whose request we rewrote comes back without the flag, is no event any more, and installs
//! what the veto wanted. A caller killed in the wait keeps its event, though its call never ran;
//! so, without the flag, does one whose call fails with `EINTR` and is not made again.
//!
//! What no answer can tell: before Linux 6.18 (commit cce436aafc2a, taken by some stable
//! kernels), and on any kernel without the flag, a signal that wakes the caller just before our
//! answer reaches it makes the kernel drop that answer although it accepted it; the call runs
//! again, and counts twice. Without the flag, the test that sends signals to calls as they wait
//! never saw it in 200 runs; an earlier form of it, sending them from a thread, in 2 runs of
//! 100.

use super::actions::KernelAction;
use super::seccomp::Notif;
use std::collections::HashMap;

/// One call, as it is seen again when the kernel restarts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    tid: u32,
    /// The thread's start time: a thread that gets a dead one's id is another caller.
    start_time: u64,
    pc: u64,
    args: [u64; 6],
    new: KernelAction,
}

impl Attempt {
    pub fn new(n: &Notif, start_time: u64, new: KernelAction) -> Attempt {
        Attempt {
            tid: n.pid,
            start_time,
            pc: n.data.instruction_pointer,
            args: n.data.args,
            new,
        }
    }
}

/// The calls whose event is written but whose answer their caller did not take.
#[derive(Default)]
pub struct Abandoned {
    by_tid: HashMap<u32, Attempt>,
}

impl Abandoned {
    /// Whether `a` is a call whose event is already written; forgets any other call of its thread.
    pub fn is_again(&mut self, a: &Attempt) -> bool {
        match self.by_tid.get(&a.tid) {
            Some(seen) if seen == a => true,
            Some(_) => {
                self.by_tid.remove(&a.tid);
                false
            }
            None => false,
        }
    }

    /// After answering `a` (or finding it abandoned before we could): remembers it when its
    /// caller did not take the answer and its event is written.
    pub fn answered(&mut self, a: Attempt, taken: bool, reported: bool) {
        if !taken && reported {
            self.by_tid.insert(a.tid, a);
        } else {
            self.by_tid.remove(&a.tid);
        }
    }

    /// Forgets threads that are gone (called now and then).
    pub fn prune(&mut self) {
        self.by_tid
            .retain(|tid, _| std::path::Path::new(&format!("/proc/{tid}")).exists());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notif(tid: u32, pc: u64, act: u64) -> Notif {
        // SAFETY: seccomp_notif is plain data; zero is valid for every field.
        let mut n: Notif = unsafe { std::mem::zeroed() };
        n.pid = tid;
        n.data.instruction_pointer = pc;
        n.data.args = [17, act, 0, 8, 0, 0];
        n
    }

    #[test]
    fn a_restarted_call_is_known_once_and_only_while_it_is_the_same() {
        let mut m = Abandoned::default();
        let ign = KernelAction::IGNORE;
        let first = Attempt::new(&notif(10, 0x401000, 0x7ff0), 5, ign);
        assert!(!m.is_again(&first));
        // Its answer found it abandoned, after its event was written: the restart is the same call.
        m.answered(first, false, true);
        let restart = Attempt::new(&notif(10, 0x401000, 0x7ff0), 5, ign);
        assert!(m.is_again(&restart));
        // Abandoned again: still the same call; then taken: forgotten.
        m.answered(restart, false, true);
        assert!(m.is_again(&restart));
        m.answered(restart, true, true);
        assert!(!m.is_again(&restart));

        // Not remembered: an answer taken, or no event written.
        m.answered(first, true, true);
        m.answered(Attempt::new(&notif(11, 1, 2), 5, ign), false, false);
        assert!(!m.is_again(&first));
        assert!(!m.is_again(&Attempt::new(&notif(11, 1, 2), 5, ign)));

        // Another call of the thread, or another thread with its id, or the request rewritten
        // (a veto dropping SA_NOCLDWAIT): a call of its own, and the one remembered is forgotten.
        m.answered(first, false, true);
        assert!(!m.is_again(&Attempt::new(&notif(10, 0x401000, 0x7ff0), 6, ign)));
        m.answered(first, false, true);
        assert!(!m.is_again(&Attempt::new(&notif(10, 0x402000, 0x7ff0), 5, ign)));
        assert!(!m.is_again(&first));
        m.answered(first, false, true);
        let handler = KernelAction {
            handler: 0x401136,
            ..KernelAction::DEFAULT
        };
        assert!(!m.is_again(&Attempt::new(&notif(10, 0x401000, 0x7ff0), 5, handler)));
        assert!(!m.is_again(&first));
    }
}
