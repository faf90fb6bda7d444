//! With the `static_unwinder` feature, links libgcc_eh.a for `-lgcc_s` (what sigaudit did while it used std).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    if std::env::var_os("CARGO_FEATURE_STATIC_UNWINDER").is_none() {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .expect("run cc");
    let archive = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(archive.is_absolute(), "no libgcc_eh.a from {cc}");
    let dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("static-unwinder");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(&archive, dir.join("libgcc_s.a")).expect("copy libgcc_eh.a");
    println!("cargo:rustc-link-search=native={}", dir.display());
}
