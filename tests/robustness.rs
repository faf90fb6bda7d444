//! Bad input gets a clear answer and loses nothing; the library never endangers its host.
//!
//! - Every `SIGAUDIT_` variable with a garbage, empty, huge (100 KB) and non-UTF-8 value: one
//!   diagnostic naming the variable and what is used instead, and the program unaffected.
//! - Output that cannot go where it was asked (a missing folder, a symlink, a full disk, a FIFO
//!   with no reader, a folder the user cannot write, a closed stderr): the failure is stated and
//!   the event goes to stderr, or nothing is written anywhere it must not be; the program's
//!   stdout and exit status are unchanged.
//! - Security: in secure-execution mode (a setuid program) no file named by the environment is
//!   opened and no weakening setting is taken; output files are private; the library cannot run
//!   a shell or another program.

mod common;

use common::{Dir, Run, of_kind, s};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The driver with the `signal` snippet: ignores SIGCHLD, forks, waits; prints what it saw.
fn driver(dir: &Dir) -> PathBuf {
    dir.cc("driver", &["driver.c", "via/signal.c"], &[])
}

/// What the driver prints in log mode with no setting at all.
fn reference(dir: &Dir, program: &Path) -> Run {
    let run = dir.cmd(program).preload().run().success();
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    run
}

/// The library's own warnings (not event lines) that mention `var`.
fn diagnostics<'a>(run: &'a Run, var: &str) -> Vec<&'a str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("sigaudit: pid ") && l.contains(": warn: ") && l.contains(var))
        .collect()
}

#[test]
fn every_variable_with_a_bad_value_gets_one_diagnostic_and_the_program_runs_on() {
    let dir = Dir::new("bad-values");
    let program = driver(&dir);
    let reference = reference(&dir, &program);
    let huge = OsString::from("x".repeat(100_000));
    let values: [(&str, OsString); 4] = [
        ("garbage", OsString::from("no such thing!")),
        ("empty", OsString::new()),
        ("huge", huge),
        ("non-UTF-8", OsString::from_vec(b"\xff\xfe\x80bad".to_vec())),
    ];
    for var in [
        "SIGAUDIT_MODE",
        "SIGAUDIT_WATCH",
        "SIGAUDIT_FORMAT",
        "SIGAUDIT_OUTPUT",
        "SIGAUDIT_LOG",
    ] {
        for (what, value) in &values {
            let run = dir.cmd(&program).preload().env(var, value).run().success();
            // The program sees what it sees with no setting: log mode, its own results.
            assert_eq!(run.stdout, reference.stdout, "{var} {what}\n{run}");
            // A garbage or non-UTF-8 output path is a file name like any other.
            let names_a_file = var == "SIGAUDIT_OUTPUT" && matches!(*what, "garbage" | "non-UTF-8");
            let said = diagnostics(&run, var);
            if names_a_file {
                assert!(said.is_empty(), "{var} {what}\n{run}");
                assert!(dir.path.join(OsStr::from_bytes(value.as_bytes())).exists());
                continue;
            }
            assert_eq!(said.len(), 1, "{var} {what}: one diagnostic\n{run}");
            assert!(
                said[0].contains("; using "),
                "{var} {what}: says what is used\n{run}"
            );
            assert!(
                said[0].len() < 400,
                "{var} {what}: a huge value is cut\n{run}"
            );
            // The event itself is still reported, on stderr, in text.
            assert!(
                run.stderr.contains("SIGCHLD ignored via signal()"),
                "{var} {what}\n{run}"
            );
        }
    }
}

/// Runs the driver with `SIGAUDIT_OUTPUT=output` and checks the program was unaffected and the
/// failure was stated once, with the events on stderr instead.
fn assert_falls_back_to_stderr(dir: &Dir, program: &Path, output: &OsStr, why: &str) -> Run {
    let reference = reference(dir, program);
    let run = dir
        .cmd(program)
        .audit_json()
        .env("SIGAUDIT_OUTPUT", output)
        .run()
        .success();
    assert_eq!(run.stdout, reference.stdout, "{run}");
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("SIGAUDIT_OUTPUT"))
        .collect();
    assert_eq!(said.len(), 1, "the failure is stated once\n{run}");
    assert!(
        said[0].contains(why) && said[0].ends_with("reporting on stderr instead"),
        "{run}"
    );
    let events = run.events();
    assert_eq!(of_kind(&events, "ignore").len(), 1, "{run}");
    assert_eq!(of_kind(&events, "echild").len(), 1, "{run}");
    run
}

#[test]
fn output_in_a_missing_folder() {
    let dir = Dir::new("output-missing");
    let program = driver(&dir);
    let path = dir.join("no/such/folder/events.log");
    assert_falls_back_to_stderr(&dir, &program, path.as_os_str(), "ENOENT");
}

#[test]
fn output_through_a_symlink_is_never_followed() {
    let dir = Dir::new("output-symlink");
    let program = driver(&dir);
    let target = dir.join("target.txt");
    std::fs::write(&target, "precious\n").unwrap();
    let link = dir.join("events.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_falls_back_to_stderr(&dir, &program, link.as_os_str(), "ELOOP");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    // A dangling one creates nothing either.
    let dangling = dir.join("dangling.log");
    std::os::unix::fs::symlink(dir.join("made-by-us"), &dangling).unwrap();
    assert_falls_back_to_stderr(&dir, &program, dangling.as_os_str(), "ELOOP");
    assert!(!dir.join("made-by-us").exists());
}

#[test]
fn output_on_a_full_disk() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let dir = Dir::new("output-full");
    let program = driver(&dir);
    // See: events written to a full disk were lost without a word; fixed in report.rs (emit).
    assert_falls_back_to_stderr(&dir, &program, OsStr::new("/dev/full"), "ENOSPC");
}

#[test]
fn output_to_a_fifo_with_no_reader_does_not_hang() {
    let dir = Dir::new("output-fifo");
    let program = driver(&dir);
    let fifo = dir.join("events.fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // See: opening a FIFO for writing blocks until a reader comes; fixed with O_NONBLOCK.
    assert_falls_back_to_stderr(&dir, &program, fifo.as_os_str(), "SIGAUDIT_OUTPUT");
}

#[test]
fn output_in_a_folder_the_user_cannot_write() {
    let dir = Dir::new("output-unwritable");
    let program = driver(&dir);
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let path = locked.join("events.log");
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let reference = reference(&dir, &program);
    let mut cmd = dir.cmd(&program).audit_json().env("SIGAUDIT_OUTPUT", &path);
    if root {
        // Root writes anywhere: run as nobody instead (the program and the library are
        // readable by all).
        // SAFETY: setgid/setuid are async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.command.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let run = cmd.run().success();
    assert_eq!(run.stdout, reference.stdout, "{run}");
    assert!(
        run.stderr.contains("cannot open SIGAUDIT_OUTPUT ") && run.stderr.contains("EACCES"),
        "{run}"
    );
    assert_eq!(of_kind(&run.events(), "ignore").len(), 1, "{run}");
    assert!(!path.exists());
}

#[test]
fn a_closed_stderr_changes_nothing_for_the_program() {
    let dir = Dir::new("closed-stderr");
    let program = driver(&dir);
    let reference = reference(&dir, &program);
    let run = dir
        .cmd(&program)
        .preload()
        .start_with_stderr_closed()
        .run()
        .success();
    assert_eq!(run.stdout, reference.stdout, "{run}");
}

#[test]
fn an_event_never_lands_in_a_file_that_took_descriptor_2() {
    // See: with stderr closed, the program's next file gets descriptor 2, and events were
    // written into it; fixed in report.rs (to_stderr).
    let dir = Dir::new("stderr-reuse");
    let program = dir.cc("reuse", &["reuse.c"], &[]);
    let run = dir.cmd(&program).arg("close").preload().run().success();
    assert_eq!(
        run.stdout, "fd=2 contents=data\n",
        "closed by the program\n{run}"
    );
    let run = dir
        .cmd(&program)
        .preload()
        .start_with_stderr_closed()
        .run()
        .success();
    assert_eq!(run.stdout, "fd=2 contents=data\n", "started closed\n{run}");
    // Sent to a log file opened for appending, stderr still gets events.
    let run = dir
        .cmd("sh")
        .args([
            "-c",
            "exec 2>>appended.log; exec \"$0\"",
            program.to_str().unwrap(),
        ])
        .preload()
        .run()
        .success();
    let log = std::fs::read_to_string(dir.join("appended.log")).unwrap();
    assert!(log.contains("SIGCHLD ignored via signal()"), "{run}\n{log}");
}

#[test]
fn output_files_are_private_whatever_the_umask() {
    let dir = Dir::new("output-mode");
    let program = driver(&dir);
    let mut cmd = dir
        .cmd(&program)
        .preload()
        .env("SIGAUDIT_OUTPUT", dir.join("events.%p"));
    // SAFETY: umask is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    cmd.run().success();
    let made: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("events."))
        .collect();
    assert_eq!(made.len(), 1);
    let mode = made[0].metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn the_library_cannot_start_a_program_or_a_shell() {
    // Nothing from the environment reaches a shell: the library does not even import a way
    // to run one.
    let Some(imports) = common::library_imports() else {
        eprintln!("skipped: no nm");
        return;
    };
    for name in &imports {
        let name = name.as_str();
        assert!(
            !(name.starts_with("exec")
                || name.starts_with("posix_spawn")
                || ["system", "popen", "fork", "vfork", "clone", "dlopen"].contains(&name)),
            "the library imports {name}"
        );
    }
}

// ---- secure-execution mode -------------------------------------------------------------------

/// Runs `program` set-user-ID root as user nobody, with the library in a private
/// /etc/ld.so.preload: glibc ignores LD_PRELOAD paths for a setuid program, but loads what
/// /etc/ld.so.preload lists. The file exists only in a private mount namespace (an overlay on
/// /etc), so the machine's own /etc is never touched and nothing needs restoring. `None` when
/// this cannot be done here (not root, no unshare or setpriv, no overlayfs).
fn run_setuid_with_system_preload(dir: &Dir, program: &Path, env: &[(&str, &str)]) -> Option<Run> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!(
            "skipped: secure-execution test needs root (for a setuid file and a mount namespace)"
        );
        return None;
    }
    for tool in ["unshare", "setpriv", "mount"] {
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v \"$1\"", "sh", tool])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: no {tool}");
            return None;
        }
    }
    let suid = dir.join("suid-driver");
    std::fs::copy(program, &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let scratch = dir.join("overlay");
    std::fs::create_dir_all(&scratch).unwrap();
    // Positional arguments only: nothing is interpolated into the script.
    let script = r#"set -e
mount -t tmpfs sigaudit-test "$1"
mkdir "$1/upper" "$1/work"
printf '%s\n' "$2" > "$1/upper/ld.so.preload"
mount -t overlay sigaudit-test -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$3"
"#;
    let mut cmd = dir
        .cmd("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&scratch)
        .arg(common::lib())
        .arg(&suid);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let run = cmd.run();
    if !run.status.success() && !run.stdout.contains("wait=") {
        eprintln!("skipped: cannot set up a private /etc/ld.so.preload here\n{run}");
        return None;
    }
    Some(run)
}

#[test]
fn secure_execution_takes_no_file_and_no_veto_from_the_environment() {
    let dir = Dir::new("secure");
    let program = driver(&dir);
    let out = dir.join("secure-events.log");
    let Some(run) = run_setuid_with_system_preload(
        &dir,
        &program,
        &[
            ("SIGAUDIT_MODE", "veto"),
            ("SIGAUDIT_OUTPUT", out.to_str().unwrap()),
            ("SIGAUDIT_FORMAT", "json"),
        ],
    ) else {
        return;
    };
    let run = run.success();
    // The library was loaded (it reported), in log mode (the ignore went through) ...
    let events = run.events();
    let ignores = of_kind(&events, "ignore");
    assert_eq!(ignores.len(), 1, "{run}");
    assert_eq!(s(ignores[0], "action"), "logged", "{run}");
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    // ... said why it refused the settings ...
    assert!(
        diagnostics(&run, "SIGAUDIT_MODE")
            .iter()
            .any(|l| l.contains("secure-execution")),
        "{run}"
    );
    assert!(
        diagnostics(&run, "SIGAUDIT_OUTPUT")
            .iter()
            .any(|l| l.contains("never opened")),
        "{run}"
    );
    // ... and opened no file named by the environment.
    assert!(!out.exists(), "{run}");
    // The host's /etc is untouched.
    assert!(
        std::fs::read_to_string("/etc/ld.so.preload").map_or(true, |t| !t.contains("libsigaudit")),
        "the test leaked into the real /etc/ld.so.preload"
    );
}

/// See: with the library in /etc/ld.so.preload, a setuid program's reports gave its absolute code
/// and libc addresses, which the unprivileged caller cannot read from `/proc/PID/maps`: address
/// randomization of every setuid program was defeated. And the caller chose `:any` watches.
#[test]
fn secure_execution_withholds_addresses_and_refuses_any_watches() {
    let dir = Dir::new("secure-addresses");
    let program = driver(&dir);
    let Some(run) = run_setuid_with_system_preload(
        &dir,
        &program,
        &[
            ("SIGAUDIT_FORMAT", "json"),
            ("SIGAUDIT_WATCH", "CHLD,TERM:any"),
        ],
    ) else {
        return;
    };
    let run = run.success();
    let events = run.events();
    let ignores = of_kind(&events, "ignore");
    assert_eq!(ignores.len(), 1, "{run}");
    let frames = ignores[0]["backtrace"].as_array().unwrap();
    assert!(!frames.is_empty(), "{run}");
    for f in frames {
        assert!(f.get("addr").is_none(), "an address was given\n{run}");
    }
    // Module and offset are enough for `sigaudit symbolize`, and the caller is still named.
    assert!(
        s(&frames[0], "symbol").starts_with("ignore_sigchld+"),
        "{run}"
    );
    assert!(!s(&frames[0], "offset").is_empty(), "{run}");
    let reasons: Vec<&str> = ignores[0]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| s(n, "reason"))
        .collect();
    assert!(reasons.contains(&"secure-execution"), "{run}");
    // The echild cause's frame has no address either.
    let echild = of_kind(&events, "echild");
    assert_eq!(echild.len(), 1, "{run}");
    assert!(echild[0]["cause"]["native"].get("addr").is_none(), "{run}");
    assert!(
        diagnostics(&run, "SIGAUDIT_WATCH")
            .iter()
            .any(|l| l.contains(":any") && l.contains("secure-execution")),
        "{run}"
    );
    // In text, the frames show no address either.
    let run = run_setuid_with_system_preload(&dir, &program, &[])
        .unwrap()
        .success();
    let frame_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect();
    assert!(!frame_lines.is_empty(), "{run}");
    // "#0  ignore_sigchld+0x13 (/path/suid-driver+0x11ac)", not "#0  0x55d2... ignore_...".
    for line in frame_lines {
        let after = line.trim_start().trim_start_matches('#');
        let after = after
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        assert!(
            !after.starts_with("0x"),
            "an absolute address in {line:?}\n{run}"
        );
    }
}
