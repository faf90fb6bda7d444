//! The test harness: finds (and if need be builds) the library, compiles C fixtures into a fresh
//! folder per test, runs programs with the library preloaded under a time-out, and parses the
//! events they report. On any failed expectation it prints the command, its status, stdout and
//! stderr.
#![allow(dead_code)]

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long any one child may run before it is killed and the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub mod pythons;
mod services;
mod shared;
#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use services::{Journald, Rsyslogd, short_dir};
#[allow(unused_imports)]
pub use shared::{Cmd, Dir, Run, lib, root, target_dir, tool};

impl Dir {
    /// Compiles C `sources` (paths relative to tests/fixtures, or absolute) into `out` in this
    /// folder with gcc, adding `args` (`-shared -fPIC`, `-D...`, `-l...`).
    pub fn cc(&self, out: &str, sources: &[&str], args: &[&str]) -> PathBuf {
        let target = self.join(out);
        let mut cmd = Command::new("gcc");
        cmd.args(["-g", "-O0", "-Wall", "-Wno-deprecated-declarations", "-o"])
            .arg(&target)
            .args(sources.iter().map(|s| fixture(s)))
            .args(args);
        let out = shared::run_within(&mut cmd, TIMEOUT);
        assert!(out.status.success(), "compiling failed\n{out}");
        target
    }

    /// A command for `program`, run in this folder, with nothing preloaded yet.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Cmd {
        Cmd {
            command: self.command(program),
        }
    }
}

/// The names the built library imports (`nm -D --undefined-only`, versions cut off), or `None`
/// on a machine without nm.
#[allow(dead_code)] // each test binary uses its own part of the harness
pub fn library_imports() -> Option<Vec<String>> {
    let out = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(lib())
        .output()
        .ok()?;
    assert!(out.status.success(), "nm failed: {out:?}");
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    // Every library that does anything imports errno from libc: nm read the table.
    assert!(names.iter().any(|n| n == "__errno_location"), "{names:?}");
    Some(names)
}

pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root().join("tests").join("fixtures").join(p)
    }
}

impl Cmd {
    /// Preloads the library under test, reporting JSON events (on stderr unless told otherwise).
    pub fn audit_json(self) -> Self {
        self.preload().env("SIGAUDIT_FORMAT", "json")
    }
    /// Preloads the library under test.
    pub fn preload(self) -> Self {
        let lib = lib();
        self.env("LD_PRELOAD", lib)
    }
    /// Starts the program with `signo` ignored, as a parent that ignored it would leave it
    /// across `execve`.
    pub fn start_with_ignored(mut self, signo: i32) -> Self {
        // SAFETY: signal() is async-signal-safe, as pre_exec requires.
        unsafe {
            self.command.pre_exec(move || {
                libc::signal(signo, libc::SIG_IGN);
                Ok(())
            });
        }
        self
    }
    /// Starts the program with stderr closed, as a daemon's child may be.
    pub fn start_with_stderr_closed(mut self) -> Self {
        // SAFETY: close() is async-signal-safe, as pre_exec requires.
        unsafe {
            self.command.pre_exec(|| {
                libc::close(2);
                Ok(())
            });
        }
        self
    }
    pub fn run(self) -> Run {
        self.run_within(TIMEOUT)
    }
    /// [`Cmd::run`] with another time-out, for a whole test suite run as one child.
    pub fn run_within(mut self, timeout: Duration) -> Run {
        shared::run_within(&mut self.command, timeout)
    }
}

impl Run {
    /// Panics, showing everything, unless the program exited 0.
    pub fn success(self) -> Self {
        assert!(self.status.success(), "expected success\n{self}");
        self
    }
    /// The JSON events among the stderr lines (lines that start with `{`); any such line that
    /// is not valid JSON fails the test.
    pub fn events(&self) -> Vec<Value> {
        parse_events(&self.stderr).unwrap_or_else(|e| panic!("{e}\n{self}"))
    }
}

/// Parses every line that starts with `{` as one JSON event.
pub fn parse_events(text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| format!("invalid JSON event ({e}): {l}")))
        .collect()
}

/// The string value of `key` in a JSON event ("" if absent).
pub fn s<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The events of one kind.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| s(e, "event") == kind).collect()
}
