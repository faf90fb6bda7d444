//! The supervisor's events, in the library's record shape (see the library's `report/json.rs`), so
//! that the command shows, summarizes and symbolizes them like the library's own. They go to one
//! file of their own, `events.supervisor.jsonl`, in the run's private folder, one whole line per
//! `write`. Two fields are the supervisor's: `"supervised": true`, and `via` is the system call
//! itself (`rt_sigaction`), since no library function was seen.

use super::actions::KernelAction;
use super::stack::Frame;
use crate::signals;
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

/// What one event says, gathered while the caller waited.
pub struct Event<'a> {
    pub kind: &'static str,
    pub time: SystemTime,
    pub pid: u32,
    pub ppid: u32,
    pub tid: u32,
    pub exe: &'a [u8],
    pub argv: &'a [Vec<u8>],
    pub signo: i32,
    pub old: KernelAction,
    pub new: KernelAction,
    pub outcome: &'static str,
    pub frames: &'a [Frame],
    pub truncated: bool,
}

impl Event<'_> {
    pub fn to_json(&self) -> Value {
        json!({
            "event": self.kind,
            "time": iso_time(self.time),
            "pid": self.pid,
            "ppid": self.ppid,
            "tid": self.tid,
            "exe": text(self.exe),
            "argv": self.argv.iter().map(|a| text(a)).collect::<Vec<_>>(),
            "signal": signals::name(self.signo),
            "signo": self.signo,
            "via": "rt_sigaction",
            "supervised": true,
            "old": self.old.disposition(),
            "old_flags": self.old.flag_names(),
            "new": self.new.disposition(),
            "flags": self.new.flag_names(),
            "action": self.outcome,
            "script": [],
            "script_truncated": false,
            "script_missing": null,
            "backtrace": self.frames.iter().map(Frame::to_json).collect::<Vec<_>>(),
            "backtrace_truncated": self.truncated,
        })
    }
}

/// Bytes as the library writes them: UTF-8 as it is, any other byte as the character of the
/// same number (`\u00XX` in JSON).
pub fn text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|&b| char::from(b)));
    }
    out
}

/// UTC time with microseconds, as the library writes it: `2026-11-25T21:39:39.785309Z`.
pub fn iso_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    crate::input::iso_time(d.as_micros() as i64)
}

/// The supervisor's record file.
pub struct Output {
    file: Option<File>,
}

impl Output {
    pub fn open(dir: &Path) -> Output {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join("events.supervisor.jsonl"));
        if let Err(e) = &file {
            eprintln!("sigaudit: --supervise: cannot write its records: {e}");
        }
        Output { file: file.ok() }
    }

    pub fn write(&mut self, record: &Value) {
        let mut line = serde_json::to_string(record).unwrap_or_default();
        line.push('\n');
        if let Some(f) = &mut self.file {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_and_text() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_642_779_785_309);
        assert_eq!(iso_time(t), "2026-11-25T21:39:39.785309Z");
        assert_eq!(
            iso_time(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso_time(leap), "2000-02-29T00:00:00.000000Z");
        assert_eq!(text(b"a\xffb"), "a\u{ff}b");
        assert_eq!(text("é".as_bytes()), "é");
    }
}
