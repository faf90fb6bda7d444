//! scripts/install and scripts/sigaudit, run from another folder. One test, since both need the
//! release build (the first run of either makes it).

mod common;
use common::*;

/// A release build from scratch (LTO, both packages) takes about a minute on 2 cores.
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[test]
fn install_then_run_from_anywhere() {
    let d = Dir::new("scripts");
    let install = root().join("scripts").join("install");
    let run = d.plain(&install).arg("--help").run().code(0);
    assert!(run.stdout.contains("--prefix"), "{run}");
    d.plain(&install)
        .arg("--bogus")
        .run()
        .code(2)
        .stderr_has("--bogus");

    // A relative prefix is taken from the current folder.
    // The first run of either script makes the release build.
    let run = d
        .plain(&install)
        .args(["--prefix", "staging"])
        .run_within(BUILD_TIMEOUT)
        .code(0);
    let prefix = d.join("staging");
    run.stdout_has(&format!("installed {}/bin/sigaudit", prefix.display()))
        .stdout_has(&format!(
            "installed {}/lib/sigaudit/libsigaudit.so",
            prefix.display()
        ));

    // The two installed files are all it takes.
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .plain(prefix.join("bin/sigaudit"))
        .args(["--veto", "./ignorer"])
        .run()
        .code(0);
    assert_eq!(run.field("wait"), "ok", "{run}");
    run.stderr_has("ignorer: SIGCHLD ignored via signal() [vetoed]");

    // scripts/sigaudit finds the checkout from anywhere, and builds nothing when up to date
    // (the first run may build: the sources of a working tree can have changed since install).
    let script = root().join("scripts").join("sigaudit");
    d.plain(&script)
        .args(["--", "true"])
        .run_within(BUILD_TIMEOUT)
        .code(0);
    let run = d
        .plain(&script)
        .args(["--", "sh", "-c", "exit 3"])
        .run()
        .code(3);
    assert_eq!(
        run.stderr,
        "sigaudit: clean run: no process ignored a watched signal (CHLD); 1 process audited\n"
    );
}
