//! Reading event records as they were stored, for `sigaudit report`: a stream of lines, each one
//! of
//! - a record as the library writes it (`SIGAUDIT_FORMAT=json`, a file per process or stderr), or
//!   as `sigaudit --json` writes it (the same, with source lines added);
//! - a journal entry as `journalctl -o json` prints it: the record in `SIGAUDIT_RECORD` (a string,
//!   or an array of byte values when it is not UTF-8), the host in `_HOSTNAME`. An entry whose
//!   `SIGAUDIT_RECORD` journalctl left out (`null`: longer than 4 KiB, without `--all`) is rebuilt
//!   from its other fields (`SIGAUDIT_EVENT`, `CODE_FILE`, ...), and counted. An entry of the
//!   journal's stdout transport whose `MESSAGE` is a record (a service's events that fell back to
//!   its stderr, which systemd sends to the journal) is taken too.
//!
//! Anything else (text-form events, other programs' entries, blank lines) is counted and skipped.
//! Lines are read one at a time into one buffer, and a line longer than [`LINE_CAP`] is skipped
//! without being held, so memory stays bounded whatever the input.

use serde_json::{Map, Value};
use std::io::{BufRead, ErrorKind};

/// The longest line taken: far above any record (the library's are at most 64 KiB, a symbolized
/// one a few times that), far below what would strain memory.
pub const LINE_CAP: usize = 8 << 20;

/// One record and where it was found.
#[derive(Debug)]
pub struct Item {
    /// The record, in the library's schema.
    pub record: Value,
    /// The host it came from, when the input says (`_HOSTNAME` of a journal entry, `host` of a
    /// record).
    pub host: Option<String>,
}

/// What the reading met, for the report's closing lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub bytes: u64,
    pub lines: u64,
    pub records: u64,
    /// Journal entries whose record journalctl left out, rebuilt from their fields.
    pub rebuilt: u64,
    /// Journal entries of other programs (or of sigaudit without a record).
    pub other_entries: u64,
    /// Lines that are neither records nor journal entries.
    pub skipped: u64,
    /// Lines longer than [`LINE_CAP`].
    pub too_long: u64,
}

/// Reads [`Item`]s from `input`, line by line.
pub struct Reader<R> {
    input: R,
    line: Vec<u8>,
    pub stats: Stats,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            line: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The next record; `None` at the end; an error of the input as it comes.
    pub fn next_item(&mut self) -> Option<std::io::Result<Item>> {
        loop {
            match self.next_line() {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(Err(e)),
            }
            self.stats.lines += 1;
            match parse_line(&self.line, &mut self.stats) {
                Parsed::Record(item) => {
                    self.stats.records += 1;
                    return Some(Ok(item));
                }
                Parsed::OtherEntry => self.stats.other_entries += 1,
                Parsed::Nothing => {
                    if !self.line.trim_ascii().is_empty() {
                        self.stats.skipped += 1;
                    }
                }
            }
        }
    }

    /// Reads the next line into `self.line` (without its newline). A line longer than
    /// [`LINE_CAP`] is passed over, counted, and read as empty. `false` at the end.
    fn next_line(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        let mut any = false;
        let mut too_long = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1),
                None => (buf, buf.len()),
            };
            if !too_long {
                if self.line.len() + chunk.len() > LINE_CAP {
                    too_long = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let newline = done > chunk.len();
            self.input.consume(done);
            self.stats.bytes += done as u64;
            if newline {
                break;
            }
        }
        if too_long {
            self.stats.too_long += 1;
            self.line.clear();
        }
        Ok(any)
    }
}

/// What a line holds.
enum Parsed {
    Record(Item),
    /// A journal entry without a record.
    OtherEntry,
    Nothing,
}

/// One line as an [`Item`], if it holds a record.
fn parse_line(line: &[u8], stats: &mut Stats) -> Parsed {
    let line = line.trim_ascii();
    if !line.starts_with(b"{") {
        return Parsed::Nothing;
    }
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Parsed::Nothing;
    };
    let Some(obj) = v.as_object() else {
        return Parsed::Nothing;
    };
    if is_record(obj) {
        let host = obj.get("host").and_then(Value::as_str).map(str::to_string);
        return Parsed::Record(Item { record: v, host });
    }
    if !obj.contains_key("__CURSOR") && !obj.contains_key("_HOSTNAME") {
        return Parsed::Nothing;
    }
    match journal_entry(obj, stats) {
        Some(item) => Parsed::Record(item),
        None => Parsed::OtherEntry,
    }
}

/// The library's record kinds: what a report is made of. Other records (markers, a supervisor's
/// notes) are not events of a process.
fn is_record(obj: &Map<String, Value>) -> bool {
    matches!(
        obj.get("event").and_then(Value::as_str),
        Some("ignore" | "change" | "inherited" | "echild")
    ) && obj.contains_key("pid")
}

/// A `journalctl -o json` entry that carries a record.
fn journal_entry(obj: &Map<String, Value>, stats: &mut Stats) -> Option<Item> {
    let host = field_text(obj.get("_HOSTNAME")?);
    let parsed = |text: &str| -> Option<Value> {
        let v: Value = serde_json::from_str(text).ok()?;
        v.as_object().filter(|o| is_record(o))?;
        Some(v)
    };
    let record = match obj.get("SIGAUDIT_RECORD") {
        Some(Value::Null) if obj.contains_key("SIGAUDIT_EVENT") => {
            let r = rebuilt(obj)?;
            stats.rebuilt += 1;
            r
        }
        Some(v) => parsed(&field_text(v)?)?,
        // A record that went to a service's stderr, which the journal kept as a line.
        None => parsed(&field_text(obj.get("MESSAGE")?)?)?,
    };
    Some(Item { record, host })
}

/// A journal field's text: a string, or (not valid UTF-8) an array of byte values.
fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(bytes) => {
            let bytes: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes?).into_owned())
        }
        _ => None,
    }
}

/// A record rebuilt from a journal entry's own fields, for an entry whose `SIGAUDIT_RECORD`
/// journalctl left out: the event, the process (`_PID`, `_EXE`, `_CMDLINE`), its time, and the
/// culprit as a frame (`CODE_FILE` with `CODE_LINE` is a script's line; without, a native
/// module and its function). No stacks: the entry does not hold them.
fn rebuilt(obj: &Map<String, Value>) -> Option<Value> {
    let text = |k: &str| obj.get(k).and_then(field_text).unwrap_or_default();
    let event = text("SIGAUDIT_EVENT");
    let pid: i64 = text("_PID").parse().ok()?;
    let time = text("__REALTIME_TIMESTAMP")
        .parse::<i64>()
        .ok()
        .map(iso_time)
        .unwrap_or_default();
    let mut argv: Vec<Value> = text("_CMDLINE")
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| Value::String(w.into()))
        .collect();
    // A process that exited before journald looked has no _EXE or _CMDLINE; the message names
    // its program: `pid 42 (true) ...`.
    if argv.is_empty()
        && let Some(name) = text("MESSAGE")
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(name, _)| {
                name.split(", forked from")
                    .next()
                    .unwrap_or(name)
                    .to_string()
            })
    {
        argv.push(Value::String(name));
    }
    let mut rec = serde_json::json!({
        "event": event,
        "time": time,
        "pid": pid,
        "ppid": text("SIGAUDIT_PPID").parse::<i64>().unwrap_or(0),
        "via": text("SIGAUDIT_VIA"),
        "exe": text("_EXE"),
        "argv": argv,
        "signal": text("SIGAUDIT_SIGNAL"),
        "action": text("SIGAUDIT_ACTION"),
        "rebuilt_from_journal": true,
    });
    let (file, line, function) = (text("CODE_FILE"), text("CODE_LINE"), text("CODE_FUNC"));
    let frame = match line.parse::<i64>() {
        Ok(line) => Some((
            "script",
            serde_json::json!([{"file": file, "line": line, "function": function}]),
        )),
        Err(_) if !file.is_empty() => {
            // The symbol's and the module's offsets are in the message's last words:
            // `... at setup+0x12 (/srv/demo+0x1149)`.
            let message = text("MESSAGE");
            let tail = message.rsplit_once(" at ").map(|(_, t)| t).unwrap_or("");
            let (symbol, offset) = match tail.rsplit_once(" (") {
                Some((sym, place)) => (
                    sym.to_string(),
                    place
                        .strip_suffix(')')
                        .and_then(|p| p.rsplit_once('+'))
                        .map(|(_, off)| off.to_string())
                        .unwrap_or_default(),
                ),
                None => (function.clone(), String::new()),
            };
            let symbol = if symbol.starts_with(&function) {
                symbol
            } else {
                function.clone()
            };
            Some((
                "backtrace",
                serde_json::json!([{"module": file, "offset": offset, "symbol": symbol}]),
            ))
        }
        Err(_) => None,
    };
    if event == "echild" {
        let message = text("MESSAGE");
        // The culprit of an echild entry is its cause's.
        let mut cause = serde_json::json!({"event": "ignore", "signal": text("SIGAUDIT_SIGNAL")});
        if let Some((key, frames)) = frame {
            let key = if key == "script" { key } else { "native" };
            let value = if key == "native" {
                frames[0].clone()
            } else {
                frames
            };
            cause[key] = value;
        }
        if let Some(pid) = message
            .split(" in pid ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse::<i64>().ok())
        {
            cause["pid"] = pid.into();
        }
        rec["cause"] = cause;
    } else if let Some((key, frames)) = frame {
        rec[key] = frames;
    }
    Some(rec)
}

/// Microseconds since the epoch as the library writes times: `2026-11-25T21:39:39.785309Z`.
pub fn iso_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days to civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_all(input: &str) -> (Vec<Item>, Stats) {
        let mut r = Reader::new(input.as_bytes());
        let mut items = Vec::new();
        while let Some(item) = r.next_item() {
            items.push(item.unwrap());
        }
        (items, r.stats)
    }

    #[test]
    fn the_three_forms_and_what_is_not_a_record() {
        let rec = json!({"event": "ignore", "pid": 7, "time": "T", "python": []});
        let entry = json!({"__CURSOR": "s=1", "_HOSTNAME": "web-1", "SIGAUDIT_EVENT": "ignore",
                           "MESSAGE": "pid 8 ...", "SIGAUDIT_RECORD": json!({"event": "echild", "pid": 8}).to_string()});
        let binary = json!({"_HOSTNAME": "web-2", "SIGAUDIT_EVENT": "ignore", "MESSAGE": "x",
                            "SIGAUDIT_RECORD": br#"{"event":"ignore","pid":9,"exe":"/a"#.iter()
                                .chain(b"\xff\"}").map(|&b| b as u64).collect::<Vec<_>>()});
        let stderr_line = json!({"_HOSTNAME": "web-3", "_TRANSPORT": "stdout",
                                 "MESSAGE": json!({"event": "inherited", "pid": 10}).to_string()});
        let other = json!({"_HOSTNAME": "web-1", "MESSAGE": "Started cron"});
        let input = format!(
            "{rec}\n\n{entry}\nsigaudit: pid 3 (a) SIGCHLD ignored via signal()\n{binary}\n{other}\n{stderr_line}\n{{\"event\": \"loaded\", \"pid\": 4}}\n{{broken"
        );
        let (items, stats) = read_all(&input);
        let got: Vec<(i64, Option<&str>)> = items
            .iter()
            .map(|i| (i.record["pid"].as_i64().unwrap(), i.host.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (7, None),
                (8, Some("web-1")),
                (9, Some("web-2")),
                (10, Some("web-3"))
            ]
        );
        assert_eq!(items[2].record["exe"], "/a\u{fffd}");
        assert_eq!(stats.records, 4);
        assert_eq!(stats.lines, 9);
        assert_eq!(stats.skipped, 3, "text, a marker, broken JSON");
        assert_eq!(stats.other_entries, 1);
        assert_eq!(stats.bytes, input.len() as u64);
    }

    #[test]
    fn an_entry_without_its_record_is_rebuilt_from_its_fields() {
        let ignore = json!({"_HOSTNAME": "h", "SIGAUDIT_RECORD": null, "SIGAUDIT_EVENT": "ignore",
            "SIGAUDIT_SIGNAL": "SIGCHLD", "SIGAUDIT_ACTION": "vetoed", "_PID": "42",
            "_EXE": "/usr/bin/python3.11", "_CMDLINE": "python3 app.py",
            "__REALTIME_TIMESTAMP": "1795642779785309",
            "CODE_FILE": "/srv/app.py", "CODE_LINE": "10", "CODE_FUNC": "setup"});
        let echild = json!({"_HOSTNAME": "h", "SIGAUDIT_RECORD": null, "SIGAUDIT_EVENT": "echild",
            "SIGAUDIT_SIGNAL": "SIGCHLD", "SIGAUDIT_ACTION": "logged", "_PID": "42",
            "MESSAGE": "pid 42 (a) waitpid() failed ...; cause: SIGCHLD ignored via signal() in pid 41 at f+0x1 (/a+0x11)",
            "SIGAUDIT_VIA": "waitpid", "SIGAUDIT_PPID": "40",
            "CODE_FILE": "/a", "CODE_FUNC": "f"});
        let gone = json!({"_HOSTNAME": "h", "SIGAUDIT_RECORD": null, "SIGAUDIT_EVENT": "inherited",
            "_PID": "43", "MESSAGE": "pid 43 (true) SIGCHLD was already SIG_IGN when the program started"});
        let (items, stats) = read_all(&format!("{ignore}\n{echild}\n{gone}\n"));
        assert_eq!(stats.rebuilt, 3);
        assert_eq!(items[2].record["argv"], json!(["true"]));
        let r = &items[0].record;
        assert_eq!(r["time"], "2026-11-25T21:39:39.785309Z");
        assert_eq!(r["action"], "vetoed");
        assert_eq!(r["argv"], json!(["python3", "app.py"]));
        assert_eq!(
            r["script"],
            json!([{"file": "/srv/app.py", "line": 10, "function": "setup"}])
        );
        let c = &items[1].record["cause"];
        assert_eq!(
            c["native"],
            json!({"module": "/a", "offset": "0x11", "symbol": "f+0x1"})
        );
        assert_eq!(items[1].record["via"], "waitpid");
        assert_eq!(items[1].record["ppid"], 40);
        assert_eq!(c["pid"], 41);
    }

    #[test]
    fn a_huge_line_is_passed_over_without_being_held() {
        let rec = json!({"event": "ignore", "pid": 7}).to_string();
        let huge = "x".repeat(LINE_CAP + 10);
        let input = format!("{huge}\n{rec}\n{huge}");
        let (items, stats) = read_all(&input);
        assert_eq!(items.len(), 1);
        assert_eq!(stats.too_long, 2);
        assert_eq!(stats.bytes, input.len() as u64);
    }

    #[test]
    fn times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso_time(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
    }
}
