//! A look at COMMAND before it runs, for what would make the audit silently see nothing: a
//! statically linked program (no dynamic loader, so no `LD_PRELOAD`) or a setuid/setgid one
//! (glibc ignores `LD_PRELOAD` for it). Without this note, such a run would end in a summary
//! that says "clean" although nothing was watched.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why the library will not be loaded into `program`, when that can be told from its file.
/// Under the supervisor (`supervised`) a static program is seen all the same, and a setuid one
/// runs without its privilege.
pub fn unaudited(program: &OsStr, supervised: bool) -> Option<String> {
    let path = resolve(program)?;
    let meta = std::fs::metadata(&path).ok()?;
    let shown = path.display();
    let setuid = meta.permissions().mode() & 0o6000 != 0;
    if supervised {
        return setuid.then(|| {
            format!("{shown} is setuid or setgid: under --supervise it runs without its privilege")
        });
    }
    if setuid {
        return Some(format!(
            "{shown} is setuid or setgid: glibc ignores LD_PRELOAD for it, so what it does itself \
             is not seen (programs it starts are, unless they are setuid too)"
        ));
    }
    if is_static_elf(&path) {
        return Some(format!(
            "{shown} is statically linked: no library can be preloaded into it, so what it does \
             itself is not seen (dynamically linked programs it starts are)"
        ));
    }
    None
}

/// The file `program` names: itself when it has a `/`, else the first executable in `PATH`.
fn resolve(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A 64-bit little-endian ELF executable (the only kind the library is built for) with no
/// `PT_INTERP` program header: nothing runs the dynamic loader. Program headers sit near the
/// start of the file, so only its first 64 KiB are read.
fn is_static_elf(path: &Path) -> bool {
    let mut head = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if file.take(64 * 1024).read_to_end(&mut head).is_err() {
        return false;
    }
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        head.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    const PT_INTERP: u32 = 3;
    if head.get(..6) != Some(b"\x7fELF\x02\x01") || !matches!(u16_at(16), Some(ET_EXEC | ET_DYN)) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let types: Option<Vec<u32>> = (0..phnum as usize)
        .map(|i| u32_at(phoff as usize + i * phentsize as usize))
        .collect();
    // Headers beyond what was read: not sure, so say nothing.
    types.is_some_and(|t| !t.is_empty() && !t.contains(&PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_programs_are_audited() {
        assert_eq!(unaudited(OsStr::new("sh"), false), None);
        assert_eq!(unaudited(OsStr::new("/bin/true"), false), None);
        assert_eq!(unaudited(OsStr::new("no-such-program-here"), false), None);
        assert_eq!(unaudited(OsStr::new("sh"), true), None);
    }
}
