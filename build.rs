//! Links GCC's unwinder statically instead of depending on libgcc_s.so.1.
//!
//! Rust's standard library asks the linker for `-lgcc_s`. As a shared dependency, libgcc_s adds
//! about 90 µs to every exec of every audited process (its constructor runs CPUID, which a
//! hypervisor traps). GCC ships the same unwinder as the static archive libgcc_eh.a, so we put a
//! folder first on the library path in which `libgcc_s.a` is that archive: the linker takes it
//! for `-lgcc_s`, and the unwinder becomes part of our library (its symbols stay local: the
//! cdylib exports only our hooks). Without libgcc_eh.a (a toolchain other than GCC's) the normal
//! shared dependency is kept.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        println!("cargo:warning=cannot run {cc}; linking libgcc_s dynamically");
        return;
    };
    let archive = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !archive.is_absolute() || !archive.exists() {
        println!("cargo:warning=no libgcc_eh.a from {cc}; linking libgcc_s dynamically");
        return;
    }
    let dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("static-unwinder");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-unwinder");
    let link = dir.join("libgcc_s.a");
    let _ = std::fs::remove_file(&link);
    std::fs::copy(&archive, &link).expect("copy libgcc_eh.a");
    println!("cargo:rustc-link-search=native={}", dir.display());
}
