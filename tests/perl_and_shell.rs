//! Perl and shell frames: the file, line and sub of the statement that ignored SIGCHLD and of its
//! callers, as the records give them (`script`), and the reason when there are none
//! (`script_missing`). Perl is Debian's `/usr/bin/perl` (5.36, threaded, libperl linked into the
//! executable); bash is 5.2.

mod common;

use common::{Dir, of_kind, s};
use serde_json::Value;

/// `(file, line, function)` of each script frame, innermost first.
fn frames(ev: &Value) -> Vec<(String, i64, String)> {
    ev["script"]
        .as_array()
        .unwrap_or_else(|| panic!("no script frames: {ev}"))
        .iter()
        .map(|f| {
            (
                s(f, "file").to_string(),
                f["line"].as_i64().unwrap_or(-1),
                s(f, "function").to_string(),
            )
        })
        .collect()
}

fn frame(file: &str, line: i64, function: &str) -> (String, i64, String) {
    (file.to_string(), line, function.to_string())
}

/// A module that ignores SIGCHLD at file scope (so while `use` compiles the main script), and
/// a sub that does it again with `local`, then calls `system()`.
const MODULE: &str = "package Ignorer;
use strict;
$SIG{CHLD} = 'IGNORE';
sub run_loop {
    local $SIG{CHLD} = 'IGNORE';
    return system('sh', '-c', 'exit 3');
}
1;
";

const MAIN: &str = "use lib 'lib';
use Ignorer;
sub handler { my $r = Ignorer::run_loop(); print \"status=$r\\n\"; }
handler();
eval { $SIG{CHLD} = 'IGNORE'; 1 } or die;
";

fn perl_app(d: &Dir) {
    std::fs::create_dir_all(d.join("lib")).unwrap();
    d.write("lib/Ignorer.pm", MODULE);
    d.write("main.pl", MAIN);
}

#[test]
fn perl_frames_name_module_sub_and_caller() {
    let d = Dir::new("perl_frames");
    perl_app(&d);
    let run = d.cmd("perl").arg("main.pl").audit_json().run().success();
    // The bug is there: system() lost the status.
    assert!(run.stdout.contains("status=-1"), "{run}");
    let events = run.events();
    let ignores = of_kind(&events, "ignore");
    assert!(ignores.len() >= 3, "{run}");
    for ev in &events {
        assert_eq!(ev["script_missing"], Value::Null, "{ev}");
        assert_eq!(ev["forked_from"], Value::Null, "{ev}");
    }
    // At compile time: the module's file scope, loaded by `use` (a BEGIN block) in main.pl.
    assert_eq!(
        frames(ignores[0])[..2],
        [
            frame("lib/Ignorer.pm", 3, "require Ignorer.pm"),
            frame("main.pl", 2, "main::BEGIN"),
        ],
        "{run}"
    );
    assert_eq!(frames(ignores[0]).last().unwrap().2, "(main)");
    // `local` in a sub called from a sub called from the main script.
    assert_eq!(
        frames(ignores[1]),
        [
            frame("lib/Ignorer.pm", 5, "Ignorer::run_loop"),
            frame("main.pl", 3, "main::handler"),
            frame("main.pl", 4, "(main)"),
        ],
        "{run}"
    );
    for f in &events[0]["script"].as_array().unwrap()[..] {
        assert_eq!(s(f, "language"), "perl");
    }
    // Inside eval.
    let last = ignores.last().unwrap();
    assert_eq!(
        frames(last),
        [frame("main.pl", 5, "(eval)"), frame("main.pl", 5, "(main)")],
        "{run}"
    );
    // The failed wait points back to the sub's line.
    let echild = of_kind(&events, "echild");
    assert!(!echild.is_empty(), "{run}");
    let cause = &echild[0]["cause"];
    assert_eq!(s(&cause["script"][0], "file"), "lib/Ignorer.pm", "{run}");
    assert_eq!(cause["script"][0]["line"], 5, "{run}");
}

#[test]
fn perl_veto_gives_system_the_real_status() {
    let d = Dir::new("perl_veto");
    perl_app(&d);
    let run = d
        .cmd("perl")
        .arg("main.pl")
        .audit_json()
        .env("SIGAUDIT_MODE", "veto")
        .run()
        .success();
    assert!(run.stdout.contains("status=768"), "{run}");
    let events = run.events();
    assert!(of_kind(&events, "echild").is_empty(), "{run}");
    assert_eq!(s(of_kind(&events, "ignore")[0], "action"), "vetoed");
}

#[test]
fn a_forked_perl_child_says_so_and_has_its_frames() {
    let d = Dir::new("perl_fork");
    d.write(
        "fork.pl",
        "my $pid = fork();
if ($pid == 0) {
    $SIG{CHLD} = 'IGNORE';
    exit 0;
}
waitpid($pid, 0);
print \"parent=$$\\n\";
",
    );
    let run = d.cmd("perl").arg("fork.pl").audit_json().run().success();
    let parent: i64 = run.field("parent").parse().unwrap();
    let events = run.events();
    let ignore = of_kind(&events, "ignore");
    assert_eq!(ignore.len(), 1, "{run}");
    assert_eq!(ignore[0]["forked_from"], parent, "{run}");
    assert_ne!(ignore[0]["pid"], parent, "{run}");
    assert_eq!(frames(ignore[0]), [frame("fork.pl", 3, "(main)")], "{run}");
}

/// A program that presents itself as Perl (it exports Perl's version numbers) but is not one
/// this library has a layout for: the event says why there are no Perl frames, and nothing
/// is read from it.
#[test]
fn a_perl_of_unknown_layout_gets_the_reason_not_a_crash() {
    let d = Dir::new("perl_unknown");
    let cases = [
        (
            "-DVERSION=40 -DTHREADED -DSIZE=4000",
            "unsupported-version",
            "Perl 5.40.1: no Perl frames (supported: 5.36, threaded)",
        ),
        (
            "-DVERSION=36 -DTHREADED -DSIZE=4000",
            "unknown-layout",
            "Perl 5.36.1: no Perl frames (its interpreter structure is not the size of the layout checked for 5.36, threaded)",
        ),
        (
            "-DVERSION=36 -DSIZE=3768",
            "unsupported-build",
            "Perl 5.36.1: no Perl frames (a build without threads; supported: 5.36, threaded)",
        ),
    ];
    for (i, (defines, reason, text)) in cases.into_iter().enumerate() {
        let mut args = vec!["-rdynamic"];
        args.extend(defines.split(' '));
        let exe = d.cc(&format!("fakeperl{i}"), &["fakeperl.c"], &args);
        let run = d.cmd(&exe).audit_json().run().success();
        let events = run.events();
        let ignore = of_kind(&events, "ignore");
        assert_eq!(ignore.len(), 1, "{run}");
        let missing = &ignore[0]["script_missing"];
        assert_eq!(s(missing, "language"), "perl", "{run}");
        let version = format!("5.{}.1", &defines[10..12]);
        assert_eq!(s(missing, "version"), version, "{run}");
        assert_eq!(s(missing, "reason"), reason, "{run}");
        assert_eq!(s(missing, "text"), text, "{run}");
        assert_eq!(ignore[0]["script"], serde_json::json!([]), "{run}");
    }
}

/// bash applies `trap '' CHLD` in each child it starts (its own disposition does not change):
/// the child's event names the script, line and function of the command it runs, read from
/// bash's BASH_SOURCE, BASH_LINENO and FUNCNAME.
#[test]
fn bash_frames_name_the_command_and_its_callers() {
    let d = Dir::new("bash_frames");
    d.write(
        "lib.sh",
        "# helpers
run_it() {
    sleep 0
}
trap '' CHLD
",
    );
    d.write(
        "main.sh",
        ". ./lib.sh
run_it
true
/bin/true
",
    );
    let run = d.cmd("bash").arg("main.sh").audit_json().run().success();
    let events = run.events();
    let ignores = of_kind(&events, "ignore");
    assert_eq!(ignores.len(), 2, "{run}");
    assert_eq!(
        frames(ignores[0]),
        [frame("./lib.sh", 3, "run_it"), frame("main.sh", 2, "main")],
        "{run}"
    );
    assert_eq!(s(&ignores[0]["script"][0], "language"), "shell");
    assert_eq!(frames(ignores[1]), [frame("main.sh", 4, "main")], "{run}");
    // Both in the child bash forked for the command, before it execs (the builtin `true` on
    // line 3 starts none).
    for ev in &ignores {
        assert!(ev["forked_from"].is_i64(), "{run}");
    }
    for ev in of_kind(&events, "inherited") {
        assert_eq!(ev["script_missing"], Value::Null, "{run}");
    }
}

/// dash exports nothing: the event says so, with the script's name from the command line.
/// (dash keeps SIGCHLD for itself whatever the trap says, so SIGPIPE is the signal here.)
#[test]
fn dash_gives_the_script_name_and_says_why() {
    let Some(dash) = common::tool("dash") else {
        return;
    };
    let d = Dir::new("dash");
    d.write("deploy.sh", "trap '' PIPE\n/bin/true\n");
    let run = d
        .cmd(&dash)
        .arg("deploy.sh")
        .audit_json()
        .env("SIGAUDIT_WATCH", "PIPE")
        .run()
        .success();
    let events = run.events();
    let ignore = of_kind(&events, "ignore");
    assert!(!ignore.is_empty(), "{run}");
    let missing = &ignore[0]["script_missing"];
    assert_eq!(s(missing, "language"), "shell", "{run}");
    assert_eq!(s(missing, "reason"), "no-state", "{run}");
    assert_eq!(
        s(missing, "text"),
        "dash runs shell script deploy.sh; its line is unknown (the shell exports no line numbers)",
        "{run}"
    );
}
