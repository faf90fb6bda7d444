//! Each option against a real C program that ignores SIGCHLD in `setup_signals()`, forks, and
//! waits for a child that runs /bin/true.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn ignore_line() -> String {
    format!("ignorer.c:{}", line_of("ignorer.c", "ignore-here"))
}

#[test]
fn log_mode_reports_and_lets_it_happen() {
    let d = Dir::new("log_mode");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d.sigaudit().arg("./ignorer").run().code(0);
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    let pid = run.field("pid");
    // Shown as it happened, readable...
    let run = run.stderr_has(&format!(
        "sigaudit: pid {pid} (ignorer) SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN"
    ));
    // ...and summarized with the place, symbolized from DWARF.
    let summary = run.summary();
    assert!(
        summary.starts_with(
            "sigaudit: 2 processes reported 3 events, 1 root cause (2 processes audited):\n"
        ),
        "{run}"
    );
    assert!(
        summary.contains(&format!(
            "  pid {pid} ignorer: SIGCHLD ignored via signal() [logged]\n"
        )),
        "{run}"
    );
    assert!(summary.contains("      where: setup_signals at "), "{run}");
    assert!(summary.contains(&ignore_line()), "{run}");
    // What followed from it, folded under it: the child that inherited it, the broken wait.
    assert!(
        summary.contains("      inherited by 1 descendant process: true (pid "),
        "{run}"
    );
    assert!(
        summary.contains(&format!(
            "      waitpid() failed with ECHILD in pid {pid} ignorer\n"
        )),
        "{run}"
    );
}

#[test]
fn veto_refuses_the_ignore() {
    let d = Dir::new("veto_mode");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d.sigaudit().args(["--veto", "./ignorer"]).run().code(0);
    assert_eq!(run.stdout.lines().nth(1), Some("wait=ok status=0"), "{run}");
    let pid = run.field("pid");
    let summary = run.summary();
    assert!(
        summary.starts_with(
            "sigaudit: 1 process reported 1 event, 1 root cause (2 processes audited):\n"
        ),
        "{run}"
    );
    assert!(
        summary.contains(&format!(
            "pid {pid} ignorer: SIGCHLD ignored via signal() [vetoed]"
        )),
        "{run}"
    );
}

#[test]
fn abort_stops_the_caller() {
    let d = Dir::new("abort_mode");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d.sigaudit().args(["--abort", "./ignorer"]).run().code(134);
    assert!(!run.stdout.contains("wait="), "{run}");
    let pid = run.field("pid");
    run.stderr_has(&format!(
        "pid {pid} ignorer: SIGCHLD ignored via signal() [aborted]"
    ))
    .stderr_has("the command was ended by SIGABRT (exit status 134)");
}

#[test]
fn watch_chooses_the_signals() {
    let d = Dir::new("watch");
    d.cc("ignorer", "ignorer.c", &[]);
    // SIGPIPE is not watched by default...
    let run = d.sigaudit().args(["./ignorer", "pipe"]).run().code(0);
    assert_eq!(
        run.stderr,
        "sigaudit: clean run: no process ignored a watched signal (CHLD); 2 processes audited\n"
    );
    // ...but is with --watch.
    let run = d
        .sigaudit()
        .args(["--watch", "PIPE,CHLD", "./ignorer", "pipe"])
        .run()
        .code(0);
    let pid = run.field("pid");
    run.stderr_has(&format!(
        "pid {pid} ignorer (ignorer pipe): SIGPIPE ignored via signal() [logged]"
    ));
    // A handler is a change, reported only with :any.
    d.sigaudit()
        .args(["./ignorer", "handler"])
        .run()
        .code(0)
        .stderr_has("clean run");
    let run = d
        .sigaudit()
        .args(["-w", "chld:any", "./ignorer", "handler"])
        .run()
        .code(0);
    let pid = run.field("pid");
    run.stderr_has(&format!(
        "pid {pid} ignorer (ignorer handler): SIGCHLD changed via sigaction(): SIG_DFL -> handler SA_RESTART [logged]"
    ));
}

#[test]
fn output_file_gets_readable_records() {
    let d = Dir::new("output_text");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .sigaudit()
        .args(["-o", "out.txt", "./ignorer"])
        .run()
        .code(0);
    let pid = run.field("pid");
    let text = std::fs::read_to_string(d.join("out.txt")).unwrap();
    assert!(
        text.contains(&format!(
            "sigaudit: pid {pid} (ignorer) SIGCHLD ignored via signal()"
        )),
        "{text}"
    );
    assert!(text.contains("    #0  setup_signals at "), "{text}");
    assert!(text.contains(&ignore_line()), "{text}");
    let mode = std::fs::metadata(d.join("out.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // With -o the records are not repeated on stderr; the summary says where they are.
    let run = run.stderr_lacks("(ignorer) SIGCHLD ignored");
    assert!(
        run.summary()
            .ends_with("sigaudit: full records in out.txt\n"),
        "{run}"
    );
}

#[test]
fn output_file_is_emptied_first() {
    let d = Dir::new("output_emptied");
    d.write("out.txt", "old contents\n");
    d.sigaudit().args(["-o", "out.txt", "true"]).run().code(0);
    assert_eq!(std::fs::read_to_string(d.join("out.txt")).unwrap(), "");
}

#[test]
fn output_to_a_device_is_not_an_error() {
    let d = Dir::new("output_dev_null");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .sigaudit()
        .args(["-o", "/dev/null", "./ignorer"])
        .run()
        .code(0);
    assert!(!run.stderr.contains("writing /dev/null"), "{run}");
    run.stderr_has("ignorer: SIGCHLD ignored via signal() [logged]");
}

#[test]
fn json_output_has_the_records_with_source_lines() {
    let d = Dir::new("output_json");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .sigaudit()
        .args(["--json", "-o", "out.jsonl", "./ignorer"])
        .run()
        .code(0);
    let pid: i64 = run.field("pid").parse().unwrap();
    let records = records(&std::fs::read_to_string(d.join("out.jsonl")).unwrap());
    assert_eq!(records.len(), 3, "{records:#?}");
    let ignore = records
        .iter()
        .find(|r| r["event"] == "ignore")
        .expect("an ignore record");
    assert_eq!(ignore["pid"], pid);
    assert_eq!(ignore["via"], "signal");
    assert_eq!(ignore["action"], "logged");
    let frame = ignore["backtrace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "setup_signals")
        .unwrap_or_else(|| panic!("no setup_signals frame: {ignore:#}"));
    assert!(
        frame["file"].as_str().unwrap().ends_with("ignorer.c"),
        "{frame}"
    );
    assert_eq!(frame["line"], line_of("ignorer.c", "ignore-here") as i64);
    let echild = records
        .iter()
        .find(|r| r["event"] == "echild")
        .expect("an echild record");
    assert_eq!(echild["cause"]["native"]["function"], "setup_signals");
}

#[test]
fn json_without_output_goes_to_stderr() {
    let d = Dir::new("json_stderr");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .sigaudit()
        .args(["--json", "--quiet", "./ignorer"])
        .run()
        .code(0);
    let records = records(&run.stderr);
    assert_eq!(records.len(), 3, "{run}");
    assert!(!run.stderr.contains("reported"), "{run}");
}

#[test]
fn quiet_leaves_out_the_summary() {
    let d = Dir::new("quiet");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d.sigaudit().args(["--quiet", "true"]).run().code(0);
    assert_eq!(run.stderr, "");
    let run = d.sigaudit().args(["-q", "./ignorer"]).run().code(0);
    let run = run.stderr_has("(ignorer) SIGCHLD ignored via signal()");
    assert!(!run.stderr.contains("reported"), "{run}");
    let run = d
        .sigaudit()
        .args(["-q", "-o", "out.txt", "./ignorer"])
        .run()
        .code(0);
    assert_eq!(run.stderr, "");
    assert!(
        std::fs::read_to_string(d.join("out.txt"))
            .unwrap()
            .contains("SIGCHLD ignored")
    );
}

#[test]
fn ld_preload_already_set_stays() {
    let d = Dir::new("preload_stays");
    let marker = d.cc("libmarker.so", "marker.c", &["-shared", "-fPIC"]);
    let run = d
        .sigaudit()
        .env("LD_PRELOAD", &marker)
        .args(["sh", "-c", "echo \"preload=$LD_PRELOAD\""])
        .run()
        .code(0);
    assert_eq!(
        run.field("preload"),
        format!(
            "{}:{}",
            lib().canonicalize().unwrap().display(),
            marker.display()
        )
    );
    run.stderr_has("marker-loaded");
}

#[test]
fn stray_sigaudit_variables_do_not_override_the_options() {
    let d = Dir::new("stray_variables");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .sigaudit()
        .env("SIGAUDIT_MODE", "abort")
        .env("SIGAUDIT_FORMAT", "text")
        .env("SIGAUDIT_OUTPUT", "stderr")
        .arg("./ignorer")
        .run()
        .code(0);
    run.stderr_has("ignored via signal() [logged]");
}

#[test]
fn the_records_folder_may_have_any_name() {
    // `%` is special to SIGAUDIT_OUTPUT; a relative TMPDIR must work from every folder.
    let d = Dir::new("records_folder");
    d.cc("ignorer", "ignorer.c", &[]);
    std::fs::create_dir(d.join("t%p 100%")).unwrap();
    let run = d
        .sigaudit()
        .env("TMPDIR", "t%p 100%")
        .args(["sh", "-c", "cd / && exec \"$0\""])
        .arg(d.join("ignorer"))
        .run()
        .code(0);
    let pid = run.field("pid");
    run.stderr_has(&format!(
        "pid {pid} ignorer: SIGCHLD ignored via signal() [logged]"
    ));
    // Removed after the run.
    assert_eq!(std::fs::read_dir(d.join("t%p 100%")).unwrap().count(), 0);
}
