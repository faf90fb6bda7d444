//! Hostile contexts (`fixtures/stress.c`): threads, a fast timer's signal handler, vfork and fork
//! children of busy multithreaded parents, a deep stack, a small alternate signal stack. Each run
//! must finish on its own, see correct results, and produce exactly one complete JSON event per
//! change. And `fixtures/mallocspy.c` proves that no hooked path allocates.

mod common;

use common::{Dir, Run, parse_events, s};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn stress(dir: &Dir) -> PathBuf {
    dir.cc("stress", &["stress.c"], &["-lpthread"])
}

/// The events in every `events.*` file of `dir`; each file must end with a complete record.
fn file_events(dir: &Dir) -> Vec<Value> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(&dir.path).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("events.") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert!(text.ends_with('\n'), "torn record in {:?}", entry.path());
            assert!(
                text.lines().all(|l| l.starts_with('{')),
                "stray bytes in {:?}",
                entry.path()
            );
            events.extend(parse_events(&text).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    events
}

/// Runs one mode with events going to per-process files; checks it finished in bounded time
/// with no wrong result, and returns the run, the number of ignores it made, and the events.
fn run_mode(name: &str, args: &[&str], bound: Duration) -> (Run, usize, Vec<Value>) {
    let dir = Dir::new(&format!("stress-{name}"));
    let program = stress(&dir);
    let start = Instant::now();
    let run = dir
        .cmd(&program)
        .args(args)
        .audit_json()
        .env("SIGAUDIT_OUTPUT", dir.join("events.%p"))
        .run()
        .success();
    let took = start.elapsed();
    assert!(took < bound, "{name} took {took:?}\n{run}");
    assert_eq!(run.field("bad"), "0", "{run}");
    assert_eq!(run.stderr, "", "{run}");
    let ignores: usize = run.field("ignores").parse().unwrap();
    let events = file_events(&dir);
    (run, ignores, events)
}

fn assert_one_ignore_event_each(name: &str, run: &Run, ignores: usize, events: &[Value]) {
    assert!(ignores > 0, "{run}");
    assert_eq!(
        events.len(),
        ignores,
        "{name}: one event per ignore, no more, no fewer\n{run}"
    );
    for ev in events {
        assert_eq!(s(ev, "event"), "ignore", "{ev}");
        assert_eq!(s(ev, "signal"), "SIGCHLD", "{ev}");
        assert_eq!(s(ev, "new"), "SIG_IGN", "{ev}");
        assert_eq!(s(ev, "action"), "logged", "{ev}");
    }
}

#[test]
fn threads_hammering_unwatched_calls_while_one_toggles_sigchld() {
    let (run, ignores, events) = run_mode("threads", &["threads"], Duration::from_secs(30));
    assert_eq!(ignores, 200);
    assert_one_ignore_event_each("threads", &run, ignores, &events);
}

#[test]
fn a_fast_timer_handler_ignoring_sigchld_while_main_churns_malloc_and_stdio() {
    let (run, ignores, events) = run_mode("timer", &["timer"], Duration::from_secs(30));
    assert_eq!(ignores, 300, "{run}");
    assert_one_ignore_event_each("timer", &run, ignores, &events);
}

#[test]
fn vfork_children_ignoring_sigchld_while_threads_churn_the_heap() {
    let (run, ignores, events) = run_mode("vfork", &["vfork"], Duration::from_secs(30));
    assert_one_ignore_event_each("vfork", &run, ignores, &events);
    // Each from its own child.
    let mut pids: Vec<i64> = events.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), ignores, "{run}");
}

#[test]
fn fork_children_of_a_multithreaded_parent_all_at_once() {
    let (run, ignores, events) = run_mode("fork", &["fork"], Duration::from_secs(30));
    assert_one_ignore_event_each("fork", &run, ignores, &events);
    // One file for all forty (no %p): appends of whole records, none torn.
    let dir = Dir::new("stress-fork-one-file");
    let program = stress(&dir);
    let run = dir
        .cmd(&program)
        .arg("fork")
        .audit_json()
        .env("SIGAUDIT_OUTPUT", dir.join("events.all"))
        .run()
        .success();
    assert_eq!(run.field("bad"), "0", "{run}");
    assert_one_ignore_event_each("fork, one file", &run, 40, &file_events(&dir));
    // Written to files, these records are longer than PIPE_BUF...
    assert!(
        events
            .iter()
            .all(|e| e["backtrace"].as_array().unwrap().len() == 64),
        "{run}"
    );
    // ...so on one pipe (stderr) shared by forty processes writing at once they would tear;
    // there each is cut to fit in one atomic write, frames first, and says so.
    // See: torn records on a shared stderr pipe, fixed in report.rs (record_limit).
    let dir = Dir::new("stress-fork-pipe");
    let program = stress(&dir);
    let run = dir.cmd(&program).arg("fork").audit_json().run().success();
    assert_eq!(run.field("bad"), "0", "{run}");
    assert!(
        run.stderr.lines().all(|l| l.starts_with('{')),
        "stray bytes\n{run}"
    );
    let events = run.events();
    assert_eq!(events.len(), 40, "{run}");
    assert!(run.stderr.lines().all(|l| l.len() < 4096), "{run}");
    for ev in &events {
        assert_eq!(ev["backtrace_truncated"], true, "{run}");
        assert!(
            s(&ev["backtrace"][0], "symbol").starts_with("recurse+"),
            "{run}"
        );
    }
}

#[test]
fn ten_thousand_frames_deep() {
    let (run, ignores, events) = run_mode("deep", &["deep"], Duration::from_secs(30));
    assert_one_ignore_event_each("deep", &run, ignores, &events);
    let bt = events[0]["backtrace"].as_array().unwrap();
    assert_eq!(bt.len(), 64, "{run}");
    assert_eq!(events[0]["backtrace_truncated"], true, "{run}");
    assert!(s(&bt[0], "symbol").starts_with("recurse+"), "{run}");
}

#[test]
fn from_a_handler_on_a_small_alternate_stack() {
    // 16 KiB: room for the whole event, frames included.
    let (run, ignores, events) = run_mode("altstack", &["altstack"], Duration::from_secs(30));
    assert_one_ignore_event_each("altstack", &run, ignores, &events);
    for ev in &events {
        let bt = ev["backtrace"].as_array().unwrap();
        assert!(!bt.is_empty(), "{run}");
        assert!(s(&bt[0], "symbol").starts_with("toggle_sigchld+"), "{run}");
    }
    // 12 KiB: where the kernel's signal frame is large (AVX-512 state), too little is left to
    // walk the stack safely, so the frames are left out and the record says so; it must never
    // overflow the stack. See: the alternate-stack crash fixed in unwind.rs.
    let (run, ignores, events) = run_mode(
        "altstack-12k",
        &["altstack", "12288"],
        Duration::from_secs(30),
    );
    assert_one_ignore_event_each("altstack-12k", &run, ignores, &events);
    for ev in &events {
        if ev["backtrace"].as_array().unwrap().is_empty() {
            assert_eq!(ev["backtrace_truncated"], true, "{run}");
        }
    }
}

// ---- allocation --------------------------------------------------------------------------------

fn spy_counts(run: &Run) -> (u64, u64, u64, u64) {
    let n = |k: &str| run.field(k).parse::<u64>().unwrap();
    (n("control"), n("unwatched"), n("watched"), n("total"))
}

/// See: issue 11, functions resolved on their first call. Each entry point's first call made in
/// a signal handler, then in a vfork child, gets libc's own answer.
#[test]
fn first_calls_in_a_signal_handler_and_a_vfork_child() {
    let dir = Dir::new("first-calls");
    let program = dir.cc("first_calls", &["first_calls.c"], &[]);
    let bare = dir.cmd(&program).run().success();
    let run = dir.cmd(&program).preload().run().success();
    assert!(bare.stdout.contains("ssignal=ok"), "{bare}");
    assert!(bare.stdout.contains("wait3=failed errno=ECHILD"), "{bare}");
    assert!(
        bare.stdout
            .contains("vfork child:\nwaitpid=failed errno=ECHILD"),
        "{bare}"
    );
    assert_eq!(run.stdout, bare.stdout, "{run}");
    assert!(!run.stdout.contains("ENOSYS"), "{run}");
    assert_eq!(run.stderr, "", "{run}");
}

#[test]
fn no_hooked_path_allocates() {
    // The library imports no allocator, so it can only allocate through libc, whose calls reach
    // the spy (the control: libc's strdup is seen).
    if let Some(imports) = common::library_imports() {
        for name in [
            "malloc",
            "calloc",
            "realloc",
            "free",
            "posix_memalign",
            "aligned_alloc",
        ] {
            assert!(
                !imports.iter().any(|i| i == name),
                "the library imports {name}"
            );
        }
    }
    let dir = Dir::new("mallocspy");
    let program = dir.cc("mallocspy", &["mallocspy.c"], &["-rdynamic"]);
    let bare = dir.cmd(&program).run().success();
    let (control, _, _, bare_total) = spy_counts(&bare);
    assert!(
        control > 0,
        "the spy sees nothing: it proves nothing\n{bare}"
    );
    // Sockets for the journal and syslog sinks: a receiver that counts what it gets.
    let socket_dir = common::short_dir("mallocspy");
    let sockets: Vec<(&str, PathBuf, Arc<AtomicUsize>)> = ["journal", "syslog", "rfc5424"]
        .into_iter()
        .map(|kind| {
            let path = socket_dir.join(kind);
            let rx = UnixDatagram::bind(&path).unwrap();
            let got = Arc::new(AtomicUsize::new(0));
            let counter = got.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 17];
                while rx.recv(&mut buf).is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
            (kind, path, got)
        })
        .collect();
    for (mode, format, output) in [
        ("log", "text", "stderr"),
        ("log", "json", "file"),
        ("veto", "json", "stderr"),
        ("veto", "text", "file"),
        ("log", "text", "journal"),
        ("veto", "json", "syslog"),
        ("log", "text", "rfc5424"),
    ] {
        let mut cmd = dir
            .cmd(&program)
            .preload()
            .env("SIGAUDIT_MODE", mode)
            .env("SIGAUDIT_FORMAT", format)
            // :any adds change events (handler, SIG_HOLD, flags) to the ignores and echilds.
            .env("SIGAUDIT_WATCH", "CHLD:any")
            // The library's own diagnostics too.
            .env("SIGAUDIT_LOG", "debug");
        let socket = sockets.iter().find(|(kind, _, _)| *kind == output);
        match (output, socket) {
            ("file", _) => cmd = cmd.env("SIGAUDIT_OUTPUT", dir.join("events.%p")),
            (_, Some((kind, path, _))) => {
                cmd = cmd.env("SIGAUDIT_OUTPUT", format!("{kind}:{}", path.display()))
            }
            _ => {}
        }
        let before = socket.map(|(_, _, got)| got.load(Ordering::Relaxed));
        let run = cmd.run().success();
        let (control, unwatched, watched, total) = spy_counts(&run);
        assert!(control > 0, "{run}");
        assert_eq!(
            unwatched, 0,
            "{mode}/{format}/{output}: calls that were not reported allocated\n{run}"
        );
        assert_eq!(
            watched, 0,
            "{mode}/{format}/{output}: reporting allocated\n{run}"
        );
        // Nor did anything else the library did, its diagnostics included.
        assert_eq!(
            total, bare_total,
            "{mode}/{format}/{output}: the library allocated\n{run}"
        );
        assert!(run.stderr.contains("debug: loaded:"), "{run}");
        match (output, socket, before) {
            ("stderr", _, _) => assert!(run.stderr.contains("SIGCHLD"), "events were made\n{run}"),
            (_, Some((_, _, got)), Some(before)) => {
                // Events reached the socket (the receiver may still be reading the last ones).
                let start = Instant::now();
                while got.load(Ordering::Relaxed) == before && start.elapsed().as_secs() < 10 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(
                    got.load(Ordering::Relaxed) > before,
                    "no {output} message\n{run}"
                );
                assert!(!run.stderr.contains("cannot send"), "{run}");
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&socket_dir);
}

/// See: the per-exec cost. A library that allocates in its constructor sets up malloc in programs
/// that might never have (about 7 µs an exec); with nothing to say it must allocate nothing.
#[test]
fn loading_the_library_allocates_nothing() {
    let dir = Dir::new("mallocspy-load");
    let program = dir.cc("mallocspy", &["mallocspy.c"], &["-rdynamic"]);
    let bare = dir.cmd(&program).run().success();
    let run = dir.cmd(&program).preload().run().success();
    let (_, _, _, bare_total) = spy_counts(&bare);
    let (_, _, _, total) = spy_counts(&run);
    assert_eq!(total, bare_total, "the library allocated\n{run}");
}
