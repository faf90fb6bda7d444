//! The Python interpreters a test can run, found at run time: `python3` on `PATH`, Debian's
//! `/usr/bin/python3.11` (libpython linked into the executable), every version pyenv has
//! (`$PYENV_ROOT/versions`, else `~/.pyenv/versions`: shared libpython builds), and the commands
//! listed in `SIGAUDIT_TEST_PYTHONS` (colon-separated; for interpreters installed elsewhere, or
//! wrappers that start one). Each is asked its version once; one that is missing or does not
//! run is skipped with a note on stderr, never a failure: CI installs none of them but Debian's.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The CPython versions (major, minor) whose frames sigaudit reads.
pub const SUPPORTED: std::ops::RangeInclusive<(u32, u32)> = (3, 8)..=(3, 15);

/// A Python to run tests with.
#[derive(Clone, Debug)]
pub struct Python {
    /// What to run: the interpreter's real executable (not a shim), or a listed command.
    pub exe: PathBuf,
    /// (major, minor)
    pub version: (u32, u32),
    /// As `sys.version` starts: `3.11.7`.
    pub full: String,
}

impl Python {
    pub fn supported(&self) -> bool {
        SUPPORTED.contains(&self.version)
    }
    /// `3.11`.
    pub fn minor(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }
}

/// Asks `program` who it is. `None` if it does not run.
fn probe(program: &Path, keep_command: bool) -> Option<Python> {
    let mut cmd = Command::new(program);
    cmd.args([
        "-c",
        "import sys; print(sys.executable); print(sys.version_info[0]); \
         print(sys.version_info[1]); print(sys.version.split()[0])",
    ])
    .env_remove("LD_PRELOAD")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().ok()?;
    let out = super::shared::finish(child, format!("{cmd:?}"), Duration::from_secs(60));
    if !out.status.success() {
        return None;
    }
    let mut lines = out.stdout.lines();
    let exe = PathBuf::from(lines.next()?);
    let major = lines.next()?.trim().parse().ok()?;
    let minor = lines.next()?.trim().parse().ok()?;
    let full = lines.next()?.trim().to_string();
    Some(Python {
        exe: if keep_command {
            program.to_path_buf()
        } else {
            exe
        },
        version: (major, minor),
        full,
    })
}

/// The `python3` on `PATH` (its real executable, not a shim), if it runs.
pub fn path_python3() -> Option<Python> {
    probe(Path::new("python3"), false)
}

/// pyenv's versions folder, if there is one.
fn pyenv_versions() -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))?;
    let versions = root.join("versions");
    versions.is_dir().then_some(versions)
}

/// Every interpreter found, each once (in the order above).
pub fn all() -> &'static [Python] {
    static ALL: OnceLock<Vec<Python>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut candidates: Vec<(PathBuf, bool)> = vec![
            (PathBuf::from("python3"), false),
            (PathBuf::from("/usr/bin/python3.11"), false),
        ];
        match pyenv_versions() {
            Some(versions) => {
                let mut names: Vec<String> = std::fs::read_dir(&versions)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    // Release builds only: digits and dots (no `3.13.0t`, no `-dev`).
                    .filter(|n| n.chars().all(|c| c.is_ascii_digit() || c == '.'))
                    .collect();
                names.sort();
                for name in names {
                    let bin = versions.join(&name).join("bin");
                    let exe = ["python3", "python"]
                        .iter()
                        .map(|p| bin.join(p))
                        .find(|p| p.is_file());
                    match exe {
                        Some(exe) => candidates.push((exe, false)),
                        None => eprintln!("note: pyenv's {name} has no python: skipped"),
                    }
                }
            }
            None => eprintln!("note: no pyenv: only the system's Pythons are tested"),
        }
        if let Some(extra) = std::env::var_os("SIGAUDIT_TEST_PYTHONS") {
            candidates.extend(std::env::split_paths(&extra).map(|p| (p, true)));
        }
        let mut found: Vec<Python> = Vec::new();
        for (candidate, keep) in candidates {
            let Some(p) = probe(&candidate, keep) else {
                eprintln!("note: {} is not available: skipped", candidate.display());
                continue;
            };
            let real = std::fs::canonicalize(&p.exe).unwrap_or(p.exe.clone());
            if found
                .iter()
                .any(|q| std::fs::canonicalize(&q.exe).unwrap_or(q.exe.clone()) == real)
            {
                continue;
            }
            eprintln!("found {} (Python {})", p.exe.display(), p.full);
            found.push(p);
        }
        for minor in 8..=15 {
            if !found.iter().any(|p| p.version == (3, minor)) {
                eprintln!("note: no CPython 3.{minor} on this machine: not tested live");
            }
        }
        found
    })
}

/// The interpreters whose frames are read (3.8 to 3.15).
pub fn supported() -> Vec<Python> {
    all().iter().filter(|p| p.supported()).cloned().collect()
}

/// The others (2.7, 3.6, 3.7 on a machine with pyenv).
pub fn unsupported() -> Vec<Python> {
    all().iter().filter(|p| !p.supported()).cloned().collect()
}
