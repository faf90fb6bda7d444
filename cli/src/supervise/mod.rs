//! `--supervise`: sees what the preloaded library cannot (statically linked programs, Go built
//! without cgo, musl programs, raw `syscall` instructions, children started with a cleared
//! environment) through a seccomp filter with user notification, installed in COMMAND before it
//! runs and inherited by everything it starts, across `fork` and `exec`, whatever the
//! environment.
//!
//! How it fits together:
//!
//! - [`prepare`] checks the kernel, builds the filter (`filter.rs`) and a socket pair, before the
//!   command is started: the child may not allocate between `fork` and `exec`.
//! - [`Prepared::attach`] adds a `pre_exec` step to the command: `PR_SET_NO_NEW_PRIVS`, the
//!   filter with a new listener, and the listener's descriptor sent back over the socket
//!   (`seccomp.rs`). The descriptor never reaches the command.
//! - [`Prepared::start`] takes the listener and serves it on a thread of its own (`serve.rs`):
//!   the caller's memory and registers through `/proc` (`tracee.rs`), its stack unwound from
//!   outside (`stack.rs`, `modules.rs`), what each process's actions are (`actions.rs`), a call
//!   that a signal makes the kernel run again counted once (`restart.rs`), and the records
//!   (`record.rs`), written to the run's private folder beside the library's.
//! - [`Supervisor::finish`], once the command has ended: processes of the tree still running
//!   would have their next watched `rt_sigaction` fail with `ENOSYS` once nobody holds the
//!   listener, so a small process is left behind to answer "continue" until they are gone.
//!
//! If sigaudit itself is killed (`SIGKILL`), the kernel fails the pending and later supervised
//! calls with `ENOSYS`: the tree does not hang, but those calls fail. If it is stopped
//! (`SIGSTOP`), callers wait until it goes on, as under a stopped tracer.

mod actions;
mod filter;
mod modules;
mod record;
mod restart;
mod seccomp;
mod serve;
mod stack;
mod tracee;

use crate::args::RunOptions;
use crate::record::{array, s};
use crate::signals;
use seccomp::{Listener, Program};
use serde_json::{Value, json};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The one line said before every supervised run.
pub const NO_NEW_PRIVS_NOTE: &str = "--supervise runs the command with no_new_privs, as seccomp \
    requires: setuid, setgid and file-capability programs in it run without their privilege";

/// Ready to supervise a command that is about to be started.
pub struct Prepared {
    program: Arc<Program>,
    ours: OwnedFd,
    theirs: OwnedFd,
    policy: serve::Policy,
    dir: std::path::PathBuf,
}

/// Checks that supervision can work here and builds the filter. `Err` says why not, in one line.
pub fn prepare(opts: &RunOptions, dir: &Path) -> Result<Prepared, String> {
    seccomp::check_kernel()?;
    let (watched, any) = watch_list(&opts.watch);
    let program = Arc::new(Program::new(filter::build(&watched)));
    let (ours, theirs) =
        seccomp::socket_pair().map_err(|e| format!("cannot make a socket pair: {e}"))?;
    Ok(Prepared {
        program,
        ours,
        theirs,
        policy: serve::Policy {
            mode: opts.mode,
            any,
        },
        dir: dir.to_path_buf(),
    })
}

/// The signals of a `--watch` list (already checked), and those marked `:any`.
fn watch_list(list: &str) -> (Vec<i32>, Vec<i32>) {
    let mut watched = Vec::new();
    let mut any = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (sig, suffix) = item.split_once(':').unwrap_or((item, ""));
        if let Some(n) = signals::parse(sig) {
            if !watched.contains(&n) {
                watched.push(n);
            }
            if suffix.trim().eq_ignore_ascii_case("any") && !any.contains(&n) {
                any.push(n);
            }
        }
    }
    (watched, any)
}

impl Prepared {
    /// Installs the filter in `cmd`'s process between `fork` and `exec`.
    pub fn attach(&self, cmd: &mut Command) {
        let program = Arc::clone(&self.program);
        let sock = self.theirs.as_raw_fd();
        // SAFETY: the closure makes system calls only (see `install_in_child`) and reads the
        // filter built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                seccomp::install_in_child(&program, sock);
                Ok(())
            });
        }
    }

    /// After the command has started: takes its listener and serves it. `Err` says why the run
    /// goes on unsupervised.
    pub fn start(self) -> Result<Supervisor, String> {
        drop(self.theirs);
        let listener = Listener::new(seccomp::receive(&self.ours)?);
        let out = record::Output::open(&self.dir);
        let stop = Arc::new(AtomicBool::new(false));
        let server = serve::Server::new(listener, self.policy, out);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("supervise".into())
            .spawn(move || serve_until_stopped(server, &flag))
            .map_err(|e| format!("cannot start its thread: {e}"))?;
        Ok(Supervisor { stop, thread })
    }
}

/// The serving thread's loop: until nothing uses the filter any more, or we are told to stop.
/// Returns the server when the tree still runs, for the hand-over.
fn serve_until_stopped(mut server: serve::Server, stop: &AtomicBool) -> Option<serve::Server> {
    loop {
        match server.listener.wait(50) {
            None => return None,
            Some(true) => match server.listener.receive() {
                Ok(n) => server.handle(&n),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => {}
                Err(e) => {
                    eprintln!("sigaudit: --supervise: reading a notification failed: {e}");
                    return Some(server);
                }
            },
            Some(false) if stop.load(Ordering::Relaxed) => return Some(server),
            Some(false) => {}
        }
    }
}

/// Supervision under way.
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<serve::Server>>,
}

impl Supervisor {
    /// The command has ended: stops serving (every event so far is written) and, if processes
    /// of the tree still run under the filter, leaves a process behind that lets their calls
    /// through until they are gone.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(Some(server)) = self.thread.join() {
            hand_over(&server.listener);
        }
    }
}

/// Forks a process that answers every notification with "continue" until no process uses the
/// filter. It keeps nothing of ours open but the listener, and leaves our session, so that
/// Ctrl-C and a closed terminal do not end it before the processes it serves.
fn hand_over(listener: &Listener) {
    if listener.wait(0).is_none() {
        return;
    }
    let fd = listener.raw();
    // SAFETY: the child makes system calls only (no allocation, no lock) and ends with _exit.
    unsafe {
        match libc::fork() {
            0 => {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for std_fd in 0..3 {
                    libc::dup2(null, std_fd);
                }
                for other in 3..1024 {
                    if other != fd {
                        libc::close(other);
                    }
                }
                seccomp::answer_continue_until_unused(fd);
                libc::_exit(0);
            }
            -1 => eprintln!(
                "sigaudit: --supervise: cannot leave a helper for the processes still running: \
                 their next supervised call will fail with ENOSYS"
            ),
            _ => {}
        }
    }
}

/// An `echild` record from the library whose cause it did not see (a raw system call in that
/// process) gets as its cause the last ignore of SIGCHLD the supervisor saw in the same process
/// before it, in the library's cause shape. `earlier` holds the records shown before it.
pub fn link_cause(rec: &mut Value, earlier: &[Value]) {
    if s(rec, "event") != "echild" || rec.get("cause").is_some_and(Value::is_object) {
        return;
    }
    let Some(seen) = earlier.iter().rev().find(|r| {
        s(r, "event") == "ignore"
            && r.get("supervised") == Some(&Value::Bool(true))
            && r.get("pid") == rec.get("pid")
            && s(r, "signal") == s(rec, "signal")
            && s(r, "time") <= s(rec, "time")
    }) else {
        return;
    };
    let native = array(seen, "backtrace")
        .iter()
        .find(|f| !s(f, "module").is_empty() && !crate::record::is_runtime_frame(f))
        .cloned()
        .unwrap_or(Value::Null);
    rec["cause"] = json!({
        "event": "ignore",
        "time": s(seen, "time"),
        "pid": seen.get("pid"),
        "via": s(seen, "via"),
        "supervised": true,
        "signal": s(seen, "signal"),
        "script": [],
        "native": native,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexplained_echild_takes_the_supervised_ignore_as_its_cause() {
        let ignore = json!({"event": "ignore", "pid": 7, "time": "T1", "signal": "SIGCHLD",
            "via": "rt_sigaction", "supervised": true, "backtrace": [
                {"addr": "0x1", "module": "/x/prog", "offset": "0x10", "symbol": "__libc_sigaction+0x1"},
                {"addr": "0x2", "module": "/x/prog", "offset": "0x20", "function": "setup"}]});
        let other = json!({"event": "ignore", "pid": 8, "time": "T1", "signal": "SIGCHLD",
            "via": "rt_sigaction", "supervised": true, "backtrace": []});
        let mut echild = json!({"event": "echild", "pid": 7, "time": "T2", "signal": "SIGCHLD",
            "cause": null});
        link_cause(&mut echild, &[ignore, other]);
        assert_eq!(echild["cause"]["time"], "T1");
        assert_eq!(echild["cause"]["native"]["function"], "setup");
        // A cause the library knew is kept.
        let mut known =
            json!({"event": "echild", "pid": 7, "time": "T2", "cause": {"via": "signal"}});
        link_cause(&mut known, &[]);
        assert_eq!(known["cause"]["via"], "signal");
    }

    #[test]
    fn watch_lists() {
        assert_eq!(watch_list("CHLD, pipe:any,17"), (vec![17, 13], vec![13]));
    }
}
