//! Exit statuses and messages: the command's own status, signal deaths, a command that cannot be
//! found or run, usage errors, --help and --version.

mod common;
use common::*;

#[test]
fn help_and_version() {
    let d = Dir::new("help_and_version");
    let run = d.sigaudit().arg("--help").run().code(0);
    assert!(
        run.stdout
            .contains("usage: sigaudit [OPTIONS] [--] COMMAND"),
        "{run}"
    );
    for option in [
        "--veto",
        "--abort",
        "--watch",
        "--output",
        "--json",
        "--quiet",
        "symbolize",
    ] {
        assert!(run.stdout.contains(option), "--help lacks {option}\n{run}");
    }
    let run = d.sigaudit().arg("-V").run().code(0);
    assert_eq!(
        run.stdout,
        format!("sigaudit {}\n", env!("CARGO_PKG_VERSION"))
    );
    d.sigaudit()
        .args(["symbolize", "--help"])
        .run()
        .code(0)
        .stdout_has("symbolize");
}

#[test]
fn the_commands_status_is_passed_on() {
    let d = Dir::new("status_passed_on");
    let run = d.sigaudit().arg("/bin/true").run().code(0);
    // A clean run says so, in one line.
    assert_eq!(
        run.stderr,
        "sigaudit: clean run: no process ignored a watched signal (CHLD); 1 process audited\n"
    );
    d.sigaudit().args(["--", "/bin/false"]).run().code(1);
    d.sigaudit().args(["sh", "-c", "exit 7"]).run().code(7);
}

#[test]
fn a_signal_death_is_128_plus_n() {
    let d = Dir::new("signal_death");
    d.sigaudit()
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .run()
        .code(143)
        .stderr_has("the command was ended by SIGTERM (exit status 143)");
    d.sigaudit()
        .args(["sh", "-c", "kill -KILL $$"])
        .run()
        .code(137)
        .stderr_has("SIGKILL");
}

#[test]
fn a_command_not_found_is_127() {
    let d = Dir::new("not_found");
    let run = d.sigaudit().arg("no-such-command-sigaudit").run().code(127);
    assert_eq!(
        run.stderr,
        "sigaudit: no-such-command-sigaudit: command not found\n"
    );
    d.sigaudit()
        .arg("./missing/program")
        .run()
        .code(127)
        .stderr_has("./missing/program: no such file");
}

#[test]
fn a_command_that_cannot_run_is_126() {
    let d = Dir::new("cannot_run");
    d.write("data.txt", "not a program\n");
    d.sigaudit()
        .arg("./data.txt")
        .run()
        .code(126)
        .stderr_has("sigaudit: ./data.txt: cannot run: permission denied");
    std::fs::create_dir(d.join("folder")).unwrap();
    d.sigaudit()
        .arg("./folder")
        .run()
        .code(126)
        .stderr_has("sigaudit: ./folder: cannot run");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let d = Dir::new("usage_errors");
    let cases: &[(&[&str], &str)] = &[
        (&[], "no command given"),
        (&["--"], "no command given"),
        (
            &["--veto", "--abort", "true"],
            "--veto and --abort cannot be used together",
        ),
        (&["--bogus", "true"], "--bogus"),
        (&["--watch", "NOPE", "true"], "NOPE is not a signal"),
        (&["--watch", "KILL", "true"], "can never be ignored"),
        (&["--watch", "PIPE:all", "true"], ":any"),
        (&["--watch"], "--watch"),
        (&["-o"], "-o"),
        (&["-o", "", "true"], "-o: the path is empty"),
        (&["symbolize", "--bogus"], "--bogus"),
    ];
    for (args, reason) in cases {
        let run = d.sigaudit().args(*args).run().code(2);
        assert_eq!(run.stderr.lines().count(), 1, "not one line\n{run}");
        assert!(run.stderr.starts_with("sigaudit: "), "{run}");
        assert!(run.stderr.contains(reason), "no {reason:?}\n{run}");
    }
}

#[test]
fn an_unwritable_output_fails_before_the_command_runs() {
    let d = Dir::new("unwritable_output");
    let run = d
        .sigaudit()
        .args(["-o", "no/such/folder/out.txt", "sh", "-c", "echo ran"])
        .run()
        .code(125)
        .stderr_has("-o no/such/folder/out.txt");
    assert!(!run.stdout.contains("ran"), "{run}");
}

#[test]
fn no_private_folder_is_a_failure_of_sigaudit() {
    let d = Dir::new("no_private_folder");
    d.sigaudit()
        .env("TMPDIR", d.join("missing"))
        .args(["sh", "-c", "echo ran"])
        .run()
        .code(125)
        .stderr_has("cannot make a private folder in");
}
