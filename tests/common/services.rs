//! Real log services for the tests of the journal and syslog sinks, each private to one test:
//! a `systemd-journald` and an `rsyslogd`, with their sockets and their storage in the test's own
//! folder, never the machine's (`/run/systemd/journal`, `/dev/log` and `/var/log` are not
//! touched). Both test harnesses include this file next to `shared.rs`.
//!
//! # journald outside PID 1
//!
//! `systemd-journald` runs standalone when started as root with:
//! - its runtime folders bound to the test's own: it always uses `/run/systemd/journal/` for its
//!   sockets (`socket`, `dev-log`, `stdout`) and `/run/log/journal/MACHINE-ID/` for a volatile
//!   journal, paths it takes no option for. So it runs in a private mount namespace (`unshare -m`,
//!   whose mounts stay private) with a tmpfs on `/run` and the test's folders bound on
//!   `/run/systemd` and `/run/log`; the sockets are then reachable from outside through the
//!   test's folder, and `journalctl --directory` reads the journal there.
//! - its configuration as a drop-in in `/run/systemd/journald.conf.d/` (inside the bound folder):
//!   `Storage=volatile` (never `/var/log/journal`, which is also covered with a tmpfs in the
//!   namespace), no rate limit, no forwarding to syslog, the console, wall or the kernel log, and
//!   `ReadKMsg=no` (the kernel's log is not the test's).
//! - `SYSTEMD_LOG_TARGET=console`, so that its own messages go to its stderr (a file in the test
//!   folder) rather than to `/dev/kmsg`, the machine's kernel log.
//! - its own UTS namespace (`unshare -u`) with a host name of the test's choosing: journald stamps
//!   every entry with `_HOSTNAME`, so two journalds make two fake hosts.
//! - `/etc/machine-id`, which names its journal folder (Debian's systemd package makes it).
//!
//! No socket activation, no `NOTIFY_SOCKET`, no PID 1: it opens its sockets itself. Where the
//! kernel refuses namespaces (an unprivileged container), the test is skipped with the reason, or
//! fails under `SIGAUDIT_TEST_STRICT`.
#![allow(dead_code)]

use super::shared::{Dir, tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to come up, and events to reach its storage.
const READY: Duration = Duration::from_secs(20);

/// Whether this machine lets us make mount and UTS namespaces. `None`: skipped (or, under
/// `SIGAUDIT_TEST_STRICT`, failed) with the reason printed.
fn namespaces() -> Option<()> {
    let out = Command::new("unshare")
        .args(["-m", "-u", "true"])
        .stdin(Stdio::null())
        .output();
    let why = match out {
        Ok(o) if o.status.success() => return Some(()),
        Ok(o) => format!(
            "unshare -m -u failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run unshare: {e}"),
    };
    assert!(
        std::env::var_os("SIGAUDIT_TEST_STRICT").is_none(),
        "{why}: the journald tests need a private mount namespace (run as root; \
         SIGAUDIT_TEST_STRICT is set, so they may not be skipped)"
    );
    eprintln!("note: {why}: skipped (the journald tests need a private mount namespace, as root)");
    None
}

/// Polls `f` until it returns `Some`, for up to [`READY`].
fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < READY, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a service we started (by its own pid) and reaps it.
fn stop(child: &mut Child) {
    // SAFETY: a signal to our own child, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A private `systemd-journald` (see the module's documentation).
pub struct Journald {
    /// Its native socket, for `SIGAUDIT_OUTPUT=journal:PATH`: relative to the test's folder,
    /// where the test's programs run (a socket path holds at most 107 bytes, and the test folder
    /// may be deep; the library keeps a relative path that does not fit anchored as it is).
    pub socket: PathBuf,
    /// Its syslog socket (what `/dev/log` is on a systemd machine), relative as `socket`.
    pub dev_log: PathBuf,
    /// The journal folder, for `journalctl --directory`.
    pub journal: PathBuf,
    /// Its own output.
    pub log: PathBuf,
    child: Child,
}

impl Journald {
    /// Starts one in `dir/name`, in its own namespaces, as host `hostname`. `None`: skipped.
    pub fn start(dir: &Dir, name: &str, hostname: &str) -> Option<Journald> {
        let journald = tool("systemd-journald")?;
        tool("journalctl")?;
        namespaces()?;
        let base = dir.join(name);
        let run = base.join("run-systemd");
        let logs = base.join("run-log");
        std::fs::create_dir_all(run.join("journald.conf.d")).expect("make journald folders");
        std::fs::create_dir_all(&logs).expect("make journald folders");
        std::fs::write(
            run.join("journald.conf.d").join("test.conf"),
            "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\nRateLimitBurst=0\n\
             ForwardToSyslog=no\nForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\n\
             ReadKMsg=no\n",
        )
        .expect("write journald.conf.d");
        let log = base.join("journald.log");
        let out = std::fs::File::create(&log).expect("journald log");
        // In the new namespaces: a private /run with the test's folders bound in, no access to
        // the machine's persistent journal, the fake host name, then journald itself.
        let script = r#"set -e
mount -t tmpfs -o mode=0755 sigaudit-test /run
mkdir -p /run/systemd /run/log
mount --bind "$1" /run/systemd
mount --bind "$2" /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs sigaudit-test /var/log/journal; fi
echo "$3" > /proc/sys/kernel/hostname
exec "$4"
"#;
        let child = Command::new("unshare")
            .args(["-m", "-u", "sh", "-c", script, "sh"])
            .arg(&run)
            .arg(&logs)
            .arg(hostname)
            .arg(&journald)
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("journald log"))
            .stderr(out)
            .spawn()
            .expect("start unshare for journald");
        let relative = Path::new(name).join("run-systemd").join("journal");
        let mut j = Journald {
            socket: relative.join("socket"),
            dev_log: relative.join("dev-log"),
            journal: logs.join("journal"),
            log,
            child,
        };
        let (socket, dev_log) = (run.join("journal/socket"), run.join("journal/dev-log"));
        let started = Instant::now();
        while !(socket.exists() && dev_log.exists() && j.journal_files() > 0) {
            if let Ok(Some(status)) = j.child.try_wait() {
                panic!(
                    "systemd-journald exited ({status}) before it was ready:\n{}",
                    std::fs::read_to_string(&j.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < READY,
                "systemd-journald did not come up:\n{}",
                std::fs::read_to_string(&j.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(j)
    }

    fn journal_files(&self) -> usize {
        walk(&self.journal)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "journal"))
            .count()
    }

    /// journald's pid, to run a program in its mount namespace (`nsenter -t PID -m`), where the
    /// default socket paths are its own.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `journalctl --directory ... -o json --all` with `args` (matches, `-n`, ...): every line.
    /// `--all` keeps fields longer than 4 KiB, which plain `-o json` prints as null.
    pub fn json(&self, args: &[&str]) -> String {
        let out = Command::new("journalctl")
            .arg("--directory")
            .arg(&self.journal)
            .args(["-o", "json", "--all", "--no-pager"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run journalctl");
        assert!(
            out.status.success(),
            "journalctl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("journalctl prints UTF-8")
    }

    /// The entries sigaudit sent (`SYSLOG_IDENTIFIER=sigaudit`), once there are at least `n`.
    pub fn wait_for_entries(&self, n: usize) -> Vec<serde_json::Value> {
        wait_until(&format!("{n} sigaudit entries in the journal"), || {
            let entries: Vec<serde_json::Value> = self
                .json(&["SYSLOG_IDENTIFIER=sigaudit"])
                .lines()
                .map(|l| serde_json::from_str(l).expect("journalctl prints JSON lines"))
                .collect();
            (entries.len() >= n).then_some(entries)
        })
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A private `rsyslogd` with its own configuration, listening on a socket of its own (never
/// `/dev/log`), writing every message it gets to a file in the test's folder, one line each,
/// with the fields a test checks: `PRI=<severity>.<facility> APP=<app-name> PROCID=<procid>
/// MSGID=<msgid> TIME=<reported time> MSG=<message>`.
pub struct Rsyslogd {
    /// Its socket: in a short folder of its own under the temporary folder, since rsyslogd binds
    /// it by its absolute path (107 bytes at most) after changing to `/`.
    pub socket: PathBuf,
    pub messages: PathBuf,
    pub log: PathBuf,
    socket_dir: PathBuf,
    child: Child,
}

impl Rsyslogd {
    /// Starts one in `dir/name`. `rfc5424`: its socket parses RFC 5424 (rsyslog's default
    /// `imuxsock` parser, as Debian uses it, takes the local form only). `None`: skipped.
    pub fn start(dir: &Dir, name: &str, rfc5424: bool) -> Option<Rsyslogd> {
        let rsyslogd = tool("rsyslogd")?;
        let base = dir.join(name);
        std::fs::create_dir_all(&base).expect("make the rsyslogd folder");
        let socket_dir = short_dir(name);
        let socket = socket_dir.join("log");
        let messages = base.join("messages");
        let parser = if rfc5424 {
            r#" UseSpecialParser="off""#
        } else {
            ""
        };
        let conf = format!(
            r#"global(workDirectory="{base}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0"{parser})
template(name="fields" type="string" string="PRI=%syslogseverity-text%.%syslogfacility-text% APP=%app-name% PROCID=%procid% MSGID=%msgid% TIME=%timereported:::date-rfc3339% MSG=%msg%\n")
action(type="omfile" file="{messages}" template="fields")
"#,
            base = base.display(),
            socket = socket.display(),
            messages = messages.display(),
        );
        let conf_path = base.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let log = base.join("rsyslogd.log");
        let out = std::fs::File::create(&log).expect("rsyslogd log");
        let mut child = Command::new(&rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(base.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("rsyslogd log"))
            .stderr(out)
            .spawn()
            .expect("start rsyslogd");
        let started = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "rsyslogd exited ({status}) before it was ready:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < READY, "rsyslogd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Rsyslogd {
            socket,
            messages,
            log,
            socket_dir,
            child,
        })
    }

    /// The message lines written so far, once there are at least `n`.
    pub fn wait_for_lines(&self, n: usize) -> Vec<String> {
        wait_until(&format!("{n} messages from rsyslogd"), || {
            let text = std::fs::read_to_string(&self.messages).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() >= n).then_some(lines)
        })
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// A fresh, short folder under the temporary folder, private to this test process: for sockets,
/// whose paths hold at most 107 bytes (a test's own folder may be deeper).
pub fn short_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "sigaudit-{}-{n}-{}",
        std::process::id(),
        name.chars().take(16).collect::<String>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make a folder for a socket");
    dir
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
