//! `sigaudit report [--json] [FILE...|-]`: one summary of records from any number of processes
//! and hosts, as the library, `sigaudit --json` or `journalctl -o json` left them (`input.rs`
//! reads them): the same summary as a run's (`summary.rs`, root causes first, what followed from
//! each folded under it), with the hosts and the time span of each cause. It streams: each record
//! is read, added to the summary and dropped, so memory does not grow with the input; on a
//! terminal, stderr shows how far it has come.
//!
//! The culprit's native frame gets its file and line from debug information, as in a run: by its
//! build ID when the frame has one (the build that ran, wherever it ran: the file here if it is
//! that build, a debug package, a debuginfod server), else only for this host's records (another
//! host's module of the same path may be another build).

use crate::args::ReportOptions;
use crate::input::{Reader, Stats};
use crate::record;
use crate::summary::Summary;
use crate::symbolize::Symbolizer;
use serde_json::Value;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn main(opts: &ReportOptions) -> i32 {
    let inputs: Vec<PathBuf> = if opts.files.is_empty() {
        vec!["-".into()]
    } else {
        opts.files.clone()
    };
    let mut progress = Progress::new(&inputs);
    let mut summary = Summary::new();
    let mut sym = Symbolizer::new();
    let here = this_host();
    let mut stats = Stats::default();
    let mut status = 0;
    for path in &inputs {
        let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(BufReader::with_capacity(1 << 16, std::io::stdin().lock()))
        } else {
            match std::fs::File::open(path) {
                Ok(f) => Box::new(BufReader::with_capacity(1 << 16, f)),
                Err(e) => {
                    progress.clear();
                    eprintln!("sigaudit report: {}: {e}", path.display());
                    status = 1;
                    continue;
                }
            }
        };
        let mut reader = Reader::new(input);
        while let Some(item) = reader.next_item() {
            match item {
                Ok(mut item) => {
                    let local = item.host.as_deref().is_none_or(|h| h == here);
                    symbolize_culprit(&mut sym, &mut item.record, local);
                    summary.add(&item.record, item.host.as_deref());
                }
                Err(e) => {
                    progress.clear();
                    eprintln!("sigaudit report: {}: {e}", path.display());
                    status = 1;
                    break;
                }
            }
            progress.show(
                stats.bytes + reader.stats.bytes,
                stats.records + reader.stats.records,
            );
        }
        add(&mut stats, &reader.stats);
    }
    progress.clear();
    let out = if opts.json {
        let mut v = summary.json();
        v["input"] = serde_json::json!({
            "lines": stats.lines,
            "records": stats.records,
            "rebuilt_from_journal": stats.rebuilt,
            "skipped": stats.skipped,
            "other_journal_entries": stats.other_entries,
            "too_long": stats.too_long,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    } else if stats.records == 0 {
        notes(
            "sigaudit report: no records in the input\n".to_string(),
            &stats,
        )
    } else {
        notes(summary.render_report(), &stats)
    };
    if let Err(e) = std::io::stdout().lock().write_all(out.as_bytes())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("sigaudit report: writing: {e}");
        status = 1;
    }
    status
}

/// The summary's closing notes: what was not taken, and why.
fn notes(mut out: String, stats: &Stats) -> String {
    use std::fmt::Write;
    if stats.rebuilt > 0 {
        let _ = writeln!(
            out,
            "sigaudit report: {} journal entries came without their record (journalctl -o json \
             leaves out fields over 4096 bytes unless given --all): their culprit is from their \
             CODE_FILE, CODE_LINE and CODE_FUNC",
            stats.rebuilt
        );
    }
    if stats.other_entries > 0 {
        let _ = writeln!(
            out,
            "sigaudit report: {} journal entries of other programs were skipped \
             (journalctl SYSLOG_IDENTIFIER=sigaudit selects sigaudit's)",
            stats.other_entries
        );
    }
    if stats.skipped > 0 {
        let _ = writeln!(
            out,
            "sigaudit report: {} lines were not records and were skipped (text-form events? \
             records are JSON: SIGAUDIT_FORMAT=json, sigaudit --json, journalctl -o json)",
            stats.skipped
        );
    }
    if stats.too_long > 0 {
        let _ = writeln!(
            out,
            "sigaudit report: {} lines longer than {} MiB were skipped",
            stats.too_long,
            crate::input::LINE_CAP >> 20
        );
    }
    out
}

fn add(total: &mut Stats, s: &Stats) {
    total.bytes += s.bytes;
    total.lines += s.lines;
    total.records += s.records;
    total.rebuilt += s.rebuilt;
    total.skipped += s.skipped;
    total.other_entries += s.other_entries;
    total.too_long += s.too_long;
}

/// Adds file and line to the native frames that name the culprit: the record's own, and its
/// cause's. One lookup each, not the whole stack: a report may read millions of records. A
/// frame without a build ID is looked up only in a `local` record.
fn symbolize_culprit(sym: &mut Symbolizer, rec: &mut Value, local: bool) {
    let mut annotate = |f: &mut Value| {
        if local || f.get("build_id").is_some() {
            sym.annotate_frame(f);
        }
    };
    let culprit = record::native_culprit(rec).or_else(|| record::array(rec, "backtrace").first());
    if let Some(frame) = culprit {
        let frame: *const Value = frame;
        if let Some(f) = rec
            .get_mut("backtrace")
            .and_then(Value::as_array_mut)
            .and_then(|frames| frames.iter_mut().find(|f| std::ptr::eq(*f, frame)))
        {
            annotate(f);
        }
    }
    if let Some(native) = rec.get_mut("cause").and_then(|c| c.get_mut("native")) {
        annotate(native);
    }
}

/// This machine's host name, as journald writes it in `_HOSTNAME`.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// How far the reading has come, on stderr when it is a terminal: bytes (of the total, when the
/// inputs are files) and records, four times a second.
struct Progress {
    on: bool,
    total: Option<u64>,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(inputs: &[PathBuf]) -> Progress {
        let total = inputs
            .iter()
            .map(|p| {
                (p.as_os_str() != "-")
                    .then(|| std::fs::metadata(p).ok().filter(|m| m.is_file()))
                    .flatten()
                    .map(|m| m.len())
            })
            .sum();
        Progress {
            on: std::io::stderr().is_terminal(),
            total,
            last: Instant::now(),
            shown: false,
        }
    }

    fn show(&mut self, bytes: u64, records: u64) {
        if !self.on || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        let of = match self.total {
            Some(t) if t > 0 => format!(
                " of {} ({}%)",
                size(t),
                (bytes.min(t) * 100).checked_div(t).unwrap_or(0)
            ),
            _ => String::new(),
        };
        eprint!(
            "\r\x1b[Ksigaudit report: {}{of}, {records} records",
            size(bytes)
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{} KiB", b >> 10),
    }
}
