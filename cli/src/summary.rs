//! The summary after a run: how many processes reported events, then the root causes first,
//! each with its place and what followed from it in the process tree folded under it
//! (`tree.rs` decides which is which), then any other events. Records arrive already symbolized
//! and sorted by time; `--json` and `-o` keep every one of them.

use crate::record::{self, Culprit, int, s};
use crate::text;
use crate::tree::{self, Cause};
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
    let tree = tree::build(records);
    let causes = match tree.causes.len() {
        0 => String::new(),
        n => format!(", {n} root {}", plural(n, "cause", "causes")),
    };
    let _ = writeln!(
        out,
        "sigaudit: {} {} reported {} {}{causes}:",
        pids.len(),
        plural(pids.len(), "process", "processes"),
        records.len(),
        plural(records.len(), "event", "events"),
    );
    let mut noted = BTreeSet::new();
    for cause in &tree.causes {
        write_cause(&mut out, cause, records, &mut noted);
    }
    let others: Vec<&Value> = tree.others.iter().map(|&i| &records[i]).collect();
    if !others.is_empty() && !tree.causes.is_empty() {
        out.push_str("  other events:\n");
    }
    for g in groups(others.into_iter(), records) {
        g.write(&mut out, &mut noted);
    }
    if let Some(path) = output {
        let _ = writeln!(out, "sigaudit: full records in {}", path.display());
    }
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The same event from the same program at the same place (a loop, a pool of workers, a shell
/// that sets its handlers in every subshell) is said once, with how often and where.
fn groups<'a>(events: impl Iterator<Item = &'a Value>, all: &[Value]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for rec in events {
        let e = event(rec, all);
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
    groups
}

/// One root cause: its events, then what followed from it, folded.
fn write_cause(out: &mut String, cause: &Cause, all: &[Value], noted: &mut BTreeSet<String>) {
    let first = &all[cause.events[0]];
    if cause.shell_children {
        // The shell's trap: said as the shell's, with the first command it applied to.
        let pid = int(first, "forked_from")
            .or_else(|| int(first, "pid"))
            .unwrap_or(0);
        let argv = if record::array(first, "argv").len() > 1 {
            format!(" ({})", record::short_command_line(first, 80))
        } else {
            String::new()
        };
        let n = cause.events.len();
        let _ = writeln!(
            out,
            "  pid {pid} {}{argv}: {} ignored in {} it starts [{}]",
            record::program(first),
            s(first, "signal"),
            if n == 1 {
                "a child".to_string()
            } else {
                format!("{n} children")
            },
            s(first, "action"),
        );
        if let Some(c) = record::culprit(first) {
            let _ = writeln!(
                out,
                "      where: {}, the first command run with it",
                c.describe()
            );
        }
        out.push_str(
            "      (a shell applies `trap '' CHLD` in each child it starts, not in itself: the trap's own line is not known)\n",
        );
    } else {
        for g in groups(cause.events.iter().map(|&i| &all[i]), all) {
            g.write(out, noted);
        }
    }
    // Processes of the tree below, in the order they appeared (a forked child that execs keeps
    // its pid: it counts once).
    let mut pids: Vec<i64> = Vec::new();
    let mut programs: Vec<String> = Vec::new();
    for &i in &cause.inherited {
        let pid = int(&all[i], "pid").unwrap_or(0);
        if !pids.contains(&pid) {
            pids.push(pid);
        }
        let program = record::program(&all[i]);
        if !programs.contains(&program) {
            programs.push(program);
        }
    }
    if !cause.inherited.is_empty() {
        let shown: Vec<&str> = programs.iter().take(6).map(String::as_str).collect();
        let more = if programs.len() > 6 { ", ..." } else { "" };
        let which = if pids.len() <= 5 {
            let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            format!(" (pid {})", list.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "      inherited by {} descendant {}: {}{more}{which}, {} {}",
            pids.len(),
            plural(pids.len(), "process", "processes"),
            shown.join(", "),
            cause.inherited.len(),
            plural(cause.inherited.len(), "event", "events"),
        );
    }
    // The waits it broke, once per process and function.
    let mut seen: Vec<(i64, &str)> = Vec::new();
    for &i in &cause.echild {
        let rec = &all[i];
        let (pid, via) = (int(rec, "pid").unwrap_or(0), s(rec, "via"));
        if seen.contains(&(pid, via)) {
            continue;
        }
        seen.push((pid, via));
        let times = cause
            .echild
            .iter()
            .filter(|&&j| int(&all[j], "pid") == Some(pid) && s(&all[j], "via") == via)
            .count();
        let times = if times > 1 {
            format!(", {times} times")
        } else {
            String::new()
        };
        let e = event(rec, all);
        let argv = e.argv.map(|a| format!(" ({a})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "      {via}() failed with ECHILD in pid {pid} {}{argv}{times}",
            e.program
        );
        // Where the failed wait was made (the program's line that called subprocess), beside
        // the cause it is folded under; a frame of libc alone says nothing.
        if let Some(c) = record::culprit(rec).filter(|c| !matches!(c, Culprit::RuntimeOnly(_))) {
            let _ = writeln!(out, "          where: {}", c.describe());
        }
    }
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
    /// Writes the group, and once per summary (`noted`) what to do about a stripped module it
    /// names.
    fn write(&self, out: &mut String, noted: &mut BTreeSet<String>) {
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
        for module in &e.stripped {
            if noted.insert(module.clone()) {
                for line in record::stripped_advice(module) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
}

fn event(rec: &Value, all: &[Value]) -> Event {
    let pid = int(rec, "pid").unwrap_or(0);
    // A forked child still has its parent's command line: it is told apart by its parent.
    let argv = match int(rec, "forked_from") {
        Some(parent) => Some(format!("forked from pid {parent}")),
        None => (record::array(rec, "argv").len() > 1).then(|| record::short_command_line(rec, 80)),
    };
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
            if let Some(c @ (Culprit::Python(_) | Culprit::Native(_) | Culprit::Missing(_))) =
                record::culprit(rec)
            {
                let _ = writeln!(detail, "      where: {}", c.describe());
            }
            match rec.get("cause").filter(|c| c.is_object()) {
                Some(c) => {
                    let how = if s(c, "event") == "inherited" {
                        "inherited".to_string()
                    } else {
                        format!("ignored via {}(){}", s(c, "via"), text::supervised(c))
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
            let sup = text::supervised(rec);
            if kind == "change" {
                let _ = writeln!(
                    out,
                    "{signal} changed via {via}(){sup}: {} -> {} [{act}]",
                    record::action(rec, "old", "old_flags"),
                    record::action(rec, "new", "flags")
                );
            } else {
                let _ = writeln!(out, "{signal} ignored via {via}(){sup} [{act}]");
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

    /// The echild's own place (the program's line that waited), under the cause it is folded
    /// under; a Python without frames says why instead of naming the interpreter's function.
    #[test]
    fn a_failed_wait_shows_where_it_was_made() {
        let stdlib = "/usr/lib/python3.11/subprocess.py";
        let ignore = json!({"event": "ignore", "pid": 5, "ppid": 1, "exe": "/usr/bin/python3.11",
            "argv": ["python3", "app.py"], "signal": "SIGCHLD", "via": "sigaction", "action": "logged",
            "script": [{"language": "python", "file": "/srv/helper.py", "line": 10, "function": "<module>"}],
            "script_missing": null, "backtrace": []});
        let echild = json!({"event": "echild", "pid": 5, "ppid": 1, "exe": "/usr/bin/python3.11",
            "argv": ["python3", "app.py"], "signal": "SIGCHLD", "via": "waitpid", "action": "logged",
            "script": [
                {"language": "python", "file": stdlib, "line": 2053, "function": "Popen._try_wait"},
                {"language": "python", "file": "/srv/app.py", "line": 25, "function": "<module>"}],
            "script_missing": null, "backtrace": [],
            "cause": {"event": "ignore", "pid": 5, "via": "sigaction", "signal": "SIGCHLD",
                "script": [{"language": "python", "file": "/srv/helper.py", "line": 10, "function": "<module>"}],
                "script_missing": null, "native": null}});
        let text = render(&[ignore, echild], "CHLD", None);
        assert!(
            text.contains(
                "      where: /srv/helper.py:10 in <module>\n\
                 \x20     waitpid() failed with ECHILD in pid 5 python3.11 (python3 app.py)\n\
                 \x20         where: /srv/app.py:25 in <module>\n"
            ),
            "{text}"
        );
        let missing = json!({"language": "python", "version": "3.7", "reason": "unsupported-version",
                             "text": "Python 3.7: no Python frames (supported: 3.8 to 3.15)"});
        let setsig =
            json!({"addr": "0x1", "module": "/opt/py/lib/libpython3.7m.so.1.0", "offset": "0x9"});
        let ignore = json!({"event": "ignore", "pid": 6, "ppid": 1, "exe": "/opt/py/bin/python3.7",
            "signal": "SIGCHLD", "via": "sigaction", "action": "logged",
            "script": [], "script_missing": missing, "backtrace": [setsig]});
        let mut echild = ignore.clone();
        echild["event"] = json!("echild");
        echild["via"] = json!("waitpid");
        let text = render(&[ignore, echild], "CHLD", None);
        assert_eq!(
            text.matches("where: Python 3.7: no Python frames (supported: 3.8 to 3.15)\n")
                .count(),
            2,
            "{text}"
        );
        assert!(!text.contains("PyOS_setsig"), "{text}");
    }

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
            "sigaudit: 2 processes reported 3 events, 1 root cause:\n\
             \x20 pid 10 demo: SIGCHLD ignored via signal() [vetoed]\n\
             \x20     where: setup at /tmp/t/demo.c:7 (demo+0x1149)\n\
             \x20     inherited by 1 descendant process: true (pid 11), 2 events\n\
             sigaudit: full records in out.txt\n"
        );
    }

    #[test]
    fn the_same_event_in_many_processes_is_said_once() {
        let records: Vec<Value> = (0..7)
            .map(|i| {
                json!({"event": "ignore", "pid": 100 + i, "exe": "/usr/sbin/cron", "argv": ["cron", "-f", format!("job {i}")],
                       "signal": "SIGPIPE", "via": "sigaction", "action": "logged",
                       "backtrace": [{"addr": "0x1", "module": "/usr/sbin/cron", "offset": "0x12f11"}]})
            })
            .collect();
        let text = render(&records, "PIPE", None);
        let (said, note) = text.split_at(text.find("      note: ").expect("a note"));
        assert_eq!(
            said,
            "sigaudit: 7 processes reported 7 events, 1 root cause:\n\
             \x20 cron, 7 times in 7 processes (pid 100, 101, 102, 103, 104, ...): SIGPIPE ignored via sigaction() [logged]\n\
             \x20     where: cron+0x12f11\n"
        );
        // cron has no name there: said once, with what to do.
        assert!(note.starts_with("      note: cron is stripped"), "{note}");
        assert_eq!(note.lines().count(), 2, "{note}");
    }

    #[test]
    fn a_forked_child_is_told_apart_from_its_parent() {
        let child = json!({"event": "ignore", "pid": 21, "ppid": 20, "forked_from": 20,
            "exe": "/usr/bin/perl", "argv": ["perl", "server.pl"], "signal": "SIGCHLD",
            "via": "sigaction", "action": "logged",
            "script": [{"language": "perl", "file": "/srv/lib/Server.pm", "line": 12, "function": "Server::run"}]});
        let text = render(&[child], "CHLD", None);
        assert!(
            text.contains(
                "  pid 21 perl (forked from pid 20): SIGCHLD ignored via sigaction() [logged]\n\
                           \x20     where: /srv/lib/Server.pm:12 in Server::run\n"
            ),
            "{text}"
        );
        assert!(!text.contains("server.pl"), "{text}");
    }

    #[test]
    fn a_shell_trap_leads_with_the_shell_and_folds_its_tree() {
        let mut records = Vec::new();
        for (i, program) in ["env", "bash", "readlink", "python3.11"].iter().enumerate() {
            let pid = 101 + i as i64;
            records.push(json!({"event": "ignore", "pid": pid, "ppid": 100, "forked_from": 100,
                "exe": "/usr/bin/bash", "argv": ["bash", "deploy.sh"], "signal": "SIGCHLD",
                "via": "sigaction", "action": "logged",
                "script": [{"language": "shell", "file": "deploy.sh", "line": 7 + i, "function": "main"}]}));
            records.push(json!({"event": "inherited", "pid": pid, "ppid": 100,
                "exe": format!("/usr/bin/{program}"), "argv": [program], "signal": "SIGCHLD",
                "via": "execve", "action": "logged"}));
        }
        let text = render(&records, "CHLD", None);
        assert_eq!(
            text,
            "sigaudit: 4 processes reported 8 events, 1 root cause:\n\
             \x20 pid 100 bash (bash deploy.sh): SIGCHLD ignored in 4 children it starts [logged]\n\
             \x20     where: deploy.sh:7 in main, the first command run with it\n\
             \x20     (a shell applies `trap '' CHLD` in each child it starts, not in itself: the trap's own line is not known)\n\
             \x20     inherited by 4 descendant processes: env, bash, readlink, python3.11 (pid 101, 102, 103, 104), 4 events\n"
        );
    }
}
