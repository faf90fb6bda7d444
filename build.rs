//! Links GCC's unwinder statically, and the library without the C start files.
//!
//! The library is `#![no_std]`, so nothing asks for an unwinder but our own stack capture
//! (`_Unwind_Backtrace`). As a shared dependency, libgcc_s.so.1 would add about 100 µs to every
//! exec of every audited process (its constructor runs CPUID, which a hypervisor traps), so the
//! same unwinder is linked from GCC's static archive, libgcc_eh.a: only the parts we call end up
//! in the library, and their symbols stay local (the cdylib exports only our hooks). Without
//! libgcc_eh.a (a toolchain other than GCC's) the shared libgcc_s is linked instead.
//!
//! `-nostartfiles` leaves out crti/crtbeginS/crtendS: they only register destructors and
//! transactional-memory clones, which this library has none of, and cost four weak imports
//! (`__cxa_finalize`, `_ITM_*`, `__gmon_start__`) that the loader looks up on every exec. Our
//! constructor is an `.init_array` entry, which the loader runs without them.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
    // Never unloaded: other objects' calls are bound to our hooks, and libc keeps our fork
    // handler (see init.rs), so a dlclose() must not unmap us.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // libc itself (the `libc` crate leaves that to std when its `std` feature is on, as it is in
    // a workspace build with the command): so that the loader loads it for us and checks the
    // versions of what we import from it.
    println!("cargo:rustc-link-lib=dylib=c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let archive = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.is_absolute() && path.exists());
    match archive.as_deref().and_then(|a| a.parent()) {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=gcc_eh");
        }
        None => {
            println!("cargo:warning=no libgcc_eh.a from {cc}; linking libgcc_s dynamically");
            println!("cargo:rustc-link-lib=dylib=gcc_s");
        }
    }
}
