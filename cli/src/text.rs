//! Records for people: the readable form shown on stderr, written by `-o` without `--json`, and
//! by `symbolize --text`. Close to the library's own text format, plus source lines.

use crate::record::{self, array, int, s};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt::Write;

/// Records one after another, as a stream shows them: each one [`render`]ed, followed by a note
/// for each stripped module not noted before (see [`record::stripped_advice`]).
#[derive(Default)]
pub struct Stream {
    noted: HashSet<String>,
}

impl Stream {
    pub fn render(&mut self, rec: &Value) -> String {
        let mut out = render(rec);
        for module in record::stripped_modules(rec) {
            if self.noted.insert(module.to_string()) {
                for line in record::stripped_advice(module) {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        out
    }
}

/// One record as readable lines, ending with a newline.
pub fn render(rec: &Value) -> String {
    let mut out = String::new();
    let pid = int(rec, "pid").unwrap_or(0);
    let prog = record::program(rec);
    let signal = s(rec, "signal");
    let via = s(rec, "via");
    let act = s(rec, "action");
    let forked = int(rec, "forked_from")
        .map(|p| format!(", forked from pid {p}"))
        .unwrap_or_default();
    let _ = write!(out, "sigaudit: pid {pid} ({prog}{forked}) ");
    match s(rec, "event") {
        "inherited" => {
            let ppid = int(rec, "ppid").unwrap_or(0);
            let _ = writeln!(
                out,
                "{signal} was already SIG_IGN when the program started (inherited across execve from parent pid {ppid}) [{act}]"
            );
        }
        "echild" => {
            let _ = writeln!(
                out,
                "{via}() failed with ECHILD because {signal} is {} [{act}]",
                record::action(rec, "old", "old_flags")
            );
            match rec.get("cause").filter(|c| c.is_object()) {
                Some(c) => {
                    let _ = write!(
                        out,
                        "  cause: {} {} via {}(){} in pid {} at {}",
                        s(c, "signal"),
                        if s(c, "event") == "inherited" {
                            "inherited"
                        } else {
                            "ignored"
                        },
                        s(c, "via"),
                        supervised(c),
                        int(c, "pid").unwrap_or(0),
                        s(c, "time"),
                    );
                    match record::cause_place(c) {
                        Some(place) => {
                            let _ = writeln!(out, ", {place}");
                        }
                        None => out.push('\n'),
                    }
                }
                None => out.push_str(
                    "  cause: not seen by sigaudit (set before it was loaded, or by a raw system call)\n",
                ),
            }
        }
        kind => {
            let verb = if kind == "change" {
                "changed"
            } else {
                "ignored"
            };
            let _ = writeln!(
                out,
                "{signal} {verb} via {via}(){}: {} -> {} [{act}]",
                supervised(rec),
                record::action(rec, "old", "old_flags"),
                record::action(rec, "new", "flags"),
            );
        }
    }
    let _ = writeln!(
        out,
        "  at {}, ppid {}, command: {}",
        s(rec, "time"),
        int(rec, "ppid").unwrap_or(0),
        record::command_line(rec, 200)
    );
    // What the library could not do for this record, or lost before it.
    for n in array(rec, "notes") {
        let _ = writeln!(out, "  note: {}", s(n, "text"));
    }
    if let Some(why) = record::script_missing(rec) {
        let _ = writeln!(out, "  {why}");
    }
    let py = record::script_frames(rec);
    if let Some((language, _)) = py.first() {
        let title = match language.as_str() {
            "python" => "Python",
            "perl" => "Perl",
            _ => "shell",
        };
        let _ = writeln!(out, "  {title} stack (most recent call last):");
        let truncated = |key| rec.get(key) == Some(&Value::Bool(true));
        if truncated("python_truncated") || truncated("script_truncated") {
            out.push_str("    ... outer frames cut\n");
        }
        for (_, f) in py.iter().rev() {
            let _ = writeln!(
                out,
                "    File \"{}\", line {}, in {}",
                s(f, "file"),
                int(f, "line").unwrap_or(0),
                s(f, "function")
            );
        }
    }
    let frames = array(rec, "backtrace");
    for (i, f) in frames.iter().enumerate() {
        let _ = writeln!(out, "    #{i:<2} {}", record::native_frame(f));
        for outer in array(f, "inlined_into") {
            let _ = writeln!(
                out,
                "         inlined into {} at {}:{}",
                s(outer, "function"),
                s(outer, "file"),
                int(outer, "line").unwrap_or(0)
            );
        }
        // Below CPython's eval loop the native stack is the interpreter's own business, and the
        // Python stack above says it better; the JSON records keep every frame.
        let rest = frames.len() - i - 1;
        if !py.is_empty() && rest > 0 && is_eval_loop(f) {
            let _ = writeln!(
                out,
                "    ... {rest} interpreter frames (all of them with --json)"
            );
            return out;
        }
    }
    if rec.get("backtrace_truncated") == Some(&Value::Bool(true)) {
        out.push_str("    ... more frames cut\n");
    }
    out
}

/// Marks an event seen by `--supervise` rather than by the library in the process.
pub fn supervised(rec: &Value) -> &'static str {
    if rec.get("supervised") == Some(&Value::Bool(true)) {
        " (supervised)"
    } else {
        ""
    }
}

/// Whether a native frame is, or is inlined into, an interpreter loop (CPython's, Perl's).
fn is_eval_loop(f: &Value) -> bool {
    let eval =
        |name: &str| name.starts_with("_PyEval_EvalFrame") || name.starts_with("Perl_runops_");
    eval(s(f, "function"))
        || eval(s(f, "symbol"))
        || array(f, "inlined_into")
            .iter()
            .any(|o| eval(s(o, "function")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_ignore_reads_like_the_library() {
        let rec = json!({"event": "ignore", "time": "2026-01-01T00:00:00.000000Z", "pid": 7, "ppid": 1,
            "exe": "/tmp/demo", "argv": ["./demo", "x"], "signal": "SIGCHLD", "via": "signal",
            "old": "SIG_DFL", "old_flags": [], "new": "SIG_IGN", "flags": ["SA_RESTART"], "action": "vetoed",
            "python": [], "backtrace": [{"addr": "0x5", "module": "/tmp/demo", "offset": "0x1149",
            "symbol": "main+0x12", "function": "main", "file": "/tmp/demo.c", "line": 9}]});
        assert_eq!(
            render(&rec),
            "sigaudit: pid 7 (demo) SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN SA_RESTART [vetoed]\n\
             \x20 at 2026-01-01T00:00:00.000000Z, ppid 1, command: ./demo x\n\
             \x20   #0  main at /tmp/demo.c:9 (demo+0x1149)\n"
        );
    }

    #[test]
    fn a_stripped_module_is_noted_once() {
        let rec = json!({"event": "ignore", "pid": 7, "exe": "/srv/stripped",
            "signal": "SIGCHLD", "via": "signal", "old": "SIG_DFL", "new": "SIG_IGN", "action": "logged",
            "backtrace": [{"addr": "0x5", "module": "/srv/stripped", "offset": "0x24101"},
                          {"addr": "0x6", "module": "/srv/stripped", "offset": "0x1081"}]});
        let mut stream = Stream::default();
        let first = stream.render(&rec);
        assert!(first.ends_with('\n'), "{first}");
        let notes: Vec<&str> = first.lines().filter(|l| l.contains("note:")).collect();
        assert_eq!(notes.len(), 1, "{first}");
        assert!(first.contains("\n    or set DEBUGINFOD_URLS"), "{first}");
        assert!(
            notes[0].starts_with("  note: stripped is stripped"),
            "{first}"
        );
        assert!(!stream.render(&rec).contains("note:"));
    }

    #[test]
    fn an_echild_names_its_cause() {
        let rec = json!({"event": "echild", "pid": 7, "exe": "/tmp/demo", "signal": "SIGCHLD",
            "via": "waitpid", "old": "SIG_IGN", "action": "logged",
            "cause": {"event": "ignore", "pid": 7, "via": "sigaction", "signal": "SIGCHLD",
                      "time": "T", "python": [{"file": "/srv/a.py", "line": 3, "function": "f"}], "native": null}});
        let text = render(&rec);
        assert!(text.contains("waitpid() failed with ECHILD because SIGCHLD is SIG_IGN [logged]"));
        assert!(
            text.contains("cause: SIGCHLD ignored via sigaction() in pid 7 at T, /srv/a.py:3 in f")
        );
    }
}
