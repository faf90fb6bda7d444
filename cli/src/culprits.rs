//! Events grouped by culprit, in bounded memory: what `sigaudit report` prints.
//!
//! A group is one place in the code that ignores a watched signal: a script's file and line, or a
//! native function (its module's file name and its symbol: the same function groups together on
//! hosts whose builds put it at other offsets). Each group counts its events, how it was done
//! (`SIGCHLD ignored via sigaction()`), what was done (logged, vetoed, aborted), the processes,
//! programs and hosts, the first and last time, and what it caused: `echild` events (grouped by
//! the place their cause names) and processes that started with the signal already ignored (an
//! `inherited` event is blamed on its parent's last ignore, or that parent's own parent's, when
//! the parent inherited it too).
//!
//! Records are added one at a time and never kept. What is kept per group is bounded: counters
//! of names keep [`MAX_NAMES`] names (the rest are counted together), processes are counted
//! exactly up to [`EXACT`] and estimated beyond (HyperLogLog, about 1.6 % off), and there are at
//! most [`MAX_GROUPS`] groups (later culprits are counted in one more). The links from processes
//! to their parents' culprits keep at most [`MAX_PROCESSES`] processes.

use crate::record::{self, int, s};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

pub const MAX_GROUPS: usize = 1000;
pub const MAX_NAMES: usize = 64;
pub const EXACT: usize = 4096;
pub const MAX_PROCESSES: usize = 1 << 20;
/// How many processes a group names (pid, program, command line) before it counts programs.
const NAMED: usize = 5;

/// A process: its host (an index into the hosts, 0 when unknown) and pid.
type Proc = (u32, i64);

/// The groups, and how to find a process's culprit.
#[derive(Default)]
pub struct Culprits {
    groups: Vec<Group>,
    index: HashMap<String, usize>,
    /// Events whose culprit did not fit in [`MAX_GROUPS`] groups.
    pub other_events: u64,
    /// Each process's last ignore that took effect: its group.
    ignored_in: HashMap<Proc, usize>,
    /// Processes that started with the signal ignored: their parent's pid.
    inherited_from: HashMap<Proc, i64>,
    /// Consequences in children, by parent, until the parent's culprit is known (at the end).
    pending: HashMap<Proc, Pending>,
    hosts: Vec<String>,
    host_ids: HashMap<String, u32>,
    /// Events with no host, among others.
    pub events: u64,
    processes: Distinct,
    first: String,
    last: String,
}

/// Consequences whose culprit is in the parent.
#[derive(Default)]
struct Pending {
    inherited: Consequence,
    echild: Consequence,
}

/// One culprit and everything blamed on it.
#[derive(Default)]
struct Group {
    /// For people: `/srv/app/helper.py:10 in <module>`, `setup at demo.c:7 (demo+0x1149)`.
    place: String,
    key: String,
    events: u64,
    /// `SIGCHLD ignored via sigaction()`, and how often.
    how: Counter,
    /// `logged`, `vetoed`, `aborted`.
    actions: Counter,
    who: Who,
    first: String,
    last: String,
    echild: Consequence,
    inherited: Consequence,
}

/// Processes, programs and hosts.
#[derive(Default)]
struct Who {
    processes: Distinct,
    programs: Counter,
    hosts: Counter,
    /// The first few processes, with their program and command line.
    named: Vec<(Proc, String)>,
}

/// Events that an ignore caused elsewhere.
#[derive(Default)]
struct Consequence {
    events: u64,
    /// `waitpid`, ... for `echild`.
    via: Counter,
    who: Who,
}

impl Culprits {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record; `host` is where it came from, when known.
    pub fn add(&mut self, rec: &Value, host: Option<&str>) {
        let host = self.host_id(host);
        let proc = (host, int(rec, "pid").unwrap_or(0));
        let ppid = (host, int(rec, "ppid").unwrap_or(0));
        self.events += 1;
        self.processes.insert(proc);
        let time = s(rec, "time");
        span(&mut self.first, &mut self.last, time);
        let hostname = self.host_name(host);
        let label = label(rec);
        match s(rec, "event") {
            "inherited" => {
                if self.inherited_from.len() < MAX_PROCESSES {
                    self.inherited_from.insert(proc, ppid.1);
                }
                let pending = self.pending_for(ppid);
                pending.inherited.add(proc, &label, hostname, None);
            }
            "echild" => {
                let via = s(rec, "via").to_string();
                match rec.get("cause").filter(|c| c.is_object()) {
                    // The cause was an inherited ignore: the culprit is in the parent.
                    Some(c) if s(c, "event") == "inherited" => {
                        let pending = self.pending_for(ppid);
                        pending.echild.add(proc, &label, hostname, Some(via));
                    }
                    Some(c) => {
                        let (key, place) = cause_place(c);
                        let g = self.group(key, place);
                        g.echild.add(proc, &label, hostname, Some(via));
                        span(&mut g.first, &mut g.last, time);
                    }
                    None => {
                        let g = self.group(
                            "unseen".into(),
                            "not seen by sigaudit (set before the library was loaded, or by a raw system call)".into(),
                        );
                        g.echild.add(proc, &label, hostname, Some(via));
                        span(&mut g.first, &mut g.last, time);
                    }
                }
            }
            kind => {
                let (key, place) = culprit_place(rec);
                let verb = if kind == "change" {
                    "changed"
                } else {
                    "ignored"
                };
                let how = format!("{} {verb} via {}()", s(rec, "signal"), s(rec, "via"));
                let action = s(rec, "action").to_string();
                let index = self.group_index(key, place);
                if let Some(i) = index {
                    let g = &mut self.groups[i];
                    g.events += 1;
                    g.how.add(how);
                    g.actions.add(action.clone());
                    g.who.add(proc, &label, hostname);
                    span(&mut g.first, &mut g.last, time);
                }
                if kind == "ignore" && action == "logged" && self.ignored_in.len() < MAX_PROCESSES {
                    self.ignored_in.insert(proc, index.unwrap_or(usize::MAX));
                }
            }
        }
    }

    fn host_id(&mut self, host: Option<&str>) -> u32 {
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return 0;
        };
        if let Some(&id) = self.host_ids.get(host) {
            return id;
        }
        if self.hosts.len() >= MAX_PROCESSES {
            return 0;
        }
        self.hosts.push(host.to_string());
        let id = self.hosts.len() as u32;
        self.host_ids.insert(host.to_string(), id);
        id
    }

    fn host_name(&self, id: u32) -> Option<String> {
        (id > 0).then(|| self.hosts[id as usize - 1].clone())
    }

    fn pending_for(&mut self, parent: Proc) -> &mut Pending {
        if self.pending.len() >= MAX_PROCESSES && !self.pending.contains_key(&parent) {
            // Too many parents to follow: blame them on "not seen".
            return self.pending.entry((0, -1)).or_default();
        }
        self.pending.entry(parent).or_default()
    }

    /// The group for `key`, made if need be; `None` once there are [`MAX_GROUPS`].
    fn group_index(&mut self, key: String, place: String) -> Option<usize> {
        if !self.index.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            self.other_events += 1;
            return None;
        }
        Some(self.group_index_forced(key, place))
    }

    /// The group for `key`, or the overflow group.
    fn group(&mut self, key: String, place: String) -> &mut Group {
        let i = match self.group_index(key, place) {
            Some(i) => i,
            None => self.group_index_forced("other".into(), "other culprits".into()),
        };
        &mut self.groups[i]
    }

    /// The group for `key`, made if need be, past [`MAX_GROUPS`] too (for the few groups of
    /// what has no culprit).
    fn group_index_forced(&mut self, key: String, place: String) -> usize {
        if let Some(&i) = self.index.get(&key) {
            // A native frame named to its file and line (`setup at demo.c:7 (demo+0x1149)`)
            // says more than the same frame with its symbol only.
            let g = &mut self.groups[i];
            if key.starts_with("native ") && !g.place.contains(" at ") && place.contains(" at ") {
                g.place = place;
            }
            return i;
        }
        self.groups.push(Group {
            place,
            key: key.clone(),
            ..Group::default()
        });
        self.index.insert(key, self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// Blames what is pending on each parent's culprit (following parents that inherited the
    /// ignore themselves), or on "not seen".
    fn resolve(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (parent, p) in pending {
            let mut at = parent;
            let mut found = None;
            for _ in 0..64 {
                if let Some(&g) = self.ignored_in.get(&at) {
                    found = (g != usize::MAX).then_some(g);
                    break;
                }
                match self.inherited_from.get(&at) {
                    Some(&pp) => at = (at.0, pp),
                    None => break,
                }
            }
            let g = match found {
                Some(g) => g,
                None => self.group_index_forced(
                    "outside".into(),
                    "before sigaudit saw it (a parent that was not audited, or a raw system call)"
                        .into(),
                ),
            };
            let g = &mut self.groups[g];
            g.inherited.merge(p.inherited);
            g.echild.merge(p.echild);
        }
    }

    /// Groups in the order they are shown: those that caused the most first, then by events;
    /// places not seen last.
    fn ordered(&self) -> Vec<&Group> {
        let mut groups: Vec<&Group> = self.groups.iter().collect();
        groups.sort_by_key(|g| {
            (
                g.special(),
                std::cmp::Reverse(g.echild.events + g.inherited.events),
                std::cmp::Reverse(g.events),
            )
        });
        groups
    }

    /// The summary for people. `title` starts the first line (`sigaudit report`).
    pub fn render_text(&mut self, title: &str) -> String {
        self.resolve();
        let mut out = String::new();
        let (processes, about) = self.processes.count();
        let hosts = match self.hosts.len() {
            0 => String::new(),
            n => format!(" on {}", count(n as u64, "host", "hosts")),
        };
        let culprits = self.groups.iter().filter(|g| !g.special()).count() as u64;
        let _ = writeln!(
            out,
            "{title}: {} from {}{}{hosts}, {}:",
            count(self.events, "event", "events"),
            if about { "about " } else { "" },
            count(processes, "process", "processes"),
            match culprits {
                0 => "no culprit seen".to_string(),
                n => count(n, "culprit", "culprits"),
            }
        );
        for g in self.ordered() {
            g.write(&mut out, &self.hosts);
        }
        if self.other_events > 0 {
            let _ = writeln!(
                out,
                "  ... and {} from more than {MAX_GROUPS} other culprits",
                count(self.other_events, "event", "events")
            );
        }
        out
    }

    /// The summary as one JSON object.
    pub fn render_json(&mut self) -> Value {
        self.resolve();
        let (processes, about) = self.processes.count();
        let groups: Vec<Value> = self.ordered().iter().map(|g| g.json()).collect();
        json!({
            "events": self.events,
            "processes": processes,
            "processes_estimated": about,
            "hosts": self.hosts,
            "first": self.first,
            "last": self.last,
            "culprits": groups,
            "other_events": self.other_events,
        })
    }
}

impl Group {
    /// A group for what has no culprit in sight, or for the culprits past [`MAX_GROUPS`].
    fn special(&self) -> bool {
        matches!(self.key.as_str(), "unseen" | "outside" | "other")
    }

    fn write(&self, out: &mut String, hosts: &[String]) {
        let _ = writeln!(out, "  {}", self.place);
        if self.events > 0 {
            let (n, about) = self.who.processes.count();
            let _ = writeln!(
                out,
                "      {}: {} in {}{} [{}]",
                self.how.names(3),
                count(self.events, "time", "times"),
                if about { "about " } else { "" },
                count(n, "process", "processes"),
                self.actions.names(3),
            );
            self.who.write(out, "      ");
        }
        if self.who.hosts.total > 0 && !hosts.is_empty() {
            let _ = writeln!(out, "      hosts: {}", self.who.hosts.names(8));
        }
        match (self.first.as_str(), self.last.as_str()) {
            ("", _) => {}
            (a, b) if a == b => {
                let _ = writeln!(out, "      at {a}");
            }
            (a, b) => {
                let _ = writeln!(out, "      from {a} to {b}");
            }
        }
        if self.echild.events > 0 {
            let (n, about) = self.echild.who.processes.count();
            let same = self.events > 0 && self.echild.who.same_as(&self.who);
            let _ = writeln!(
                out,
                "      caused: {} failed with ECHILD {} in {}{}",
                self.echild.via.names_with("()", 3),
                count(self.echild.events, "time", "times"),
                if about { "about " } else { "" },
                if same {
                    match n {
                        1 => "the same process".to_string(),
                        _ => format!("the same {n} processes"),
                    }
                } else {
                    count(n, "process", "processes")
                },
            );
            if !same {
                self.echild.who.write(out, "          ");
            }
        }
        if self.inherited.events > 0 {
            let (n, about) = self.inherited.who.processes.count();
            let _ = writeln!(
                out,
                "      caused: {}{} started with it already ignored",
                if about { "about " } else { "" },
                count(n, "process", "processes"),
            );
            self.inherited.who.write(out, "          ");
        }
    }

    fn json(&self) -> Value {
        let (processes, about) = self.who.processes.count();
        json!({
            "place": self.place,
            "key": self.key,
            "events": self.events,
            "how": self.how.json(),
            "actions": self.actions.json(),
            "processes": processes,
            "processes_estimated": about,
            "programs": self.who.programs.json(),
            "hosts": self.who.hosts.json(),
            "first": self.first,
            "last": self.last,
            "echild": self.echild.json(),
            "inherited": self.inherited.json(),
        })
    }
}

impl Who {
    fn add(&mut self, proc: Proc, label: &str, host: Option<String>) {
        if self.processes.insert(proc) && self.named.len() < NAMED + 1 {
            self.named.push((proc, label.to_string()));
        }
        self.programs
            .add(label.split(" (").next().unwrap_or(label).to_string());
        if let Some(h) = host {
            self.hosts.add(h);
        }
    }

    fn merge(&mut self, other: Who) {
        self.processes.merge(&other.processes);
        self.programs.merge(other.programs);
        self.hosts.merge(other.hosts);
        for n in other.named {
            if self.named.len() < NAMED + 1 && !self.named.iter().any(|(p, _)| *p == n.0) {
                self.named.push(n);
            }
        }
    }

    /// The processes by program and pid when there are few, else the programs with counts.
    fn write(&self, out: &mut String, indent: &str) {
        if self.named.len() > NAMED || self.processes.estimated() {
            let _ = writeln!(out, "{indent}programs: {}", self.programs.names(5));
            return;
        }
        let mut named: Vec<&(Proc, String)> = self.named.iter().collect();
        named.sort();
        let mut labels: Vec<&str> = named.iter().map(|(_, l)| l.as_str()).collect();
        labels.dedup();
        for label in labels {
            let pids: Vec<String> = named
                .iter()
                .filter(|(_, l)| l == label)
                .map(|((_, pid), _)| pid.to_string())
                .collect();
            let _ = writeln!(out, "{indent}{label}: pid {}", pids.join(", "));
        }
    }

    /// Whether these are the same few processes as `other`'s.
    fn same_as(&self, other: &Who) -> bool {
        let pids = |w: &Who| {
            let mut v: Vec<Proc> = w.named.iter().map(|(p, _)| *p).collect();
            v.sort();
            v
        };
        !self.processes.estimated()
            && self.named.len() <= NAMED
            && self.processes.count() == other.processes.count()
            && pids(self) == pids(other)
    }
}

impl Consequence {
    fn add(&mut self, proc: Proc, label: &str, host: Option<String>, via: Option<String>) {
        self.events += 1;
        self.who.add(proc, label, host);
        if let Some(v) = via {
            self.via.add(v);
        }
    }

    fn merge(&mut self, other: Consequence) {
        self.events += other.events;
        self.via.merge(other.via);
        self.who.merge(other.who);
    }

    fn json(&self) -> Value {
        let (processes, about) = self.who.processes.count();
        json!({
            "events": self.events,
            "processes": processes,
            "processes_estimated": about,
            "programs": self.who.programs.json(),
            "hosts": self.who.hosts.json(),
            "via": self.via.json(),
        })
    }
}

/// `program (command line)` of a record, for naming a process.
fn label(rec: &Value) -> String {
    let program = record::program(rec);
    if record::array(rec, "argv").len() > 1 {
        format!("{program} ({})", record::short_command_line(rec, 60))
    } else {
        program
    }
}

/// Widens `first..last` to take `time` (ISO 8601 UTC of one width, so they sort as text).
fn span(first: &mut String, last: &mut String, time: &str) {
    if time.is_empty() {
        return;
    }
    if first.is_empty() || time < first.as_str() {
        *first = time.to_string();
    }
    if time > last.as_str() {
        *last = time.to_string();
    }
}

/// The group key and the description of a record's culprit.
fn culprit_place(rec: &Value) -> (String, String) {
    let place = record::culprit(rec)
        .map(|c| c.describe())
        .unwrap_or_else(|| "an unknown place (the record has no frames)".into());
    let key = if let Some((_, f)) = record::script_frames(rec)
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
        "unknown".into()
    };
    (key, place)
}

/// The group key and the description of the place an `echild` record's cause names.
fn cause_place(cause: &Value) -> (String, String) {
    let place = record::cause_place(cause)
        .unwrap_or_else(|| "an unknown place (the record has no frames)".into());
    let key = if let Some((_, f)) = record::script_frames(cause).first() {
        script_key(f)
    } else if let Some(why) = record::script_missing(cause) {
        format!("missing {why}")
    } else if let Some(f) = cause.get("native").filter(|n| n.is_object()) {
        native_key(f)
    } else {
        "unknown".into()
    };
    (key, place)
}

fn script_key(f: &Value) -> String {
    format!(
        "script {}:{}",
        s(f, "file"),
        int(f, "line").map(|l| l.to_string()).unwrap_or_default()
    )
}

/// A native frame's key: its module's file name and its function (the symbol-table name, which
/// every record has, before the one from debug information), else its offset.
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
        format!("native {module}+{}", s(f, "offset"))
    } else {
        format!("native {module} {name}")
    }
}

/// `1 event`, `1,204 events`.
fn count(n: u64, one: &str, many: &str) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} {}", if n == 1 { one } else { many })
}

/// Names and how often each was seen; at most [`MAX_NAMES`] names, the rest counted together.
#[derive(Default)]
struct Counter {
    names: BTreeMap<String, u64>,
    others: u64,
    total: u64,
}

impl Counter {
    fn add(&mut self, name: String) {
        self.add_n(name, 1);
    }

    fn add_n(&mut self, name: String, n: u64) {
        self.total += n;
        if let Some(c) = self.names.get_mut(&name) {
            *c += n;
        } else if self.names.len() < MAX_NAMES {
            self.names.insert(name, n);
        } else {
            self.others += n;
        }
    }

    fn merge(&mut self, other: Counter) {
        for (name, n) in other.names {
            self.add_n(name, n);
        }
        self.others += other.others;
        self.total += other.others;
    }

    fn top(&self) -> Vec<(&String, u64)> {
        let mut v: Vec<(&String, u64)> = self.names.iter().map(|(k, &n)| (k, n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// `a`, or `a 3, b 1` (the `most` most frequent, then how many others).
    fn names(&self, most: usize) -> String {
        self.names_with("", most)
    }

    fn names_with(&self, suffix: &str, most: usize) -> String {
        let top = self.top();
        let mut parts: Vec<String> = if top.len() == 1 && self.others == 0 {
            vec![format!("{}{suffix}", top[0].0)]
        } else {
            top.iter()
                .take(most)
                .map(|(k, n)| format!("{k}{suffix} {n}"))
                .collect()
        };
        let rest: u64 = top.iter().skip(most).map(|(_, n)| n).sum::<u64>() + self.others;
        if rest > 0 {
            parts.push(format!("others {rest}"));
        }
        parts.join(", ")
    }

    fn json(&self) -> Value {
        let mut m: Map<String, Value> = self
            .top()
            .into_iter()
            .map(|(k, n)| (k.clone(), n.into()))
            .collect();
        if self.others > 0 {
            m.insert("(others)".into(), self.others.into());
        }
        Value::Object(m)
    }
}

/// A count of distinct processes: exact up to [`EXACT`], then a HyperLogLog estimate (4,096
/// one-byte registers; standard error 1.04/sqrt(4096), about 1.6 %).
#[derive(Default)]
struct Distinct {
    exact: HashSet<Proc>,
    registers: Option<Box<[u8; 4096]>>,
}

impl Distinct {
    /// Adds `p`; true if it was not seen before (always true once estimating).
    fn insert(&mut self, p: Proc) -> bool {
        if let Some(r) = &mut self.registers {
            observe(r, p);
            return true;
        }
        let new = self.exact.insert(p);
        if self.exact.len() > EXACT {
            let mut r = Box::new([0u8; 4096]);
            for &q in &self.exact {
                observe(&mut r, q);
            }
            self.exact = HashSet::new();
            self.registers = Some(r);
        }
        new
    }

    fn merge(&mut self, other: &Distinct) {
        match &other.registers {
            None => {
                for &p in &other.exact {
                    self.insert(p);
                }
            }
            Some(theirs) => {
                if self.registers.is_none() {
                    let mut r = Box::new([0u8; 4096]);
                    for &q in &self.exact {
                        observe(&mut r, q);
                    }
                    self.exact = HashSet::new();
                    self.registers = Some(r);
                }
                if let Some(mine) = &mut self.registers {
                    for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    fn estimated(&self) -> bool {
        self.registers.is_some()
    }

    /// The count, and whether it is an estimate.
    fn count(&self) -> (u64, bool) {
        let Some(r) = &self.registers else {
            return (self.exact.len() as u64, false);
        };
        let m = r.len() as f64;
        let sum: f64 = r.iter().map(|&x| 2f64.powi(-i32::from(x))).sum();
        let zeros = r.iter().filter(|&&x| x == 0).count();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut e = alpha * m * m / sum;
        if e <= 2.5 * m && zeros > 0 {
            e = m * (m / zeros as f64).ln();
        }
        (e.round() as u64, true)
    }
}

fn observe(r: &mut [u8; 4096], p: Proc) {
    let h = mix(u64::from(p.0).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ p.1 as u64);
    let index = (h >> 52) as usize;
    let rank = ((h << 12) | (1 << 11)).leading_zeros() as u8 + 1;
    if let Some(slot) = r.get_mut(index) {
        *slot = (*slot).max(rank);
    }
}

/// A 64-bit finalizer (splitmix64's): spreads nearby pids over all bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(pid: i64, host_time: &str, file: &str, line: i64, action: &str) -> Value {
        json!({"event": "ignore", "pid": pid, "ppid": 1, "time": host_time,
               "exe": "/usr/bin/python3.11", "argv": ["python3", "app.py"],
               "signal": "SIGCHLD", "via": "sigaction", "action": action,
               "script": [{"language": "python", "file": "/usr/lib/python3.11/signal.py", "line": 56, "function": "signal"},
                          {"language": "python", "file": file, "line": line, "function": "<module>"}],
               "backtrace": []})
    }

    fn echild(pid: i64, time: &str, file: &str, line: i64) -> Value {
        json!({"event": "echild", "pid": pid, "ppid": 1, "time": time, "exe": "/usr/bin/python3.11",
               "argv": ["python3", "app.py"], "signal": "SIGCHLD", "via": "waitpid", "action": "logged",
               "cause": {"event": "ignore", "pid": pid, "via": "sigaction", "signal": "SIGCHLD",
                         "python": [{"file": file, "line": line, "function": "<module>"}], "native": null}})
    }

    fn inherited(pid: i64, ppid: i64, exe: &str) -> Value {
        json!({"event": "inherited", "pid": pid, "ppid": ppid, "time": "2026-01-01T00:00:05.000000Z",
               "exe": exe, "argv": [exe], "signal": "SIGCHLD", "via": "execve", "action": "logged"})
    }

    #[test]
    fn one_culprit_with_what_it_caused_across_hosts() {
        let mut c = Culprits::new();
        for (i, host) in [(0, "web-1"), (1, "web-1"), (2, "web-2")] {
            let pid = 100 + i;
            let t = format!("2026-01-01T00:00:0{i}.000000Z");
            c.add(&ignore(pid, &t, "/srv/app.py", 10, "logged"), Some(host));
            c.add(&echild(pid, &t, "/srv/app.py", 10), Some(host));
            // A child that inherited it, and the child's own child.
            c.add(&inherited(200 + i, pid, "/bin/sh"), Some(host));
            c.add(&inherited(300 + i, 200 + i, "/bin/false"), Some(host));
        }
        c.add(
            &ignore(
                900,
                "2026-01-01T00:00:09.000000Z",
                "/srv/other.py",
                3,
                "vetoed",
            ),
            None,
        );
        let text = c.render_text("sigaudit report");
        assert_eq!(
            text,
            "sigaudit report: 13 events from 10 processes on 2 hosts, 2 culprits:\n\
             \x20 /srv/app.py:10 in <module>\n\
             \x20     SIGCHLD ignored via sigaction(): 3 times in 3 processes [logged]\n\
             \x20     python3.11 (python3 app.py): pid 100, 101, 102\n\
             \x20     hosts: web-1 2, web-2 1\n\
             \x20     from 2026-01-01T00:00:00.000000Z to 2026-01-01T00:00:02.000000Z\n\
             \x20     caused: waitpid() failed with ECHILD 3 times in the same 3 processes\n\
             \x20     caused: 6 processes started with it already ignored\n\
             \x20         programs: false 3, sh 3\n\
             \x20 /srv/other.py:3 in <module>\n\
             \x20     SIGCHLD ignored via sigaction(): 1 time in 1 process [vetoed]\n\
             \x20     python3.11 (python3 app.py): pid 900\n\
             \x20     at 2026-01-01T00:00:09.000000Z\n"
        );
        let j = c.render_json();
        assert_eq!(j["culprits"][0]["inherited"]["events"], 6);
        assert_eq!(j["culprits"][0]["hosts"], json!({"web-1": 2, "web-2": 1}));
        assert_eq!(j["hosts"], json!(["web-1", "web-2"]));
    }

    #[test]
    fn native_culprits_group_by_function_across_builds() {
        let rec = |offset: &str, symoff: &str| {
            json!({"event": "ignore", "pid": 1, "time": "T", "exe": "/opt/a/demo", "signal": "SIGCHLD",
                   "via": "signal", "action": "logged", "python": [],
                   "backtrace": [{"addr": "0x1", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x10", "symbol": "signal+0x5"},
                                 {"addr": "0x2", "module": "/opt/a/demo", "offset": offset, "symbol": format!("setup+{symoff}")}]})
        };
        let mut c = Culprits::new();
        c.add(&rec("0x1149", "0x12"), Some("a"));
        c.add(&rec("0x2149", "0x16"), Some("b"));
        let j = c.render_json();
        assert_eq!(j["culprits"].as_array().unwrap().len(), 1, "{j:#}");
        assert_eq!(j["culprits"][0]["place"], "setup+0x12 (demo+0x1149)");
        // An echild whose cause names the same function joins it.
        let mut c = Culprits::new();
        c.add(&rec("0x1149", "0x12"), None);
        c.add(&json!({"event": "echild", "pid": 1, "via": "wait", "cause": {"event": "ignore", "python": [],
            "native": {"module": "/opt/a/demo", "offset": "0x1149", "symbol": "setup+0x12"}}}), None);
        let j = c.render_json();
        assert_eq!(j["culprits"].as_array().unwrap().len(), 1, "{j:#}");
        assert_eq!(j["culprits"][0]["echild"]["via"], json!({"wait": 1}));
    }

    #[test]
    fn consequences_without_a_seen_culprit_say_so() {
        let mut c = Culprits::new();
        c.add(&inherited(5, 4, "/bin/true"), None);
        c.add(
            &json!({"event": "echild", "pid": 6, "via": "wait", "cause": null}),
            None,
        );
        let text = c.render_text("sigaudit");
        assert!(
            text.contains("  not seen by sigaudit (set before the library was loaded, or by a raw system call)\n      caused: wait() failed with ECHILD 1 time in 1 process\n"),
            "{text}"
        );
        assert!(
            text.contains("  before sigaudit saw it (a parent that was not audited, or a raw system call)\n      caused: 1 process started with it already ignored\n"),
            "{text}"
        );
    }

    #[test]
    fn process_counts_are_exact_then_estimated_within_a_few_percent() {
        let mut d = Distinct::default();
        for pid in 0..EXACT as i64 {
            d.insert((1, pid));
            d.insert((1, pid));
        }
        assert_eq!(d.count(), (EXACT as u64, false));
        for n in [10_000u64, 200_000] {
            let mut d = Distinct::default();
            for pid in 0..n as i64 {
                d.insert((1 + (pid % 3) as u32, pid));
            }
            let (est, about) = d.count();
            assert!(about);
            let err = (est as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.05, "{n}: {est}");
        }
    }

    #[test]
    fn memory_is_bounded_by_the_caps() {
        let mut c = Culprits::new();
        for i in 0..(MAX_GROUPS as i64 + 50) {
            c.add(&ignore(i, "T", &format!("/srv/{i}.py"), 1, "logged"), None);
        }
        assert_eq!(c.groups.len(), MAX_GROUPS);
        assert_eq!(c.other_events, 50);
        let mut k = Counter::default();
        for i in 0..1000 {
            k.add(format!("p{i}"));
        }
        assert_eq!(k.names.len(), MAX_NAMES);
        assert_eq!(k.total, 1000);
        assert!(k.names(2).ends_with(&format!("others {}", 1000 - 2)));
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count(1, "event", "events"), "1 event");
        assert_eq!(count(1204, "event", "events"), "1,204 events");
        assert_eq!(count(1_000_000, "x", "xs"), "1,000,000 xs");
    }
}
