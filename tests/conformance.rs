//! Transparency: with the library preloaded in log mode a program sees exactly what libc shows it
//! without the library, for every entry point, every signal number from -1 to 70 and every kind
//! of handler (`fixtures/conformance.c`); in veto mode, exactly that for every unwatched signal.
//! And CPython's own signal and subprocess suites pass the same with and without it.

mod common;

use common::{Cmd, Dir, Run, parse_events, s};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Every signal that can be watched, each with `:any`: every change of every signal is reported.
fn watch_everything() -> String {
    (1..=64)
        .filter(|s| ![9, 19, 32, 33].contains(s))
        .map(|s| format!("{s}:any"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The events written to the files made from `prefix` (`prefix.%p`).
fn events_in(dir: &Dir, prefix: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(&dir.path).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            events.extend(parse_events(&text).unwrap_or_else(|e| panic!("{e}")));
            assert!(text.is_empty() || text.ends_with('\n'), "torn last record");
        }
    }
    events
}

/// The lines for one signal number.
fn lines_for(stdout: &str, signo: i32) -> Vec<&str> {
    let tag = format!("sig={signo} ");
    stdout.lines().filter(|l| l.starts_with(&tag)).collect()
}

/// The lines for every signal but `skip`.
fn lines_but(stdout: &str, skip: &[i32]) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !skip.iter().any(|s| l.starts_with(&format!("sig={s} "))))
        .map(String::from)
        .collect()
}

/// Whether a step left SIGCHLD ignored (SIG_IGN, or SA_NOCLDWAIT among the flags), from the
/// `| now=... flags=0x..` part of a line.
fn left_ignored(line: &str) -> bool {
    let Some(now) = line.split(" | now=").nth(1) else {
        return false;
    };
    let flags = now
        .split_whitespace()
        .find_map(|w| w.strip_prefix("flags="))
        .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    now.starts_with("SIG_IGN ") || flags & libc::SA_NOCLDWAIT as u64 != 0
}

fn assert_same_lines(bare: &[String], run: &[String], what: &str, full: &Run) {
    assert_eq!(bare.len(), run.len(), "{what}: line counts differ\n{full}");
    for (a, b) in bare.iter().zip(run) {
        assert_eq!(a, b, "{what}: first difference\n{full}");
    }
}

fn conformance(dir: &Dir) -> (std::path::PathBuf, Run) {
    let program = dir.cc("conformance", &["conformance.c"], &[]);
    let bare = dir.cmd(&program).run().success();
    assert!(bare.stdout.ends_with("done\n"), "{bare}");
    assert_eq!(bare.stderr, "", "{bare}");
    // Sanity: the fixture does see the differences it is meant to compare.
    assert!(lines_for(&bare.stdout, 17).len() > 250, "{bare}");
    assert!(
        bare.stdout
            .contains("sig=9 round=1 signal(SIG_IGN) ret=SIG_ERR errno=22"),
        "{bare}"
    );
    (program, bare)
}

#[test]
fn log_mode_is_byte_for_byte_transparent_with_every_signal_watched() {
    let dir = Dir::new("conformance-any");
    let (program, bare) = conformance(&dir);
    let run = dir
        .cmd(&program)
        .preload()
        .env("SIGAUDIT_WATCH", watch_everything())
        .env("SIGAUDIT_FORMAT", "json")
        .env("SIGAUDIT_OUTPUT", dir.join("events.%p"))
        .run()
        .success();
    assert_eq!(run.stderr, "", "events go to the file\n{run}");
    if run.stdout != bare.stdout {
        let (a, b): (Vec<String>, Vec<String>) = (
            bare.stdout.lines().map(String::from).collect(),
            run.stdout.lines().map(String::from).collect(),
        );
        assert_same_lines(&a, &b, "log mode, every signal :any", &run);
    }
    let events = events_in(&dir, "events.");
    // Every step that changes something is reported; each record is complete (parsed above).
    assert!(events.len() > 20_000, "{} events\n{run}", events.len());
    for ev in &events {
        assert!(
            ["ignore", "change"].contains(&s(ev, "event")),
            "unexpected {ev}"
        );
        let signo = ev["signo"].as_i64().unwrap();
        assert!((1..=64).contains(&signo) && ![9, 19, 32, 33].contains(&signo));
    }
}

#[test]
fn log_mode_is_byte_for_byte_transparent_with_the_default_watch() {
    let dir = Dir::new("conformance-default");
    let (program, bare) = conformance(&dir);
    let run = dir
        .cmd(&program)
        .audit_json()
        .env("SIGAUDIT_OUTPUT", dir.join("events.%p"))
        .run()
        .success();
    assert_eq!(run.stderr, "", "{run}");
    assert!(run.stdout == bare.stdout, "stdout differs\n{run}");
    // One ignore event per step that left SIGCHLD ignored, no more, no fewer. This counts the
    // `rt_sigaction` whose `old` the kernel could not write back: it fails, but the change
    // happened.
    let expected = lines_for(&bare.stdout, 17)
        .iter()
        .filter(|l| left_ignored(l))
        .count();
    let events = events_in(&dir, "events.");
    assert_eq!(events.len(), expected, "{run}");
    assert!(events.iter().all(|e| s(e, "event") == "ignore"
        && s(e, "signal") == "SIGCHLD"
        && s(e, "action") == "logged"));
}

#[test]
fn veto_mode_changes_only_the_watched_signals() {
    let dir = Dir::new("conformance-veto");
    let (program, bare) = conformance(&dir);
    // SIGCHLD, plus one classic and one real-time signal with :any, and one without.
    let watched = [17, 13, 10, 37];
    let run = dir
        .cmd(&program)
        .preload()
        .env("SIGAUDIT_MODE", "veto")
        .env("SIGAUDIT_WATCH", "CHLD,PIPE:any,USR1,RTMIN+3:any")
        .env("SIGAUDIT_FORMAT", "json")
        .env("SIGAUDIT_OUTPUT", dir.join("events.%p"))
        .run()
        .success();
    assert_eq!(run.stderr, "", "{run}");
    assert_same_lines(
        &lines_but(&bare.stdout, &watched),
        &lines_but(&run.stdout, &watched),
        "veto mode, unwatched signals",
        &run,
    );
    // For a watched signal the caller is told what libc would have told it (return value,
    // errno, old action); only the action after the call differs, and it never ignores.
    for signo in watched {
        let (a, b) = (
            lines_for(&bare.stdout, signo),
            lines_for(&run.stdout, signo),
        );
        assert_eq!(a.len(), b.len(), "{run}");
        for (a, b) in a.iter().zip(&b) {
            let told = |l: &str| l.split(" | now=").next().unwrap_or("").to_string();
            assert_eq!(
                told(a),
                told(b),
                "veto mode changed what the caller is told\n{run}"
            );
            if signo == 17 {
                assert!(!left_ignored(b), "SIGCHLD left ignored: {b}\n{run}");
            }
            if !left_ignored(a) || signo != 17 {
                // Not an ignore of SIGCHLD: only SIG_IGN requests are refused.
                if !a.contains(" | now=SIG_IGN ") {
                    assert_eq!(a, b, "{run}");
                }
            }
        }
    }
    let events = events_in(&dir, "events.");
    assert!(
        events
            .iter()
            .filter(|e| s(e, "event") == "ignore")
            .all(|e| s(e, "action") == "vetoed"),
        "{run}"
    );
}

// ---- CPython's own suites ------------------------------------------------------------------

/// `cmd` starting with SIGINT at its default: started from a non-interactive shell's background
/// job it would be ignored, and three of test_signal's tests fail that way without the library.
fn with_sigint_default(mut cmd: Cmd) -> Cmd {
    // SAFETY: signal() is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// Test case name -> outcome, from regrtest's JUnit XML.
fn outcomes(xml: &str) -> BTreeMap<String, String> {
    let attr = |tag: &str, name: &str| {
        tag.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    xml.split("<testcase")
        .skip(1)
        .map(|case| {
            let head = case.split('>').next().unwrap_or("");
            let body = case.split("</testcase>").next().unwrap_or("");
            let outcome = if body.contains("<failure") {
                "failure"
            } else if body.contains("<error") {
                "error"
            } else if body.contains("<skipped") {
                "skipped"
            } else {
                "ok"
            };
            (
                format!("{}.{}", attr(head, "classname"), attr(head, "name")),
                outcome.to_string(),
            )
        })
        .collect()
}

fn regrtest(dir: &Dir, py: &Path, suite: &str, preload: bool) -> (Run, BTreeMap<String, String>) {
    let xml = dir.join(&format!(
        "{suite}-{}.xml",
        if preload { "preloaded" } else { "bare" }
    ));
    let tmp = dir.join(&format!("{suite}-{preload}-tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = dir
        .cmd(py)
        .args(["-m", "test", "-v", suite, "--junit-xml"])
        .arg(&xml)
        .arg("--tempdir")
        .arg(&tmp);
    if preload {
        // Events go to a file, so the suite's own output checks see nothing of ours. Watching
        // signals the suites play with, with :any, runs our event path inside CPython's signal
        // handling. Not SIGUSR1: test_stress_modifying_handlers flips it 40,000 times while
        // another thread raises it, and at some milliseconds per event (a Python process's
        // stack is deep) that alone would take minutes.
        cmd = cmd
            .preload()
            .env("SIGAUDIT_WATCH", "CHLD:any,INT:any,ALRM:any,VTALRM:any")
            .env("SIGAUDIT_FORMAT", "json")
            .env("SIGAUDIT_OUTPUT", dir.join("events.%p"));
    }
    // A suite takes about 20 s here, run four at a time; the time-out only catches a hang, and a
    // busy machine (CI's, or one shared with other builds) can make a suite three times slower.
    let run = with_sigint_default(cmd).run_within(SUITE_TIMEOUT);
    let xml = std::fs::read_to_string(&xml).unwrap_or_default();
    (run, outcomes(&xml))
}

/// How long one CPython suite may run before it is taken for hung.
const SUITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(240);

#[test]
fn cpython_signal_and_subprocess_suites_pass_the_same_with_the_library() {
    let Some(py) = common::pythons::path_python3().map(|p| p.exe) else {
        eprintln!("skipped: no python3");
        return;
    };
    let dir = Dir::new("cpython-suites");
    common::lib();
    // Four runs at once: the suites mostly sleep, and this keeps the wall time near one run's.
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["test_signal", "test_subprocess"]
            .iter()
            .flat_map(|&suite| [(suite, false), (suite, true)])
            .map(|(suite, preload)| {
                let (dir, py) = (&dir, &py);
                scope.spawn(move || (suite, preload, regrtest(dir, py, suite, preload)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let find = |suite: &str, preload: bool| {
        runs.iter()
            .find(|(s, p, _)| *s == suite && *p == preload)
            .map(|(_, _, r)| r)
            .unwrap()
    };
    for suite in ["test_signal", "test_subprocess"] {
        let (bare, bare_cases) = find(suite, false);
        let (run, cases) = find(suite, true);
        if !bare.status.success() {
            eprintln!("note: {suite} fails without the library here\n{bare}");
        }
        assert!(bare_cases.len() > 40, "no results from {suite}\n{bare}");
        assert_eq!(
            run.status.success(),
            bare.status.success(),
            "{suite}: result differs with the library\n{run}"
        );
        let differ: Vec<_> = bare_cases
            .iter()
            .filter(|(name, outcome)| cases.get(*name) != Some(outcome))
            .map(|(name, outcome)| format!("{name}: {outcome} -> {:?}", cases.get(name)))
            .collect();
        assert!(
            differ.is_empty() && cases.len() == bare_cases.len(),
            "{suite}: outcomes differ with the library: {differ:#?}\n{run}"
        );
        assert!(!run.stderr.contains("sigaudit"), "{run}");
    }
    // Whatever was reported is complete JSON.
    let events = events_in(&dir, "events.");
    assert!(events.iter().all(|e| !s(e, "event").is_empty()));
}
