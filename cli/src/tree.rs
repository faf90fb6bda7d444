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

use crate::record::{self, int, s};
use serde_json::Value;
use std::collections::HashMap;

/// One root cause and what followed from it.
pub struct Cause {
    /// What identifies it: the signal and the culprit's place (or the shell process); what a
    /// report across runs groups by.
    #[cfg_attr(not(test), allow(dead_code))]
    pub key: String,
    /// The events that are this cause, oldest first (indexes into the records).
    pub events: Vec<usize>,
    /// Events in other processes that follow from it: inherited ignores and ignores set again.
    pub inherited: Vec<usize>,
    /// Waits that failed with ECHILD because of it.
    pub echild: Vec<usize>,
    /// The cause is a shell applying its trap to the children it starts.
    pub shell_children: bool,
}

/// The causes, in the order they first happened, and the events outside the tree.
pub struct Tree {
    pub causes: Vec<Cause>,
    pub others: Vec<usize>,
}

/// Builds the tree of `records`, which are sorted oldest first.
pub fn build(records: &[Value]) -> Tree {
    let mut tree = Tree {
        causes: Vec::new(),
        others: Vec::new(),
    };
    // For each pid, the cause its SIGCHLD state comes from, and whether it got it from a parent.
    let mut origin: HashMap<i64, (usize, bool)> = HashMap::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, rec) in records.iter().enumerate() {
        let pid = int(rec, "pid").unwrap_or(0);
        let ppid = int(rec, "ppid").unwrap_or(0);
        let forked_from = int(rec, "forked_from");
        // What a forked child starts with: its parent's state when it was forked.
        if let (Some(parent), None) = (forked_from, origin.get(&pid))
            && let Some(&(cause, _)) = origin.get(&parent)
        {
            origin.insert(pid, (cause, true));
        }
        match s(rec, "event") {
            "inherited" => {
                let from_parent = origin
                    .get(&pid)
                    .or_else(|| origin.get(&ppid))
                    .map(|&(c, _)| c);
                let cause = match from_parent {
                    Some(c) => {
                        tree.causes[c].inherited.push(i);
                        c
                    }
                    None => {
                        let key = format!("{} inherited from pid {ppid}", s(rec, "signal"));
                        root(&mut tree, &mut by_key, key, i, false)
                    }
                };
                origin.insert(pid, (cause, true));
            }
            "ignore" => {
                let cause = match origin.get(&pid) {
                    Some(&(c, true)) => {
                        tree.causes[c].inherited.push(i);
                        c
                    }
                    _ => {
                        let shell = is_shell(rec);
                        let key = match shell {
                            true => format!(
                                "{} shell pid {}",
                                s(rec, "signal"),
                                forked_from.unwrap_or(pid)
                            ),
                            false => place_key(rec),
                        };
                        root(&mut tree, &mut by_key, key, i, shell)
                    }
                };
                origin.insert(pid, (cause, origin.get(&pid).is_some_and(|o| o.1)));
            }
            "echild" => match origin.get(&pid) {
                Some(&(c, _)) => tree.causes[c].echild.push(i),
                None => tree.others.push(i),
            },
            "change" => tree.others.push(i),
            _ => {}
        }
    }
    tree
}

/// Adds event `i` to the cause of `key`, made if new; returns the cause's index.
fn root(
    tree: &mut Tree,
    by_key: &mut HashMap<String, usize>,
    key: String,
    i: usize,
    shell_children: bool,
) -> usize {
    let c = *by_key.entry(key.clone()).or_insert_with(|| {
        tree.causes.push(Cause {
            key,
            events: Vec::new(),
            inherited: Vec::new(),
            echild: Vec::new(),
            shell_children,
        });
        tree.causes.len() - 1
    });
    tree.causes[c].events.push(i);
    c
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

/// The key of an ignore that is a cause of its own: the signal, the program and the culprit's
/// place.
fn place_key(rec: &Value) -> String {
    let place = record::culprit(rec)
        .map(|c| c.describe())
        .unwrap_or_default();
    format!(
        "{} {} {} {place}",
        s(rec, "signal"),
        record::program(rec),
        s(rec, "via")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
