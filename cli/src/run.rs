//! Running the command under the library: the environment, a private folder for the records, the
//! wait (with signals passed on), showing records as they come, and the exit status.
//!
//! Every audited process writes JSON records to its own file `events.<pid>.jsonl` in a folder
//! that only we can read (mode 0700, under `$TMPDIR`). While the command runs, new complete lines
//! are picked up every 25 ms, symbolized here, and shown on stderr (or written to `-o PATH`),
//! readable or as JSON; after it ends they feed the summary and the folder is removed. A process
//! that is still running after the command has exited, and reports later, falls back to its own
//! stderr (the library says so).

use crate::args::RunOptions;
use crate::forward::{self, Forwarding};
use crate::library;
use crate::preflight;
use crate::supervise;
use crate::symbolize::{self, Symbolizer};
use crate::{record, signals, summary, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Exit status when sigaudit itself cannot do its job (as `env` and `timeout` use it).
pub const EXIT_FAILED: i32 = 125;
const POLL: Duration = Duration::from_millis(25);

/// Runs the command; returns sigaudit's exit status.
pub fn main(opts: &RunOptions) -> i32 {
    let lib = match library::find() {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!("sigaudit: {e}");
            return EXIT_FAILED;
        }
    };
    let mut sink = match Sink::open(opts) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("sigaudit: {e}");
            return EXIT_FAILED;
        }
    };
    let dir = match RunDir::create() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!(
                "sigaudit: cannot make a private folder in {}: {e}",
                std::env::temp_dir().display()
            );
            return EXIT_FAILED;
        }
    };
    let supervision = opts
        .supervise
        .then(|| supervise_prepare(opts, &dir.0))
        .flatten();
    if let Some(why) = preflight::unaudited(&opts.command[0], supervision.is_some()) {
        eprintln!("sigaudit: note: {why}");
    }
    let mut cmd = command(opts, &lib, &dir.0);
    if let Some(s) = &supervision {
        s.attach(&mut cmd);
    }
    let forwarding = Forwarding::install();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            forwarding.finish();
            return cannot_start(&opts.command[0], &e);
        }
    };
    forwarding.started(child.id());
    let supervisor = supervision.and_then(|s| {
        s.start()
            .map_err(|e| eprintln!("sigaudit: --supervise: {e}: running without it"))
            .ok()
    });

    let mut tail = Tail::new(dir.0.clone());
    let mut sym = Symbolizer::new();
    while !forward::has_exited(child.id()) {
        tail.drain(|rec| sink.show(rec, &mut sym));
        std::thread::sleep(POLL);
    }
    forwarding.finish();
    let status = child.wait();
    if let Some(s) = supervisor {
        s.finish();
    }
    tail.drain(|rec| sink.show(rec, &mut sym));
    let (code, killed_by) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (c, None),
            (None, Some(n)) => (128 + n, Some(n)),
            (None, None) => (EXIT_FAILED, None),
        },
        Err(e) => {
            eprintln!("sigaudit: waiting for the command: {e}");
            (EXIT_FAILED, None)
        }
    };
    sink.finish();
    if !opts.quiet {
        let mut records = tail.records;
        records.sort_by(by_time);
        let mut report = summary::render(&records, &opts.watch, opts.output.as_deref());
        if let Some(n) = killed_by {
            report.push_str(&format!(
                "sigaudit: the command was ended by {} (exit status {code})\n",
                signals::name(n)
            ));
        }
        let _ = std::io::stderr().write_all(report.as_bytes());
    }
    code
}

/// Says what `--supervise` changes, and checks that it can work here: `None` (the run goes on
/// without it, as the message says) when it cannot.
fn supervise_prepare(opts: &RunOptions, dir: &Path) -> Option<supervise::Prepared> {
    match supervise::prepare(opts, dir) {
        Ok(p) => {
            eprintln!("sigaudit: note: {}", supervise::NO_NEW_PRIVS_NOTE);
            Some(p)
        }
        Err(e) => {
            eprintln!("sigaudit: --supervise: {e}: running without it");
            None
        }
    }
}

/// The command with the library preloaded and its variables set. Any other `SIGAUDIT_*`
/// variable in our environment is dropped (the options say everything), except `SIGAUDIT_LOG`.
fn command(opts: &RunOptions, lib: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(&opts.command[0]);
    cmd.args(&opts.command[1..]);
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("SIGAUDIT_") && name != "SIGAUDIT_LOG" {
            cmd.env_remove(&k);
        }
    }
    let preload = library::preload_value(lib, std::env::var_os("LD_PRELOAD").as_deref());
    let mut output = escape_percent(dir.as_os_str());
    output.push("/events.%p.jsonl");
    cmd.env("LD_PRELOAD", preload)
        .env("SIGAUDIT_MODE", opts.mode.env_value())
        .env("SIGAUDIT_WATCH", &opts.watch)
        .env("SIGAUDIT_FORMAT", "json")
        .env("SIGAUDIT_OUTPUT", output);
    cmd
}

/// `%` is special in `SIGAUDIT_OUTPUT` (`%p` is the pid): a literal one is written `%%`.
fn escape_percent(s: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        out.push(b);
        if b == b'%' {
            out.push(b'%');
        }
    }
    OsString::from_vec(out)
}

/// The message and status for a command that could not be started, as a shell gives them.
fn cannot_start(program: &std::ffi::OsStr, e: &std::io::Error) -> i32 {
    let name = program.to_string_lossy();
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            if name.contains('/') {
                eprintln!("sigaudit: {name}: no such file (or its interpreter is missing)");
            } else {
                eprintln!("sigaudit: {name}: command not found");
            }
            127
        }
        std::io::ErrorKind::PermissionDenied => {
            eprintln!("sigaudit: {name}: cannot run: permission denied");
            126
        }
        _ => {
            eprintln!("sigaudit: {name}: cannot run: {e}");
            126
        }
    }
}

/// Oldest first (the times are ISO 8601 UTC of one width, so they sort as text).
fn by_time(a: &Value, b: &Value) -> std::cmp::Ordering {
    (record::s(a, "time"), record::int(a, "pid"))
        .cmp(&(record::s(b, "time"), record::int(b, "pid")))
}

/// Where records are shown as they come: stderr or the `-o` file, text or JSON.
struct Sink {
    file: Option<(PathBuf, File)>,
    json: bool,
    failed: bool,
    text: text::Stream,
}

impl Sink {
    fn open(opts: &RunOptions) -> Result<Sink, String> {
        let file = match &opts.output {
            None => None,
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("-o {}: {e}", path.display()))?;
                Some((path.clone(), f))
            }
        };
        Ok(Sink {
            file,
            json: opts.json,
            failed: false,
            text: text::Stream::default(),
        })
    }

    fn show(&mut self, rec: &mut Value, sym: &mut Symbolizer) {
        sym.annotate_record(rec);
        let out = if self.json {
            let mut line = serde_json::to_string(rec).unwrap_or_default();
            line.push('\n');
            line
        } else {
            self.text.render(rec)
        };
        match &mut self.file {
            None => {
                let _ = std::io::stderr().write_all(out.as_bytes());
            }
            Some((path, f)) => {
                if let Err(e) = f.write_all(out.as_bytes())
                    && !self.failed
                {
                    self.failed = true;
                    eprintln!("sigaudit: writing {}: {e}", path.display());
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some((path, f)) = &mut self.file
            && let Err(e) = f.sync_data()
            && !self.failed
        {
            eprintln!("sigaudit: writing {}: {e}", path.display());
        }
    }
}

/// The private folder for one run's records, removed when dropped.
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> std::io::Result<RunDir> {
        let mut base = std::env::temp_dir();
        // Every process of the tree must find it, whatever its own folder.
        if base.is_relative() {
            base = std::env::current_dir()?.join(base);
        }
        // The library takes output paths of up to 1024 bytes (a `%` counts twice).
        if base.as_os_str().len() > 900 {
            return Err(std::io::Error::other("the path is too long"));
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last = None;
        for i in 0..64u32 {
            let p = base.join(format!(
                "sigaudit-{}-{:08x}",
                std::process::id(),
                seed.wrapping_add(i.wrapping_mul(0x9e37_79b9))
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(RunDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Follows the per-process record files as they grow.
struct Tail {
    dir: PathBuf,
    /// For each file: how far it has been read, and a line not yet complete.
    files: BTreeMap<OsString, (u64, Vec<u8>)>,
    records: Vec<Value>,
}

impl Tail {
    fn new(dir: PathBuf) -> Tail {
        Tail {
            dir,
            files: BTreeMap::new(),
            records: Vec::new(),
        }
    }

    /// Reads what was added since last time; calls `each` on every new record, oldest first.
    fn drain(&mut self, mut each: impl FnMut(&mut Value)) {
        let start = self.records.len();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names: Vec<OsString> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| {
                let n = n.to_string_lossy();
                n.starts_with("events.") && n.ends_with(".jsonl")
            })
            .collect();
        names.sort();
        for name in names {
            let (offset, partial) = self.files.entry(name.clone()).or_default();
            let Ok(mut f) = File::open(self.dir.join(&name)) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut added = Vec::new();
            let Ok(n) = f.read_to_end(&mut added) else {
                continue;
            };
            *offset += n as u64;
            partial.extend_from_slice(&added);
            let Some(end) = partial.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let complete: Vec<u8> = partial.drain(..=end).collect();
            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                match symbolize::parse_record(line) {
                    Some(rec) => self.records.push(rec),
                    None => {
                        let mut raw = line.to_vec();
                        raw.push(b'\n');
                        let _ = std::io::stderr().write_all(&raw);
                    }
                }
            }
        }
        self.records[start..].sort_by(by_time);
        for i in start..self.records.len() {
            let (earlier, new) = self.records.split_at_mut(i);
            supervise::link_cause(&mut new[0], earlier);
            each(&mut new[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_signs_are_escaped() {
        assert_eq!(escape_percent("/tmp/a%p".as_ref()), "/tmp/a%%p");
        assert_eq!(escape_percent("/tmp/plain".as_ref()), "/tmp/plain");
    }
}
