//! Hostile programs and environments (issue 9), each a way the library could change, hang or
//! crash its host, write into the program's data, or lose an event without a word. Each test was
//! written to fail on the library before the fix it names.
//!
//! The fixture is `fixtures/hostile.c`; each mode is described there.

mod common;

use common::{Dir, Run, TIMEOUT, of_kind, parse_events, s};
use serde_json::Value;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn hostile(dir: &Dir) -> PathBuf {
    dir.cc("hostile", &["hostile.c"], &["-lpthread"])
}

/// The reasons of an event's notes (`"notes": [{"reason": ..., "text": ...}]`).
fn note_reasons(ev: &Value) -> Vec<String> {
    ev["notes"]
        .as_array()
        .map(|notes| notes.iter().map(|n| s(n, "reason").to_string()).collect())
        .unwrap_or_default()
}

/// Runs one mode with JSON events on stderr; checks it exited 0 and printed `key=value`.
fn run_mode(dir: &Dir, program: &Path, args: &[&str], key: &str, value: &str) -> Run {
    let run = dir.cmd(program).args(args).audit_json().run();
    assert!(
        run.status.success(),
        "{args:?}: the program must run on\n{run}"
    );
    assert_eq!(run.field(key), value, "{args:?}\n{run}");
    run
}

/// One `ignore` event per toggle, whose innermost frame is the fixture's `toggle`.
fn assert_ignores_with_frames(run: &Run, n: usize) {
    let events = run.events();
    let ignores = of_kind(&events, "ignore");
    assert_eq!(ignores.len(), n, "{run}");
    for ev in ignores {
        let top = s(&ev["backtrace"][0], "symbol");
        assert!(top.starts_with("toggle+"), "full frames expected\n{run}");
    }
}

// ---- 1. small stacks ---------------------------------------------------------------------------

/// See: on an alternate stack from `malloc(SIGSTKSZ)` the library wrote below the stack, into the
/// program's heap, silently. Events now run on a stack of the library's own.
#[test]
fn an_alternate_stack_of_sigstksz_is_never_written_below() {
    let dir = Dir::new("hostile-altstack-canary");
    let program = hostile(&dir);
    let run = run_mode(&dir, &program, &["altstack-canary"], "canary", "intact");
    assert_ignores_with_frames(&run, 1);
}

/// See: every alternate stack of 12-15 KiB with a guard page below crashed the program.
#[test]
fn small_alternate_stacks_with_a_guard_page_survive_with_full_frames() {
    let dir = Dir::new("hostile-altstack-guard");
    let program = hostile(&dir);
    // Below about 7 KiB a handler does not survive a signal on such a machine even without the
    // library (the kernel's frame alone is 3,632 bytes with AVX-512).
    for bytes in [8192, 12288, 13312, 13504, 14336, 14528, 15360, 16384] {
        let size = bytes.to_string();
        let run = run_mode(&dir, &program, &["altstack-guard", &size], "survived", "1");
        assert_ignores_with_frames(&run, 1);
    }
}

/// See: a thread with a `PTHREAD_STACK_MIN` (16 KiB) stack crashed on its first event, which
/// also builds the symbol index of each module on its stack. Here the thread is 6 KiB down its
/// stack when it ignores SIGCHLD, as code a few calls deep is.
#[test]
fn a_thread_with_the_smallest_stack_survives_its_first_event() {
    let dir = Dir::new("hostile-thread-stack");
    let program = hostile(&dir);
    let bare = dir
        .cmd(&program)
        .args(["thread-stack", "16384", "6144"])
        .run();
    assert_eq!(
        bare.field("survived"),
        "1",
        "the fixture needs no more\n{bare}"
    );
    for mode in ["text", "json"] {
        let run = dir
            .cmd(&program)
            .args(["thread-stack", "16384", "6144"])
            .preload()
            .env("SIGAUDIT_FORMAT", mode)
            .run();
        assert!(run.status.success(), "{mode}\n{run}");
        assert_eq!(run.field("survived"), "1", "{run}");
        assert!(run.stderr.contains("toggle+"), "{mode}: full frames\n{run}");
    }
}

/// The stack an event needs, per path, as the library measures it with `SIGAUDIT_LOG=trace`,
/// stays well inside what it maps (see `src/stack.rs`): the first event (symbol indexes built),
/// later ones, text and JSON.
#[test]
fn the_event_stack_budget_holds_on_every_path() {
    let dir = Dir::new("hostile-stack-budget");
    let program = hostile(&dir);
    for format in ["text", "json"] {
        let run = dir
            .cmd(&program)
            .args(["loop", "3"])
            .preload()
            .env("SIGAUDIT_FORMAT", format)
            .env("SIGAUDIT_LOG", "trace")
            .run()
            .success();
        let used: Vec<(u64, u64)> = run
            .stderr
            .lines()
            .filter_map(|l| {
                // "sigaudit: pid N: trace: event used USED of SIZE stack bytes, ..."
                let rest = l.split(": event used ").nth(1)?;
                let mut words = rest.split_whitespace();
                let used = words.next()?.parse().ok()?;
                let of = words.nth(1)?.parse().ok()?;
                Some((used, of))
            })
            .collect();
        assert_eq!(used.len(), 3, "one trace line per event\n{run}");
        for (used, of) in used {
            assert!(
                used > 1000 && used * 2 < of,
                "{format}: {used} of {of} bytes\n{run}"
            );
        }
    }
}

// ---- 2. no blocking writes ---------------------------------------------------------------------

/// Starts `cmd` with stderr a pipe that nobody reads until the program has ended (a stalled log
/// collector); returns whether it ended within `bound`, and what the pipe held.
fn run_with_undrained_stderr(mut cmd: std::process::Command, bound: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ended = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text = Vec::new();
    let _ = child.stderr.take().unwrap().read_to_end(&mut text);
    (ended, String::from_utf8_lossy(&text).into_owned())
}

/// See: with stderr a pipe nobody drains, `signal()` blocked in `write(2)` for good, in a
/// program that never writes to stderr itself.
#[test]
fn an_undrained_stderr_pipe_never_blocks_the_program_for_long() {
    let dir = Dir::new("hostile-undrained");
    let program = hostile(&dir);
    for format in ["json", "text"] {
        let cmd = dir
            .cmd(&program)
            .args(["loop", "300"])
            .preload()
            .env("SIGAUDIT_FORMAT", format)
            .command;
        let (ended, text) = run_with_undrained_stderr(cmd, Duration::from_secs(20));
        assert!(ended, "{format}: blocked on a full stderr pipe");
        // What did fit is whole records, never a torn one.
        assert!(text.len() > 4096 && text.ends_with('\n'), "{format}");
        if format == "json" {
            let events = parse_events(&text).unwrap();
            assert!(events.len() < 300, "the pipe cannot hold them all");
            assert!(text.lines().all(|l| l.starts_with('{')), "{text}");
        }
    }
}

/// See: with `SIGAUDIT_OUTPUT` a FIFO whose reader stalls, each event waited a second (200
/// ignores took 40 s instead of 6 ms) and the note said only "error".
#[test]
fn a_stalled_fifo_costs_one_short_wait_and_the_note_names_the_error() {
    let dir = Dir::new("hostile-fifo");
    let program = hostile(&dir);
    let fifo = dir.join("events.fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A reader that opens the FIFO and never reads.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let start = Instant::now();
    let run = dir
        .cmd(&program)
        .args(["loop", "200"])
        .audit_json()
        .env("SIGAUDIT_OUTPUT", &fifo)
        .run()
        .success();
    let took = start.elapsed();
    drop(reader);
    assert!(took < Duration::from_secs(5), "took {took:?}\n{run}");
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("SIGAUDIT_OUTPUT"))
        .collect();
    assert_eq!(said.len(), 1, "said once\n{run}");
    assert!(said[0].contains("EAGAIN"), "names the error\n{run}");
    // Every record went somewhere: the FIFO or, once it was full, stderr.
    let on_stderr = of_kind(&run.events(), "ignore").len();
    assert!(on_stderr > 0 && on_stderr < 200, "{run}");
}

// ---- 3. never killed ---------------------------------------------------------------------------

/// See: under `ulimit -f` a record written past the limit raised SIGXFSZ, which killed the
/// program and left a torn record.
#[test]
fn a_file_size_limit_never_kills_the_program_nor_tears_a_record() {
    let dir = Dir::new("hostile-fsize");
    let program = hostile(&dir);
    let out = dir.join("events.jsonl");
    let mut cmd = dir
        .cmd(&program)
        .args(["loop", "20"])
        .audit_json()
        .env("SIGAUDIT_OUTPUT", &out);
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.command.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 6000,
                rlim_max: 6000,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = cmd.run();
    assert!(run.status.success(), "killed by the limit\n{run}");
    assert_eq!(run.field("done"), "20", "{run}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.is_empty() && text.ends_with('\n'), "torn record");
    let in_file = parse_events(&text).unwrap().len();
    assert!(in_file > 0 && in_file < 20, "{in_file}\n{run}");
    // The rest are on stderr, after one line that says why.
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("SIGAUDIT_OUTPUT"))
        .collect();
    assert_eq!(said.len(), 1, "{run}");
    assert!(said[0].contains("EFBIG"), "{run}");
    assert_eq!(
        in_file + of_kind(&run.events(), "ignore").len(),
        20,
        "{run}"
    );
}

/// See: a program that sandboxed itself with seccomp (kill on `openat`) and then ignored SIGCHLD
/// was killed with SIGSYS, because the event opened `/proc/self/cmdline` and module files.
#[test]
fn a_seccomp_filter_that_kills_on_open_does_not_kill_the_program() {
    let dir = Dir::new("hostile-seccomp-openat");
    let program = hostile(&dir);
    for output in [None, Some(dir.join("events.jsonl"))] {
        let mut cmd = dir.cmd(&program).arg("seccomp-openat").audit_json();
        if let Some(out) = &output {
            cmd = cmd.env("SIGAUDIT_OUTPUT", out);
        }
        let run = cmd.run();
        assert!(run.status.success(), "killed by the filter\n{run}");
        assert_eq!(run.field("survived"), "1", "{run}");
        // The event is reported on stderr (no file can be opened any more), without names from
        // module files, and it says why.
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "{run}");
        assert!(
            note_reasons(ignores[0]).contains(&"seccomp".to_string()),
            "{run}"
        );
        // libc's own function is named from its .dynsym, in memory.
        assert!(
            ignores[0]["backtrace"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| s(f, "symbol").starts_with("__libc_start_main+")),
            "{run}"
        );
        assert!(!s(ignores[0], "exe").is_empty(), "{run}");
        if let Some(out) = output {
            assert!(!out.exists(), "{run}");
            assert!(run.stderr.contains("seccomp"), "{run}");
        }
    }
}

/// See: when the event's memory could not be mapped (`RLIMIT_AS`, a seccomp filter on `mmap`),
/// nothing was reported and nothing said so; in veto mode the veto still happened, unreported.
#[test]
fn an_event_whose_memory_cannot_be_mapped_is_still_reported_and_says_so() {
    let dir = Dir::new("hostile-seccomp-mmap");
    let program = hostile(&dir);
    for mode in ["log", "veto"] {
        let run = dir
            .cmd(&program)
            .arg("seccomp-mmap")
            .audit_json()
            .env("SIGAUDIT_MODE", mode)
            .run();
        assert!(run.status.success(), "{run}");
        assert_eq!(run.field("survived"), "1", "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "{mode}\n{run}");
        assert!(
            note_reasons(ignores[0]).contains(&"no-memory".to_string()),
            "{mode}\n{run}"
        );
        let action = if mode == "veto" { "vetoed" } else { "logged" };
        assert_eq!(s(ignores[0], "action"), action, "{run}");
    }
}

// ---- 4. never in the program's data --------------------------------------------------------

/// See: a program that closed stderr and got a socket or a pipe as descriptor 2 received the
/// record in its own protocol stream.
#[test]
fn a_socket_or_pipe_that_took_descriptor_2_gets_nothing() {
    let dir = Dir::new("hostile-fd2");
    let program = hostile(&dir);
    for mode in ["fd2-socket", "fd2-pipe"] {
        let run = dir.cmd(&program).arg(mode).preload().run().success();
        assert_eq!(run.field("received"), "0", "{mode}\n{run}");
    }
}

/// See: before our constructor, descriptor 2 was written unchecked: a library constructor that
/// opened a data file as descriptor 2 (stderr closed at start) got the record in it.
#[test]
fn a_data_file_that_took_descriptor_2_before_our_constructor_gets_nothing() {
    let dir = Dir::new("hostile-early-data");
    dir.cc("libearlydata.so", &["earlydata.c"], &["-shared", "-fPIC"]);
    let lib_dir = dir.path.to_string_lossy().into_owned();
    let program = dir.cc(
        "hostile",
        &["hostile.c"],
        &[
            "-lpthread",
            &format!("-L{lib_dir}"),
            "-Wl,--no-as-needed",
            "-learlydata",
            &format!("-Wl,-rpath,{lib_dir}"),
        ],
    );
    for cloexec in ["0", "1"] {
        let run = dir
            .cmd(&program)
            .arg("print-data")
            .preload()
            .env("EARLYDATA_CLOEXEC", cloexec)
            .start_with_stderr_closed()
            .run()
            .success();
        assert_eq!(run.stdout, "contents=data\n", "cloexec={cloexec}\n{run}");
    }
    // stderr sent to a file along with stdout (`>log 2>&1`) is the program's stderr.
    let run = dir
        .cmd("sh")
        .args(["-c", "exec >both.log 2>&1; exec \"$0\" print-data"])
        .arg(&program)
        .preload()
        .run()
        .success();
    let log = std::fs::read_to_string(dir.join("both.log")).unwrap();
    assert!(log.contains("SIGCHLD ignored via signal()"), "{run}\n{log}");
}

/// See: a relative `SIGAUDIT_OUTPUT` was silently left relative when the start folder's path was
/// longer than 1,024 bytes, and the record file appeared in whatever folder the program moved to.
#[test]
fn a_relative_output_is_anchored_in_a_long_start_folder_or_the_fallback_is_stated() {
    for (len, anchored) in [(1500, true), (4500, false)] {
        let dir = Dir::new(&format!("hostile-cwd-{len}"));
        let program = hostile(&dir);
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        // The fixture makes a folder deeper than `len` bytes and starts itself again there;
        // that run moves to `elsewhere` and ignores SIGCHLD.
        let run = dir
            .cmd(&program)
            .args(["deep", &len.to_string()])
            .arg(&elsewhere)
            .audit_json()
            .env("SIGAUDIT_OUTPUT", "events.%p.jsonl")
            .run()
            .success();
        assert_eq!(run.field("done"), "1", "{run}");
        assert!(
            std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
            "the record followed the program's chdir\n{run}"
        );
        let found = std::process::Command::new("find")
            .arg(&dir.path)
            .args(["-name", "events.*.jsonl"])
            .output()
            .unwrap();
        let files = String::from_utf8_lossy(&found.stdout).lines().count();
        let said: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("SIGAUDIT_OUTPUT"))
            .collect();
        if anchored {
            // Made where the program started, and nothing said.
            assert_eq!(files, 1, "{run}");
            assert!(said.is_empty(), "{run}");
        } else {
            // No path that long can be opened: the fallback to stderr is stated.
            assert_eq!(files, 0, "{run}");
            assert_eq!(said.len(), 1, "{run}");
            assert!(said[0].contains("relative"), "{run}");
            assert_eq!(of_kind(&run.events(), "ignore").len(), 1, "{run}");
        }
    }
}

// ---- 5. the right cause --------------------------------------------------------------------

/// See: a child made by `clone()` without `CLONE_VM` (no atfork handler runs) was taken for a
/// `vfork` child: its own ignore was never kept as the cause, and its `ECHILD` named the
/// parent's earlier, already undone ignore.
#[test]
fn a_clone_child_without_clone_vm_keeps_its_own_cause() {
    let dir = Dir::new("hostile-clone");
    let program = hostile(&dir);
    let run = dir.cmd(&program).arg("clone").audit_json().run().success();
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    let child: i64 = run.field("child").parse().unwrap();
    let events = run.events();
    let echild = of_kind(&events, "echild");
    assert_eq!(echild.len(), 1, "{run}");
    assert_eq!(echild[0]["pid"].as_i64(), Some(child), "{run}");
    assert_eq!(
        echild[0]["cause"]["pid"].as_i64(),
        Some(child),
        "the cause is the child's own ignore\n{run}"
    );
}

// ---- timing of a whole run, as a guard against hidden waits ---------------------------------

#[test]
fn two_hundred_events_to_a_file_take_no_waiting() {
    let dir = Dir::new("hostile-file-speed");
    let program = hostile(&dir);
    let start = Instant::now();
    let run = dir
        .cmd(&program)
        .args(["loop", "200"])
        .audit_json()
        .env("SIGAUDIT_OUTPUT", dir.join("events.jsonl"))
        .run()
        .success();
    assert!(start.elapsed() < TIMEOUT / 4, "{run}");
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert_eq!(parse_events(&text).unwrap().len(), 200, "{run}");
}
