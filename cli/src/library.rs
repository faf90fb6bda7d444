//! Finding `libsigaudit.so`: `SIGAUDIT_LIB`, else next to this program (a cargo target folder, or
//! an install that keeps both in one folder), else `PREFIX/lib/sigaudit/` for `PREFIX/bin/`, else
//! the other cargo profile's folder of the same checkout.

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "libsigaudit.so";
pub const ENV: &str = "SIGAUDIT_LIB";

/// The library's absolute path, or a message saying where we looked and what to do.
pub fn find() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&v);
        return match std::fs::canonicalize(&p) {
            Ok(abs) if abs.is_file() => usable(abs),
            Ok(_) => Err(format!("{ENV}={} is not a file", p.display())),
            Err(e) => Err(format!("{ENV}={}: {e}", p.display())),
        };
    }
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| format!("cannot tell where this program is ({e}); set {ENV}"))?;
    let tried = candidates(&exe);
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => usable(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        None => Err(format!(
            "cannot find {FILE_NAME}; looked for {}, and {ENV} is not set.\n\
             In a source checkout, build it with `cargo build --release` (or run scripts/sigaudit, \
             which builds what is missing); install it next to the command with scripts/install; \
             or set {ENV} to the library's path.",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Where the library may be for the program at `exe`, in order.
pub fn candidates(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = vec![dir.join(FILE_NAME)];
    if let Some(prefix) = dir.parent() {
        out.push(prefix.join("lib").join("sigaudit").join(FILE_NAME));
        // target/release/sigaudit next to target/debug/libsigaudit.so, and the other way round.
        let profile = dir.file_name().and_then(|n| n.to_str());
        let other = match profile {
            Some("release") => Some("debug"),
            Some("debug") => Some("release"),
            _ => None,
        };
        if let Some(other) = other {
            out.push(prefix.join(other).join(FILE_NAME));
        }
    }
    out
}

/// `LD_PRELOAD` separates entries with spaces and colons and has no way to quote them.
fn usable(p: PathBuf) -> Result<PathBuf, String> {
    let s = p.as_os_str().as_encoded_bytes();
    if s.iter().any(|&b| b == b':' || b.is_ascii_whitespace()) {
        return Err(format!(
            "{} cannot be preloaded: LD_PRELOAD cannot hold a path with a colon or a space; \
             move the library, or set {ENV} to a copy elsewhere",
            p.display()
        ));
    }
    Ok(p)
}

/// `LD_PRELOAD` for the command: the library first, then whatever was already there.
pub fn preload_value(lib: &Path, existing: Option<&std::ffi::OsStr>) -> std::ffi::OsString {
    let mut v = lib.as_os_str().to_owned();
    if let Some(old) = existing.filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_looked_at() {
        assert_eq!(
            candidates(Path::new("/src/sigaudit/target/release/sigaudit")),
            [
                "/src/sigaudit/target/release/libsigaudit.so",
                "/src/sigaudit/target/lib/sigaudit/libsigaudit.so",
                "/src/sigaudit/target/debug/libsigaudit.so",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            candidates(Path::new("/opt/x/bin/sigaudit")),
            [
                "/opt/x/bin/libsigaudit.so",
                "/opt/x/lib/sigaudit/libsigaudit.so"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn preload_keeps_what_was_there() {
        let lib = Path::new("/l/libsigaudit.so");
        assert_eq!(preload_value(lib, None), "/l/libsigaudit.so");
        assert_eq!(
            preload_value(lib, Some("libfoo.so /x/bar.so".as_ref())),
            "/l/libsigaudit.so:libfoo.so /x/bar.so"
        );
    }

    #[test]
    fn unquotable_paths_are_refused() {
        assert!(usable(PathBuf::from("/a b/libsigaudit.so")).is_err());
        assert!(usable(PathBuf::from("/a:b/libsigaudit.so")).is_err());
        assert!(usable(PathBuf::from("/ab/libsigaudit.so")).is_ok());
    }
}
