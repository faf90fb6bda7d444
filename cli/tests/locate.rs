//! Finding the library: SIGAUDIT_LIB, next to the command, an installed PREFIX layout, and a
//! message saying where it looked when it is nowhere.

mod common;
use common::*;

/// Copies the command (and, if given, the library to `lib_at`) into a layout under `d`.
fn lay_out(d: &Dir, bin_at: &str, lib_at: Option<&str>) -> std::path::PathBuf {
    let bin = d.join(bin_at);
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(sigaudit(), &bin).unwrap();
    if let Some(lib_at) = lib_at {
        let l = d.join(lib_at);
        std::fs::create_dir_all(l.parent().unwrap()).unwrap();
        std::fs::copy(lib(), &l).unwrap();
    }
    bin
}

fn finds_a_working_library(d: &Dir, bin: &std::path::Path) {
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d.plain(bin).arg("./ignorer").run().code(0);
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    run.stderr_has("ignorer: SIGCHLD ignored via signal() [logged]");
}

#[test]
fn installed_prefix_layout() {
    let d = Dir::new("locate_prefix");
    let bin = lay_out(
        &d,
        "prefix/bin/sigaudit",
        Some("prefix/lib/sigaudit/libsigaudit.so"),
    );
    finds_a_working_library(&d, &bin);
}

#[test]
fn same_folder_layout() {
    let d = Dir::new("locate_same_folder");
    let bin = lay_out(&d, "tools/sigaudit", Some("tools/libsigaudit.so"));
    finds_a_working_library(&d, &bin);
}

#[test]
fn the_other_cargo_profile() {
    let d = Dir::new("locate_profile");
    let bin = lay_out(
        &d,
        "target/release/sigaudit",
        Some("target/debug/libsigaudit.so"),
    );
    finds_a_working_library(&d, &bin);
}

#[test]
fn sigaudit_lib_overrides() {
    let d = Dir::new("locate_env");
    let bin = lay_out(&d, "bin/sigaudit", None);
    let l = d.join("elsewhere/libsigaudit.so");
    std::fs::create_dir_all(l.parent().unwrap()).unwrap();
    std::fs::copy(lib(), &l).unwrap();
    d.cc("ignorer", "ignorer.c", &[]);
    d.plain(&bin)
        .env("SIGAUDIT_LIB", &l)
        .arg("./ignorer")
        .run()
        .code(0)
        .stderr_has("ignorer: SIGCHLD ignored via signal() [logged]");
    d.plain(&bin)
        .env("SIGAUDIT_LIB", d.join("nope.so"))
        .arg("true")
        .run()
        .code(125)
        .stderr_has("SIGAUDIT_LIB=")
        .stderr_has("nope.so");
}

#[test]
fn a_missing_library_says_where_it_looked_and_how_to_build_it() {
    let d = Dir::new("locate_missing");
    let bin = lay_out(&d, "bin/sigaudit", None);
    let run = d.plain(&bin).args(["sh", "-c", "echo ran"]).run().code(125);
    assert!(!run.stdout.contains("ran"), "{run}");
    let dir = d.path.canonicalize().unwrap();
    run.stderr_has(&format!("{}/bin/libsigaudit.so", dir.display()))
        .stderr_has(&format!("{}/lib/sigaudit/libsigaudit.so", dir.display()))
        .stderr_has("cargo build --release")
        .stderr_has("SIGAUDIT_LIB");
}
