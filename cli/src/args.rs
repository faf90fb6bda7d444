//! The command line: `sigaudit [OPTIONS] [--] COMMAND [ARG...]`, `sigaudit symbolize` and
//! `sigaudit report`.
//!
//! The command starts at the first argument that is not an option, with or without `--` before
//! it (like `env` or `nice`), so its own options are never read as ours. `symbolize` is a
//! subcommand (and so is `report`) only as the very first argument: `sigaudit -- symbolize` runs
//! a program of that name.

use crate::signals;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;

pub const HELP: &str = "\
sigaudit: run COMMAND (and every process it starts) with libsigaudit.so preloaded, report each
time a process makes SIGCHLD (or another watched signal) ignored, tie each later ECHILD from
wait() back to that change, and summarize at the end.

usage: sigaudit [OPTIONS] [--] COMMAND [ARG...]
       sigaudit symbolize [--text] [FILE...]
       sigaudit report [--json] [FILE...]

options:
  --veto            refuse every ignore of a watched signal (the caller is told it worked), so
                    the command runs as if it had never happened
  --abort           abort() the process that asks, for a core dump or a debugger
  -w, --watch LIST  signals to watch, comma-separated, by name (CHLD, SIGPIPE, RTMIN+2) or
                    number, each optionally NAME:any to report every change of its handler or
                    flags, not only ignores [default: CHLD]
  -o, --output PATH write every record to PATH (created or emptied, mode 0600) as it happens,
                    instead of showing it on stderr
  --json            records as JSON lines (with source lines added), not readable text
  -q, --quiet       no summary at the end (records still go to -o PATH, or to stderr)
  --supervise       also watch through a seccomp filter that the whole tree inherits, so that
                    statically linked programs, Go, musl, raw system calls and children started
                    with a cleared environment are seen too (Linux 5.5 or later); programs in
                    the tree run with no_new_privs (setuid programs without their privilege)
  -h, --help        this help
  -V, --version     the version

After the run a summary on stderr names, for each event, the process, the signal, what was done
and where: the innermost Python frame outside the standard library, or the first native frame
outside libc and the interpreter, with file:line when the module has debug information.

sigaudit exits with COMMAND's status (128+N if signal N ended it), 127 if COMMAND was not found,
126 if it could not be run, 2 for a usage error, 125 if sigaudit itself failed (library not
found, output not writable). SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to sigaudit are passed on
to COMMAND (those the terminal sends already reach it, and are not sent twice).

Each audited process writes its records to its own file in a private folder (mode 0700, under
$TMPDIR or /tmp) that sigaudit reads as they come and removes at the end; a process still running
after COMMAND has ended reports on its own stderr instead. Programs that clear their environment,
static and setuid programs are not audited (they do not load the library) unless --supervise is
given (setuid programs then run without their privilege).

The library is looked for in SIGAUDIT_LIB, next to this program (a cargo target folder, or an
install with the library in the same folder), and in ../lib/sigaudit/ from it.

sigaudit symbolize [--text] [FILE...]
  Reads JSON event records (FILE, or stdin when none or `-`) and adds to each native frame with a
  module and offset its `function`, `file`, `line` (and `inlined_into`, outwards) from the debug
  information of the exact build that ran (the frame's build_id): the module file if it is that
  build, else a separate debug file (by build ID under /usr/lib/debug, or .gnu_debuglink), else
  the debuginfod servers in DEBUGINFOD_URLS (cache: DEBUGINFOD_CACHE_PATH, else
  ~/.cache/debuginfod_client, shared with gdb and perf; DEBUGINFOD_TIMEOUT), read here, never
  in the audited process. Frames without debug information keep what they had; lines that are
  not records pass through unchanged. With --text, records are written readable instead.
  `sigaudit -- COMMAND` does the same for what it shows when DEBUGINFOD_URLS is set.

sigaudit report [--json] [FILE...]
  Reads event records (FILE, or stdin when none or `-`) as the library writes them
  (SIGAUDIT_FORMAT=json), as `sigaudit --json` writes them, or as `journalctl -o json` prints
  the journal's entries (SIGAUDIT_OUTPUT=journal; the host from _HOSTNAME), from any number of
  processes and hosts, and prints one summary on stdout grouped by culprit: the script's file and
  line or the native function, how it was done and what was done, the processes, programs and
  hosts, the first and last time, and what it caused (ECHILD failures, processes that started
  with the signal ignored). With --json, the summary is one JSON object. It streams: memory stays
  bounded whatever the input's size; on a terminal, stderr shows its progress. Lines that are not
  records are counted and skipped. Exit status 1 when an input cannot be read.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Log,
    Veto,
    Abort,
}

impl Mode {
    pub fn env_value(self) -> &'static str {
        match self {
            Mode::Log => "log",
            Mode::Veto => "veto",
            Mode::Abort => "abort",
        }
    }
}

#[derive(Debug)]
pub struct RunOptions {
    pub mode: Mode,
    pub watch: String,
    pub output: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
    /// Also watch through a seccomp supervisor.
    pub supervise: bool,
    /// The program and its arguments; never empty.
    pub command: Vec<OsString>,
}

#[derive(Debug)]
pub struct SymbolizeOptions {
    pub text: bool,
    /// Inputs; `-` is stdin. Empty means stdin.
    pub files: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct ReportOptions {
    pub json: bool,
    /// Inputs; `-` is stdin. Empty means stdin.
    pub files: Vec<PathBuf>,
}

#[derive(Debug)]
pub enum Invocation {
    Run(RunOptions),
    Symbolize(SymbolizeOptions),
    Report(ReportOptions),
    Help,
    Version,
}

/// Parses the arguments after the program name. An `Err` is a one-line reason.
pub fn parse(args: Vec<OsString>) -> Result<Invocation, String> {
    if args.first().is_some_and(|a| a == "symbolize") {
        return parse_symbolize(args.into_iter().skip(1));
    }
    if args.first().is_some_and(|a| a == "report") {
        return parse_report(args.into_iter().skip(1));
    }
    let mut mode = Mode::Log;
    let mut watch = None;
    let mut output = None;
    let mut json = false;
    let mut quiet = false;
    let mut supervise = false;
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("veto") | Long("abort") => {
                let m = if arg == Long("veto") {
                    Mode::Veto
                } else {
                    Mode::Abort
                };
                if mode != Mode::Log && mode != m {
                    return Err("--veto and --abort cannot be used together".into());
                }
                mode = m;
            }
            Short('w') | Long("watch") => {
                let list = p.value().map_err(|e| e.to_string())?;
                let list = list
                    .into_string()
                    .map_err(|_| "--watch: the list is not valid UTF-8".to_string())?;
                signals::check_watch(&list)?;
                watch = Some(list);
            }
            Short('o') | Long("output") => {
                let path = PathBuf::from(p.value().map_err(|e| e.to_string())?);
                if path.as_os_str().is_empty() {
                    return Err("-o: the path is empty".into());
                }
                output = Some(path);
            }
            Long("json") => json = true,
            Short('q') | Long("quiet") => quiet = true,
            Long("supervise") => supervise = true,
            Short('h') | Long("help") => return Ok(Invocation::Help),
            Short('V') | Long("version") => return Ok(Invocation::Version),
            Value(program) => {
                let mut command = vec![program];
                command.extend(p.raw_args().map_err(|e| e.to_string())?);
                return Ok(Invocation::Run(RunOptions {
                    mode,
                    watch: watch.unwrap_or_else(|| "CHLD".into()),
                    output,
                    json,
                    quiet,
                    supervise,
                    command,
                }));
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    Err("no command given: sigaudit [OPTIONS] -- COMMAND [ARG...]".into())
}

fn parse_symbolize(args: impl Iterator<Item = OsString>) -> Result<Invocation, String> {
    Ok(match parse_files("symbolize", "text", args)? {
        None => Invocation::Help,
        Some((text, files)) => Invocation::Symbolize(SymbolizeOptions { text, files }),
    })
}

fn parse_report(args: impl Iterator<Item = OsString>) -> Result<Invocation, String> {
    Ok(match parse_files("report", "json", args)? {
        None => Invocation::Help,
        Some((json, files)) => Invocation::Report(ReportOptions { json, files }),
    })
}

/// `NAME [--FLAG] [FILE...]`: whether the flag was given, and the files; `None` for `--help`.
fn parse_files(
    name: &str,
    flag: &str,
    args: impl Iterator<Item = OsString>,
) -> Result<Option<(bool, Vec<PathBuf>)>, String> {
    let mut given = false;
    let mut files = Vec::new();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long(f) if f == flag => given = true,
            Short('h') | Long("help") => return Ok(None),
            Value(file) => files.push(PathBuf::from(file)),
            _ => return Err(format!("{name}: {}", arg.unexpected())),
        }
    }
    Ok(Some((given, files)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunOptions, String> {
        match parse(args.iter().map(OsString::from).collect())? {
            Invocation::Run(r) => Ok(r),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn the_command_starts_at_the_first_non_option() {
        let r = run(&["--veto", "-w", "PIPE", "ls", "-l", "--veto"]).unwrap();
        assert_eq!(r.mode, Mode::Veto);
        assert_eq!(r.watch, "PIPE");
        assert_eq!(r.command, ["ls", "-l", "--veto"]);
        assert!(!r.supervise);
        let r = run(&["--supervise", "ls", "--supervise"]).unwrap();
        assert!(r.supervise);
        assert_eq!(r.command, ["ls", "--supervise"]);
        let r = run(&["--", "--weird", "-o"]).unwrap();
        assert_eq!(r.command, ["--weird", "-o"]);
        assert_eq!(r.watch, "CHLD");
        assert_eq!(r.mode, Mode::Log);
    }

    #[test]
    fn symbolize_only_as_the_first_word() {
        assert!(matches!(
            parse(vec!["symbolize".into(), "--text".into(), "a".into()]),
            Ok(Invocation::Symbolize(SymbolizeOptions { text: true, .. }))
        ));
        let r = run(&["--", "symbolize"]).unwrap();
        assert_eq!(r.command, ["symbolize"]);
    }

    #[test]
    fn report_only_as_the_first_word() {
        match parse(vec![
            "report".into(),
            "--json".into(),
            "a".into(),
            "-".into(),
        ]) {
            Ok(Invocation::Report(r)) => {
                assert!(r.json);
                assert_eq!(r.files, [PathBuf::from("a"), PathBuf::from("-")]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(vec!["report".into(), "--text".into()])
                .unwrap_err()
                .contains("report: ")
        );
        assert_eq!(run(&["--", "report"]).unwrap().command, ["report"]);
    }

    #[test]
    fn usage_errors() {
        assert!(
            run(&["--veto", "--abort", "x"])
                .unwrap_err()
                .contains("together")
        );
        assert!(run(&["--bogus", "x"]).unwrap_err().contains("--bogus"));
        assert!(run(&["-w", "NOPE", "x"]).unwrap_err().contains("NOPE"));
        assert!(run(&["-o"]).is_err());
        assert!(run(&[]).unwrap_err().contains("no command"));
        assert!(run(&["--"]).unwrap_err().contains("no command"));
    }
}
