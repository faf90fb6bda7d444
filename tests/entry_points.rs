//! Every entry point that can ignore SIGCHLD, in each mode, checked the way a user would: one
//! event naming the entry point and the calling function, and what the program itself sees
//! (return value, errno, previous handler, and whether `waitpid()` gets its child's status).

mod common;

use common::{Dir, Run, of_kind, s};
use serde_json::Value;

/// The snippets in tests/fixtures/via/: each ignores SIGCHLD through one entry point from a
/// function named `ignore_sigchld`. `nocldwait` installs a handler with SA_NOCLDWAIT instead.
const ENTRY_POINTS: &[&str] = &[
    "signal",
    "ssignal",
    "bsd_signal",
    "sysv_signal",
    "__sysv_signal",
    "sigaction",
    "__sigaction",
    "sigset",
    "sigignore",
    "syscall",
    "sigvec",
    "nocldwait",
];

/// The `via` an event names for a snippet.
fn via(snippet: &str) -> &str {
    match snippet {
        "nocldwait" => "sigaction",
        other => other,
    }
}

fn driver(dir: &Dir, snippet: &str) -> std::path::PathBuf {
    dir.cc(snippet, &["driver.c", &format!("via/{snippet}.c")], &[])
}

fn json(dir: &Dir, program: &std::path::Path, mode: &str) -> Run {
    dir.cmd(program)
        .audit_json()
        .env("SIGAUDIT_MODE", mode)
        .run()
        .success()
}

/// The first frame of the backtrace names the function that made the call.
fn assert_caller_named(ev: &Value, function: &str, run: &Run) {
    let top = &ev["backtrace"][0];
    let symbol = s(top, "symbol");
    assert!(
        symbol.starts_with(&format!("{function}+0x")),
        "top frame should be {function}, got {top}\n{run}"
    );
}

#[test]
fn every_entry_point_is_reported_once_in_log_mode() {
    for &snippet in ENTRY_POINTS {
        let dir = Dir::new(&format!("log-{snippet}"));
        let program = driver(&dir, snippet);
        let bare = dir.cmd(&program).run().success();
        let run = json(&dir, &program, "log");

        // The program sees exactly what it sees without the library.
        assert_eq!(
            run.stdout, bare.stdout,
            "log mode changed the program's view\n{run}"
        );
        assert_eq!(run.field("wait"), "ECHILD", "{run}");

        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "one ignore event for {snippet}\n{run}");
        let ev = ignores[0];
        assert_eq!(s(ev, "via"), via(snippet), "{run}");
        assert_eq!(s(ev, "signal"), "SIGCHLD");
        assert_eq!(ev["signo"], 17);
        assert_eq!(s(ev, "old"), "SIG_DFL");
        assert_eq!(s(ev, "action"), "logged");
        if snippet == "nocldwait" {
            assert_eq!(s(ev, "new"), "handler");
            assert!(
                ev["flags"]
                    .as_array()
                    .unwrap()
                    .contains(&"SA_NOCLDWAIT".into()),
                "{run}"
            );
        } else {
            assert_eq!(s(ev, "new"), "SIG_IGN", "{run}");
        }
        assert_eq!(ev["pid"], ev["tid"]);
        assert!(s(ev, "exe").ends_with(&format!("/{snippet}")), "{run}");
        assert_caller_named(ev, "ignore_sigchld", &run);
        assert_eq!(
            s(&ev["backtrace"][1], "symbol").split('+').next(),
            Some("main"),
            "{run}"
        );

        // The failed wait points back at the call.
        let echild = of_kind(&events, "echild");
        assert_eq!(echild.len(), 1, "{run}");
        assert_eq!(s(echild[0], "via"), "waitpid");
        let cause = &echild[0]["cause"];
        assert_eq!(s(cause, "via"), via(snippet), "{run}");
        assert_eq!(cause["time"], ev["time"], "{run}");
        assert!(
            s(&cause["native"], "symbol").starts_with("ignore_sigchld+"),
            "{run}"
        );
    }
}

#[test]
fn every_entry_point_is_refused_in_veto_mode_and_waitpid_sees_the_status() {
    for &snippet in ENTRY_POINTS {
        let dir = Dir::new(&format!("veto-{snippet}"));
        let program = driver(&dir, snippet);
        let run = json(&dir, &program, "veto");

        // The call reports success, errno is untouched, the previous handler is the real one...
        assert_eq!(run.field("returned"), "0", "{run}");
        assert_eq!(run.field("errno"), "4242", "{run}");
        let previous = if snippet == "sigignore" {
            "none"
        } else {
            "SIG_DFL"
        };
        assert_eq!(run.field("previous"), previous, "{run}");
        // ...but SIGCHLD is not ignored, so the child's exit status arrives.
        assert_eq!(run.field("nocldwait"), "0", "{run}");
        assert_eq!(run.field("wait"), "7", "{run}");
        if snippet == "nocldwait" {
            // The rest of the change applies: the handler is installed.
            assert_eq!(run.field("after"), "handler", "{run}");
        } else {
            assert_eq!(run.field("after"), "SIG_DFL", "{run}");
        }

        let events = run.events();
        assert_eq!(events.len(), 1, "exactly one event, no echild\n{run}");
        assert_eq!(s(&events[0], "event"), "ignore");
        assert_eq!(s(&events[0], "action"), "vetoed");
        assert_eq!(s(&events[0], "via"), via(snippet));
        assert_caller_named(&events[0], "ignore_sigchld", &run);
    }
}

#[test]
fn abort_mode_reports_then_aborts_in_the_caller() {
    let dir = Dir::new("abort");
    let program = driver(&dir, "signal");
    let run = dir
        .cmd(&program)
        .audit_json()
        .env("SIGAUDIT_MODE", "abort")
        .run();
    assert_eq!(run.signal(), Some(libc::SIGABRT), "{run}");
    assert_eq!(run.stdout, "", "nothing after the call ran\n{run}");
    let events = run.events();
    assert_eq!(events.len(), 1, "{run}");
    assert_eq!(s(&events[0], "action"), "aborted");
    assert_caller_named(&events[0], "ignore_sigchld", &run);
}

#[test]
fn text_report_names_signal_entry_point_and_caller() {
    let dir = Dir::new("text");
    let program = driver(&dir, "bsd_signal");
    let run = dir.cmd(&program).preload().run().success();
    let mut lines = run.stderr.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("sigaudit: pid ")
            && header.contains("(bsd_signal) SIGCHLD ignored via bsd_signal(): SIG_DFL -> SIG_IGN")
            && header.ends_with("[logged]"),
        "{run}"
    );
    let first_frame = lines.next().unwrap_or_default();
    assert!(first_frame.contains(" ignore_sigchld+0x"), "{run}");
    assert!(run.stderr.contains("waitpid() failed with ECHILD"), "{run}");
    assert!(
        run.stderr
            .contains("  cause: SIGCHLD ignored via bsd_signal() at "),
        "{run}"
    );
}

#[test]
fn any_watches_report_every_change_and_veto_only_the_ignore() {
    let dir = Dir::new("any");
    let program = dir.cc("any", &["any.c"], &[]);
    for mode in ["log", "veto"] {
        let run = dir
            .cmd(&program)
            .audit_json()
            .env("SIGAUDIT_MODE", mode)
            .env("SIGAUDIT_WATCH", "USR1:any")
            .run()
            .success();
        let events = run.events();
        let summary: Vec<(String, String, String, String)> = events
            .iter()
            .map(|e| {
                (
                    s(e, "event").into(),
                    s(e, "via").into(),
                    format!("{}->{}", s(e, "old"), s(e, "new")),
                    s(e, "action").into(),
                )
            })
            .collect();
        let last_action = if mode == "veto" { "vetoed" } else { "logged" };
        let want = [
            ("change", "sigaction", "SIG_DFL->handler", "logged"),
            ("change", "siginterrupt", "handler->handler", "logged"),
            ("change", "sigset", "handler->SIG_HOLD", "logged"),
            ("change", "signal", "handler->SIG_DFL", "logged"),
            ("ignore", "signal", "SIG_DFL->SIG_IGN", last_action),
        ]
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()));
        assert_eq!(summary, want, "{run}");
        // siginterrupt(sig, 0) only added SA_RESTART.
        assert_eq!(events[1]["old_flags"], serde_json::json!([]), "{run}");
        assert_eq!(
            events[1]["flags"],
            serde_json::json!(["SA_RESTART"]),
            "{run}"
        );
        let after = if mode == "veto" { "SIG_DFL" } else { "SIG_IGN" };
        assert_eq!(run.field("after"), after, "{run}");
    }
}

#[test]
fn an_inherited_ignore_is_reported_with_the_parent_and_reset_by_veto() {
    let dir = Dir::new("inherited");
    let program = driver(&dir, "signal");
    let me = std::process::id() as i64;

    let run = dir
        .cmd(&program)
        .arg("none")
        .start_with_ignored(libc::SIGCHLD)
        .audit_json()
        .run()
        .success();
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    let events = run.events();
    let inherited = of_kind(&events, "inherited");
    assert_eq!(inherited.len(), 1, "{run}");
    assert_eq!(inherited[0]["ppid"], me, "{run}");
    assert_eq!(s(inherited[0], "via"), "execve");
    assert_eq!(s(inherited[0], "old"), "SIG_IGN");
    assert_eq!(s(inherited[0], "action"), "logged");
    let echild = of_kind(&events, "echild");
    assert_eq!(echild.len(), 1, "{run}");
    assert_eq!(s(&echild[0]["cause"], "event"), "inherited", "{run}");

    let run = dir
        .cmd(&program)
        .arg("none")
        .start_with_ignored(libc::SIGCHLD)
        .audit_json()
        .env("SIGAUDIT_MODE", "veto")
        .run()
        .success();
    assert_eq!(run.field("after"), "SIG_DFL", "{run}");
    assert_eq!(run.field("wait"), "7", "{run}");
    let events = run.events();
    assert_eq!(events.len(), 1, "{run}");
    assert_eq!(s(&events[0], "event"), "inherited");
    assert_eq!(s(&events[0], "action"), "vetoed");
    assert_eq!(s(&events[0], "new"), "SIG_DFL");
}

#[test]
fn a_library_constructor_that_runs_before_ours_is_caught() {
    let dir = Dir::new("early");
    dir.cc("libearly.so", &["early.c"], &["-shared", "-fPIC"]);
    let lib_dir = dir.path.to_string_lossy().into_owned();
    let program = dir.cc(
        "early",
        &["driver.c", "via/signal.c"],
        &[
            &format!("-L{lib_dir}"),
            "-Wl,--no-as-needed",
            "-learly",
            &format!("-Wl,-rpath,{lib_dir}"),
        ],
    );
    for mode in ["log", "veto"] {
        let run = dir
            .cmd(&program)
            .arg("none")
            .audit_json()
            .env("SIGAUDIT_MODE", mode)
            .run()
            .success();
        let events = run.events();
        // The process did not start with SIGCHLD ignored: no inherited event.
        assert!(of_kind(&events, "inherited").is_empty(), "{run}");
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "{run}");
        assert_caller_named(ignores[0], "ignore_sigchld_early", &run);
        assert!(
            s(&ignores[0]["backtrace"][0], "module").ends_with("/libearly.so"),
            "{run}"
        );
        if mode == "veto" {
            assert_eq!(s(ignores[0], "action"), "vetoed");
            assert_eq!(run.field("wait"), "7", "{run}");
        } else {
            assert_eq!(s(ignores[0], "action"), "logged");
            assert_eq!(run.field("wait"), "ECHILD", "{run}");
        }
    }
}

#[test]
fn unwatched_changes_pass_through_silently() {
    let dir = Dir::new("unwatched");
    let program = dir.cc("unwatched", &["unwatched.c"], &[]);
    let bare = dir.cmd(&program).run().success();
    assert_eq!(bare.stdout, "fails=0\n", "{bare}");
    for mode in ["log", "veto", "abort"] {
        let run = dir
            .cmd(&program)
            .preload()
            .env("SIGAUDIT_MODE", mode)
            .run()
            .success();
        assert_eq!(run.stdout, bare.stdout, "{run}");
        assert_eq!(
            run.stderr, "",
            "no output for unwatched changes in {mode} mode\n{run}"
        );
    }
}

#[test]
fn output_file_is_per_process_and_only_made_when_there_is_an_event() {
    let dir = Dir::new("output-file");
    let ignoring = driver(&dir, "signal");
    let template = dir.join("events.%p.jsonl");

    let run = dir
        .cmd(&ignoring)
        .arg("none")
        .audit_json()
        .env("SIGAUDIT_OUTPUT", &template)
        .run()
        .success();
    assert_eq!(run.stderr, "", "{run}");
    let made: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("events."))
        .collect();
    assert!(
        made.is_empty(),
        "a run with no event creates no file\n{run}"
    );

    // Relative to the directory the program started in.
    let run = dir
        .cmd(&ignoring)
        .audit_json()
        .env("SIGAUDIT_OUTPUT", "events.%p.jsonl")
        .run()
        .success();
    assert_eq!(run.stderr, "", "{run}");
    let files: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("events."))
        .collect();
    assert_eq!(files.len(), 1, "{run}");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let events = common::parse_events(&text).unwrap();
    assert_eq!(events.len(), 2, "ignore and echild\n{text}");
    let pid = events[0]["pid"].as_i64().unwrap();
    assert_eq!(
        files[0].file_name().to_string_lossy(),
        format!("events.{pid}.jsonl")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = files[0].metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o022,
        0,
        "output file must not be group/world-writable: {mode:o}"
    );
}

#[test]
fn a_bad_setting_is_named_once_and_the_program_runs_on() {
    let dir = Dir::new("bad-setting");
    let program = driver(&dir, "signal");
    let run = dir
        .cmd(&program)
        .preload()
        .env("SIGAUDIT_MODE", "vetoo")
        .env("SIGAUDIT_FORMAT", "json")
        .run()
        .success();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("SIGAUDIT_MODE"))
        .collect();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].contains("\"vetoo\"") && warnings[0].contains("using log"),
        "{run}"
    );
    // Log mode applied: the ignore went through and was reported.
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    assert_eq!(s(&run.events()[0], "action"), "logged");
}

/// See: a program that closes all descriptors and reuses the number of ours (daemons do) must
/// not receive our records in its own file.
#[test]
fn a_reused_output_descriptor_is_never_written() {
    let dir = Dir::new("reuse-fd");
    let program = dir.cc("reuse_fd", &["reuse_fd.c"], &[]);
    let out = dir.join("events.jsonl");
    let run = dir
        .cmd(&program)
        .audit_json()
        .env("SIGAUDIT_OUTPUT", &out)
        .run()
        .success();
    assert_eq!(run.stdout, "own=5:mine\n", "{run}");
    let events = common::parse_events(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(of_kind(&events, "ignore").len(), 2, "{run}");
}

#[test]
fn a_vfork_child_reports_its_ignore_but_not_routine_resets_and_leaves_the_parent_alone() {
    let dir = Dir::new("vfork");
    let program = dir.cc("vfork", &["vfork.c"], &[]);
    let run = dir
        .cmd(&program)
        .audit_json()
        .env("SIGAUDIT_WATCH", "CHLD,USR1:any")
        .run()
        .success();
    assert_eq!(
        run.field("wait"),
        "5",
        "the parent still gets statuses\n{run}"
    );
    let child: i64 = run.field("vfork_child").parse().unwrap();
    let events = run.events();
    let kinds: Vec<(&str, i64)> = events
        .iter()
        .map(|e| (s(e, "event"), e["pid"].as_i64().unwrap()))
        .collect();
    let parent = events[0]["pid"].as_i64().unwrap();
    assert_eq!(kinds, [("change", parent), ("ignore", child)], "{run}");
}
