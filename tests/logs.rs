//! Events into the system's logs (`SIGAUDIT_OUTPUT=journal`, `syslog`, `rfc5424`), checked
//! against the real services, each private to its test (see `common/services.rs`): a
//! `systemd-journald` in its own mount namespace and an `rsyslogd` on a socket in the test's
//! folder. And a socket that is missing or refuses: the reason once, the events on stderr.

mod common;

use common::{Cmd, Dir, Journald, Rsyslogd, Run, s, tool};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The driver with the `signal` snippet: ignores SIGCHLD in `ignore_sigchld`, forks, waits:
/// an `ignore` event and an `echild` event.
fn driver(dir: &Dir) -> PathBuf {
    dir.cc("driver", &["driver.c", "via/signal.c"], &[])
}

/// A Python program that ignores SIGCHLD at a known line, then loses a child's exit status.
fn python_app(dir: &Dir) -> (PathBuf, usize) {
    let app = dir.write(
        "app.py",
        "import signal, subprocess\n\
         def setup():\n    \
             signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n\
         setup()\n\
         print('status=%d' % subprocess.call(['false']))\n",
    );
    (app, 3)
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    s(entry, name)
}

/// The record an entry carries.
fn record(entry: &Value) -> Value {
    serde_json::from_str(field(entry, "SIGAUDIT_RECORD"))
        .unwrap_or_else(|e| panic!("SIGAUDIT_RECORD is not JSON ({e}): {entry}"))
}

fn os(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `cmd` with the library preloaded and `output` as SIGAUDIT_OUTPUT; it must succeed,
/// and the library must say nothing on stderr (its socket works).
fn audited(cmd: Cmd, output: String) -> Run {
    let run = cmd.preload().env("SIGAUDIT_OUTPUT", output).run().success();
    quiet(&run);
    run
}

/// The library says nothing on stderr when its socket works.
fn quiet(run: &Run) {
    assert!(
        !run.stderr.contains("sigaudit"),
        "the library wrote to stderr\n{run}"
    );
}

#[test]
fn journal_entries_carry_the_fields() {
    let dir = Dir::new("journal-fields");
    let Some(journald) = Journald::start(&dir, "journald", "fake-a") else {
        return;
    };
    // A C program: the culprit is a native frame.
    let program = driver(&dir);
    let run = audited(
        dir.cmd(&program),
        format!("journal:{}", os(&journald.socket)),
    );
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    let entries = journald.wait_for_entries(2);
    assert_eq!(entries.len(), 2, "one entry per event\n{entries:#?}");
    let (ignore, echild) = (&entries[0], &entries[1]);
    for e in &entries {
        assert_eq!(field(e, "SYSLOG_IDENTIFIER"), "sigaudit", "{e}");
        assert_eq!(field(e, "SIGAUDIT_SIGNAL"), "SIGCHLD", "{e}");
        assert_eq!(field(e, "SIGAUDIT_ACTION"), "logged", "{e}");
        assert_eq!(field(e, "_HOSTNAME"), "fake-a", "{e}");
        assert_eq!(field(e, "_TRANSPORT"), "journal", "{e}");
        let rec = record(e);
        assert_eq!(rec["pid"].to_string(), field(e, "_PID"), "{e}");
        assert_eq!(s(&rec, "event"), field(e, "SIGAUDIT_EVENT"), "{e}");
        // The culprit: the function that called signal(), in the driver.
        assert_eq!(field(e, "CODE_FUNC"), "ignore_sigchld", "{e}");
        assert_eq!(field(e, "CODE_FILE"), os(&program), "{e}");
    }
    assert_eq!(field(ignore, "SIGAUDIT_EVENT"), "ignore");
    assert_eq!(field(ignore, "PRIORITY"), "4", "warning");
    let pid = field(ignore, "_PID");
    assert!(
        field(ignore, "MESSAGE").starts_with(&format!(
            "pid {pid} (driver) SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN SA_RESTART [logged] at ignore_sigchld+0x"
        )),
        "{ignore}"
    );
    assert_eq!(field(echild, "SIGAUDIT_EVENT"), "echild");
    assert_eq!(
        field(echild, "PRIORITY"),
        "3",
        "error: a child's status was lost"
    );
    let message = field(echild, "MESSAGE");
    assert!(
        message.starts_with(&format!(
            "pid {pid} (driver) waitpid() failed with ECHILD because SIGCHLD is SIG_IGN SA_RESTART [logged]; cause: SIGCHLD ignored via signal() in pid {pid} at ignore_sigchld+0x"
        )),
        "{echild}"
    );
    // The whole record, frames and all.
    let rec = record(echild);
    assert!(!rec["backtrace"].as_array().unwrap().is_empty(), "{rec}");
    assert_eq!(s(&rec["cause"], "via"), "signal", "{rec}");
}

/// Python code: the culprit's file, line and function are the script's.
#[test]
fn journal_entries_name_the_python_line() {
    let dir = Dir::new("journal-python");
    let Some(journald) = Journald::start(&dir, "journald", "fake-a") else {
        return;
    };
    let (app, line) = python_app(&dir);
    let run = audited(
        dir.cmd("python3").arg(&app),
        format!("journal:{}", os(&journald.socket)),
    );
    assert_eq!(
        run.field("status"),
        "0",
        "the bug: the failure is lost\n{run}"
    );
    let entries = journald.wait_for_entries(2);
    let by_event: BTreeMap<&str, &Value> = entries
        .iter()
        .map(|e| (field(e, "SIGAUDIT_EVENT"), e))
        .collect();
    for kind in ["ignore", "echild"] {
        let e = by_event
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} entry: {entries:#?}"));
        assert_eq!(field(e, "CODE_FILE"), os(&app), "{e}");
        assert_eq!(field(e, "CODE_LINE"), line.to_string(), "{e}");
        assert_eq!(field(e, "CODE_FUNC"), "setup", "{e}");
        assert!(
            field(e, "MESSAGE").ends_with(&format!(" at {}:{line} in setup", os(&app))),
            "{e}"
        );
    }
}

/// `SIGAUDIT_OUTPUT=journal` alone: journald's own socket, `/run/systemd/journal/socket`, here
/// the private journald's (the program runs in its mount namespace).
#[test]
fn journal_without_a_path_uses_journalds_socket() {
    let dir = Dir::new("journal-default");
    let Some(journald) = Journald::start(&dir, "journald", "fake-a") else {
        return;
    };
    let Some(nsenter) = tool("nsenter") else {
        return;
    };
    let program = driver(&dir);
    let run = dir
        .cmd(nsenter)
        .arg("-t")
        .arg(journald.pid().to_string())
        .arg("-m")
        .arg("--")
        .arg("env")
        .arg(format!("LD_PRELOAD={}", os(&common::lib())))
        .arg("SIGAUDIT_OUTPUT=journal")
        .arg(&program)
        .run()
        .success();
    quiet(&run);
    let entries = journald.wait_for_entries(2);
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(field(&entries[0], "_COMM"), "driver", "{}", entries[0]);
}

/// A record larger than the socket's send buffer goes as a sealed memfd (journald's way for
/// large entries), whole: here strace makes the first send fail as a too-small buffer would
/// (`EMSGSIZE`; the library makes its system calls directly, so a preloaded `socket()` shim
/// cannot shrink the buffer).
#[test]
fn a_record_too_large_for_a_datagram_goes_as_a_memfd() {
    let dir = Dir::new("journal-memfd");
    let Some(journald) = Journald::start(&dir, "journald", "fake-a") else {
        return;
    };
    let Some(strace) = tool("strace") else {
        return;
    };
    let stress = dir.cc("stress", &["stress.c"], &["-lpthread"]);
    let trace = dir.join("trace");
    let run = dir
        .cmd(strace)
        .arg("-f")
        .arg("-e")
        .arg("trace=memfd_create,sendmsg")
        .arg("-e")
        .arg("inject=sendmsg:error=EMSGSIZE:when=1")
        .arg("-o")
        .arg(&trace)
        .arg(&stress)
        .arg("deep")
        .env("LD_PRELOAD", os(&common::lib()))
        .env(
            "SIGAUDIT_OUTPUT",
            format!("journal:{}", os(&journald.socket)),
        )
        .run()
        .success();
    quiet(&run);
    let entries = journald.wait_for_entries(1);
    let rec = record(&entries[0]);
    let frames = rec["backtrace"].as_array().unwrap();
    assert_eq!(frames.len(), 64, "the whole record\n{rec}");
    assert!(
        field(&entries[0], "SIGAUDIT_RECORD").len() > 4608,
        "larger than the smallest send buffer"
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(
        trace.contains("memfd_create(\"sigaudit-journal\""),
        "{trace}"
    );
    assert!(trace.contains("SCM_RIGHTS"), "{trace}");
    assert!(
        trace.contains("EMSGSIZE"),
        "the datagram was tried first\n{trace}"
    );
}

/// 1,000 events from 10 processes at once: journald's socket queue (10 datagrams by default)
/// fills again and again; senders wait for room, and none is lost.
#[test]
fn a_burst_of_a_thousand_events_from_ten_processes_loses_none() {
    let dir = Dir::new("journal-burst");
    let Some(journald) = Journald::start(&dir, "journald", "fake-a") else {
        return;
    };
    let burst = dir.cc("burst", &["burst.c"], &[]);
    let run = audited(
        dir.cmd(&burst).args(["10", "100"]),
        format!("journal:{}", os(&journald.socket)),
    );
    assert_eq!(run.field("events"), "1000", "{run}");
    let entries = journald.wait_for_entries(1000);
    assert_eq!(entries.len(), 1000);
    let mut per_pid: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &entries {
        assert_eq!(field(e, "SIGAUDIT_EVENT"), "ignore");
        *per_pid.entry(field(e, "_PID")).or_default() += 1;
    }
    assert_eq!(per_pid.len(), 10, "{per_pid:?}");
    assert!(per_pid.values().all(|&n| n == 100), "{per_pid:?}");
}

/// The local syslog form, to a real rsyslogd set up as Debian sets it up (its default parser):
/// one message per event, with identifier, pid, priority and the culprit.
#[test]
fn syslog_messages_to_rsyslogd() {
    let dir = Dir::new("syslog-rsyslogd");
    let Some(rsyslogd) = Rsyslogd::start(&dir, "rsyslogd", false) else {
        return;
    };
    let program = driver(&dir);
    audited(
        dir.cmd(&program),
        format!("syslog:{}", os(&rsyslogd.socket)),
    );
    let lines = rsyslogd.wait_for_lines(2);
    assert_eq!(lines.len(), 2, "one message per event: {lines:#?}");
    let pid = lines[0]
        .split("PROCID=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    assert!(
        lines[0].starts_with(&format!(
            "PRI=warning.user APP=sigaudit PROCID={pid} MSGID=- TIME="
        )),
        "{lines:#?}"
    );
    // rsyslog keeps the space after `sigaudit[PID]:` in the message, as for glibc's syslog().
    assert!(
        lines[0].contains(&format!(
            " MSG= pid {pid} (driver) SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN SA_RESTART [logged] at ignore_sigchld+0x"
        )),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with(&format!("PRI=err.user APP=sigaudit PROCID={pid} ")),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains("waitpid() failed with ECHILD")
            && lines[1].contains("cause: SIGCHLD ignored via signal() in pid")
            && lines[1].contains(&format!("({}+0x", os(&program))),
        "{lines:#?}"
    );
}

/// RFC 5424, to an rsyslogd input set up to parse it: the event's kind comes through as its
/// MSGID.
#[test]
fn rfc5424_messages_to_rsyslogd() {
    let dir = Dir::new("syslog-rfc5424");
    let Some(rsyslogd) = Rsyslogd::start(&dir, "rsyslogd", true) else {
        return;
    };
    let program = driver(&dir);
    audited(
        dir.cmd(&program),
        format!("rfc5424:{}", os(&rsyslogd.socket)),
    );
    let lines = rsyslogd.wait_for_lines(2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains(" APP=sigaudit "), "{lines:#?}");
    assert!(lines[0].contains(" MSGID=ignore "), "{lines:#?}");
    assert!(lines[1].contains(" MSGID=echild "), "{lines:#?}");
    assert!(lines[0].contains(" MSG=pid "), "{lines:#?}");
}

/// journald's `/dev/log` (what `/dev/log` is on a systemd machine) parses the local form too.
#[test]
fn syslog_messages_to_journalds_dev_log() {
    let dir = Dir::new("syslog-journald");
    let Some(journald) = Journald::start(&dir, "journald", "fake-a") else {
        return;
    };
    let program = driver(&dir);
    audited(
        dir.cmd(&program),
        format!("syslog:{}", os(&journald.dev_log)),
    );
    let entries = journald.wait_for_entries(2);
    assert_eq!(entries.len(), 2, "{entries:#?}");
    for e in &entries {
        assert_eq!(field(e, "_TRANSPORT"), "syslog", "{e}");
        assert_eq!(field(e, "SYSLOG_PID"), field(e, "_PID"), "{e}");
        assert!(field(e, "MESSAGE").starts_with("pid "), "{e}");
    }
    assert_eq!(field(&entries[0], "PRIORITY"), "4");
    assert_eq!(field(&entries[1], "PRIORITY"), "3");
}

/// A socket that is missing, or that nobody listens on: the reason once on stderr, every event
/// there (in the configured form), and the program unchanged.
#[test]
fn a_dead_socket_sends_events_to_stderr_saying_why_once() {
    let dir = Dir::new("dead-socket");
    let program = driver(&dir);
    let reference = dir.cmd(&program).preload().run().success();
    // A socket file whose receiver is gone.
    let gone = common::short_dir("dead-socket").join("gone");
    drop(std::os::unix::net::UnixDatagram::bind(&gone).unwrap());
    for (output, reason) in [
        ("journal:missing".to_string(), "ENOENT"),
        (format!("syslog:{}", os(&gone)), "ECONNREFUSED"),
        ("rfc5424:nothing/here".to_string(), "ENOENT"),
    ] {
        for format in ["text", "json"] {
            let run = dir
                .cmd(&program)
                .preload()
                .env("SIGAUDIT_OUTPUT", &output)
                .env("SIGAUDIT_FORMAT", format)
                .run()
                .success();
            assert_eq!(run.stdout, reference.stdout, "{run}");
            let said: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| l.contains("cannot send to"))
                .collect();
            assert_eq!(said.len(), 1, "said once\n{run}");
            let kind = output.split(':').next().unwrap();
            let path = output.split_once(':').unwrap().1;
            // A relative path is anchored where the program started.
            assert!(
                said[0].contains(&format!(": cannot send to {kind} socket "))
                    && said[0].contains(&format!("{path}: {reason} (")),
                "{run}"
            );
            assert!(said[0].ends_with("; reporting on stderr instead"), "{run}");
            if format == "json" {
                let events = run.events();
                assert_eq!(events.len(), 2, "{run}");
                assert_eq!(s(&events[1]["cause"], "via"), "signal", "{run}");
            } else {
                assert!(
                    run.stderr
                        .contains("SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN"),
                    "{run}"
                );
                // The echild's cause in one line, read back from the JSON cause.
                assert!(
                    run.stderr
                        .contains("  cause: SIGCHLD ignored via signal() in pid "),
                    "{run}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(gone.parent().unwrap());
}
