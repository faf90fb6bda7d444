//! The JSON renderer: one object per line, for tools (the `sigaudit` command reads these).

use super::event::{Context, Culprit, Event, Kind, Namer, Note};
use crate::buf::Buf;
use crate::python::PyFrame;
use crate::script::{Language, Missing};
use crate::signals;

/// What every record starts with: the event, when, and the process.
fn header(b: &mut Buf, event: &str, ctx: &Context) {
    b.str("{\"event\":\"").str(event).str("\",\"time\":\"");
    b.iso_time(ctx.now.0, ctx.now.1);
    b.str("\",\"pid\":").int(ctx.pid as i64);
    b.str(",\"ppid\":").int(ctx.ppid as i64);
    b.str(",\"tid\":").int(ctx.tid as i64);
    b.str(",\"forked_from\":");
    match ctx.forked_from {
        Some(parent) => b.int(parent as i64),
        None => b.str("null"),
    };
    b.str(",\"host\":").json_str(ctx.host);
    b.str(",\"exe\":").json_str(ctx.exe);
    b.str(",\"argv\":[");
    for (i, arg) in ctx
        .cmdline
        .split(|&c| c == 0)
        .filter(|a| !a.is_empty())
        .enumerate()
    {
        if i > 0 {
            b.byte(b',');
        }
        b.json_str(arg);
    }
    b.byte(b']');
}

/// `"notes":[{"reason":"lost","count":2,"errno":"EAGAIN","text":"..."}, ...]`
fn notes<'n>(b: &mut Buf, all: impl Iterator<Item = &'n Note>) {
    b.str(",\"notes\":[");
    let mut first = true;
    for &n in all {
        let Some(reason) = n.reason() else { continue };
        if !first {
            b.byte(b',');
        }
        first = false;
        b.str("{\"reason\":\"").str(reason).byte(b'"');
        if let Note::Lost { count, .. } = n {
            b.str(",\"count\":").dec(count as u64);
        }
        if let Some(e) = n.errno() {
            b.str(",\"errno\":\"");
            e.write_name(b);
            b.byte(b'"');
        }
        let mut mem = [0u8; 512];
        let mut text = Buf::new(&mut mem);
        n.write_text(&mut text);
        b.str(",\"text\":").json_str(text.as_bytes()).byte(b'}');
    }
    b.byte(b']');
}

/// The record a process writes at load for the `sigaudit` command.
pub fn loaded(b: &mut Buf, ctx: &Context, extra: &[Note]) {
    header(b, "loaded", ctx);
    notes(b, extra.iter());
    b.str("}\n");
}

/// Writes `ev` as one JSON line, with at most `max_frames` native frames, and the `extra` notes
/// after its own.
pub fn write(
    b: &mut Buf,
    ev: &Event,
    ctx: &Context,
    namer: &Namer,
    extra: &[Note],
    max_frames: usize,
) {
    header(b, ev.kind.name(), ctx);
    b.str(",\"signal\":\"");
    signals::write_name(b, ev.signo);
    b.str("\",\"signo\":").int(ev.signo as i64);
    b.str(",\"via\":\"").str(ev.via).str("\"");
    b.str(",\"old\":\"")
        .str(ev.old.disposition.name())
        .str("\"");
    b.str(",\"old_flags\":");
    signals::write_flags(b, ev.old.flags, true);
    b.str(",\"new\":\"")
        .str(ev.new.disposition.name())
        .str("\"");
    b.str(",\"flags\":");
    signals::write_flags(b, ev.new.flags, true);
    b.str(",\"action\":\"").str(ev.outcome.name()).str("\"");
    if ev.kind == Kind::Echild {
        b.str(",\"errno\":\"ECHILD\",\"cause\":");
        match ev.cause {
            Some(c) => b.bytes(c),
            None => b.str("null"),
        };
    }
    script(b, ev);
    b.str(",\"backtrace\":[");
    let frames = ev.backtrace.frames();
    for (i, &ip) in frames.iter().take(max_frames).enumerate() {
        if i > 0 {
            b.byte(b',');
        }
        native_frame(b, namer, ip);
    }
    let cut = ev.backtrace.truncated || max_frames < frames.len();
    b.str("],\"backtrace_truncated\":").str(bool_str(cut));
    notes(b, ev.notes.iter().chain(extra));
    b.str("}\n");
}

fn bool_str(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

/// The `script` frames (Python, Perl or shell; none when the thread runs no interpreter),
/// `script_truncated` and `script_missing`.
fn script(b: &mut Buf, ev: &Event) {
    b.str(",\"script\":");
    script_frames(b, ev.language, ev.python.frames().iter());
    b.str(",\"script_truncated\":")
        .str(bool_str(ev.python.truncated));
    script_missing(b, ev.missing);
}

fn script_frames<'f>(b: &mut Buf, language: Language, frames: impl Iterator<Item = &'f PyFrame>) {
    b.byte(b'[');
    for (i, f) in frames.enumerate() {
        if i > 0 {
            b.byte(b',');
        }
        b.str("{\"language\":\"").str(language.name()).str("\",");
        b.str("\"file\":").json_str(f.file());
        b.str(",\"line\":").int(f.line as i64);
        b.str(",\"function\":").json_str(f.function());
        b.byte(b'}');
    }
    b.byte(b']');
}

fn script_missing(b: &mut Buf, m: &Missing) {
    b.str(",\"script_missing\":");
    let Some(reason) = m.reason else {
        b.str("null");
        return;
    };
    b.str("{\"language\":\"").str(m.language.name());
    b.str("\",\"version\":");
    if m.version().is_empty() {
        b.str("null");
    } else {
        b.json_str(m.version());
    }
    b.str(",\"reason\":\"").str(reason).str("\",\"text\":");
    b.json_str(m.text()).byte(b'}');
}

/// `{"addr": ..., "module": ..., "offset": ..., "symbol": ...}`; in a secure-execution process
/// without `addr` (and a frame in no module is then `{}`).
fn native_frame(b: &mut Buf, namer: &Namer, ip: usize) {
    b.byte(b'{');
    let mut sep = "";
    if namer.addresses {
        b.str("\"addr\":\"").hex(ip as u64).byte(b'"');
        sep = ",";
    }
    if let Some(f) = namer.frame(ip) {
        b.str(sep).str("\"module\":").json_str(f.module);
        if let Some(id) = f.build_id {
            let mut hex = [0u8; 2 * crate::buildid::MAX_LEN];
            let n = id.write_hex(&mut hex);
            b.str(",\"build_id\":\"")
                .bytes(hex.get(..n).unwrap_or(&[]))
                .byte(b'"');
        }
        b.str(",\"offset\":\"").hex(f.offset as u64).byte(b'"');
        if let Some((name, off)) = f.symbol {
            b.str(",\"symbol\":\"")
                .text(name)
                .byte(b'+')
                .hex(off as u64)
                .byte(b'"');
        }
    }
    b.byte(b'}');
}

/// Writes the cause summary of `ev` (an ignore or inherited ignore) as a JSON object, for the
/// `cause` of a later `echild` record.
pub fn cause(b: &mut Buf, ev: &Event, ctx: &Context, namer: &Namer) {
    let culprit = Culprit::of(ev, namer);
    b.str("{\"event\":\"")
        .str(ev.kind.name())
        .str("\",\"time\":\"");
    b.iso_time(ctx.now.0, ctx.now.1);
    b.str("\",\"pid\":").int(ctx.pid as i64);
    b.str(",\"via\":\"").str(ev.via).str("\",\"signal\":\"");
    signals::write_name(b, ev.signo);
    b.str("\",\"script\":");
    script_frames(b, ev.language, culprit.python());
    script_missing(b, ev.missing);
    b.str(",\"native\":");
    match culprit.native {
        Some(ip) => native_frame(b, namer, ip),
        None => {
            b.str("null");
        }
    }
    b.byte(b'}');
}
