//! Process trees in the summary: root causes first with their place, consequences folded under
//! them; forked children told apart from their parents; Perl and shell scripts blamed by file
//! and line.

mod common;
use common::*;

/// Lines of the summary (stderr from its first line).
fn summary_lines(run: &Run) -> Vec<String> {
    run.summary().lines().map(String::from).collect()
}

/// A deploy script that sources a library whose `trap '' CHLD` ignores SIGCHLD for every
/// program it starts, then runs a bash script several times; that script runs a few programs.
/// Dozens of processes, each with the ignore: the summary must read as one cause.
#[test]
fn a_bash_trap_over_a_tree_of_dozens_is_one_cause_first() {
    let d = Dir::new("bash_tree");
    d.write("lib.sh", "# deploy helpers\ntrap '' CHLD\n");
    let main = d.write(
        "deploy.sh",
        ". ./lib.sh\nfor i in 1 2 3 4 5 6; do\n    ./step.sh\ndone\n",
    );
    let step = d.write(
        "step.sh",
        "#!/bin/bash\n/bin/true\nenv true\nreadlink -f . >/dev/null\nsleep 0\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = d.sigaudit().arg("bash").arg(&main).run().code(0);
    let lines = summary_lines(&run);
    // The cause leads: the shell, the first command it started with the ignore, and the tree
    // folded under it, in a few lines.
    assert!(
        lines[0].contains(", 1 root cause (") && lines[0].ends_with(" processes audited):"),
        "{run}"
    );
    assert!(
        lines[1].contains(" bash (bash ")
            && lines[1].ends_with("deploy.sh): SIGCHLD ignored in 6 children it starts [logged]"),
        "{run}"
    );
    assert_eq!(
        lines[2],
        format!(
            "      where: {}:3 in main, the first command run with it",
            main.display()
        ),
        "{run}"
    );
    let folded = lines
        .iter()
        .find(|l| l.starts_with("      inherited by "))
        .unwrap_or_else(|| panic!("no folded tree\n{run}"));
    let count: usize = folded["      inherited by ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 30, "{run}");
    for program in ["bash", "true", "env", "readlink", "sleep"] {
        assert!(folded.contains(program), "{program}: {folded}\n{run}");
    }
    assert!(lines.len() <= 6, "{run}");
    // --json keeps every event.
    let run = d
        .sigaudit()
        .arg("--json")
        .arg("--quiet")
        .arg("bash")
        .arg(&main)
        .run()
        .code(0);
    assert!(records(&run.stderr).len() > 2 * count, "{run}");
}

const MODULE: &str = "package Ignorer;
use strict;
$SIG{CHLD} = 'IGNORE';
sub run_loop { local $SIG{CHLD} = 'IGNORE'; return system('sh', '-c', 'exit 3') }
1;
";

#[test]
fn perl_ignores_are_blamed_on_the_module_and_line() {
    let d = Dir::new("perl_where");
    std::fs::create_dir_all(d.join("lib")).unwrap();
    d.write("lib/Ignorer.pm", MODULE);
    d.write(
        "main.pl",
        "use lib 'lib';\nuse Ignorer;\nprint 'status=', Ignorer::run_loop(), \"\\n\";\n",
    );
    let run = d.sigaudit().args(["perl", "main.pl"]).run().code(0);
    assert_eq!(run.field("status"), "-1", "{run}");
    let summary = run.summary();
    assert!(
        summary.contains("      where: lib/Ignorer.pm:3 in require Ignorer.pm\n"),
        "{run}"
    );
    assert!(
        summary.contains("      where: lib/Ignorer.pm:4 in Ignorer::run_loop\n"),
        "{run}"
    );
    assert!(!summary.contains("Perl_rsignal"), "{run}");
    assert!(
        summary.contains("waitpid() failed with ECHILD in pid "),
        "{run}"
    );
    // Vetoed, system() gets the real status.
    let run = d
        .sigaudit()
        .args(["--veto", "perl", "main.pl"])
        .run()
        .code(0);
    assert_eq!(run.field("status"), "768", "{run}");
}

#[test]
fn a_forked_child_is_shown_forked_from_its_parent() {
    let d = Dir::new("forked_child");
    d.write(
        "server.pl",
        "my $pid = fork();\nif ($pid == 0) {\n    $SIG{CHLD} = 'IGNORE';\n    exit 0;\n}\nwaitpid($pid, 0);\nprint \"parent=$$\\n\";\n",
    );
    let run = d.sigaudit().args(["perl", "server.pl"]).run().code(0);
    let parent = run.field("parent");
    let summary = run.summary();
    assert!(
        summary.contains(&format!(
            " perl (forked from pid {parent}): SIGCHLD ignored via sigaction() [logged]\n      where: server.pl:3 in (main)\n"
        )),
        "{run}"
    );
    assert!(!summary.contains("perl server.pl"), "{run}");
    // The readable record says it too.
    run.stderr_has(&format!("(perl, forked from pid {parent}) SIGCHLD ignored"));
}
