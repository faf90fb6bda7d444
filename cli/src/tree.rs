//! Root causes across a process tree: which ignores are causes, and which events are their
//! consequences in other processes.
//!
//! An ignore survives `fork` and `execve`, so one `trap '' CHLD` in a deploy script shows up in
//! every process it starts: each has an `inherited` event, and some programs (bash among them)
//! set the ignore again in each child before `exec`. Those are consequences. A root cause is an
//! ignore that is not the consequence of one inherited from an audited parent: an ignore in a
//! process that did not start with it, or an `inherited` event whose parent was not audited.
//!
//! Records are taken oldest first. Each process's *origin* is the cause its SIGCHLD state comes
//! from: set when it ignores (a cause of its own), when it starts with the signal ignored (its
//! parent's origin, if the parent was audited), or when it is forked (its parent's origin at that
//! moment). Then:
//!
//! - an `inherited` event is a consequence of its parent's origin (or of its own pid's, when a
//!   forked child that ignored execs), else a root cause;
//! - an `ignore` in a process that inherited an origin is a consequence of it (setting it again);
//!   otherwise it is a root cause, grouped with the others of the same place. A shell's ignores
//!   are grouped by the shell process: bash applies `trap '' CHLD` in each child it starts (its
//!   own disposition never changes), so each command line after the trap is one of them;
//! - an `echild` event is a consequence of its process's origin;
//! - anything else (`change` events) is not part of the tree.
//!
//! Causes are identified by a key, the culprit's place, so that the same cause seen in several
//! processes (or hosts) is one entry.

//!
//! The tree is built one record at a time ([`Tree::add`]), keeping per process only its origin,
//! so that a report over millions of records keeps no record. Processes are told apart by host
//! and pid. An `inherited` event whose parent's records have not been seen yet (per-process files
//! read in any order) is a root cause until the end: [`Tree::parents_found`] then names the cause
//! it belongs to, if the parent turned up.

use crate::record::{self, int, s};
use serde_json::Value;
use std::collections::HashMap;

/// A process: its host (an index, 0 when unknown) and pid.
pub type Proc = (u32, i64);

/// At most this many processes' origins are kept; past it, new processes start unknown.
pub const MAX_PROCESSES: usize = 1 << 20;

/// At most this many causes are told apart; the events of any more are one cause.
pub const MAX_CAUSES: usize = 1000;

/// The key of the cause that holds the events of causes past [`MAX_CAUSES`].
pub const OTHER_CAUSES: &str = "other causes";

/// One root cause.
pub struct Cause {
    /// What identifies it: the signal and the culprit's place (or the shell process); what a
    /// report across runs groups by.
    pub key: String,
    /// The cause is a shell applying its trap to the children it starts.
    pub shell_children: bool,
}

/// What an event is in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// One of the events that are root cause `c`.
    Cause(usize),
    /// An event in another process that follows from cause `c`: an inherited ignore, or an
    /// ignore set again.
    Inherited(usize),
    /// A wait that failed with ECHILD because of cause `c`.
    Echild(usize),
    /// Outside the tree: `change` events, an `echild` of unknown origin.
    Other,
}

/// The causes, in the order they first happened, and each process's origin.
#[derive(Default)]
pub struct Tree {
    pub causes: Vec<Cause>,
    by_key: HashMap<String, usize>,
    /// For each process, the cause its SIGCHLD state comes from, and whether it got it from a
    /// parent.
    origin: HashMap<Proc, (usize, bool)>,
    /// Root causes that are an inherited ignore from a parent not seen (yet): the parent.
    unseen_parent: Vec<(usize, Proc)>,
}

impl Tree {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Places one record, the next oldest, of `host`.
    pub fn add(&mut self, rec: &Value, host: u32) -> Role {
        let pid = (host, int(rec, "pid").unwrap_or(0));
        let ppid = (host, int(rec, "ppid").unwrap_or(0));
        let forked_from = int(rec, "forked_from");
        // What a forked child starts with: its parent's state when it was forked.
        if let (Some(parent), None) = (forked_from, self.origin.get(&pid))
            && let Some(&(cause, _)) = self.origin.get(&(host, parent))
        {
            self.set_origin(pid, (cause, true));
        }
        match s(rec, "event") {
            "inherited" => {
                let from_parent = self
                    .origin
                    .get(&pid)
                    .or_else(|| self.origin.get(&ppid))
                    .map(|&(c, _)| c);
                let (cause, role) = match from_parent {
                    Some(c) => (c, Role::Inherited(c)),
                    None => {
                        let key = format!(
                            "{} inherited from pid {} on host {host}",
                            s(rec, "signal"),
                            ppid.1
                        );
                        let c = self.root(key, false);
                        if !self.unseen_parent.iter().any(|&(u, _)| u == c) {
                            self.unseen_parent.push((c, ppid));
                        }
                        (c, Role::Cause(c))
                    }
                };
                self.set_origin(pid, (cause, true));
                role
            }
            "ignore" => {
                let inherited = self.origin.get(&pid).copied();
                let (cause, role) = match inherited {
                    Some((c, true)) => (c, Role::Inherited(c)),
                    _ => {
                        let shell = is_shell(rec);
                        let key = match shell {
                            true => format!(
                                "{} shell pid {} on host {host}",
                                s(rec, "signal"),
                                forked_from.unwrap_or(pid.1)
                            ),
                            false => place_key(rec),
                        };
                        let c = self.root(key, shell);
                        (c, Role::Cause(c))
                    }
                };
                self.set_origin(pid, (cause, inherited.is_some_and(|o| o.1)));
                role
            }
            "echild" => match self.origin.get(&pid) {
                Some(&(c, _)) => Role::Echild(c),
                // The process's own records are not in sight (a report of the last day, whose
                // ignore happened before): the cause the record names, if it names a place.
                None => match rec.get("cause").filter(|c| s(c, "event") == "ignore") {
                    Some(cause) if !cause_place(cause).is_empty() => {
                        let key = format!("{} {}", s(rec, "signal"), cause_place(cause));
                        Role::Echild(self.root(key, false))
                    }
                    _ => Role::Other,
                },
            },
            _ => Role::Other,
        }
    }

    fn set_origin(&mut self, p: Proc, origin: (usize, bool)) {
        if self.origin.len() < MAX_PROCESSES || self.origin.contains_key(&p) {
            self.origin.insert(p, origin);
        }
    }

    /// The cause of `key`, made if new; past [`MAX_CAUSES`], one cause holds all the others.
    fn root(&mut self, key: String, shell_children: bool) -> usize {
        if let Some(&c) = self.by_key.get(&key) {
            return c;
        }
        if self.causes.len() >= MAX_CAUSES && key != OTHER_CAUSES {
            return self.root(OTHER_CAUSES.to_string(), false);
        }
        self.causes.push(Cause {
            key: key.clone(),
            shell_children,
        });
        self.by_key.insert(key, self.causes.len() - 1);
        self.causes.len() - 1
    }

    /// Root causes that were an inherited ignore from a parent seen only later, each with the
    /// cause that parent's state came from: they are that cause's consequences.
    pub fn parents_found(&self) -> Vec<(usize, usize)> {
        self.unseen_parent
            .iter()
            .filter_map(|&(c, parent)| {
                let &(found, _) = self.origin.get(&parent)?;
                (found != c).then_some((c, found))
            })
            .collect()
    }
}

/// Whether the record's script frames (or missing ones) are a shell's.
fn is_shell(rec: &Value) -> bool {
    let frames = record::script_frames(rec);
    match frames.first() {
        Some((language, _)) => language == "shell",
        None => {
            rec.get("script_missing")
                .and_then(|m| m.get("language"))
                .and_then(Value::as_str)
                == Some("shell")
        }
    }
}

/// The key of an ignore that is a cause of its own: the signal and the culprit's place, in a form
/// that is the same wherever the code ran: a script's file and line; a native frame's module file
/// name and function (the symbol-table name every record has, else the one from debug
/// information), so that builds with other offsets on other hosts, and records with and without
/// source lines, are one cause; else its offset.
fn place_key(rec: &Value) -> String {
    let place = if let Some((_, f)) = record::script_frames(rec)
        .into_iter()
        .find(|(language, f)| !record::is_interpreter_lib(language, s(f, "file")))
    {
        script_key(f)
    } else if let Some(why) = record::script_missing(rec) {
        format!("missing {why}")
    } else if let Some(f) = record::native_culprit(rec) {
        native_key(f)
    } else if let Some(f) = record::array(rec, "backtrace").first() {
        format!("runtime {}", native_key(f))
    } else {
        String::new()
    };
    format!("{} {place}", s(rec, "signal"))
}

/// The place a cause (an `echild` record's `cause`) names, as [`place_key`] writes it: its first
/// script frame (the culprit, outwards), else its native frame; empty when it names none.
fn cause_place(cause: &Value) -> String {
    if let Some((_, f)) = record::script_frames(cause).first() {
        return script_key(f);
    }
    if let Some(why) = record::script_missing(cause) {
        return format!("missing {why}");
    }
    cause
        .get("native")
        .filter(|n| n.is_object())
        .map(native_key)
        .unwrap_or_default()
}

fn script_key(f: &Value) -> String {
    format!(
        "{}:{}",
        s(f, "file"),
        int(f, "line").map(|l| l.to_string()).unwrap_or_default()
    )
}

fn native_key(f: &Value) -> String {
    let module = record::basename(s(f, "module"));
    let symbol = s(f, "symbol");
    let name = symbol.rsplit_once('+').map(|(n, _)| n).unwrap_or(symbol);
    let name = if name.is_empty() {
        s(f, "function")
    } else {
        name
    };
    if name.is_empty() {
        format!("{module}+{}", s(f, "offset"))
    } else {
        format!("{module} {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A cause and the indexes of its events, inherited and echild events.
    #[derive(Default)]
    struct BuiltCause {
        key: String,
        shell_children: bool,
        events: Vec<usize>,
        inherited: Vec<usize>,
        echild: Vec<usize>,
    }

    struct Built {
        causes: Vec<BuiltCause>,
        others: Vec<usize>,
    }

    fn build(records: &[Value]) -> Built {
        let mut tree = Tree::new();
        let mut b = Built {
            causes: Vec::new(),
            others: Vec::new(),
        };
        for (i, rec) in records.iter().enumerate() {
            let role = tree.add(rec, 0);
            let c = match role {
                Role::Cause(c) | Role::Inherited(c) | Role::Echild(c) => c,
                Role::Other => {
                    b.others.push(i);
                    continue;
                }
            };
            while b.causes.len() <= c {
                let cause = &tree.causes[b.causes.len()];
                b.causes.push(BuiltCause {
                    key: cause.key.clone(),
                    shell_children: cause.shell_children,
                    ..BuiltCause::default()
                });
            }
            let entry = &mut b.causes[c];
            match role {
                Role::Cause(_) => entry.events.push(i),
                Role::Inherited(_) => entry.inherited.push(i),
                _ => entry.echild.push(i),
            }
        }
        b
    }

    fn ev(event: &str, pid: i64, ppid: i64, forked_from: Option<i64>, old: &str) -> Value {
        json!({"event": event, "pid": pid, "ppid": ppid, "forked_from": forked_from,
               "exe": "/usr/bin/bash", "argv": ["bash", "deploy.sh"], "signal": "SIGCHLD",
               "via": if event == "inherited" { "execve" } else { "sigaction" },
               "old": old, "action": "logged",
               "script": [{"language": "shell", "file": "deploy.sh", "line": 7, "function": "main"}]})
    }

    #[test]
    fn a_shell_trap_is_one_cause_and_its_tree_its_consequences() {
        // bash (pid 10) applies its trap in each child it forks (11, 12) before they exec;
        // child 11 execs another bash script, whose own child (13) sets it again and execs.
        let records = vec![
            ev("ignore", 11, 10, Some(10), "handler"),
            ev("inherited", 11, 10, None, "SIG_IGN"),
            ev("ignore", 13, 11, Some(11), "handler"),
            ev("inherited", 13, 11, None, "SIG_IGN"),
            ev("ignore", 12, 10, Some(10), "handler"),
            ev("inherited", 12, 10, None, "SIG_IGN"),
            ev("echild", 13, 11, None, "SIG_IGN"),
        ];
        let tree = build(&records);
        assert_eq!(
            tree.causes.len(),
            1,
            "{:?}",
            tree.causes.iter().map(|c| &c.key).collect::<Vec<_>>()
        );
        let c = &tree.causes[0];
        assert!(c.shell_children);
        assert_eq!(c.events, vec![0, 4]);
        assert_eq!(c.inherited, vec![1, 2, 3, 5]);
        assert_eq!(c.echild, vec![6]);
        assert!(tree.others.is_empty());
    }

    #[test]
    fn an_inherited_ignore_from_outside_is_a_root_cause() {
        let records = vec![
            ev("inherited", 20, 1, None, "SIG_IGN"),
            ev("inherited", 21, 20, None, "SIG_IGN"),
        ];
        let tree = build(&records);
        assert_eq!(tree.causes.len(), 1);
        assert_eq!(tree.causes[0].events, vec![0]);
        assert_eq!(tree.causes[0].inherited, vec![1]);
    }

    #[test]
    fn a_parent_seen_after_its_child_claims_the_childs_inherited_ignore() {
        // Per-process files read in any order: the child's file first.
        let mut parent = ev("ignore", 40, 1, None, "SIG_DFL");
        parent["script"] =
            json!([{"language": "python", "file": "/srv/a.py", "line": 3, "function": "f"}]);
        let child = ev("inherited", 41, 40, None, "SIG_IGN");
        let mut tree = Tree::new();
        assert_eq!(tree.add(&child, 1), Role::Cause(0));
        assert_eq!(tree.add(&parent, 1), Role::Cause(1));
        assert_eq!(tree.parents_found(), vec![(0, 1)]);
        // The same pids on another host are other processes.
        let mut tree = Tree::new();
        tree.add(&child, 1);
        tree.add(&parent, 2);
        assert!(tree.parents_found().is_empty());
    }

    #[test]
    fn one_native_cause_across_builds_and_with_or_without_source_lines() {
        let rec = |offset: &str, symbol: &str, file: Option<&str>| {
            let mut f =
                json!({"addr": "0x1", "module": "/opt/a/demo", "offset": offset, "symbol": symbol});
            if let Some(file) = file {
                f["file"] = json!(file);
                f["line"] = json!(7);
                f["function"] = json!("setup");
            }
            json!({"event": "ignore", "pid": 1, "exe": "/opt/a/demo", "signal": "SIGCHLD",
                   "via": "signal", "backtrace": [
                       {"addr": "0x9", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x10", "symbol": "signal+0x5"},
                       f]})
        };
        let keys: Vec<String> = [
            rec("0x1149", "setup+0x12", None),
            rec("0x2149", "setup+0x16", Some("/src/demo.c")),
        ]
        .iter()
        .map(place_key)
        .collect();
        assert_eq!(keys, ["SIGCHLD demo setup", "SIGCHLD demo setup"]);
    }

    #[test]
    fn an_echild_whose_process_is_not_in_sight_joins_the_cause_it_names() {
        let mut ignore = ev("ignore", 50, 1, None, "SIG_DFL");
        ignore["script"] =
            json!([{"language": "python", "file": "/srv/a.py", "line": 3, "function": "f"}]);
        let echild = json!({"event": "echild", "pid": 60, "signal": "SIGCHLD", "via": "waitpid",
            "cause": {"event": "ignore", "pid": 60, "signal": "SIGCHLD",
                      "script": [{"language": "python", "file": "/srv/a.py", "line": 3, "function": "f"}]}});
        let mut tree = Tree::new();
        assert_eq!(tree.add(&ignore, 0), Role::Cause(0));
        assert_eq!(tree.add(&echild, 0), Role::Echild(0));
        let unknown = json!({"event": "echild", "pid": 61, "signal": "SIGCHLD", "cause": null});
        assert_eq!(tree.add(&unknown, 0), Role::Other);
    }

    #[test]
    fn causes_past_the_cap_are_one() {
        let mut tree = Tree::new();
        for i in 0..MAX_CAUSES + 10 {
            let mut r = ev("ignore", i as i64 + 2, 1, None, "SIG_DFL");
            r["script"] = json!([{"language": "python", "file": format!("/srv/{i}.py"), "line": 1, "function": "f"}]);
            tree.add(&r, 0);
        }
        assert_eq!(tree.causes.len(), MAX_CAUSES + 1);
        assert_eq!(tree.causes[MAX_CAUSES].key, OTHER_CAUSES);
    }

    #[test]
    fn a_forked_child_ignoring_on_its_own_is_its_own_cause() {
        let mut child = ev("ignore", 31, 30, Some(30), "SIG_DFL");
        child["exe"] = json!("/usr/bin/perl");
        child["script"] =
            json!([{"language": "perl", "file": "server.pl", "line": 4, "function": "(main)"}]);
        let mut parent = child.clone();
        parent["pid"] = json!(30);
        parent["forked_from"] = Value::Null;
        parent["script"] =
            json!([{"language": "perl", "file": "server.pl", "line": 9, "function": "(main)"}]);
        let tree = build(&[child, parent]);
        assert_eq!(tree.causes.len(), 2);
    }
}
