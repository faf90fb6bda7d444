//! Running the command under the library: the environment, a private folder for the records, the
//! wait (with signals passed on), showing records as they come, and the exit status.
//!
//! Every audited process writes JSON records to its own file `events.<pid>.jsonl` in a folder
//! that only we can read (mode 0700, under `$TMPDIR`), and announces itself with a `loaded`
//! record in `events.loaded.jsonl`; what it cannot write there goes to our socket
//! (`collect.rs`). While the command runs, new complete lines are picked up every 25 ms,
//! symbolized here, and shown on stderr (or written to `-o PATH`), readable or as JSON; after it
//! ends they feed the summary and the folder is removed. A process that is still running after
//! the command has exited, and reports later, falls back to its own stderr (the library says so).
//! A folder left by a run that was killed (`SIGKILL`) is removed by the next run.

use crate::args::RunOptions;
use crate::collect::{self, Collector};
use crate::forward::{self, Forwarding};
use crate::library;
use crate::preflight;
use crate::supervise;
use crate::symbolize::Symbolizer;
use crate::{signals, summary, text};
use serde_json::Value;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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
    let mut collector = match Collector::new(&dir.0) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sigaudit: cannot read {}: {e}", dir.0.display());
            return EXIT_FAILED;
        }
    };
    let supervision = opts
        .supervise
        .then(|| supervise_prepare(opts, &dir.0))
        .flatten();
    let unaudited = preflight::unaudited(&opts.command[0], supervision.is_some());
    if let Some(why) = &unaudited {
        eprintln!("sigaudit: note: {why}");
    }
    let mut cmd = command(opts, &lib, &dir.0, collector.socket_name());
    if let Some(s) = &supervision {
        s.attach(&mut cmd);
    }
    let forwarding = Forwarding::install();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = forwarding.restore();
            return cannot_start(&opts.command[0], &e);
        }
    };
    forwarding.started(child.id());
    let supervisor = supervision.and_then(|s| {
        s.start()
            .map_err(|e| eprintln!("sigaudit: --supervise: {e}: running without it"))
            .ok()
    });

    let mut sym = Symbolizer::new();
    while !forward::has_exited(child.id()) {
        collector.drain(|rec| sink.show(rec, &mut sym));
        std::thread::sleep(POLL);
    }
    forwarding.finish();
    let status = child.wait();
    if let Some(s) = supervisor {
        s.finish();
    }
    // A signal for sigaudit itself from here on (the child is gone): stop, clean up, die of it.
    if forward::terminating().is_none() {
        collector.drain(|rec| sink.show(rec, &mut sym));
        collector.finish();
    }
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
    // Whether the library could load in the command at all (a static or setuid one says so
    // before the run, or is seen by --supervise instead).
    let loadable = unaudited.is_none() && preflight::unaudited(&opts.command[0], false).is_none();
    collector.check_root(child.id() as i64, loadable);
    if !opts.quiet && forward::terminating().is_none() {
        let processes = collector.audited_count();
        let mut records = std::mem::take(&mut collector.records);
        records.sort_by(collect::by_time);
        let audit = summary::Audit {
            processes,
            losses: collector.losses(),
            notes: collector.rescued(),
        };
        let mut report = summary::render(&records, &opts.watch, opts.output.as_deref(), &audit);
        if let Some(n) = killed_by {
            report.push_str(&format!(
                "sigaudit: the command was ended by {} (exit status {code})\n",
                signals::name(n)
            ));
        }
        let _ = std::io::stderr().write_all(report.as_bytes());
    }
    drop(collector);
    drop(dir);
    if let Some(sig) = forwarding.restore() {
        forward::die_of(sig);
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
fn command(opts: &RunOptions, lib: &Path, dir: &Path, socket: Option<String>) -> Command {
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
    if let Some(name) = socket {
        cmd.env("SIGAUDIT_SOCKET", name);
    }
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
        // Syncing reports a write the kernel could not complete (a full disk, a network file
        // system); a character device such as /dev/null cannot be synced (EINVAL), which is no
        // failure.
        if let Some((path, f)) = &mut self.file
            && let Err(e) = f.sync_data()
            && e.raw_os_error() != Some(libc::EINVAL)
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
        // The library takes output paths of up to 4095 bytes (a `%` counts twice).
        if base.as_os_str().len() > 3900 {
            return Err(std::io::Error::other("the path is too long"));
        }
        remove_stale(&base);
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

/// Removes the folders of earlier runs that were killed (`SIGKILL` gives no chance to clean up):
/// ours (same owner), named as ours, whose sigaudit is gone: no process of that pid, and no one
/// listening on the socket of the same name (which tells a run in another pid namespace, sharing
/// this `/tmp`, from a dead one).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = stale_name_pid(&name) else {
            continue;
        };
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        // SAFETY: kill with signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && !collect::listening(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The pid in a run folder's name `sigaudit-PID-XXXXXXXX`.
fn stale_name_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("sigaudit-")?;
    let (pid, tag) = rest.split_once('-')?;
    if tag.len() != 8 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_folders_are_known_by_their_name() {
        assert_eq!(stale_name_pid("sigaudit-123-0a1b2c3d"), Some(123));
        assert_eq!(stale_name_pid("sigaudit-123-0a1b2c3"), None);
        assert_eq!(stale_name_pid("sigaudit-x-0a1b2c3d"), None);
        assert_eq!(stale_name_pid("other-123-0a1b2c3d"), None);
    }

    #[test]
    fn percent_signs_are_escaped() {
        assert_eq!(escape_percent("/tmp/a%p".as_ref()), "/tmp/a%%p");
        assert_eq!(escape_percent("/tmp/plain".as_ref()), "/tmp/plain");
    }
}
