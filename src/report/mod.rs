//! Events: what one is (`event.rs`), how it is written (`text.rs` for people, `json.rs`, one
//! line per record, for tools, `line.rs`, one line for a log), and where (`sink.rs` for stderr,
//! files and the `sigaudit` command's socket; `journal.rs` and `syslog.rs` for the system's logs,
//! through `socket.rs`).
//!
//! Everything here runs inside hooks, so it allocates nothing from the heap and takes no lock.
//! An event runs on a stack of its own, with its working memory mapped for it and kept
//! (`stack.rs`), not on the caller's stack, which may be a small alternate signal stack or a
//! small thread's. The
//! finished record goes to its sink in one write, so processes that share a file or a pipe never
//! interleave records. A record that does not fit is written again without its frames, and says
//! so; it is never written half-done.

mod errno;
mod event;
mod journal;
mod json;
mod line;
mod sink;
mod socket;
mod syslog;
mod text;

pub use event::arguments;
pub use event::{
    CAUSE_CAP, Errno, Event, Kind, Note, Outcome, action_of, basename, read_file, with_scratch,
};
// For the constructor and the first look, which the unit-test build leaves out.
#[cfg(not(test))]
pub use event::{note_arguments, note_load_pid};
pub use sink::note_stderr;

/// For the library's own diagnostics: stderr while it still is the program's (see the sink),
/// written without waiting and with every signal held, as a record is.
pub fn write_to_stderr(bytes: &[u8]) {
    let held = Held::all();
    sink::to_stderr(bytes, &held);
}

use crate::buf::Buf;
use crate::config::{Config, Format, Output};
use crate::stack::{self, Held};
use event::{Context, Namer, Text};
use line::Place;
use sink::OUT_CAP;

/// Renders `ev` and sends it where the configuration says; returns the length of the cause
/// summary rendered into `s.cause` for a later `echild` (0 when there is none). `files`: whether
/// this event may open files and sockets (`guard::files_allowed`); `started`: the event's start,
/// for `SIGAUDIT_LOG=trace`.
///
/// The journal and syslog sinks always render JSON, whatever `SIGAUDIT_FORMAT` says: the journal
/// carries the JSON record, and both read an `echild` event's culprit back from its JSON cause.
/// `SIGAUDIT_FORMAT` then chooses the form of events that fall back to stderr.
pub fn publish(
    config: &Config,
    ev: &Event,
    s: &mut Text,
    frame: &stack::Frame,
    files: bool,
    started: u64,
) -> usize {
    let cause_len = match config.output_socket() {
        Some((kind, path)) if files => to_socket(config, kind, path, ev, s, frame.held),
        _ => to_file(config, ev, s, frame.held, files),
    };
    if config.trace() {
        trace(frame, started);
    }
    cause_len
}

/// Renders the event in the configured form and delivers it (`sink.rs`): to the output file, the
/// command's socket, or stderr.
#[inline(never)]
fn to_file(config: &Config, ev: &Event, s: &mut Text, held: &Held, files: bool) -> usize {
    let Text {
        out,
        cause,
        exe,
        cmdline,
        uts,
        path,
        ..
    } = s;
    let ctx = Context::of_this_process(exe, cmdline, uts, files);
    let mut namer = Namer {
        exe: ctx.exe,
        files,
        addresses: !config.secure,
    };
    let json = config.format == Format::Json;
    let _ = sink::deliver(config, held, files, out, path, |buf, limit, extra| {
        render_record(ev, &ctx, &namer, json, extra, buf, limit)
    });
    render_cause(ev, &ctx, &mut namer, json, cause)
}

/// Renders the event as JSON and sends it to the journal or a syslog socket (in [`deliver`]);
/// returns what [`publish`] does. Kept out of it so that events for stderr and files do not
/// carry its locals.
#[inline(never)]
fn to_socket(
    config: &Config,
    kind: Output,
    path: &[u8],
    ev: &Event,
    s: &mut Text,
    held: &Held,
) -> usize {
    let Text {
        out,
        cause,
        exe,
        cmdline,
        line,
        message,
        names,
        uts,
        ..
    } = s;
    let ctx = Context::of_this_process(exe, cmdline, uts, true);
    let mut namer = Namer {
        exe: ctx.exe,
        files: true,
        addresses: !config.secure,
    };
    let losses = sink::losses_note();
    let len = render_record(ev, &ctx, &namer, true, &losses, out, OUT_CAP);
    let cause_len = render_cause(ev, &ctx, &mut namer, true, cause);
    let mem = SocketMem {
        out,
        len,
        line,
        message,
        names,
    };
    deliver(
        config,
        (kind, path),
        ev,
        &ctx,
        &mut namer,
        mem,
        held,
        &losses,
    );
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
/// event to stderr. `losses`: the note on earlier losses the record carries.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn deliver(
    config: &Config,
    (kind, path): (Output, &[u8]),
    ev: &Event,
    ctx: &Context,
    namer: &mut Namer,
    m: SocketMem,
    held: &Held,
    losses: &[Note],
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
    match send(kind, path, ev, ctx, place.as_ref(), record, line, message) {
        Ok(()) => sink::settle(losses),
        Err(errno) => {
            let failed = Failed {
                kind,
                path,
                errno,
                len,
            };
            let place = place.as_ref();
            to_stderr(
                config, failed, ev, ctx, namer, place, out, message, held, losses,
            );
        }
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
    held: &Held,
    losses: &[Note],
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
            render_apart(&text_ev, ctx, namer, losses, out)
        }
    };
    let record = out.get(..len).unwrap_or(&[]);
    sink::socket_failed(failed.kind, failed.path, failed.errno, record, held, losses);
}

/// A text rendering in a frame of its own, so that the two renderings of [`to_socket`] do not
/// each add their locals to its frame.
#[inline(never)]
fn render_apart(
    ev: &Event,
    ctx: &Context,
    namer: &Namer,
    losses: &[Note],
    out: &mut [u8],
) -> usize {
    render_record(ev, ctx, namer, false, losses, out, sink::stderr_limit())
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

/// Formats `ev` (with the `extra` notes the sink adds) into `out`, JSON or text, in at most
/// `limit` bytes; returns the record's length. Frames are dropped, innermost kept, until it fits.
// Inlined into its callers: one frame less under the renderers.
#[inline(always)]
fn render_record(
    ev: &Event,
    ctx: &Context,
    namer: &Namer,
    json: bool,
    extra: &[Note],
    out: &mut [u8],
    limit: usize,
) -> usize {
    let mut frames = ev.backtrace.len;
    loop {
        let mut b = Buf::new(out);
        if json {
            json::write(&mut b, ev, ctx, namer, extra, frames);
        } else {
            text::write(&mut b, ev, ctx, namer, extra, frames);
        }
        if (!b.overflowed() && b.len() <= limit) || frames == 0 {
            break b.len();
        }
        // Fewer frames: half when the buffer overflowed, else about what fits in the limit.
        frames = match b.overflowed() {
            true => frames / 2,
            false => (frames * limit / b.len()).min(frames - 1),
        };
    }
}

/// Renders the cause summary of `ev` (an ignore or an inherited ignore) into `cause` for a later
/// `echild`; returns its length (0 for none).
fn render_cause(
    ev: &Event,
    ctx: &Context,
    namer: &mut Namer,
    json: bool,
    cause: &mut [u8],
) -> usize {
    let mut c = Buf::new(cause);
    if matches!(ev.kind, Kind::Ignore | Kind::Inherited) {
        if json {
            json::cause(&mut c, ev, ctx, namer);
        } else {
            text::cause(&mut c, ev, ctx, namer);
        }
    }
    if c.overflowed() { 0 } else { c.len() }
}
/// Writes this process's `loaded` record for the `sigaudit` command (`SIGAUDIT_SOCKET` set):
/// the process announces itself, so that the command knows what it audited and when records
/// cannot have reached it. Constructor only; nothing at all without the command.
#[cfg(not(test))]
pub fn announce(config: &Config) {
    if config.socket().is_some() && config.output_path().is_some() {
        write_loaded(config);
    }
}

/// Out of line: its buffers must not be in the constructor's frame (whose pages would then be
/// touched, and stay resident, in every process, command or not).
#[cfg(not(test))]
#[inline(never)]
fn write_loaded(config: &Config) {
    let held = Held::all();
    let (mut exe, mut cmdline, mut out) = ([0u8; 1024], [0u8; 2048], [0u8; 4096]);
    let mut path = [0u8; crate::config::PATH_CAP + 32];
    // SAFETY: all-zero bytes are a valid utsname.
    let mut uts = unsafe { core::mem::zeroed::<libc::utsname>() };
    // Nothing read from /proc: the path `execve` was given and the arguments in memory are
    // enough to say what ran (a readlink of /proc/self/exe cost a few µs per exec).
    let ctx = Context::of_this_process(&mut exe, &mut cmdline, &mut uts, false);
    sink::deliver_to_command(config, &held, &mut out, &mut path, |buf, notes| {
        let mut b = Buf::new(buf);
        json::loaded(&mut b, &ctx, notes);
        if b.overflowed() { 0 } else { b.len() }
    });
}

/// When not even the reserve was free for an event (`stack.rs`): one line on stderr built on the
/// caller's stack, and the loss counted for the next record to say.
pub fn unreported(ev_kind: Kind, via: &str, errno: i32) {
    sink::count_lost(errno);
    let mut mem = [0u8; 256];
    let mut b = Buf::new(&mut mem);
    b.str("sigaudit: pid ").int(crate::sys::getpid() as i64);
    b.str(": an event (")
        .str(ev_kind.name())
        .str(" via ")
        .str(via);
    b.str("()) could not be reported: no memory for it (");
    Errno(errno).write_name(&mut b);
    b.str(")\n");
    let held = Held::all();
    sink::to_stderr(b.as_bytes(), &held);
}

/// `SIGAUDIT_LOG=trace`: what the event cost, on stderr.
fn trace(frame: &stack::Frame, started: u64) {
    let mut mem = [0u8; 256];
    let mut b = Buf::new(&mut mem);
    b.str("sigaudit: pid ")
        .int(crate::sys::getpid() as i64)
        .str(": trace: event used ");
    b.dec(frame.stack_used() as u64).str(" of ");
    b.dec(frame.stack_size() as u64).str(" stack bytes, in ");
    b.dec(clock().saturating_sub(started) / 1000).str(" us (");
    match frame.source {
        stack::Source::Mapped => b.str("its own mapped memory)\n"),
        stack::Source::Reserve(_) => b.str("the library's reserve)\n"),
    };
    sink::to_stderr(b.as_bytes(), frame.held);
}

/// A monotonic clock in nanoseconds, for `SIGAUDIT_LOG=trace`.
pub fn clock() -> u64 {
    crate::sys::monotonic_ns()
}
