//! The summary: how many processes reported events, then the root causes first, each with its
//! place and what followed from it in the process tree folded under it (`tree.rs` decides which
//! is which), then any other events.
//!
//! One code path for `sigaudit -- COMMAND`'s end summary and `sigaudit report`: records are added
//! one at a time ([`Summary::add`]) and none is kept, only counts and the first few of each kind
//! (events that say the same thing, the processes they happened in, the waits that failed), so a
//! report over a gigabyte of records stays in bounded memory. A run adds its records, symbolized
//! and sorted by time, at its end; `--json` and `-o` keep every one of them.

use crate::collect::Loss;
use crate::counts::{Counter, Distinct, count};
use crate::record::{self, Culprit, int, s};
use crate::text;
use crate::tree::{MAX_PROCESSES, Proc, Role, Tree};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::path::Path;

/// How many events that say different things a cause (or the other events) lists; more are
/// counted.
const MAX_GROUPS: usize = 64;
/// How many processes a line names by pid.
const NAMED: usize = 5;
/// How many processes' failed waits a cause lists one by one.
const MAX_WAITS: usize = 8;

/// What the run's collection knows beyond its records (`collect.rs`).
#[derive(Default)]
pub struct Audit {
    /// Processes that said the library loaded in them.
    pub processes: usize,
    /// Why records may be missing; a run with any is never called clean.
    pub losses: Vec<Loss>,
    /// Other things worth saying (records that came another way).
    pub notes: Vec<String>,
}

/// The summary of a run, sorted by time (the records as they came are in the run's output).
pub fn render(records: &[Value], watch: &str, output: Option<&Path>, audit: &Audit) -> String {
    let mut summary = Summary::new();
    for rec in records {
        summary.add(rec, None);
    }
    summary.render_run(watch, output, audit)
}

/// Records added so far, as causes and what followed from them.
#[derive(Default)]
pub struct Summary {
    tree: Tree,
    causes: Vec<CauseSum>,
    others: Groups,
    events: u64,
    processes: Distinct,
    hosts: Vec<String>,
    host_ids: HashMap<String, u32>,
    /// Each process's program (an index into `names`), to name the parent an inherited ignore
    /// came from.
    programs: HashMap<Proc, u32>,
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
}

/// One root cause: its events, then what followed from it.
#[derive(Default)]
struct CauseSum {
    /// A shell applying its trap: said as the shell's, with the first command it applied to.
    shell: Option<ShellHead>,
    /// For a cause known only from the `cause` of `echild` records (its own record is not among
    /// those added): what it was and where.
    seen_as_cause: Option<String>,
    events: Groups,
    inherited: Followers,
    echild: Waits,
    hosts: Counter,
    first: String,
    last: String,
}

struct ShellHead {
    pid: i64,
    program: String,
    argv: Option<String>,
    signal: String,
    action: String,
    place: Option<String>,
}

/// Events that say the same thing, grouped.
#[derive(Default)]
struct Groups {
    list: Vec<Group>,
    /// Events past [`MAX_GROUPS`] kinds.
    more: u64,
}

/// Events that say the same thing.
struct Group {
    first: Event,
    count: u64,
    /// The first processes, by pid.
    pids: Vec<i64>,
    processes: Distinct,
}

/// Processes that followed from a cause: inherited the ignore, or set it again.
#[derive(Default)]
struct Followers {
    events: u64,
    /// The first processes, in the order they appeared.
    pids: Vec<i64>,
    processes: Distinct,
    /// The first programs, in the order they appeared.
    programs: Vec<String>,
}

/// Waits that failed with ECHILD because of a cause, once per process and function.
#[derive(Default)]
struct Waits {
    events: u64,
    lines: Vec<Wait>,
    /// Past [`MAX_WAITS`] lines: their events and processes.
    more: u64,
    more_processes: Distinct,
}

struct Wait {
    proc: Proc,
    via: String,
    times: u64,
    event: Event,
    /// Where the failed wait was made (the program's line that called subprocess); a frame of
    /// libc alone says nothing.
    place: Option<String>,
}

impl Summary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record, the next oldest of its host; `host` is where it came from, when known.
    pub fn add(&mut self, rec: &Value, host: Option<&str>) {
        let host = self.host_id(host);
        let proc = (host, int(rec, "pid").unwrap_or(0));
        self.events += 1;
        self.processes.insert(proc);
        if self.programs.len() < MAX_PROCESSES && !self.programs.contains_key(&proc) {
            let name = record::program(rec);
            let id = match self.name_ids.get(&name) {
                Some(&id) => id,
                None => {
                    self.names.push(name.clone());
                    self.name_ids.insert(name, self.names.len() as u32 - 1);
                    self.names.len() as u32 - 1
                }
            };
            self.programs.insert(proc, id);
        }
        let role = self.tree.add(rec, host);
        let parent = self
            .programs
            .get(&(host, int(rec, "ppid").unwrap_or(0)))
            .and_then(|&id| self.names.get(id as usize))
            .cloned();
        let e = event(rec, parent.as_deref());
        let c = match role {
            Role::Cause(c) | Role::Inherited(c) | Role::Echild(c) => c,
            Role::Other => {
                self.others.add(e, proc);
                return;
            }
        };
        while self.causes.len() <= c {
            self.causes.push(CauseSum::default());
        }
        let hostname = self.host_name(host);
        let cause = &mut self.causes[c];
        if let Some(h) = hostname {
            cause.hosts.add(h);
        }
        let time = s(rec, "time");
        if !time.is_empty() {
            if cause.first.is_empty() || time < cause.first.as_str() {
                cause.first = time.to_string();
            }
            if time > cause.last.as_str() {
                cause.last = time.to_string();
            }
        }
        match role {
            Role::Cause(_) => {
                if self.tree.causes[c].shell_children && cause.shell.is_none() {
                    cause.shell = Some(ShellHead::of(rec));
                }
                cause.events.add(e, proc);
            }
            Role::Inherited(_) => cause.inherited.add(proc, &e.program, 1),
            _ => {
                if cause.events.list.is_empty()
                    && cause.seen_as_cause.is_none()
                    && let Some(c) = rec.get("cause").filter(|c| c.is_object())
                {
                    cause.seen_as_cause = Some(format!(
                        "{}: {} ignored via {}() (its own record is not among these)",
                        record::cause_place(c).unwrap_or_default(),
                        s(c, "signal"),
                        s(c, "via"),
                    ));
                }
                let place = record::culprit(rec)
                    .filter(|c| !matches!(c, Culprit::RuntimeOnly(_)))
                    .map(|c| c.describe());
                cause.echild.add(proc, s(rec, "via"), e, place)
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
        self.host_ids
            .insert(host.to_string(), self.hosts.len() as u32);
        self.hosts.len() as u32
    }

    fn host_name(&self, id: u32) -> Option<String> {
        (id > 0).then(|| self.hosts[id as usize - 1].clone())
    }

    /// Folds the causes that were an inherited ignore from a parent seen only later into that
    /// parent's cause; returns the causes to show, in the order they first happened.
    fn settle(&mut self) -> Vec<usize> {
        let mut gone = BTreeSet::new();
        for (c, into) in self.tree.parents_found() {
            if c >= self.causes.len() || into >= self.causes.len() {
                continue;
            }
            let from = std::mem::take(&mut self.causes[c]);
            let to = &mut self.causes[into];
            for g in from.events.list {
                to.inherited.events += g.count - 1;
                for &pid in &g.pids {
                    to.inherited.add((0, pid), &g.first.program, 1);
                }
                to.inherited.processes.merge(&g.processes);
            }
            to.inherited.merge(from.inherited);
            to.echild.merge(from.echild);
            to.hosts.merge(from.hosts);
            gone.insert(c);
        }
        (0..self.causes.len())
            .filter(|c| !gone.contains(c))
            .collect()
    }

    /// The end summary of a run: a clean run in one line, else the causes and other events.
    pub fn render_run(&mut self, watch: &str, output: Option<&Path>, audit: &Audit) -> String {
        let mut out = String::new();
        let audited = count(audit.processes as u64, "process", "processes") + " audited";
        if self.events == 0 {
            let verb = if watch.to_ascii_lowercase().contains(":any") {
                "ignored or changed"
            } else {
                "ignored"
            };
            if audit.losses.is_empty() {
                let _ = writeln!(
                    out,
                    "sigaudit: clean run: no process {verb} a watched signal ({watch}); {audited}"
                );
            }
            losses(
                &mut out,
                audit,
                &format!(
                    "sigaudit: no event received from the {audited}, but records may have been \
                     lost, so the run is not known to be clean:"
                ),
            );
            return out;
        }
        self.write(&mut out, "sigaudit", false, Some(&audited));
        if let Some(path) = output {
            let _ = writeln!(out, "sigaudit: full records in {}", path.display());
        }
        losses(
            &mut out,
            audit,
            "sigaudit: records may have been lost, so there may be more than this:",
        );
        out
    }

    /// The summary of `sigaudit report`: as a run's, with the hosts and the time span of each
    /// cause.
    pub fn render_report(&mut self) -> String {
        let mut out = String::new();
        self.write(&mut out, "sigaudit report", true, None);
        out
    }

    /// `audited`: `N processes audited`, for a run's header.
    fn write(&mut self, out: &mut String, title: &str, report: bool, audited: Option<&str>) {
        let shown = self.settle();
        let (processes, about) = self.processes.count();
        let hosts = match self.hosts.len() {
            0 => String::new(),
            n => format!(" on {}", count(n as u64, "host", "hosts")),
        };
        let causes = match shown.len() {
            0 => String::new(),
            n => format!(", {n} root {}", if n == 1 { "cause" } else { "causes" }),
        };
        let audited = audited.map(|a| format!(" ({a})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{title}: {}{} reported {}{hosts}{causes}{audited}:",
            if about { "about " } else { "" },
            count(processes, "process", "processes"),
            count(self.events, "event", "events"),
        );
        let mut noted = BTreeSet::new();
        for &c in &shown {
            self.causes[c].write(out, &mut noted, report);
        }
        if !self.others.list.is_empty() && !shown.is_empty() {
            out.push_str("  other events:\n");
        }
        self.others.write(out, &mut noted);
    }

    /// The summary as one JSON object.
    pub fn json(&mut self) -> Value {
        let shown = self.settle();
        let (processes, about) = self.processes.count();
        let causes: Vec<Value> = shown
            .iter()
            .map(|&c| self.causes[c].json(&self.tree.causes[c].key))
            .collect();
        json!({
            "events": self.events,
            "processes": processes,
            "processes_estimated": about,
            "hosts": self.hosts,
            "causes": causes,
            "other_events": self.others.json(),
        })
    }
}

impl ShellHead {
    fn of(rec: &Value) -> ShellHead {
        ShellHead {
            pid: int(rec, "forked_from")
                .or_else(|| int(rec, "pid"))
                .unwrap_or(0),
            program: record::program(rec),
            argv: (record::array(rec, "argv").len() > 1)
                .then(|| record::short_command_line(rec, 80)),
            signal: s(rec, "signal").to_string(),
            action: s(rec, "action").to_string(),
            place: record::culprit(rec).map(|c| c.describe()),
        }
    }
}

impl CauseSum {
    fn write(&self, out: &mut String, noted: &mut BTreeSet<String>, report: bool) {
        match &self.shell {
            Some(head) => {
                let argv = head
                    .argv
                    .as_ref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default();
                let n = self.events.count();
                let _ = writeln!(
                    out,
                    "  pid {} {}{argv}: {} ignored in {} it starts [{}]",
                    head.pid,
                    head.program,
                    head.signal,
                    if n == 1 {
                        "a child".to_string()
                    } else {
                        format!("{n} children")
                    },
                    head.action,
                );
                if let Some(place) = &head.place {
                    let _ = writeln!(out, "      where: {place}, the first command run with it");
                }
                out.push_str(
                    "      (a shell applies `trap '' CHLD` in each child it starts, not in itself: the trap's own line is not known)\n",
                );
            }
            None => {
                if let (true, Some(seen)) = (self.events.list.is_empty(), &self.seen_as_cause) {
                    let _ = writeln!(out, "  {seen}");
                }
                self.events.write(out, noted)
            }
        }
        if report {
            match self.hosts.top().len() {
                0 => {}
                1 => {
                    let _ = writeln!(out, "      on host {}", self.hosts.names(1));
                }
                _ => {
                    let _ = writeln!(out, "      on hosts {}", self.hosts.names(8));
                }
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
        }
        self.inherited.write(out);
        self.echild.write(out);
    }

    fn json(&self, key: &str) -> Value {
        let (processes, about) = self.events.processes();
        json!({
            "key": key,
            "events": self.events.json(),
            "processes": processes,
            "processes_estimated": about,
            "hosts": self.hosts.json(),
            "first": self.first,
            "last": self.last,
            "inherited": {
                "events": self.inherited.events,
                "processes": self.inherited.processes.count().0,
                "programs": self.inherited.programs,
            },
            "echild": {
                "events": self.echild.events,
                "processes": self.echild.processes().0,
                "via": self.echild.via_counts(),
            },
        })
    }
}

impl Groups {
    fn add(&mut self, e: Event, proc: Proc) {
        let full = self.list.len() >= MAX_GROUPS;
        match self.list.iter_mut().find(|g| {
            g.first.program == e.program && g.first.what == e.what && g.first.detail == e.detail
        }) {
            Some(g) => {
                g.count += 1;
                if g.processes.insert(proc) && g.pids.len() <= NAMED {
                    g.pids.push(proc.1);
                }
            }
            None if !full => {
                let mut processes = Distinct::default();
                processes.insert(proc);
                self.list.push(Group {
                    pids: vec![e.pid],
                    count: 1,
                    first: e,
                    processes,
                });
            }
            None => self.more += 1,
        }
    }

    fn count(&self) -> u64 {
        self.list.iter().map(|g| g.count).sum::<u64>() + self.more
    }

    fn processes(&self) -> (u64, bool) {
        let mut all = Distinct::default();
        for g in &self.list {
            all.merge(&g.processes);
        }
        all.count()
    }

    fn write(&self, out: &mut String, noted: &mut BTreeSet<String>) {
        for g in &self.list {
            g.write(out, noted);
        }
        if self.more > 0 {
            let _ = writeln!(
                out,
                "  ... and {} of other kinds",
                count(self.more, "event", "events")
            );
        }
    }

    fn json(&self) -> Value {
        let list: Vec<Value> = self
            .list
            .iter()
            .map(|g| {
                json!({
                    "program": g.first.program,
                    "what": g.first.what,
                    "where": g.first.detail.trim().lines().map(str::trim).collect::<Vec<_>>(),
                    "events": g.count,
                    "processes": g.processes.count().0,
                    "pids": g.pids,
                })
            })
            .collect();
        json!({"groups": list, "more": self.more})
    }
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
        let (processes, about) = self.processes.count();
        let _ = match (self.count, processes) {
            (1, _) => writeln!(out, "  pid {} {}{argv}: {}", e.pid, e.program, e.what),
            (n, 1) => writeln!(
                out,
                "  pid {} {}{argv}, {n} times: {}",
                e.pid, e.program, e.what
            ),
            (n, p) => {
                let shown: Vec<String> = self
                    .pids
                    .iter()
                    .take(NAMED)
                    .map(|p| p.to_string())
                    .collect();
                let more = if p > NAMED as u64 { ", ..." } else { "" };
                writeln!(
                    out,
                    "  {}, {} times in {}{} processes (pid {}{more}): {}",
                    e.program,
                    thousands(n),
                    if about { "about " } else { "" },
                    thousands(p),
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

impl Followers {
    fn add(&mut self, proc: Proc, program: &str, events: u64) {
        self.events += events;
        if self.processes.insert(proc) && self.pids.len() <= NAMED {
            self.pids.push(proc.1);
        }
        if self.programs.len() <= 6 && !self.programs.iter().any(|p| p == program) {
            self.programs.push(program.to_string());
        }
    }

    fn merge(&mut self, other: Followers) {
        self.events += other.events;
        self.processes.merge(&other.processes);
        for pid in other.pids {
            if self.pids.len() <= NAMED && !self.pids.contains(&pid) {
                self.pids.push(pid);
            }
        }
        for p in other.programs {
            if self.programs.len() <= 6 && !self.programs.contains(&p) {
                self.programs.push(p);
            }
        }
    }

    fn write(&self, out: &mut String) {
        if self.events == 0 {
            return;
        }
        let (n, about) = self.processes.count();
        let shown: Vec<&str> = self.programs.iter().take(6).map(String::as_str).collect();
        let more = if self.programs.len() > 6 { ", ..." } else { "" };
        let which = if n as usize <= NAMED && !about {
            let list: Vec<String> = self.pids.iter().map(|p| p.to_string()).collect();
            format!(" (pid {})", list.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "      inherited by {}{} descendant {}: {}{more}{which}, {}",
            if about { "about " } else { "" },
            thousands(n),
            if n == 1 { "process" } else { "processes" },
            shown.join(", "),
            count(self.events, "event", "events"),
        );
    }
}

impl Waits {
    fn add(&mut self, proc: Proc, via: &str, e: Event, place: Option<String>) {
        self.events += 1;
        if let Some(w) = self
            .lines
            .iter_mut()
            .find(|w| w.proc == proc && w.via == via)
        {
            w.times += 1;
        } else if self.lines.len() < MAX_WAITS {
            self.lines.push(Wait {
                proc,
                via: via.to_string(),
                times: 1,
                event: e,
                place,
            });
        } else {
            self.more += 1;
            self.more_processes.insert(proc);
        }
    }

    fn merge(&mut self, other: Waits) {
        self.events += other.events;
        for w in other.lines {
            let full = self.lines.len() >= MAX_WAITS;
            match self
                .lines
                .iter_mut()
                .find(|x| x.proc == w.proc && x.via == w.via)
            {
                Some(x) => x.times += w.times,
                None if !full => self.lines.push(w),
                None => {
                    self.more += w.times;
                    self.more_processes.insert(w.proc);
                }
            }
        }
        self.more += other.more;
        self.more_processes.merge(&other.more_processes);
    }

    fn processes(&self) -> (u64, bool) {
        let mut all = Distinct::default();
        all.merge(&self.more_processes);
        for w in &self.lines {
            all.insert(w.proc);
        }
        all.count()
    }

    fn via_counts(&self) -> Value {
        let mut via = Counter::default();
        for w in &self.lines {
            via.add_n(w.via.clone(), w.times);
        }
        via.json()
    }

    fn write(&self, out: &mut String) {
        for w in &self.lines {
            let times = if w.times > 1 {
                format!(", {} times", thousands(w.times))
            } else {
                String::new()
            };
            let e = &w.event;
            let argv = e
                .argv
                .as_ref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      {}() failed with ECHILD in pid {} {}{argv}{times}",
                w.via, w.proc.1, e.program
            );
            if let Some(place) = &w.place {
                let _ = writeln!(out, "          where: {place}");
            }
        }
        if self.more > 0 {
            let (n, about) = self.more_processes.count();
            let _ = writeln!(
                out,
                "      ... and {} more in {}{}",
                thousands(self.more),
                if about { "about " } else { "" },
                count(n, "process", "processes"),
            );
        }
    }
}

/// `1,204`.
fn thousands(n: u64) -> String {
    let s = count(n, "", "");
    s.trim_end().to_string()
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

fn event(rec: &Value, parent: Option<&str>) -> Event {
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
            let parent = parent.map(|p| format!(" ({p})")).unwrap_or_default();
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

/// What may be missing (under `header`) and what to do about it; then the other notes.
fn losses(out: &mut String, audit: &Audit, header: &str) {
    if !audit.losses.is_empty() {
        let _ = writeln!(out, "{header}");
        for l in &audit.losses {
            let _ = writeln!(out, "  - {}", l.what);
        }
        let mut advice: Vec<&str> = audit.losses.iter().map(|l| l.advice).collect();
        advice.dedup();
        for a in advice {
            let _ = writeln!(out, "  to see everything: {a}");
        }
    }
    for n in &audit.notes {
        let _ = writeln!(out, "sigaudit: note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn audited(processes: usize) -> Audit {
        Audit {
            processes,
            ..Audit::default()
        }
    }

    #[test]
    fn a_run_that_may_have_lost_records_is_never_clean() {
        let audit = Audit {
            processes: 1,
            losses: vec![Loss {
                what: "the folder /tmp/x was removed during the run".into(),
                advice: "let nothing touch it",
            }],
            notes: vec![],
        };
        let text = render(&[], "CHLD", None, &audit);
        assert!(!text.contains("clean run"), "{text}");
        assert_eq!(
            text,
            "sigaudit: no event received from the 1 process audited, but records may have been \
             lost, so the run is not known to be clean:\n\
             \x20 - the folder /tmp/x was removed during the run\n\
             \x20 to see everything: let nothing touch it\n"
        );
    }

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
        let text = render(&[ignore, echild], "CHLD", None, &audited(9));
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
        let text = render(&[ignore, echild], "CHLD", None, &audited(9));
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
            render(&[], "CHLD", None, &audited(2)),
            "sigaudit: clean run: no process ignored a watched signal (CHLD); 2 processes audited\n"
        );
        assert!(render(&[], "CHLD,PIPE:any", None, &audited(2)).contains("ignored or changed"));
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
            &audited(9),
        );
        assert_eq!(
            text,
            "sigaudit: 2 processes reported 3 events, 1 root cause (9 processes audited):\n\
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
        let text = render(&records, "PIPE", None, &audited(9));
        let (said, note) = text.split_at(text.find("      note: ").expect("a note"));
        assert_eq!(
            said,
            "sigaudit: 7 processes reported 7 events, 1 root cause (9 processes audited):\n\
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
        let text = render(&[child], "CHLD", None, &audited(9));
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
        let text = render(&records, "CHLD", None, &audited(9));
        assert_eq!(
            text,
            "sigaudit: 4 processes reported 8 events, 1 root cause (9 processes audited):\n\
             \x20 pid 100 bash (bash deploy.sh): SIGCHLD ignored in 4 children it starts [logged]\n\
             \x20     where: deploy.sh:7 in main, the first command run with it\n\
             \x20     (a shell applies `trap '' CHLD` in each child it starts, not in itself: the trap's own line is not known)\n\
             \x20     inherited by 4 descendant processes: env, bash, readlink, python3.11 (pid 101, 102, 103, 104), 4 events\n"
        );
    }
}
