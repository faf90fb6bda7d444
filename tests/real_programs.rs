//! Programs we did not write: interpreters and everyday tools that spawn children, run under the
//! library. In log mode what they print (stdout and stderr) and their exit status are exactly
//! what they are without it; in veto mode too, except where a program has the SIGCHLD bug, which
//! veto mode fixes (Perl's `system` returns -1 when SIGCHLD is ignored; CPython's subprocess
//! reports exit status 0). A tool that is not installed is skipped, and said so.
//!
//! Run with `--nocapture` to see the results as a markdown table.

mod common;

use common::{Dir, Run, parse_events, s};
use std::path::{Path, PathBuf};

struct Case {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// What veto mode prints instead, where the program has the bug; `None`: the same as bare.
    veto_fixes: Option<&'static str>,
}

fn installed(tool: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v \"$1\"", "sh", tool])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && p.is_absolute()).then_some(p)
}

fn case(
    name: &'static str,
    program: Option<PathBuf>,
    args: &[&str],
    veto_fixes: Option<&'static str>,
) -> Option<Case> {
    let Some(program) = program else {
        eprintln!("skipped {name}: not installed");
        return None;
    };
    Some(Case {
        name,
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        veto_fixes,
    })
}

fn cases() -> Vec<Case> {
    let perl = installed("perl");
    let py = common::pythons::path_python3().map(|p| p.exe);
    let bash = installed("bash");
    let sh = installed("sh");
    let node = installed("node");
    [
        case(
            "perl system() with SIGCHLD ignored",
            perl.clone(),
            &["-e", r#"$SIG{CHLD}="IGNORE"; print system("false"), "\n""#],
            Some("256\n"),
        ),
        case(
            "perl fork/waitpid with SIGCHLD ignored",
            perl.clone(),
            &[
                "-e",
                r#"$SIG{CHLD}="IGNORE"; my $p = fork; exit 3 unless $p; waitpid($p, 0); print $? == -1 ? "lost" : $? >> 8, "\n""#,
            ],
            Some("3\n"),
        ),
        case(
            "perl system(), backticks",
            perl,
            &["-e", r#"print system("sh", "-c", "exit 2"), " ", `echo hi`"#],
            None,
        ),
        case(
            "python3 subprocess with SIGCHLD ignored",
            py.clone(),
            &[
                "-c",
                "import signal, subprocess\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\nprint(subprocess.run(['sh', '-c', 'exit 3']).returncode)",
            ],
            Some("3\n"),
        ),
        case(
            "python3 subprocess, os.system",
            py.clone(),
            &[
                "-c",
                "import os, subprocess\nprint(subprocess.run(['sh', '-c', 'exit 3']).returncode, subprocess.check_output(['echo', 'hi']), os.waitstatus_to_exitcode(os.system('exit 4')))",
            ],
            None,
        ),
        case(
            "python3 multiprocessing pool",
            py,
            &[
                "-c",
                "from multiprocessing import Pool\nif __name__ == '__main__':\n    with Pool(2) as p:\n        print(p.map(abs, [-1, -2, -3]))",
            ],
            None,
        ),
        case(
            "bash pipeline, PIPESTATUS",
            bash.clone(),
            &[
                "-c",
                r#"seq 1 2000 | sort -rn | tail -1; false | true; echo "${PIPESTATUS[@]}"; (exit 7); echo $?"#,
            ],
            None,
        ),
        case(
            "bash with trap '' CHLD",
            bash.clone(),
            &["-c", r#"trap '' CHLD; sh -c 'exit 5'; echo $?; sleep 0.01 & wait $!; echo $?"#],
            None,
        ),
        case(
            "sh: subshells, pipes, $?",
            sh.clone(),
            &["-c", r#"false; echo $?; (exit 7); echo $?; echo x | cat; echo $(echo sub)"#],
            None,
        ),
        case(
            "make -j2, a failing recipe",
            installed("make"),
            &["-s", "-j2", "-k", "all", "fail"],
            None,
        ),
        case(
            "git init, commit, log",
            sh.clone(),
            &[
                "-c",
                "command -v git >/dev/null || { echo no git; exit 0; }; rm -rf repo && git init -q repo && git -C repo -c user.name=t -c user.email=t@t commit -q --allow-empty -m first && git -C repo log --format=%s",
            ],
            None,
        ),
        case(
            "find -exec",
            sh.clone(),
            &["-c", r"find . -name '*.txt' -exec cat {} \; | sort; find . -name '*.txt' -exec false {} +; echo $?"],
            None,
        ),
        case(
            "xargs",
            sh,
            &["-c", r"printf 'a b c' | xargs -n1 echo; printf '0\n1\n' | xargs -n1 sh -c 'exit $0'; echo $?"],
            None,
        ),
        case(
            "node child_process",
            node,
            &[
                "-e",
                "const cp = require('child_process'); console.log(cp.spawnSync('sh', ['-c', 'exit 4']).status, cp.execSync('echo hi').toString().trim()); cp.exec('exit 6', (e) => console.log(e.code));",
            ],
            None,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn setup(dir: &Dir) {
    dir.write("a.txt", "alpha\n");
    dir.write("b.txt", "beta\n");
    dir.write(
        "Makefile",
        // `one` and `two` run in parallel under -j2; each writes its own file and `all` prints
        // them in order, so the output does not depend on which job finished first.
        "all: one two\n\t@cat one.out two.out\none:\n\t@echo one > one.out; sh -c 'exit 0'\ntwo:\n\t@echo two | cat > two.out\nfail:\n\t@sh -c 'exit 3'\n",
    );
}

fn run(dir: &Dir, c: &Case, mode: Option<&str>, events: &Path) -> Run {
    let mut cmd = dir.cmd(&c.program).args(&c.args);
    if let Some(mode) = mode {
        cmd = cmd
            .preload()
            .env("SIGAUDIT_MODE", mode)
            .env("SIGAUDIT_FORMAT", "json")
            .env("SIGAUDIT_OUTPUT", events);
    }
    cmd.run()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").replace('|', "\\|")
}

#[test]
fn everyday_programs_are_unchanged_in_log_mode_and_fixed_by_veto() {
    let dir = Dir::new("real-programs");
    setup(&dir);
    common::lib();
    let mut table = vec![
        "| program | without the library | log mode | veto mode | events (log) |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for (i, c) in cases().iter().enumerate() {
        let bare = run(&dir, c, None, Path::new(""));
        let log_events = dir.join(&format!("log-{i}.%p"));
        let log = run(&dir, c, Some("log"), &log_events);
        let veto = run(&dir, c, Some("veto"), &dir.join(&format!("veto-{i}.%p")));

        // Log mode: byte for byte what the program does without us.
        assert_eq!(log.stdout, bare.stdout, "{}: stdout\n{log}\n{bare}", c.name);
        assert_eq!(log.stderr, bare.stderr, "{}: stderr\n{log}\n{bare}", c.name);
        assert_eq!(log.status.code(), bare.status.code(), "{}\n{log}", c.name);

        // Veto mode: the same, or fixed.
        match c.veto_fixes {
            Some(fixed) => {
                assert_ne!(bare.stdout, fixed, "{}: no bug to fix?\n{bare}", c.name);
                assert_eq!(veto.stdout, fixed, "{}: not fixed by veto\n{veto}", c.name);
            }
            None => assert_eq!(veto.stdout, bare.stdout, "{}: veto\n{veto}", c.name),
        }
        assert_eq!(veto.stderr, bare.stderr, "{}: stderr\n{veto}", c.name);
        assert_eq!(veto.status.code(), bare.status.code(), "{}\n{veto}", c.name);

        // What log mode reported, from every process of the run.
        let prefix = format!("log-{i}.");
        let mut kinds: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&dir.path).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                for ev in parse_events(&text).unwrap_or_else(|e| panic!("{e}")) {
                    kinds.push(format!("{} {}", s(&ev, "event"), s(&ev, "via")));
                }
            }
        }
        kinds.sort();
        kinds.dedup();
        if c.veto_fixes.is_some() {
            assert!(
                kinds.iter().any(|k| k.starts_with("ignore ")),
                "{}: the ignore was not reported: {kinds:?}",
                c.name
            );
        }
        table.push(format!(
            "| {} | `{}` | same | {} | {} |",
            c.name,
            first_line(&bare.stdout),
            match c.veto_fixes {
                Some(_) => format!("`{}` (fixed)", first_line(&veto.stdout)),
                None => "same".into(),
            },
            if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            }
        ));
    }
    eprintln!("{}", table.join("\n"));
}
