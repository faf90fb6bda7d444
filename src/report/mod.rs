//! Events: what one is (`event.rs`), how it is written (`text.rs` for people, `json.rs`, one
//! line per record, for tools), and where (`sink.rs`).
//!
//! Everything here runs inside hooks, so it allocates nothing from the heap and takes no lock.
//! An event is built in a scratch area mapped for it alone (`mmap`, a system call, so it is safe
//! in a signal handler and in a `vfork()` child), not on the caller's stack, which may be a small
//! alternate signal stack. The finished record goes to its sink in one `write()`, so processes that
//! share a file or a pipe never interleave records. A record that does not fit is written again
//! without its frames, and says so; it is never written half-done.

mod event;
mod json;
mod sink;
mod text;

pub use event::{CAUSE_CAP, Event, Kind, Outcome, action_of, basename, read_file, with_scratch};
pub use sink::emit;
// For the constructor, which the unit-test build leaves out.
#[cfg(not(test))]
pub use event::note_load_pid;
#[cfg(not(test))]
pub use sink::note_stderr;

use crate::buf::Buf;
use crate::config::{Config, Format};
use event::{Context, Namer, OUT_CAP, Text};

/// Formats `ev` into `s.out` and returns the record's length. Also renders the cause summary for
/// a later `echild` into `s.cause` (its length is returned second).
pub fn render(config: &Config, ev: &Event, s: &mut Text) -> (usize, usize) {
    let Text {
        out,
        cause,
        exe,
        cmdline,
    } = s;
    let ctx = Context::of_this_process(exe, cmdline);
    let json = config.format == Format::Json;
    let mut namer = Namer { exe: ctx.exe };
    let mut frames = ev.backtrace.len;
    let limit = record_limit(config);
    let len = loop {
        let mut b = Buf::new(out);
        if json {
            json::write(&mut b, ev, &ctx, &mut namer, frames);
        } else {
            text::write(&mut b, ev, &ctx, &mut namer, frames);
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
            json::cause(&mut c, ev, &ctx, &mut namer);
        } else {
            text::cause(&mut c, ev, &ctx, &mut namer);
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
    if config.output_path().is_some() {
        return OUT_CAP;
    }
    // SAFETY: fstat writes only into `st`; a closed stderr just fails.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: as above.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return OUT_CAP;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFSOCK => libc::PIPE_BUF,
        _ => OUT_CAP,
    }
}
