//! `sigaudit symbolize`: function names and file:line from DWARF, offline.

mod common;
use common::*;

/// Records from the library itself (no sigaudit command involved) for the C fixture.
fn raw_records(d: &Dir) -> String {
    d.cc("ignorer", "ignorer.c", &[]);
    ignorer_records(d)
}

#[test]
fn names_the_c_function_and_its_file_and_line() {
    let d = Dir::new("symbolize_c");
    let raw = raw_records(&d);
    // The library alone has the symbol-table name, not the line.
    assert!(!raw.contains("\"line\""), "{raw}");
    d.write("events.jsonl", &raw);
    let run = d
        .sigaudit()
        .args(["symbolize", "events.jsonl"])
        .run()
        .code(0);
    let out = records(&run.stdout);
    assert_eq!(out.len(), 3, "{run}");
    let ignore = out
        .iter()
        .find(|r| r["event"] == "ignore")
        .expect("an ignore");
    let frames = ignore["backtrace"].as_array().unwrap();
    let f = frames
        .iter()
        .find(|f| f["function"] == "setup_signals")
        .unwrap_or_else(|| panic!("no setup_signals: {ignore:#}"));
    assert!(
        f["file"].as_str().unwrap().ends_with("/fixtures/ignorer.c"),
        "{f}"
    );
    assert_eq!(f["line"], line_of("ignorer.c", "ignore-here") as i64);
    // What the record had stays.
    assert!(
        f["symbol"]
            .as_str()
            .unwrap()
            .starts_with("setup_signals+0x"),
        "{f}"
    );
    let main = frames
        .iter()
        .find(|f| f["function"] == "main")
        .expect("main");
    assert!(main["line"].as_i64().unwrap() > 0);
    // What each frame had stays as it was (frames without debug information keep only that).
    let before = records(&raw);
    let before = before.iter().find(|r| r["event"] == "ignore").unwrap();
    for (old, new) in before["backtrace"].as_array().unwrap().iter().zip(frames) {
        for (k, v) in old.as_object().unwrap() {
            assert_eq!(&new[k], v, "{k} changed in {new}");
        }
    }
    // The echild cause's frame too.
    let echild = out
        .iter()
        .find(|r| r["event"] == "echild")
        .expect("an echild");
    assert_eq!(echild["cause"]["native"]["function"], "setup_signals");
    // Key order is kept as the library wrote it.
    assert!(run.stdout.starts_with("{\"event\":\""), "{run}");
    assert!(
        run.stdout.lines().all(|l| l.contains("\",\"time\":\"")),
        "{run}"
    );
}

#[test]
fn reads_stdin_and_passes_other_lines_through() {
    let d = Dir::new("symbolize_stdin");
    let raw = raw_records(&d);
    let input = format!("a line of program output\n{raw}{{\"not\":\"an event\"}}\n");
    let run = d
        .sigaudit()
        .arg("symbolize")
        .run_with_input(input.as_bytes())
        .code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{run}");
    assert_eq!(lines[0], "a line of program output");
    assert!(
        run.stdout.contains("\"function\":\"setup_signals\""),
        "{run}"
    );
    assert_eq!(lines[4], "{\"not\":\"an event\"}");
    // `-` is stdin too.
    let run = d
        .sigaudit()
        .args(["symbolize", "-"])
        .run_with_input(raw.as_bytes())
        .code(0);
    assert!(
        run.stdout.contains("\"function\":\"setup_signals\""),
        "{run}"
    );
}

#[test]
fn text_output() {
    let d = Dir::new("symbolize_text");
    let raw = raw_records(&d);
    let run = d
        .sigaudit()
        .args(["symbolize", "--text"])
        .run_with_input(raw.as_bytes())
        .code(0);
    assert!(
        run.stdout
            .contains("(ignorer) SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN"),
        "{run}"
    );
    assert!(run.stdout.contains("setup_signals at "), "{run}");
    assert!(
        run.stdout.contains(&format!(
            "ignorer.c:{} (ignorer+0x",
            line_of("ignorer.c", "ignore-here")
        )),
        "{run}"
    );
    // Every record ends its last line, so what follows (a summary saved with the records) starts
    // on its own line; also when the input's last line has no newline. See: issue 13.
    let text = |input: &str| {
        d.sigaudit()
            .args(["symbolize", "--text"])
            .run_with_input(input.as_bytes())
            .code(0)
    };
    let run = text(&format!("{raw}sigaudit: 2 processes reported 3 events:\n"));
    assert!(
        run.stdout
            .contains("\nsigaudit: 2 processes reported 3 events:\n"),
        "{run}"
    );
    let run = text(raw.trim_end());
    assert!(run.stdout.ends_with(")\n"), "{run}");
    assert_eq!(run.stdout.matches("sigaudit: pid ").count(), 3, "{run}");
}

#[test]
fn an_unreadable_file_is_named_and_the_others_still_done() {
    let d = Dir::new("symbolize_missing");
    let raw = raw_records(&d);
    d.write("events.jsonl", &raw);
    let run = d
        .sigaudit()
        .args(["symbolize", "missing.jsonl", "events.jsonl"])
        .run()
        .code(1)
        .stderr_has("sigaudit symbolize: missing.jsonl: ");
    assert_eq!(records(&run.stdout).len(), 3, "{run}");
}

#[test]
fn finds_a_separate_debug_file_by_its_debuglink() {
    let d = Dir::new("symbolize_debuglink");
    let raw = raw_records(&d);
    d.write("events.jsonl", &raw);
    // Move the DWARF out of the program into ignorer.debug, linked by name and CRC, as
    // distributions ship it.
    let objcopy = |args: &[&str]| {
        d.plain("objcopy").args(args).run().code(0);
    };
    objcopy(&["--only-keep-debug", "ignorer", "ignorer.debug"]);
    objcopy(&[
        "--strip-debug",
        "--add-gnu-debuglink=ignorer.debug",
        "ignorer",
    ]);
    let symbolize = || {
        let run = d
            .sigaudit()
            .args(["symbolize", "events.jsonl"])
            .run()
            .code(0);
        records(&run.stdout)
            .into_iter()
            .find(|r| r["event"] == "ignore")
            .expect("an ignore")
    };
    let ignore = symbolize();
    let f = ignore["backtrace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "setup_signals")
        .unwrap_or_else(|| panic!("no setup_signals: {ignore:#}"));
    assert_eq!(f["line"], line_of("ignorer.c", "ignore-here") as i64);

    // A debug file that does not match (its CRC differs) is not used.
    let mut other = std::fs::read(d.join("ignorer.debug")).unwrap();
    other.push(0);
    std::fs::write(d.join("ignorer.debug"), other).unwrap();
    let ignore = symbolize();
    for f in ignore["backtrace"].as_array().unwrap() {
        if f["module"].as_str().unwrap().ends_with("/ignorer") {
            assert!(f.get("line").is_none(), "{f}");
        }
    }
}
