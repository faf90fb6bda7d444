//! For the interpreter readers' tests: checks a table of structure offsets and constants against
//! the interpreter's own C headers, by compiling and running a small C program that prints each
//! value. A wrong offset then fails in CI, not in a user's process.

use std::path::Path;
use std::process::Command;

/// Compiles `prelude` (the `#include`s) with `cflags`, prints each C expression of `checks`, and
/// returns one line per value that differs from ours.
pub fn mismatches(prelude: &str, cflags: &[String], checks: &[(&str, u64)]) -> Vec<String> {
    let mut c = format!("{prelude}\n#include <stdio.h>\n#include <stddef.h>\nint main(void) {{\n");
    for (expr, _) in checks {
        c.push_str(&format!(
            "    printf(\"%llu\\n\", (unsigned long long)({expr}));\n"
        ));
    }
    c.push_str("    return 0;\n}\n");
    let dir = std::env::temp_dir().join(format!(
        "sigaudit-layout-{}-{:x}",
        std::process::id(),
        c.len() ^ checks.len()
    ));
    std::fs::create_dir_all(&dir).expect("make a folder for the layout program");
    let (src, exe) = (dir.join("layout.c"), dir.join("layout"));
    std::fs::write(&src, c).expect("write the layout program");
    let out = Command::new("gcc")
        .args(cflags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "compiling the layout program failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("run the layout program");
    let _ = std::fs::remove_dir_all(&dir);
    let values: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    assert_eq!(values.len(), checks.len(), "one value per check");
    checks
        .iter()
        .zip(&values)
        .filter(|((_, ours), theirs)| ours != *theirs)
        .map(|((expr, ours), theirs)| format!("{expr} is {theirs}, the layout says {ours}"))
        .collect()
}

/// Whether headers a test needs are here; missing, the test is skipped with a note, except
/// under `scripts/test` (`SIGAUDIT_TEST_STRICT`), where that is a failure.
pub fn have(header: &Path, package: &str) -> bool {
    if header.exists() {
        return true;
    }
    assert!(
        std::env::var_os("SIGAUDIT_TEST_STRICT").is_none(),
        "{} is missing: scripts/test installs {package}",
        header.display()
    );
    eprintln!("note: {} is missing ({package}): skipped", header.display());
    false
}
