//! Reading event records (JSON objects written by the library; see its `report.rs`): the fields
//! a person needs, and which frame to blame.

use serde_json::Value;

/// A string field, `""` when absent.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The program's name: its executable's file name, else `argv[0]`'s.
pub fn program(rec: &Value) -> String {
    let exe = basename(s(rec, "exe"));
    if !exe.is_empty() {
        return exe.to_string();
    }
    array(rec, "argv")
        .first()
        .and_then(Value::as_str)
        .map(|a| basename(a).to_string())
        .unwrap_or_else(|| "?".into())
}

/// The command line, cut to about `max` characters.
pub fn command_line(rec: &Value, max: usize) -> String {
    let words: Vec<&str> = array(rec, "argv")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    cut(words.join(" "), max)
}

/// The command line with only the file name of the program, cut to about `max` characters.
pub fn short_command_line(rec: &Value, max: usize) -> String {
    let mut words: Vec<&str> = array(rec, "argv")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if let Some(first) = words.first_mut() {
        *first = basename(first);
    }
    cut(words.join(" "), max)
}

fn cut(line: String, max: usize) -> String {
    if line.chars().count() <= max {
        line
    } else {
        let cut: String = line.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

/// A disposition with its flags: `SIG_IGN SA_RESTART|SA_NOCLDWAIT`.
pub fn action(rec: &Value, disposition: &str, flags: &str) -> String {
    let mut out = s(rec, disposition).to_string();
    let names: Vec<&str> = array(rec, flags).iter().filter_map(Value::as_str).collect();
    if !names.is_empty() {
        out.push(' ');
        out.push_str(&names.join("|"));
    }
    out
}

/// A Python file of the standard library (or a frozen module), never the culprit. The same rule
/// as the library's.
pub fn is_stdlib(file: &str) -> bool {
    file.starts_with("<frozen ") || (file.contains("/lib/python3") && !file.contains("-packages/"))
}

/// A file of Perl's own library (`privlib`, `archlib`), never the culprit; a module of the vendor
/// or site folders is a third-party one. The same rule as the library's.
pub fn is_perl_lib(file: &str) -> bool {
    (file.contains("/perl/5.") && !file.contains("/local/"))
        || file.contains("/lib/perl5/5.")
        || (file.contains("perl") && file.contains("/lib/5."))
}

/// A file of the interpreter's own library, by the frame's `language`.
pub fn is_interpreter_lib(language: &str, file: &str) -> bool {
    match language {
        "python" => is_stdlib(file),
        "perl" => is_perl_lib(file),
        _ => false,
    }
}

/// libc, the dynamic loader, an interpreter (Python, Perl, a shell), or sigaudit itself: never
/// the culprit (`PyOS_setsig` and `Perl_rsignal` are the same for every ignore).
pub fn is_runtime_module(module: &str) -> bool {
    let name = basename(module);
    [
        "libc.so",
        "libpthread",
        "libpython",
        "python",
        "libperl",
        "perl",
        "bash",
        "dash",
        "ld-linux",
        "libsigaudit",
        "libffi.so",
        "_ctypes.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || name == "sh"
}

/// A module that is a script interpreter's own: its functions (`PyOS_setsig`, `Perl_rsignal`)
/// are never presented as the place.
fn is_interpreter_module(module: &str) -> bool {
    let name = basename(module);
    ["libpython", "python", "libperl", "perl"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// A function of libc's signal calls, or of Go's runtime and its `os/signal` and `syscall`
/// packages: never the culprit, also when linked into the program itself (a static or Go
/// program, seen by `--supervise`).
pub fn is_runtime_function(name: &str) -> bool {
    const LIBC: [&str; 14] = [
        "__libc_sigaction",
        "__sigaction",
        "sigaction",
        "__bsd_signal",
        "bsd_signal",
        "signal",
        "ssignal",
        "sysv_signal",
        "__sysv_signal",
        "sigset",
        "sigignore",
        "siginterrupt",
        "__sigvec",
        "syscall",
    ];
    const GO: [&str; 3] = ["runtime.", "os/signal.", "syscall."];
    LIBC.contains(&name) || GO.iter().any(|p| name.starts_with(p))
}

/// Whether a native frame is in libc, the interpreter, sigaudit, or one of the runtime's signal
/// functions.
pub fn is_runtime_frame(f: &Value) -> bool {
    if is_runtime_module(s(f, "module")) {
        return true;
    }
    let name = match s(f, "function") {
        "" => s(f, "symbol").rsplit_once('+').map_or("", |(n, _)| n),
        function => function,
    };
    is_runtime_function(name)
}

/// `file:line in function` for a script frame.
pub fn python_frame(f: &Value) -> String {
    let line = int(f, "line").map(|l| l.to_string()).unwrap_or_default();
    format!("{}:{line} in {}", s(f, "file"), s(f, "function"))
}

/// A record's (or a cause's) script frames, innermost first, each with its `language`: the
/// `script` array, or the `python` one of records from an older library.
pub fn script_frames(rec: &Value) -> Vec<(String, &Value)> {
    let script = array(rec, "script");
    if !script.is_empty() {
        return script
            .iter()
            .map(|f| (s(f, "language").to_string(), f))
            .collect();
    }
    array(rec, "python")
        .iter()
        .map(|f| ("python".to_string(), f))
        .collect()
}

/// The `text` of a record's `script_missing`: why a process that runs an interpreter has no
/// frames from it.
pub fn script_missing(rec: &Value) -> Option<&str> {
    rec.get("script_missing")
        .and_then(|m| m.get("text"))
        .and_then(Value::as_str)
}

/// A native frame for people: `main at demo.c:12 (demo+0x1149)`, or its symbol-table name, or
/// just where it is.
pub fn native_frame(f: &Value) -> String {
    let module = basename(s(f, "module"));
    let offset = s(f, "offset");
    let place = if module.is_empty() {
        s(f, "addr").to_string()
    } else {
        format!("{module}+{offset}")
    };
    let function = s(f, "function");
    let file = s(f, "file");
    if !file.is_empty() {
        let name = if function.is_empty() {
            s(f, "symbol")
        } else {
            function
        };
        let line = int(f, "line").map(|l| format!(":{l}")).unwrap_or_default();
        format!("{name} at {file}{line} ({place})")
    } else if !s(f, "symbol").is_empty() {
        format!("{} ({place})", s(f, "symbol"))
    } else {
        place
    }
}

/// Modules of `rec`'s native frames (outside libc and the interpreter) that have no name for any
/// of their frames: no function, no symbol. Such a module is stripped, and its debug information
/// was not found; each is listed once, innermost first.
pub fn stripped_modules(rec: &Value) -> Vec<&str> {
    let frames: Vec<&Value> = array(rec, "backtrace")
        .iter()
        .chain(rec.get("cause").and_then(|c| c.get("native")))
        .filter(|f| f.is_object())
        .collect();
    let named = |f: &&Value| !s(f, "function").is_empty() || !s(f, "symbol").is_empty();
    let mut out: Vec<&str> = Vec::new();
    for f in &frames {
        let module = s(f, "module");
        if module.is_empty() || is_runtime_module(module) || out.contains(&module) {
            continue;
        }
        if !frames.iter().any(|g| s(g, "module") == module && named(g)) {
            out.push(module);
        }
    }
    out
}

/// What to do about a stripped module, for people: two lines, the first starting `note:`.
pub fn stripped_advice(module: &str) -> [String; 2] {
    let name = basename(module);
    let package = match debian_package(module) {
        Some(p) => format!("{p}-dbgsym or {p}-dbg"),
        None => "-dbgsym, -dbg or -debuginfo".into(),
    };
    let debuginfod = if std::env::var_os("DEBUGINFOD_URLS").is_some_and(|v| !v.is_empty()) {
        "or add a debuginfod server that has it to DEBUGINFOD_URLS"
    } else {
        "or set DEBUGINFOD_URLS to a debuginfod server and run sigaudit again (or `sigaudit \
         symbolize` on saved --json records)"
    };
    [
        format!(
            "note: {name} is stripped, so its frames have no names: install its debug package ({package}),"
        ),
        format!("  {debuginfod}"),
    ]
}

/// The Debian package that installed `path`, if `dpkg-query` knows one (merged-/usr paths are
/// tried both ways).
fn debian_package(path: &str) -> Option<String> {
    let mut paths = vec![path.to_string()];
    if let Some(rest) = path.strip_prefix("/usr") {
        paths.push(rest.to_string());
    } else if path.starts_with('/') {
        paths.push(format!("/usr{path}"));
    }
    paths.iter().find_map(|p| {
        let out = std::process::Command::new("dpkg-query")
            .args(["-S", p])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (packages, _) = text.lines().next()?.split_once(": ")?;
        let first = packages.split(", ").next()?;
        let name = first.split(':').next()?.trim();
        (out.status.success() && !name.is_empty()).then(|| name.to_string())
    })
}

/// The frame a record's own stack blames.
#[derive(Debug, PartialEq, Eq)]
pub enum Culprit {
    /// The innermost script frame (Python, Perl, shell) outside the interpreter's own library.
    Python(String),
    /// The process runs an interpreter whose frames could not be read: why.
    Missing(String),
    /// The first native frame outside libc and the interpreter.
    Native(String),
    /// No frame outside them: the innermost frame.
    RuntimeOnly(String),
}

impl Culprit {
    /// For people; a frame of the runtime alone says so.
    pub fn describe(&self) -> String {
        match self {
            Culprit::Python(p) | Culprit::Native(p) => p.clone(),
            Culprit::Missing(why) => why.clone(),
            Culprit::RuntimeOnly(p) => {
                format!("{p} (no frame outside libc and the interpreter)")
            }
        }
    }
}

/// What `where:` names: the innermost script frame outside the interpreter's own library; else,
/// for an interpreter whose frames are missing, why (never one of its own native functions);
/// else the first native frame outside libc and the interpreter.
pub fn culprit(rec: &Value) -> Option<Culprit> {
    if let Some((_, f)) = script_frames(rec)
        .into_iter()
        .find(|(language, f)| !is_interpreter_lib(language, s(f, "file")))
    {
        return Some(Culprit::Python(python_frame(f)));
    }
    if let Some(why) = script_missing(rec) {
        return Some(Culprit::Missing(why.to_string()));
    }
    if let Some(f) = native_culprit(rec) {
        // A runtime function inlined into the program's own (Go's `signal.Ignore`): the
        // function it was inlined into, at the line of the call.
        if is_runtime_frame(f)
            && let Some(outer) = inlined_caller(f)
        {
            let line = int(outer, "line")
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            let place = format!("{}+{}", basename(s(f, "module")), s(f, "offset"));
            return Some(Culprit::Native(format!(
                "{} at {}{line} ({place})",
                s(outer, "function"),
                s(outer, "file")
            )));
        }
        return Some(Culprit::Native(native_frame(f)));
    }
    let native = array(rec, "backtrace");
    // A record from a library that did not say what was missing: still never the
    // interpreter's own function as the place.
    if native.iter().any(|f| is_interpreter_module(s(f, "module"))) {
        return Some(Culprit::Missing(
            "no script frames, and no native frame outside libc and the interpreter".into(),
        ));
    }
    native
        .first()
        .map(|f| Culprit::RuntimeOnly(native_frame(f)))
}

/// The first native frame outside libc, the interpreter and the runtime's signal functions, or
/// of one of those inlined into the program's own function.
pub fn native_culprit(rec: &Value) -> Option<&Value> {
    array(rec, "backtrace")
        .iter()
        .filter(|f| !s(f, "module").is_empty())
        .find(|f| !is_runtime_frame(f) || inlined_caller(f).is_some())
}

/// The innermost function outside the runtime that frame `f`'s code is inlined into.
fn inlined_caller(f: &Value) -> Option<&Value> {
    array(f, "inlined_into")
        .iter()
        .find(|o| !is_runtime_function(s(o, "function")))
}

/// Where an `echild` record's cause was, as kept by the library.
pub fn cause_place(cause: &Value) -> Option<String> {
    if let Some((_, f)) = script_frames(cause).first() {
        return Some(python_frame(f));
    }
    if let Some(why) = script_missing(cause) {
        return Some(why.to_string());
    }
    cause
        .get("native")
        .filter(|n| n.is_object())
        .map(native_frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_culprit_is_outside_the_runtime() {
        let rec = json!({
            "python": [],
            "backtrace": [
                {"addr": "0x1", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x10", "symbol": "signal+0x5"},
                {"addr": "0x2", "module": "/tmp/t/demo", "offset": "0x1149", "symbol": "setup+0x12",
                 "function": "setup", "file": "/tmp/t/demo.c", "line": 7},
            ]
        });
        assert_eq!(
            culprit(&rec).unwrap(),
            Culprit::Native("setup at /tmp/t/demo.c:7 (demo+0x1149)".into())
        );
    }

    #[test]
    fn signal_functions_linked_into_the_program_are_not_the_culprit() {
        let rec = json!({"backtrace": [
            {"addr": "0x1", "module": "/tmp/static", "offset": "0x408c2f", "symbol": "__libc_sigaction+0xbf"},
            {"addr": "0x2", "module": "/tmp/static", "offset": "0x408a88", "symbol": "__bsd_signal+0x68"},
            {"addr": "0x3", "module": "/tmp/static", "offset": "0x4017b0", "symbol": "ignore_children+0x3a"},
        ]});
        assert_eq!(
            culprit(&rec).unwrap(),
            Culprit::Native("ignore_children+0x3a (static+0x4017b0)".into())
        );
        let go = json!({"backtrace": [
            {"addr": "0x1", "module": "/tmp/go", "offset": "0x45ef1e", "symbol": "runtime.rt_sigaction.abi0+0x1e"},
            {"addr": "0x2", "module": "/tmp/go", "offset": "0x47a7c9", "symbol": "os/signal.Ignore+0x49"},
            {"addr": "0x3", "module": "/tmp/go", "offset": "0x481fd5", "function": "main.setup", "file": "/tmp/main.go", "line": 10},
        ]});
        assert_eq!(
            culprit(&go).unwrap(),
            Culprit::Native("main.setup at /tmp/main.go:10 (go+0x481fd5)".into())
        );
        let inlined = json!({"backtrace": [
            {"addr": "0x2", "module": "/tmp/go", "offset": "0x48200b", "symbol": "main.setup+0x2b",
             "function": "os/signal.Ignore", "file": "/usr/lib/go/src/os/signal/signal.go", "line": 87,
             "inlined_into": [{"function": "main.setup", "file": "/tmp/main.go", "line": 11}]},
        ]});
        assert_eq!(
            culprit(&inlined).unwrap(),
            Culprit::Native("main.setup at /tmp/main.go:11 (go+0x48200b)".into())
        );
    }

    #[test]
    fn python_frames_win_and_skip_the_stdlib() {
        let rec = json!({
            "python": [
                {"file": "/usr/lib/python3.11/signal.py", "line": 56, "function": "signal"},
                {"file": "/srv/app/main.py", "line": 3, "function": "setup"},
            ],
            "backtrace": [{"addr": "0x2", "module": "/tmp/demo", "offset": "0x10"}]
        });
        assert_eq!(
            culprit(&rec).unwrap(),
            Culprit::Python("/srv/app/main.py:3 in setup".into())
        );
    }

    #[test]
    fn perl_and_shell_frames_are_blamed_like_python_ones() {
        let rec = json!({
            "script": [
                {"language": "perl", "file": "/usr/share/perl/5.36/IPC/Open3.pm", "line": 9, "function": "IPC::Open3::xpipe"},
                {"language": "perl", "file": "/usr/share/perl5/Net/Server.pm", "line": 40, "function": "Net::Server::run"},
            ],
            "backtrace": [{"addr": "0x1", "module": "/usr/bin/perl", "offset": "0xfa0ce", "symbol": "Perl_rsignal+0x9e"}]
        });
        assert_eq!(
            culprit(&rec).unwrap(),
            Culprit::Python("/usr/share/perl5/Net/Server.pm:40 in Net::Server::run".into())
        );
        // No frames from an interpreter that runs: why, never Perl_rsignal.
        let rec = json!({
            "script": [],
            "script_missing": {"language": "perl", "version": "5.40.0", "reason": "unsupported-version",
                               "text": "Perl 5.40.0: no Perl frames (supported: 5.36, threaded)"},
            "backtrace": [{"addr": "0x1", "module": "/usr/bin/perl", "offset": "0xfa0ce", "symbol": "Perl_rsignal+0x9e"}]
        });
        assert_eq!(
            culprit(&rec).unwrap().describe(),
            "Perl 5.40.0: no Perl frames (supported: 5.36, threaded)"
        );
    }

    #[test]
    fn only_libc_frames_name_the_innermost() {
        let rec = json!({"backtrace": [
            {"addr": "0x1", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x20", "symbol": "signal+0x9"}
        ]});
        assert_eq!(
            culprit(&rec).unwrap().describe(),
            "signal+0x9 (libc.so.6+0x20) (no frame outside libc and the interpreter)"
        );
        assert_eq!(culprit(&json!({"backtrace": []})), None);
    }

    /// See: `where: PyOS_setsig at .../pylifecycle.c` for CPython 3.10, before the reason was
    /// recorded (issue 10).
    #[test]
    fn the_interpreter_is_never_the_place() {
        let setsig = json!({"addr": "0x1", "module": "/opt/py/lib/libpython3.10.so.1.0",
                            "offset": "0x1f4f89", "symbol": "PyOS_setsig+0x39"});
        let libc =
            json!({"addr": "0x2", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x10"});
        let missing = json!({"language": "python", "version": "3.7", "reason": "unsupported-version",
                             "text": "Python 3.7: no Python frames (supported: 3.8 to 3.15)"});
        let rec = json!({"script": [], "script_missing": missing, "backtrace": [libc, setsig]});
        assert_eq!(
            culprit(&rec).unwrap().describe(),
            "Python 3.7: no Python frames (supported: 3.8 to 3.15)"
        );
        let cause = json!({"script": [], "script_missing": missing, "native": null});
        assert_eq!(
            cause_place(&cause).unwrap(),
            "Python 3.7: no Python frames (supported: 3.8 to 3.15)"
        );
        // A record from an older library, without the reason: still not PyOS_setsig; libffi
        // (ctypes' trampoline) is no place either.
        let ffi = json!({"addr": "0x3", "module": "/usr/lib/x86_64-linux-gnu/libffi.so.8", "offset": "0x9"});
        let old = json!({"python": [], "backtrace": [libc, ffi, setsig]});
        assert_eq!(
            culprit(&old).unwrap(),
            Culprit::Missing(
                "no script frames, and no native frame outside libc and the interpreter".into()
            )
        );
    }

    #[test]
    fn stripped_modules_are_those_without_any_name() {
        let rec = json!({"backtrace": [
            {"addr": "0x1", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x10"},
            {"addr": "0x2", "module": "/usr/sbin/daemon", "offset": "0x24101"},
            {"addr": "0x3", "module": "/usr/lib/libnamed.so", "offset": "0x20", "symbol": "f+0x3"},
            {"addr": "0x4", "module": "/usr/lib/libnamed.so", "offset": "0x40"},
            {"addr": "0x5", "module": "/usr/sbin/daemon", "offset": "0x1081"},
        ], "cause": {"native": {"addr": "0x9", "module": "/opt/x/libother.so", "offset": "0x9"}}});
        assert_eq!(
            stripped_modules(&rec),
            ["/usr/sbin/daemon", "/opt/x/libother.so"]
        );
        let advice = stripped_advice("/opt/x/libother.so").join("\n");
        assert!(
            advice.starts_with("note: libother.so is stripped"),
            "{advice}"
        );
        assert!(advice.contains("-dbgsym"), "{advice}");
        assert!(advice.contains("DEBUGINFOD_URLS"), "{advice}");
    }

    #[test]
    fn the_debian_package_of_a_file() {
        if std::process::Command::new("dpkg-query")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("note: no dpkg-query here: skipped");
            return;
        }
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        assert!(debian_package(sh.to_str().unwrap()).is_some(), "{sh:?}");
        assert_eq!(debian_package("/nonexistent/prog"), None);
    }

    #[test]
    fn names() {
        let rec = json!({"exe": "/usr/bin/python3.11", "argv": ["python3", "-c", "x"],
                         "old": "SIG_DFL", "old_flags": [], "new": "SIG_IGN", "flags": ["SA_RESTART", "SA_NOCLDWAIT"]});
        assert_eq!(program(&rec), "python3.11");
        assert_eq!(command_line(&rec, 80), "python3 -c x");
        assert_eq!(command_line(&rec, 8), "pytho...");
        assert_eq!(action(&rec, "old", "old_flags"), "SIG_DFL");
        assert_eq!(
            action(&rec, "new", "flags"),
            "SIG_IGN SA_RESTART|SA_NOCLDWAIT"
        );
        let rec = json!({"argv": ["/usr/bin/python3", "app.py"]});
        assert_eq!(short_command_line(&rec, 80), "python3 app.py");
    }
}
