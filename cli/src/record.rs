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

/// libc, the dynamic loader, the Python interpreter, or sigaudit itself: never the culprit.
pub fn is_runtime_module(module: &str) -> bool {
    let name = basename(module);
    [
        "libc.so",
        "libpthread",
        "libpython",
        "python",
        "ld-linux",
        "libsigaudit",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// `file:line in function` for a Python frame.
pub fn python_frame(f: &Value) -> String {
    let line = int(f, "line").map(|l| l.to_string()).unwrap_or_default();
    format!("{}:{line} in {}", s(f, "file"), s(f, "function"))
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

/// The frame a record's own stack blames.
#[derive(Debug, PartialEq, Eq)]
pub enum Culprit {
    /// The innermost Python frame outside the standard library.
    Python(String),
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
            Culprit::RuntimeOnly(p) => {
                format!("{p} (no frame outside libc and the interpreter)")
            }
        }
    }
}

pub fn culprit(rec: &Value) -> Option<Culprit> {
    if let Some(f) = array(rec, "python")
        .iter()
        .find(|f| !is_stdlib(s(f, "file")))
    {
        return Some(Culprit::Python(python_frame(f)));
    }
    let native = array(rec, "backtrace");
    if let Some(f) = native
        .iter()
        .find(|f| !s(f, "module").is_empty() && !is_runtime_module(s(f, "module")))
    {
        return Some(Culprit::Native(native_frame(f)));
    }
    native
        .first()
        .map(|f| Culprit::RuntimeOnly(native_frame(f)))
}

/// Where an `echild` record's cause was, as kept by the library.
pub fn cause_place(cause: &Value) -> Option<String> {
    if let Some(f) = array(cause, "python").first() {
        return Some(python_frame(f));
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
    fn only_runtime_frames_name_the_innermost() {
        let rec = json!({"backtrace": [
            {"addr": "0x1", "module": "/usr/lib/libpython3.11.so.1.0", "offset": "0x20", "symbol": "PyOS_setsig+0x39"}
        ]});
        assert_eq!(
            culprit(&rec).unwrap().describe(),
            "PyOS_setsig+0x39 (libpython3.11.so.1.0+0x20) (no frame outside libc and the interpreter)"
        );
        assert_eq!(culprit(&json!({"backtrace": []})), None);
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
