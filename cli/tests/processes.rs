//! Process trees: events from children and grandchildren are collected, and the summary names
//! the right pid and program; Python code is blamed by file and line.

mod common;
use common::*;

#[test]
fn a_shell_script_whose_child_ignores_sigchld() {
    let d = Dir::new("shell_tree");
    d.cc("ignorer", "ignorer.c", &[]);
    d.copy_fixture("spawn.sh");
    let run = d.sigaudit().arg("./spawn.sh").run().code(0);
    let shell = run.field("shell");
    let child = run.field("pid");
    assert_ne!(shell, child);
    let summary = run.summary().to_string();
    assert!(
        summary.starts_with(
            "sigaudit: 2 processes reported 3 events, 1 root cause (4 processes audited):\n"
        ),
        "{run}"
    );
    // The child that ignored SIGCHLD is named, not the shell that started it.
    assert!(
        summary.contains(&format!(
            "  pid {child} ignorer: SIGCHLD ignored via signal() [logged]\n"
        )),
        "{run}"
    );
    assert!(!summary.contains(&format!("pid {shell} ")), "{run}");
    // Its own child (a grandchild of the command) inherited the ignore across execve: folded
    // under it.
    assert!(
        summary.contains("      inherited by 1 descendant process: "),
        "{run}"
    );
}

#[test]
fn python_code_is_blamed_by_file_and_line() {
    let d = Dir::new("python");
    let app = d.copy_fixture("app.py");
    let line = line_of("app.py", "ignore-here");
    let run = d.sigaudit().arg("python3").arg(&app).run().code(0);
    // The bug itself: the failed child's status is lost.
    assert_eq!(run.field("status"), "0", "{run}");
    let summary = run.summary();
    assert!(summary.contains(" python3"), "{run}");
    assert!(
        summary.contains("SIGCHLD ignored via sigaction() [logged]"),
        "{run}"
    );
    assert!(
        summary.contains(&format!("where: {}:{line} in setup", app.display())),
        "{run}"
    );
    assert!(
        summary.contains("      waitpid() failed with ECHILD in pid "),
        "{run}"
    );
    // The failed wait's own place, under its cause: the program's line that called subprocess.
    let waited = line_of("app.py", "subprocess.call(");
    assert!(
        summary.contains(&format!(
            "\n          where: {}:{waited} in <module>\n",
            app.display()
        )),
        "{run}"
    );

    // Vetoed, subprocess sees the real status.
    let run = d
        .sigaudit()
        .arg("--veto")
        .arg("python3")
        .arg(&app)
        .run()
        .code(0);
    assert_eq!(run.field("status"), "1", "{run}");
    run.stderr_has("[vetoed]");
}

/// See: `where: PyOS_setsig at .../pylifecycle.c` for a Python whose frames are not read. Each
/// older Python this machine has (pyenv's 2.7, 3.6, 3.7) is named with the plain reason, for the
/// ignore and for the failed wait, never by the interpreter's own function.
#[test]
fn an_older_python_is_named_plainly() {
    let older = pythons::unsupported();
    if older.is_empty() {
        eprintln!("note: no Python before 3.8 on this machine: nothing to check");
    }
    for python in older {
        let d = Dir::new("older_python");
        let app = d.copy_fixture("app.py");
        let run = d.sigaudit().arg(&python.exe).arg(&app).run().code(0);
        let summary = run.summary();
        let why = format!(
            "Python {}: no Python frames (supported: 3.8 to 3.15)",
            python.minor()
        );
        assert_eq!(
            summary.matches(&format!("where: {why}\n")).count(),
            2,
            "the ignore and the failed wait\n{run}"
        );
        assert!(!summary.contains("PyOS_setsig"), "{run}");
    }
}

/// See: a static command loads no library, and its run would otherwise read "clean".
#[test]
fn a_statically_linked_command_is_said_to_be_unseen() {
    let d = Dir::new("static_command");
    let program = d.cc("ignorer-static", "ignorer.c", &["-static"]);
    let run = d.sigaudit().arg("--").arg(&program).run().code(0);
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("sigaudit: note:"))
        .collect();
    assert_eq!(notes.len(), 1, "{run}");
    assert!(
        notes[0].contains("ignorer-static is statically linked"),
        "{run}"
    );
    // The same program dynamically linked gets no such note and is seen.
    let dynamic = d.cc("ignorer", "ignorer.c", &[]);
    d.sigaudit()
        .arg("--")
        .arg(&dynamic)
        .run()
        .code(0)
        .stderr_lacks("sigaudit: note:")
        .stderr_has("SIGCHLD ignored via signal()");
}
