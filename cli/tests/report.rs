//! `sigaudit report`: one summary, grouped by culprit, of records from several processes and
//! hosts: the library's own files, `sigaudit --json` output, and the entries of real journalds
//! (two of them, as two fake hosts) printed by `journalctl -o json`.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

/// Runs `program` (with `args`) with the library preloaded and `SIGAUDIT_OUTPUT=output`; it
/// must succeed with nothing from the library on stderr.
fn audited(d: &Dir, program: &Path, args: &[&Path], output: &str) -> Run {
    let run = d
        .plain(program)
        .args(args)
        .env("LD_PRELOAD", lib())
        .env("SIGAUDIT_FORMAT", "json")
        .env("SIGAUDIT_OUTPUT", output)
        .run()
        .code(0);
    assert!(!run.stderr.contains("sigaudit"), "{run}");
    run
}

/// The group of the summary that starts with a line starting `place`: that line and the
/// indented lines after it.
fn group<'a>(summary: &'a str, place: &str) -> Vec<&'a str> {
    let mut lines = summary.lines().skip_while(|l| !l.starts_with(place));
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| l.starts_with("      ")));
    assert!(!out.is_empty(), "no group {place:?} in\n{summary}");
    out
}

fn pids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("pid="))
        .map(str::to_string)
        .collect()
}

#[test]
fn journal_entries_from_two_hosts_make_one_summary() {
    let d = Dir::new("report_two_hosts");
    let Some(a) = Journald::start(&d, "a", "fake-a") else {
        return;
    };
    let Some(b) = Journald::start(&d, "b", "fake-b") else {
        return;
    };
    d.cc("ignorer", "ignorer.c", &[]);
    let spawn = d.copy_fixture("spawn.sh");
    let app = d.copy_fixture("app.py");
    let on_a = format!("journal:{}", a.socket.display());
    // Host a: a shell script, twice; its child ignores SIGCHLD and loses a child's status, whose
    // /bin/true starts with SIGCHLD ignored.
    let mut ignorers = Vec::new();
    for _ in 0..2 {
        ignorers.extend(pids(&audited(&d, &spawn, &[], &on_a).stdout));
    }
    // Host b: a Python program whose subprocess.call loses a failure.
    let python = audited(
        &d,
        Path::new("python3"),
        &[&app],
        &format!("journal:{}", b.socket.display()),
    );
    assert_eq!(python.field("status"), "0", "{python}");
    a.wait_for_entries(6);
    b.wait_for_entries(3);

    // A file from one host, the other on stdin, as `journalctl -o json` prints them.
    d.write("a.json", &a.json(&[]));
    let run = d
        .sigaudit()
        .args(["report", "a.json", "-"])
        .run_with_input(b.json(&["SYSLOG_IDENTIFIER=sigaudit"]).as_bytes())
        .code(0);
    let summary = &run.stdout;
    assert!(
        summary.starts_with(
            "sigaudit report: 6 processes reported 9 events on 2 hosts, 2 root causes:\n"
        ),
        "{run}"
    );
    // The same summary as a run's, one root cause per place: the C one, named to its file and
    // line by the build ID its frames carry, although it ran on another host.
    let line = line_of("ignorer.c", "ignore-here");
    let c = group(summary, "  ignorer, 2 times in 2 processes");
    assert_eq!(
        c[0],
        format!(
            "  ignorer, 2 times in 2 processes (pid {}, {}): SIGCHLD ignored via signal() [logged]",
            ignorers[0], ignorers[1]
        ),
        "{run}"
    );
    assert!(
        c[1].starts_with("      where: setup_signals at ")
            && c[1].contains(&format!("/fixtures/ignorer.c:{line} (ignorer+0x")),
        "{run}"
    );
    assert_eq!(c[2], "      on host fake-a", "{run}");
    assert!(
        c[3].starts_with("      from 20") && c[3].contains("Z to 20"),
        "{run}"
    );
    assert!(
        c[4].starts_with("      inherited by 2 descendant processes: true (pid ")
            && c[4].ends_with("), 2 events"),
        "{run}"
    );
    // Each failed wait, and where it was made.
    let wait_line = line_of("ignorer.c", "waitpid(child");
    for (i, pid) in ignorers.iter().enumerate() {
        assert_eq!(
            c[5 + 2 * i],
            format!("      waitpid() failed with ECHILD in pid {pid} ignorer"),
            "{run}"
        );
        assert!(
            c[6 + 2 * i].starts_with("          where: main at ")
                && c[6 + 2 * i].contains(&format!("/fixtures/ignorer.c:{wait_line} (ignorer+0x")),
            "{run}"
        );
    }
    // The Python one: its file and line.
    let py_line = line_of("app.py", "ignore-here");
    let py = group(summary, "  pid ");
    assert!(
        py[0].ends_with(": SIGCHLD ignored via sigaction() [logged]") && py[0].contains(" python3"),
        "{run}"
    );
    assert_eq!(
        py[1],
        format!("      where: {}:{py_line} in setup", app.display()),
        "{run}"
    );
    assert_eq!(py[2], "      on host fake-b", "{run}");
    assert!(
        py[4].starts_with("      inherited by 1 descendant process: false (pid "),
        "{run}"
    );
    assert!(
        py[5].starts_with("      waitpid() failed with ECHILD in pid "),
        "{run}"
    );
    // The other programs' entries of host a (journald's own) are said to be skipped.
    assert!(
        summary.contains(" journal entries of other programs were skipped"),
        "{run}"
    );

    // The same as JSON.
    let run = d
        .sigaudit()
        .args(["report", "--json", "a.json", "-"])
        .run_with_input(b.json(&[]).as_bytes())
        .code(0);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(v["events"], 9, "{run}");
    assert_eq!(v["hosts"], serde_json::json!(["fake-a", "fake-b"]), "{run}");
    let causes = v["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2, "{run}");
    assert_eq!(causes[0]["key"], "SIGCHLD ignorer setup_signals", "{run}");
    assert_eq!(causes[0]["echild"]["via"]["waitpid"], 2, "{run}");
    assert_eq!(causes[0]["inherited"]["processes"], 2, "{run}");
    assert_eq!(causes[1]["hosts"]["fake-b"], 3, "{run}");
}

/// `journalctl -o json` without `--all` prints a field longer than 4 KiB as null: such an entry
/// is grouped by its CODE_ fields, with the culprit of its full record, and the report says so.
#[test]
fn an_entry_without_its_record_joins_its_culprit() {
    let d = Dir::new("report_rebuilt");
    let Some(j) = Journald::start(&d, "j", "fake-a") else {
        return;
    };
    let program = d.cc("ignorer", "ignorer.c", &[]);
    for _ in 0..2 {
        audited(
            &d,
            &program,
            &[],
            &format!("journal:{}", j.socket.display()),
        );
    }
    let entries = j.wait_for_entries(6);
    // The first run's entries as journalctl prints a long record; the second's whole.
    let lines: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            if i < 3 {
                e["SIGAUDIT_RECORD"] = Value::Null;
            }
            e.to_string()
        })
        .collect();
    d.write("entries.json", &(lines.join("\n") + "\n"));
    let run = d.sigaudit().args(["report", "entries.json"]).run().code(0);
    // One root cause: the rebuilt entries join the full ones' (the rebuilt ignore keeps the
    // symbol-table name it had, so it is said apart from the one named to its line).
    assert!(
        run.stdout.starts_with(
            "sigaudit report: 4 processes reported 6 events on 1 host, 1 root cause:\n"
        ),
        "{run}"
    );
    assert!(
        run.stdout.contains(
            "ignorer: SIGCHLD ignored via signal() [logged]\n      where: setup_signals+0x"
        ),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("      inherited by 2 descendant processes: true (pid "),
        "{run}"
    );
    assert_eq!(
        run.stdout
            .matches("      waitpid() failed with ECHILD in pid ")
            .count(),
        2,
        "{run}"
    );
    assert!(
        run.stdout
            .contains("sigaudit report: 3 journal entries came without their record"),
        "{run}"
    );
}

/// The library's own files (one per process) and the command's `--json` output, together: this
/// host's records (every record names its host) get source lines.
#[test]
fn library_files_and_command_output_from_several_processes() {
    let d = Dir::new("report_files");
    let program = d.cc("ignorer", "ignorer.c", &[]);
    let spawn = d.copy_fixture("spawn.sh");
    std::fs::create_dir(d.join("records")).unwrap();
    let output = format!("{}/events.%p.jsonl", d.join("records").display());
    let shell = audited(&d, &spawn, &[], &output);
    let ignorer = pids(&shell.stdout);
    d.sigaudit()
        .args(["--json", "-q", "-o", "run.jsonl", "--"])
        .arg(&program)
        .run()
        .code(0);
    let mut files: Vec<String> = std::fs::read_dir(d.join("records"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "the ignorer's and its child's: {files:?}");
    let run = d
        .sigaudit()
        .arg("report")
        .args(&files)
        .arg("run.jsonl")
        .run()
        .code(0);
    assert!(
        run.stdout.starts_with(
            "sigaudit report: 4 processes reported 6 events on 1 host, 1 root cause:\n"
        ),
        "{run}"
    );
    let line = line_of("ignorer.c", "ignore-here");
    let c = group(&run.stdout, "  ignorer, 2 times in 2 processes (pid ");
    assert!(
        c[0].starts_with(&format!(
            "  ignorer, 2 times in 2 processes (pid {}, ",
            ignorer[0]
        )),
        "{run}"
    );
    assert!(
        c[1].contains(&format!("/fixtures/ignorer.c:{line} (ignorer+0x")),
        "{run}"
    );
    // Each record names its host.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(c[2], format!("      on host {}", host.trim()), "{run}");
}

#[test]
fn inputs_that_cannot_be_read_or_hold_no_record() {
    let d = Dir::new("report_bad_input");
    d.write(
        "text.log",
        "sigaudit: pid 3 (a) SIGCHLD ignored via signal()\nhello\n",
    );
    let run = d
        .sigaudit()
        .args(["report", "text.log", "missing.json"])
        .run()
        .code(1);
    assert!(
        run.stderr
            .contains("sigaudit report: missing.json: No such file or directory"),
        "{run}"
    );
    assert!(
        run.stdout
            .starts_with("sigaudit report: no records in the input\n"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("sigaudit report: 2 lines were not records and were skipped"),
        "{run}"
    );
    d.sigaudit()
        .args(["report", "--bogus"])
        .run()
        .code(2)
        .stderr_has("report: invalid option '--bogus'");
}
