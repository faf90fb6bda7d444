//! The test harness: the library under test (built once per test binary), a fresh folder per
//! test, C fixtures compiled with `gcc -g` into it, and `sigaudit` runs under a time-out that on
//! any failed expectation show the command, its status, stdout and stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any one child may run before it is killed and the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

#[path = "../../../tests/common/pythons.rs"]
pub mod pythons;
#[path = "../../../tests/common/services.rs"]
mod services;
#[path = "../../../tests/common/shared.rs"]
mod shared;
#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use services::{Journald, Rsyslogd};
#[allow(unused_imports)]
pub use shared::{Cmd, Dir, Run, lib, root, target_dir, tool, wait_with_timeout};

/// The command under test.
pub fn sigaudit() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sigaudit"))
}

impl Dir {
    /// Copies fixture `name` into this folder, keeping its mode.
    pub fn copy_fixture(&self, name: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::copy(fixture(name), &p).expect("copy fixture");
        p
    }

    /// Compiles fixture `source` (in cli/tests/fixtures) into `out` here with `gcc -g -O0`.
    pub fn cc(&self, out: &str, source: &str, args: &[&str]) -> PathBuf {
        let target = self.join(out);
        let mut cmd = Command::new("gcc");
        cmd.args(["-g", "-O0", "-Wall", "-o"])
            .arg(&target)
            .arg(fixture(source))
            .args(args);
        let run = run_with_timeout(&mut cmd);
        assert!(run.status.success(), "compiling failed\n{run}");
        target
    }

    /// `sigaudit ARGS...` run in this folder, with the library under test and none of the
    /// caller's SIGAUDIT_ or LD_PRELOAD variables.
    pub fn sigaudit(&self) -> Cmd {
        let mut cmd = self.plain(sigaudit());
        cmd.command.env("SIGAUDIT_LIB", lib());
        cmd
    }

    /// `program` run in this folder with a clean SIGAUDIT_/LD_PRELOAD environment.
    pub fn plain(&self, program: impl AsRef<std::ffi::OsStr>) -> Cmd {
        Cmd {
            command: self.command(program),
        }
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The 1-based line of `fixture` that holds `marker`.
pub fn line_of(fixture_name: &str, marker: &str) -> usize {
    let text = std::fs::read_to_string(fixture(fixture_name)).expect("read fixture");
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in {fixture_name}"))
        + 1
}

impl Cmd {
    pub fn env_remove(mut self, k: &str) -> Self {
        self.command.env_remove(k);
        self
    }
    pub fn run(self) -> Run {
        self.run_within(TIMEOUT)
    }
    /// [`Cmd::run`] with another time-out, for a child that builds (a release build from
    /// scratch takes about a minute on 2 cores).
    pub fn run_within(mut self, timeout: Duration) -> Run {
        shared::run_within(&mut self.command, timeout)
    }
    /// Runs with `input` on stdin.
    pub fn run_with_input(mut self, input: &[u8]) -> Run {
        let command = format!("{:?}", self.command);
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let run = finish(child, command);
        let _ = writer.join();
        run
    }
    /// Starts it with stdout read line by line as it comes (see [`Running`]).
    pub fn start(mut self) -> Running {
        self.command.stdin(Stdio::null());
        self.start_with_stdin()
    }
    /// [`Cmd::start`] with the stdin already set on the command.
    pub fn start_with_stdin(mut self) -> Running {
        let command = format!("{:?}", self.command);
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        Running {
            child,
            command,
            lines,
            reader,
        }
    }
}

/// A child whose stdout lines can be awaited while it runs.
pub struct Running {
    pub child: Child,
    command: String,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<String>,
}

impl Running {
    /// Waits (up to the time-out) for a stdout line equal to `want`.
    pub fn wait_for_line(&self, want: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(_) => {}
                Err(_) => panic!("no line {want:?} from {}", self.command),
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the end; stdout holds every line, also those already seen.
    pub fn finish(mut self) -> Run {
        let mut err = self.child.stderr.take().expect("piped stderr");
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let status = shared::wait_with_timeout(&mut self.child, &self.command, TIMEOUT);
        let stdout = self.reader.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        Run {
            command: self.command,
            status,
            stdout,
            stderr,
        }
    }
}

impl Run {
    /// Panics, showing everything, unless the exit code is `code`.
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit status\n{self}"
        );
        self
    }
    /// Panics, showing everything, unless stderr contains `needle`.
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }
    pub fn stderr_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}\n{self}"
        );
        self
    }
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
        self
    }
    /// The summary: stderr from the line that starts it.
    pub fn summary(&self) -> &str {
        let start = self
            .stderr
            .find("sigaudit: clean run")
            .or_else(|| self.stderr.find("sigaudit: no event received"))
            .or_else(|| {
                self.stderr
                    .match_indices("sigaudit: ")
                    .map(|(i, _)| i)
                    .find(|&i| {
                        self.stderr[i..]
                            .lines()
                            .next()
                            .is_some_and(|l| l.contains(" reported "))
                    })
            })
            .unwrap_or_else(|| panic!("no summary\n{self}"));
        &self.stderr[start..]
    }
}

/// Runs `cmd` to completion, killing it (and failing) after [`TIMEOUT`].
pub fn run_with_timeout(cmd: &mut Command) -> Run {
    shared::run_within(cmd, TIMEOUT)
}

fn finish(child: Child, command: String) -> Run {
    shared::finish(child, command, TIMEOUT)
}

/// A fresh pseudo-terminal: (master, slave).
pub fn open_pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers to two ints; no name, termios or window size asked for.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// The records the library itself writes (no sigaudit command involved) for `./ignorer`, built
/// in `d` from the fixture: ignore and echild from the program, inherited from the /bin/true it
/// starts.
pub fn ignorer_records(d: &Dir) -> String {
    let run = d
        .plain("./ignorer")
        .env("LD_PRELOAD", lib())
        .env("SIGAUDIT_FORMAT", "json")
        .run()
        .code(0);
    assert_eq!(records(&run.stderr).len(), 3, "{run}");
    run.stderr
}

/// The JSON records among `text`'s lines; any line starting with `{` must parse.
pub fn records(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON ({e}): {l}")))
        .collect()
}
