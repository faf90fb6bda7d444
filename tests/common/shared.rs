//! The part of the test harness both packages share (`tests/common` and `cli/tests/common`
//! include this file): the workspace, its target folder, the library under test (built once per
//! test binary, because cargo does not build a cdylib-only package for tests), and a fresh folder
//! per test, and collecting a child's output under a time-out. Each harness adds its own methods
//! to [`Dir`], [`Cmd`] and [`Run`].

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The workspace root: the nearest folder above this package's manifest that has `Cargo.lock`.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .to_path_buf()
}

/// cargo's target folder (`CARGO_TARGET_DIR`, relative to the workspace if relative).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

/// The library under test: `SIGAUDIT_TEST_LIB` if set, else the debug build in this checkout,
/// built (once per test binary) by `cargo build --lib -p sigaudit` so a plain `cargo test` is
/// enough.
pub fn lib() -> PathBuf {
    if let Some(p) = std::env::var_os("SIGAUDIT_TEST_LIB") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "SIGAUDIT_TEST_LIB={} does not exist",
            p.display()
        );
        return p;
    }
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--lib", "-p", "sigaudit"])
            .current_dir(root())
            .status()
            .expect("run cargo build for the library");
        assert!(status.success(), "cargo build --lib -p sigaudit failed");
    });
    let p = target_dir().join("debug").join("libsigaudit.so");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build` in {}, or point SIGAUDIT_TEST_LIB at a built libsigaudit.so",
        p.display(),
        root().display()
    );
    p
}

/// A fresh folder for one test, under target/PACKAGE-tests/NAME (emptied first, kept after, so a
/// failure can be looked at).
pub struct Dir {
    pub path: PathBuf,
}

impl Dir {
    pub fn new(name: &str) -> Dir {
        let tests = format!("{}-tests", env!("CARGO_PKG_NAME"));
        let path = target_dir().join(tests).join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test folder");
        Dir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, contents).expect("write test file");
        p
    }

    /// `program`, to run in this folder with none of the caller's `SIGAUDIT_*`, `LD_PRELOAD` or
    /// `DEBUGINFOD_URLS` (a test that wants debuginfod servers names its own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.path);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SIGAUDIT_") {
                command.env_remove(k);
            }
        }
        command.env_remove("LD_PRELOAD");
        command.env_remove("DEBUGINFOD_URLS");
        command
    }
}

/// What a finished child did; its `Display` shows everything, for failed expectations.
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// `key=value` pairs a fixture prints on stdout.
    pub fn field(&self, key: &str) -> String {
        self.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("no {key}= in stdout\n{self}"))
            .to_string()
    }
    /// The signal that ended the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.status)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// A command being set up; each harness adds its own ways to run it.
pub struct Cmd {
    pub command: Command,
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(a);
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, a: I) -> Self {
        self.command.args(a);
        self
    }
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(k, v);
        self
    }
}

/// Runs `cmd` with stdin closed and its output collected, killing it, and failing the test,
/// after `timeout`.
pub fn run_within(cmd: &mut Command, timeout: Duration) -> Run {
    let command = format!("{cmd:?}");
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    finish(child, command, timeout)
}

/// Collects a started child's output and status (its stdout and stderr must be piped), killing
/// it, and failing the test, after `timeout`.
pub fn finish(mut child: Child, command: String, timeout: Duration) -> Run {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = wait_with_timeout(&mut child, &command, timeout);
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Run {
        command,
        status,
        stdout,
        stderr,
    }
}

/// Waits for `child`, killing it, and failing the test, after `timeout`.
pub fn wait_with_timeout(child: &mut Child, command: &str, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {command}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A program a test needs that `scripts/test` installs (Debian packages: `debuginfod`, `rsyslog`,
/// `systemd`, `golang-go`, ...), looked up on `PATH` and in the `sbin` folders. Missing, the test
/// is skipped with a note on stderr, so a plain `cargo test` works on a machine without it;
/// under `scripts/test` (and so in CI), which sets `SIGAUDIT_TEST_STRICT=1` after installing
/// everything, a missing tool fails the test instead, so nothing is skipped unseen.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/lib/systemd"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SIGAUDIT_TEST_STRICT").is_none(),
            "{name} is missing: scripts/test installs it (SIGAUDIT_TEST_STRICT is set, so this \
             test may not be skipped)"
        );
        eprintln!("note: {name} is not installed: skipped (scripts/test installs it)");
    }
    found
}
