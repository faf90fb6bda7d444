//! The summary after a run: how many processes reported events and, for each event, who, what,
//! what was done and where. Records arrive already symbolized and sorted by time.

use crate::record::{self, Culprit, int, s};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

pub fn render(records: &[Value], watch: &str, output: Option<&Path>) -> String {
    let mut out = String::new();
    if records.is_empty() {
        let verb = if watch.to_ascii_lowercase().contains(":any") {
            "ignored or changed"
        } else {
            "ignored"
        };
        let _ = writeln!(
            out,
            "sigaudit: clean run: no process {verb} a watched signal ({watch})"
        );
        return out;
    }
    let pids: BTreeSet<i64> = records.iter().filter_map(|r| int(r, "pid")).collect();
    let _ = writeln!(
        out,
        "sigaudit: {} {} reported {} {}:",
        pids.len(),
        plural(pids.len(), "process", "processes"),
        records.len(),
        plural(records.len(), "event", "events"),
    );
    // The same event from the same program at the same place (a loop, a pool of workers, a
    // shell that sets its handlers in every subshell) is said once, with how often and where.
    let mut groups: Vec<Group> = Vec::new();
    for rec in records {
        let e = event(rec, records);
        match groups.iter_mut().find(|g| {
            g.first.program == e.program && g.first.what == e.what && g.first.detail == e.detail
        }) {
            Some(g) => {
                g.count += 1;
                if !g.pids.contains(&e.pid) {
                    g.pids.push(e.pid);
                }
            }
            None => groups.push(Group {
                pids: vec![e.pid],
                count: 1,
                first: e,
            }),
        }
    }
    let mut noted = BTreeSet::new();
    for g in &groups {
        g.write(&mut out);
        for module in &g.first.stripped {
            if noted.insert(module) {
                for line in record::stripped_advice(module) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    if let Some(path) = output {
        let _ = writeln!(out, "sigaudit: full records in {}", path.display());
    }
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// One event for the summary.
struct Event {
    pid: i64,
    program: String,
    /// The command line, when it has arguments (they tell apart workers, or the scripts one
    /// interpreter runs).
    argv: Option<String>,
    /// What happened and what was done, one line.
    what: String,
    /// Where, and for `echild` the cause: indented lines.
    detail: String,
    /// Stripped modules of the frames `detail` shows.
    stripped: Vec<String>,
}

/// Events that say the same thing.
struct Group {
    first: Event,
    count: usize,
    pids: Vec<i64>,
}

impl Group {
    fn write(&self, out: &mut String) {
        let e = &self.first;
        let argv = e
            .argv
            .as_ref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let _ = match (self.count, self.pids.len()) {
            (1, _) => writeln!(out, "  pid {} {}{argv}: {}", e.pid, e.program, e.what),
            (n, 1) => writeln!(
                out,
                "  pid {} {}{argv}, {n} times: {}",
                e.pid, e.program, e.what
            ),
            (n, p) => {
                let shown: Vec<String> = self.pids.iter().take(5).map(|p| p.to_string()).collect();
                let more = if p > 5 { ", ..." } else { "" };
                writeln!(
                    out,
                    "  {}, {n} times in {p} processes (pid {}{more}): {}",
                    e.program,
                    shown.join(", "),
                    e.what
                )
            }
        };
        out.push_str(&e.detail);
    }
}

fn event(rec: &Value, all: &[Value]) -> Event {
    let pid = int(rec, "pid").unwrap_or(0);
    let argv = (record::array(rec, "argv").len() > 1).then(|| record::short_command_line(rec, 80));
    let mut out = String::new();
    let mut detail = String::new();
    let signal = s(rec, "signal");
    let via = s(rec, "via");
    let act = s(rec, "action");
    match s(rec, "event") {
        "inherited" => {
            let ppid = int(rec, "ppid").unwrap_or(0);
            let parent = all
                .iter()
                .find(|r| int(r, "pid") == Some(ppid))
                .map(|r| format!(" ({})", record::program(r)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{signal} already ignored at start, inherited from pid {ppid}{parent} [{act}]"
            );
        }
        "echild" => {
            let _ = writeln!(out, "{via}() failed with ECHILD, {signal} ignored [{act}]");
            // Where the wait was matters less than the cause; a frame of the runtime alone
            // (Python waits with the GIL released, so without Python frames) is left out.
            if let Some(c @ (Culprit::Python(_) | Culprit::Native(_))) = record::culprit(rec) {
                let _ = writeln!(detail, "      where: {}", c.describe());
            }
            match rec.get("cause").filter(|c| c.is_object()) {
                Some(c) => {
                    let how = if s(c, "event") == "inherited" {
                        "inherited".to_string()
                    } else {
                        format!("ignored via {}()", s(c, "via"))
                    };
                    let place = record::cause_place(c)
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        detail,
                        "      cause: {} {how} in pid {}{place}",
                        s(c, "signal"),
                        int(c, "pid").unwrap_or(0)
                    );
                }
                None => detail.push_str("      cause: not seen by sigaudit\n"),
            }
        }
        kind => {
            if kind == "change" {
                let _ = writeln!(
                    out,
                    "{signal} changed via {via}(): {} -> {} [{act}]",
                    record::action(rec, "old", "old_flags"),
                    record::action(rec, "new", "flags")
                );
            } else {
                let _ = writeln!(out, "{signal} ignored via {via}() [{act}]");
            }
            if let Some(c) = record::culprit(rec) {
                let _ = writeln!(detail, "      where: {}", c.describe());
            }
        }
    }
    let mut shown: Vec<&Value> = Vec::new();
    if matches!(record::culprit(rec), Some(Culprit::Native(_))) {
        shown.extend(record::native_culprit(rec));
    }
    shown.extend(rec.get("cause").and_then(|c| c.get("native")));
    let stripped = record::stripped_modules(rec)
        .into_iter()
        .filter(|m| shown.iter().any(|f| s(f, "module") == *m))
        .map(str::to_string)
        .collect();
    Event {
        pid,
        program: record::program(rec),
        argv,
        what: out.trim_end().to_string(),
        detail,
        stripped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_clean_run_is_one_line() {
        assert_eq!(
            render(&[], "CHLD", None),
            "sigaudit: clean run: no process ignored a watched signal (CHLD)\n"
        );
        assert!(render(&[], "CHLD,PIPE:any", None).contains("ignored or changed"));
    }

    #[test]
    fn events_name_pid_program_action_and_place() {
        let ignore = json!({"event": "ignore", "pid": 10, "ppid": 1, "exe": "/tmp/t/demo",
            "signal": "SIGCHLD", "via": "signal", "action": "vetoed", "python": [],
            "backtrace": [{"addr": "0x1", "module": "/tmp/t/demo", "offset": "0x1149",
                           "function": "setup", "file": "/tmp/t/demo.c", "line": 7}]});
        let inherited = json!({"event": "inherited", "pid": 11, "ppid": 10, "exe": "/bin/true",
            "signal": "SIGCHLD", "via": "execve", "action": "logged", "backtrace": []});
        let text = render(
            &[ignore, inherited.clone(), inherited],
            "CHLD",
            Some(Path::new("out.txt")),
        );
        assert_eq!(
            text,
            "sigaudit: 2 processes reported 3 events:\n\
             \x20 pid 10 demo: SIGCHLD ignored via signal() [vetoed]\n\
             \x20     where: setup at /tmp/t/demo.c:7 (demo+0x1149)\n\
             \x20 pid 11 true, 2 times: SIGCHLD already ignored at start, inherited from pid 10 (demo) [logged]\n\
             sigaudit: full records in out.txt\n"
        );
    }

    #[test]
    fn the_same_event_in_many_processes_is_said_once() {
        let records: Vec<Value> = (0..7)
            .map(|i| {
                json!({"event": "ignore", "pid": 100 + i, "exe": "/bin/dash", "argv": ["sh", "-c", format!("job {i}")],
                       "signal": "SIGPIPE", "via": "sigaction", "action": "logged",
                       "backtrace": [{"addr": "0x1", "module": "/bin/dash", "offset": "0x12f11"}]})
            })
            .collect();
        let text = render(&records, "PIPE", None);
        let (said, note) = text.split_at(text.find("      note: ").expect("a note"));
        assert_eq!(
            said,
            "sigaudit: 7 processes reported 7 events:\n\
             \x20 dash, 7 times in 7 processes (pid 100, 101, 102, 103, 104, ...): SIGPIPE ignored via sigaction() [logged]\n\
             \x20     where: dash+0x12f11\n"
        );
        // dash has no name there: said once, with what to do.
        assert!(note.starts_with("      note: dash is stripped"), "{note}");
        assert_eq!(note.lines().count(), 2, "{note}");
    }
}
