//! Events: what one is (`event.rs`), how it is written (`text.rs` for people, `json.rs`, one
//! line per record, for tools, `line.rs`, one line for a log), and where (`sink.rs` for stderr
//! and files; `journal.rs` and `syslog.rs` for the system's logs, through `socket.rs`).
//!
//! Everything here runs inside hooks, so it allocates nothing from the heap and takes no lock.
//! An event is built in a scratch area mapped for it alone (`mmap`, a system call, so it is safe
//! in a signal handler and in a `vfork()` child), not on the caller's stack, which may be a small
//! alternate signal stack. The finished record goes to its sink in one `write()`, so processes that
//! share a file or a pipe never interleave records. A record that does not fit is written again
//! without its frames, and says so; it is never written half-done.

mod event;
mod journal;
mod json;
mod line;
mod sink;
mod socket;
mod syslog;
mod text;

pub use event::{CAUSE_CAP, Event, Kind, Outcome, action_of, basename, read_file, with_scratch};
/// For the library's own diagnostics: stderr while it still is the program's (see the sink).
pub use sink::to_stderr as write_to_stderr;
// For the constructor, which the unit-test build leaves out.
#[cfg(not(test))]
pub use event::note_load_pid;
#[cfg(not(test))]
pub use sink::note_stderr;

use crate::buf::Buf;
use crate::config::{Config, Format, Output};
use event::{Context, Namer, OUT_CAP, Text};
use line::Place;

/// Renders `ev` and sends it where the configuration says; returns the length of the cause
/// summary rendered into `s.cause` for a later `echild` (0 when there is none).
///
/// The journal and syslog sinks always render JSON, whatever `SIGAUDIT_FORMAT` says: the journal
/// carries the JSON record, and both read an `echild` event's culprit back from its JSON cause.
/// `SIGAUDIT_FORMAT` then chooses the form of events that fall back to stderr.
pub fn publish(config: &Config, ev: &Event, s: &mut Text) -> usize {
    match config.output_socket() {
        Some((kind, path)) => to_socket(config, kind, path, ev, s),
        None => to_file(config, ev, s),
    }
}

/// Renders the event in the configured form and writes it to the output file or stderr.
#[inline(never)]
fn to_file(config: &Config, ev: &Event, s: &mut Text) -> usize {
    let Text {
        out,
        cause,
        exe,
        cmdline,
        uts,
        ..
    } = s;
    let ctx = Context::of_this_process(exe, cmdline, uts);
    let mut namer = Namer { exe: ctx.exe };
    let json = config.format == Format::Json;
    let (len, cause_len) = render(config, ev, &ctx, &mut namer, json, out, cause);
    sink::emit(config, out.get(..len).unwrap_or(&[]));
    cause_len
}

/// Renders the event as JSON and sends it to the journal or a syslog socket (in [`deliver`]);
/// returns what [`publish`] does. Kept out of it so that events for stderr and files do not
/// carry its locals on the stack (which may be a small alternate signal stack); the sending
/// happens after the deep work (rendering, naming frames) has returned.
#[inline(never)]
fn to_socket(config: &Config, kind: Output, path: &[u8], ev: &Event, s: &mut Text) -> usize {
    let Text {
        out,
        cause,
        exe,
        cmdline,
        line,
        message,
        names,
        uts,
    } = s;
    let ctx = Context::of_this_process(exe, cmdline, uts);
    let mut namer = Namer { exe: ctx.exe };
    let (len, cause_len) = render(config, ev, &ctx, &mut namer, true, out, cause);
    let mem = SocketMem {
        out,
        len,
        line,
        message,
        names,
    };
    deliver(config, (kind, path), ev, &ctx, &mut namer, mem);
    cause_len
}

/// The JSON record rendered for a socket sink, and the working memory for the rest.
struct SocketMem<'m> {
    out: &'m mut [u8],
    len: usize,
    line: &'m mut [u8],
    message: &'m mut [u8],
    names: &'m mut [u8],
}

/// Names the culprit, sends the event to its socket, and on failure says so once and writes the
/// event to stderr.
#[inline(never)]
fn deliver(
    config: &Config,
    (kind, path): (Output, &[u8]),
    ev: &Event,
    ctx: &Context,
    namer: &mut Namer,
    m: SocketMem,
) {
    let SocketMem {
        out,
        len,
        line,
        message,
        names,
    } = m;
    let place = match (ev.kind, ev.cause) {
        (Kind::Echild, Some(c)) => Place::of_cause(c, names),
        (Kind::Echild | Kind::Inherited, _) => None,
        _ => Place::of(ev, namer),
    };
    let record = out.get(..len).unwrap_or(&[]);
    if let Err(errno) = send(kind, path, ev, ctx, place.as_ref(), record, line, message) {
        let failed = Failed {
            kind,
            path,
            errno,
            len,
        };
        to_stderr(config, failed, ev, ctx, namer, place.as_ref(), out, message);
    }
}

/// A socket that did not take an event.
struct Failed<'p> {
    kind: Output,
    path: &'p [u8],
    errno: libc::c_int,
    /// The length of the JSON record in `out`.
    len: usize,
}

/// Says once that the socket failed, and writes the event to stderr in the configured form. A
/// text record names an `echild` event's cause in one line, read back from the JSON cause.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn to_stderr(
    config: &Config,
    failed: Failed,
    ev: &Event,
    ctx: &Context,
    namer: &mut Namer,
    place: Option<&Place>,
    out: &mut [u8],
    message: &mut [u8],
) {
    let len = match config.format {
        Format::Json => failed.len,
        Format::Text => {
            let mut cb = Buf::new(message);
            if let Some(c) = ev.cause {
                line::write_cause(&mut cb, c, place);
                cb.byte(b'\n');
            }
            let text_ev = Event {
                cause: ev.cause.map(|_| cb.as_bytes()),
                ..*ev
            };
            render_apart(config, &text_ev, ctx, namer, false, out, &mut [0u8; 0]).0
        }
    };
    sink::socket_failed(
        failed.kind,
        failed.path,
        failed.errno,
        out.get(..len).unwrap_or(&[]),
    );
}

/// [`render`] in a frame of its own, so that the two renderings of [`to_socket`] do not each
/// add their locals to its frame.
#[inline(never)]
fn render_apart(
    config: &Config,
    ev: &Event,
    ctx: &Context,
    namer: &mut Namer,
    json: bool,
    out: &mut [u8],
    cause: &mut [u8],
) -> (usize, usize) {
    render(config, ev, ctx, namer, json, out, cause)
}

/// Sends one rendered event: its one-line summary written into `line`, the message built in
/// `message`. Errors are `errno` values.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn send(
    kind: Output,
    path: &[u8],
    ev: &Event,
    ctx: &Context,
    place: Option<&Place>,
    record: &[u8],
    line: &mut [u8],
    message: &mut [u8],
) -> Result<(), libc::c_int> {
    let mut b = Buf::new(line);
    line::write(&mut b, ev, ctx, place);
    let summary = b.as_bytes();
    let severity = line::severity(ev);
    match kind {
        Output::Journal => {
            let mut signal = [0u8; 16];
            let mut sb = Buf::new(&mut signal);
            crate::signals::write_name(&mut sb, ev.signo);
            let entry = journal::Entry {
                message: summary,
                priority: severity,
                code: place.map(|p| p.code()).unwrap_or_default(),
                event: ev.kind.name(),
                via: ev.via,
                ppid: ctx.ppid as i64,
                signal: sb.as_bytes(),
                action: ev.outcome.name(),
                record,
            };
            journal::send(path, &entry, message).map(|_| ())
        }
        _ => {
            let form = match kind {
                Output::Rfc5424 => syslog::Form::Rfc5424,
                _ => syslog::Form::Local,
            };
            let header = syslog::Header {
                severity,
                pid: ctx.pid,
                now: ctx.now,
                msgid: ev.kind.name(),
                host: ctx.host,
            };
            syslog::send(path, form, &header, summary, message)
        }
    }
}

/// Formats `ev` into `out` (JSON or text) and returns the record's length. Also renders the cause
/// summary for a later `echild` into `cause` (its length is returned second).
// Inlined into its callers: one frame less under the renderers, on what may be a small
// alternate signal stack.
#[inline(always)]
fn render(
    config: &Config,
    ev: &Event,
    ctx: &Context,
    namer: &mut Namer,
    json: bool,
    out: &mut [u8],
    cause: &mut [u8],
) -> (usize, usize) {
    let mut frames = ev.backtrace.len;
    let limit = record_limit(config);
    let len = loop {
        let mut b = Buf::new(out);
        if json {
            json::write(&mut b, ev, ctx, namer, frames);
        } else {
            text::write(&mut b, ev, ctx, namer, frames);
        }
        if (!b.overflowed() && b.len() <= limit) || frames == 0 {
            break b.len();
        }
        // Fewer frames: half when the buffer overflowed, else about what fits in the limit.
        frames = match b.overflowed() {
            true => frames / 2,
            false => (frames * limit / b.len()).min(frames - 1),
        };
    };
    let mut c = Buf::new(cause);
    if matches!(ev.kind, Kind::Ignore | Kind::Inherited) {
        if json {
            json::cause(&mut c, ev, ctx, namer);
        } else {
            text::cause(&mut c, ev, ctx, namer);
        }
    }
    let cause_len = if c.overflowed() { 0 } else { c.len() };
    (len, cause_len)
}

/// The longest record the sink takes in one piece. A write longer than `PIPE_BUF` to a pipe or
/// socket can interleave with other processes' writes to it (a parent and its children sharing
/// stderr), which tears both records; so for such a stderr records are cut, frames first, to fit.
/// A regular file opened with `O_APPEND` takes any record whole.
fn record_limit(config: &Config) -> usize {
    if config.output != Output::Stderr {
        return OUT_CAP;
    }
    // A closed stderr just fails.
    let Ok(st) = crate::sys::fstat(2) else {
        return OUT_CAP;
    };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFSOCK => libc::PIPE_BUF,
        _ => OUT_CAP,
    }
}
