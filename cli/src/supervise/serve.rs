//! Serving notifications: each is a thread of the tree blocked in `rt_sigaction` for a watched
//! signal with a new action, waiting for our answer. For each one:
//!
//! 1. read what the call asks (the new action, through `/proc/TID/mem`), the process's identity
//!    and image, and its stack (registers from `/proc/TID/syscall`, unwound from outside);
//! 2. check that the notification is still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`): only then
//!    is everything read known to be the caller's, not a new process that got its pid;
//! 3. if a frame of the stack is in `libsigaudit.so`, the call comes from the library's hook,
//!    which reports it itself: let it run, and say nothing (one event, not two);
//! 4. otherwise decide as the library does: let it run (`log`), or refuse it and tell the caller
//!    it worked, with the current action as its old one (`veto`), or refuse it and send the
//!    thread SIGABRT (`abort`); and write the event, before the answer, so that it is in the
//!    record file before the program goes on;
//! 5. answer. A caller that no longer waits for the answer (a signal interrupted it, and the
//!    kernel runs the call again) is remembered, so that the call counts once (`restart.rs`).
//!
//! The tracking of actions (see `actions.rs`) is updated with every call let through whose
//! caller took the answer.

use super::actions::{self, Actions, KernelAction};
use super::filter::abi;
use super::modules::Modules;
use super::record::{Event, Output};
use super::restart::{Abandoned, Attempt};
use super::seccomp::{Answer, Listener, Notif};
use super::stack::{Frame, Layout};
use super::tracee::{self, Image, Memory, Registers, Status};
use crate::args::Mode;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

/// How long the registers of a caller that a signal woke are waited for (see `registers`).
const WOKEN_AT_MOST: Duration = Duration::from_secs(1);

/// What to watch and do, from the command line.
pub struct Policy {
    pub mode: Mode,
    /// Signals watched with `:any` (the filter sends only watched signals).
    pub any: Vec<i32>,
}

pub struct Server {
    pub listener: Listener,
    policy: Policy,
    actions: Actions,
    modules: Modules,
    layouts: HashMap<(u32, Image), Layout>,
    foreign_noted: HashSet<u32>,
    /// Each thread's process, by thread id and start time.
    tgids: HashMap<(u32, u64), u32>,
    abandoned: Abandoned,
    out: Output,
    served: u64,
}

/// What one notification's caller asks, read before anything is decided.
struct Call {
    tid: u32,
    /// The thread's start time (with `tid`, names it for good).
    start_time: u64,
    status: Status,
    image: Image,
    signo: i32,
    new: KernelAction,
    old_ptr: u64,
    act_ptr: u64,
    frames: Vec<Frame>,
    truncated: bool,
    /// The kernel runs this call again, and its event is already written.
    again: bool,
}

/// How a notification is answered.
struct Reply {
    answer: Answer,
    /// The action the call installs if its caller takes the answer.
    installs: Option<KernelAction>,
    /// Whether the call is an event (written, or skipped as written before).
    reported: bool,
}

impl Reply {
    /// Let the call run, installing `action` (the caller's, or what a veto left of it).
    fn run(action: KernelAction, reported: bool) -> Reply {
        Reply {
            answer: Answer::Continue,
            installs: Some(action),
            reported,
        }
    }
}

impl Server {
    pub fn new(listener: Listener, policy: Policy, out: Output) -> Server {
        Server {
            listener,
            policy,
            actions: Actions::default(),
            modules: Modules::default(),
            layouts: HashMap::new(),
            foreign_noted: HashSet::new(),
            tgids: HashMap::new(),
            abandoned: Abandoned::default(),
            out,
            served: 0,
        }
    }

    /// Answers one notification.
    pub fn handle(&mut self, n: &Notif) {
        self.served += 1;
        if self.served.is_multiple_of(256) {
            self.actions.prune();
            self.abandoned.prune();
            self.layouts
                .retain(|(pid, _), _| std::path::Path::new(&format!("/proc/{pid}")).exists());
        }
        if n.data.arch != abi::NATIVE || n.data.nr as u32 != abi::RT_SIGACTION {
            self.foreign(n);
            self.listener.answer(n.id, Answer::Continue);
            return;
        }
        let Some((mut call, mem)) = self.read(n) else {
            // Unreadable: the kernel will give the caller its own answer (EINVAL, EFAULT).
            self.listener.answer(n.id, Answer::Continue);
            return;
        };
        let old = self.actions.current(&call.status, call.image, call.signo);
        let change = !call.new.ignores(call.signo)
            && self.policy.any.contains(&call.signo)
            && old.is_none_or(|o| o.differs_from(call.new));
        // Only an event needs the stack (most calls are a program installing its handlers).
        let event = call.new.ignores(call.signo) || change;
        if event {
            self.unwind(&mut call, &mem, n.id);
        }
        let attempt = Attempt::new(n, call.start_time, call.new);
        // The kernel's restart of a call whose answer it abandoned after its event was written.
        call.again = self.abandoned.is_again(&attempt);
        if !self.listener.still_pending(n.id) {
            self.abandoned.answered(attempt, false, call.again);
            return;
        }
        let through_library = call.frames.iter().any(|f| {
            f.module
                .as_ref()
                .is_some_and(|(m, _)| crate::record::basename(m).starts_with("libsigaudit"))
        });
        let reply = if !event || through_library || change {
            let reported = change && !through_library;
            if reported {
                self.report(&call, "change", old, call.new, "logged");
            }
            Reply::run(call.new, reported)
        } else {
            self.decide(&call, &mem, old)
        };
        let taken = self.listener.answer(n.id, reply.answer);
        if taken && let Some(action) = reply.installs {
            self.installed(&call, action);
        }
        self.abandoned
            .answered(attempt, taken, reply.reported || call.again);
    }

    /// An event's answer, and what has to happen before it: the event written, the caller's
    /// memory written (veto), SIGABRT sent (abort).
    fn decide(&mut self, call: &Call, mem: &Memory, old: Option<KernelAction>) -> Reply {
        match (self.policy.mode, old) {
            (Mode::Veto, Some(old)) => self.veto(call, mem, old),
            (Mode::Abort, _) => {
                self.report(call, "ignore", old, call.new, "aborted");
                // Sent before the answer, so that it is there when the call returns. Where the
                // kernel keeps a received caller waiting (`restart.rs`), a handled SIGABRT waits
                // for the answer too; elsewhere it may interrupt the call, which then comes
                // again and gets neither a second SIGABRT nor a second event.
                if !call.again {
                    // SAFETY: plain system call; the thread waits for our answer, so it is alive.
                    unsafe {
                        libc::syscall(libc::SYS_tgkill, call.status.tgid, call.tid, libc::SIGABRT)
                    };
                }
                Reply {
                    answer: Answer::Return(0),
                    installs: None,
                    reported: true,
                }
            }
            // Log mode; or veto when the current action is a handler installed where we could
            // not see it (so it could not be handed back as the old one): let it through.
            _ => {
                self.report(call, "ignore", old, call.new, "logged");
                Reply::run(call.new, true)
            }
        }
    }

    /// Veto: a request to ignore is not run, and the caller gets success and, if it asked, the
    /// current action as the old one (what libc would have told it). A handler with
    /// `SA_NOCLDWAIT` is installed without that flag, which is cleared in the caller's own
    /// request before the kernel reads it.
    fn veto(&mut self, call: &Call, mem: &Memory, old: KernelAction) -> Reply {
        match call.new.vetoed() {
            None => {
                self.report(call, "ignore", Some(old), call.new, "vetoed");
                let answer = if call.old_ptr == 0 || mem.write(call.old_ptr, &old.to_bytes()) {
                    Answer::Return(0)
                } else {
                    Answer::Fail(libc::EFAULT)
                };
                Reply {
                    answer,
                    installs: None,
                    reported: true,
                }
            }
            Some(instead) => {
                let flags_at = call.act_ptr + 8;
                if mem.write(flags_at, &instead.flags.to_ne_bytes()) {
                    self.report(call, "ignore", Some(old), call.new, "vetoed");
                    Reply::run(instead, true)
                } else {
                    self.report(call, "ignore", Some(old), call.new, "logged");
                    Reply::run(call.new, true)
                }
            }
        }
    }

    fn installed(&mut self, call: &Call, action: KernelAction) {
        self.actions
            .installed(&call.status, call.image, call.signo, action);
    }

    /// Everything about the call, or `None` if the caller is gone or its request unreadable
    /// (the kernel then fails it on its own: a wrong `sigsetsize`, a bad pointer).
    fn read(&mut self, n: &Notif) -> Option<(Call, Memory)> {
        let tid = n.pid;
        let args = n.data.args;
        if args[3] != actions::SIGSET_SIZE {
            return None;
        }
        let signo = args[0] as u32 as i32;
        let (status, image, start_time) = self.identify(tid, signo)?;
        let mem = Memory::open(tid)?;
        let mut raw = [0u8; actions::SIZE];
        if !mem.read(args[1], &mut raw) {
            return None;
        }
        Some((
            Call {
                tid,
                start_time,
                status,
                image,
                signo,
                new: KernelAction::from_bytes(&raw),
                act_ptr: args[1],
                old_ptr: args[2],
                frames: Vec::new(),
                truncated: false,
                again: false,
            },
            mem,
        ))
    }

    /// The caller's process, parent and signal classes, its image and the thread's start time:
    /// from `/proc/TID/stat` alone for signals up to 31 and a thread seen before (`status`
    /// costs twice as much).
    fn identify(&mut self, tid: u32, signo: i32) -> Option<(Status, Image, u64)> {
        let st = tracee::stat(tid)?;
        let key = (tid, st.start_time);
        let full = match self.tgids.get(&key) {
            Some(_) if signo <= 31 => None,
            _ => Some(tracee::status(tid)?),
        };
        let tgid = match full {
            Some(f) => f.tgid,
            None => self.tgids[&key],
        };
        if self.tgids.len() > 4096 {
            self.tgids.clear();
        }
        self.tgids.insert(key, tgid);
        let status = Status {
            tgid,
            ppid: st.ppid,
            ignored: full.map_or(st.ignored, |f| f.ignored),
            caught: full.map_or(st.caught, |f| f.caught),
        };
        Some((status, st.image, st.start_time))
    }

    /// The caller's stack, from its registers at the call.
    fn unwind(&mut self, call: &mut Call, mem: &Memory, id: u64) {
        let Some((sp, pc)) = self.registers(call.tid, id) else {
            return;
        };
        if let Some(layout) = self.layout(call.status.tgid, call.image, pc) {
            (call.frames, call.truncated) = layout.backtrace(mem, sp, pc);
        }
    }

    /// The caller's stack pointer and program counter. A signal that arrives while the caller
    /// waits wakes it (whatever the kernel then does with the call, see `restart.rs`), and until
    /// the scheduler has run it, which can take milliseconds on a busy machine, `/proc` has no
    /// registers to show: they are asked again while the notification is pending, for up to
    /// [`WOKEN_AT_MOST`].
    fn registers(&self, tid: u32, id: u64) -> Option<(u64, u64)> {
        let deadline = Instant::now() + WOKEN_AT_MOST;
        loop {
            match tracee::registers(tid) {
                Registers::At { sp, pc } => return Some((sp, pc)),
                Registers::Unknown => return None,
                Registers::Running
                    if !self.listener.still_pending(id) || Instant::now() > deadline =>
                {
                    return None;
                }
                Registers::Running => std::thread::sleep(Duration::from_micros(20)),
            }
        }
    }

    /// The process's layout, read again when `pc` is outside every module known (a library
    /// loaded since).
    fn layout(&mut self, pid: u32, image: Image, pc: u64) -> Option<&Layout> {
        let key = (pid, image);
        let stale = self
            .layouts
            .get(&key)
            .is_none_or(|l| l.frame(pc).module.is_none());
        if stale {
            let maps = tracee::maps(pid)?;
            self.layouts
                .insert(key, Layout::new(maps, &mut self.modules));
        }
        self.layouts.get(&key)
    }

    fn report(
        &mut self,
        call: &Call,
        kind: &'static str,
        old: Option<KernelAction>,
        new: KernelAction,
        outcome: &'static str,
    ) {
        if call.again {
            return;
        }
        let pid = call.status.tgid;
        let exe = tracee::exe(pid);
        let argv = tracee::argv(pid);
        let ev = Event {
            kind,
            time: SystemTime::now(),
            pid,
            ppid: call.status.ppid,
            tid: call.tid,
            exe: &exe,
            argv: &argv,
            signo: call.signo,
            // A handler installed out of our sight: its class is known, not its details.
            old: old.unwrap_or(KernelAction {
                handler: u64::MAX,
                ..KernelAction::DEFAULT
            }),
            new,
            outcome,
            frames: &call.frames,
            truncated: call.truncated,
        };
        self.out.write(&ev.to_json());
    }

    /// A signal call through another ABI (32-bit): said once per process, let through.
    fn foreign(&mut self, n: &Notif) {
        let pid = tracee::status(n.pid).map_or(n.pid, |s| s.tgid);
        if self.foreign_noted.insert(pid) {
            let exe = tracee::exe(pid);
            eprintln!(
                "sigaudit: note: pid {pid} ({}) changes signal actions through the {} system \
                 call interface, which --supervise does not decode: not audited",
                crate::record::basename(&super::record::text(&exe)),
                abi::FOREIGN_NAME
            );
        }
    }
}
