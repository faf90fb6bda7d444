//! The library's own diagnostics (bad settings, a missing libc symbol, what a process loaded
//! with), through the `log` facade and a writer of our own.
//!
//! The writer formats each message into a fixed buffer on the stack and hands it to stderr in
//! one `write(2)` (through the sink's checks: never into a descriptor 2 that is no longer the
//! program's stderr), so it allocates nothing, takes no lock and is safe in any context. Its
//! level is `SIGAUDIT_LOG` (default `warn`), set with the configuration; a Rust host's
//! `RUST_LOG` is never read. env_logger did this before at the price of std in the library.

use crate::buf::Buf;
use crate::config::{self, Config, Format, Mode, Problems};
use crate::report;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

/// The one writer; `log` holds a reference to it.
struct Writer;

/// Longest message written; a longer one is cut, and ends with `...`.
const MESSAGE_CAP: usize = 1024;

impl log::Log for Writer {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut mem = [0u8; MESSAGE_CAP];
        let mut b = Buf::new(&mut mem);
        let pid = crate::sys::getpid();
        b.str("sigaudit: pid ").int(pid as i64).str(": ");
        b.str(level_name(record.level())).str(": ");
        let _ = b.write_fmt(*record.args());
        end_line(&mut b);
        report::write_to_stderr(b.as_bytes());
    }

    fn flush(&self) {}
}

/// Ends a message with its newline, marking a cut one with `...` (the room is made for both).
fn end_line(b: &mut Buf) {
    if b.overflowed() {
        b.truncate(b.capacity().saturating_sub(4));
        b.str("...");
    }
    b.byte(b'\n');
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// Installs the writer at load when `SIGAUDIT_LOG` asks for more than the default, so that the
/// set-up below can say what it does; otherwise [`ensure`] does it before the first message.
/// A process with nothing to say then never writes `log`'s state, whose page of memory would be
/// one more to fault in on every exec. Constructor only.
pub fn start(cfg: &Config) {
    if cfg.log > log::LevelFilter::Warn {
        install(cfg.log);
    }
}

/// Installs the writer, at the loaded configuration's level, before a message (a few atomic
/// operations, no lock: safe in a hook).
pub fn ensure() {
    install(config::loaded().map_or(log::LevelFilter::Warn, |c| c.log));
}

/// Installs the writer at `level` (the constructor's, before the configuration is published).
pub fn install(level: log::LevelFilter) {
    static WRITER: Writer = Writer;
    #[unsafe(link_section = ".data.sigaudit_load")]
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    // Fails only if set already (never: this is the library's own copy of `log`).
    let _ = log::set_logger(&WRITER);
    log::set_max_level(level);
}

/// Reports each bad setting once, by name, with what is used instead.
pub fn problems(problems: &Problems, cfg: &Config) {
    if problems.iter().next().is_some() {
        install(cfg.log);
    }
    for p in problems.iter() {
        let mut mem = [0u8; 256];
        let mut b = Buf::new(&mut mem);
        // The value as a JSON string: quoted, every byte visible.
        b.json_str(p.value());
        log::warn!(
            "{}={}{} {}; using {}",
            p.var,
            as_str(&b),
            if p.value_cut { "..." } else { "" },
            p.reason,
            p.used
        );
    }
    if problems.dropped > 0 {
        log::warn!("{} more bad settings not shown", problems.dropped);
    }
}

/// The bytes of `b`, which its writers keep UTF-8.
fn as_str<'a>(b: &'a Buf) -> &'a str {
    core::str::from_utf8(b.as_bytes()).unwrap_or("?")
}

/// At `debug`, says what this process runs with.
pub fn loaded(cfg: &Config) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let mut mem = [0u8; 512];
    let mut watch = Buf::new(&mut mem);
    for (i, s) in cfg.watch.iter().enumerate() {
        if i > 0 {
            watch.byte(b',');
        }
        watch.int(i64::from(s));
        if cfg.watch_any.contains(s) {
            watch.str(":any");
        }
    }
    let mut path = [0u8; 1100];
    let mut output = Buf::new(&mut path);
    match (cfg.output, cfg.output_socket()) {
        (config::Output::Stderr, _) => output.str("stderr"),
        (config::Output::File, _) => output.text(cfg.given_path()),
        (kind, Some((_, socket))) => output.str(kind.name()).byte(b':').text(socket),
        (kind, None) => output.str(kind.name()),
    };
    log::debug!(
        "loaded: mode={} watch={} format={} output={}{}",
        match cfg.mode {
            Mode::Log => "log",
            Mode::Veto => "veto",
            Mode::Abort => "abort",
        },
        as_str(&watch),
        match cfg.format {
            Format::Text => "text",
            Format::Json => "json",
        },
        as_str(&output),
        if cfg.secure {
            " (secure-execution mode)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_and_still_end_their_line() {
        let mut mem = [0u8; 16];
        let mut b = Buf::new(&mut mem);
        let _ = write!(b, "{}", "x".repeat(40));
        end_line(&mut b);
        assert_eq!(b.as_bytes(), b"xxxxxxxxxxxx...\n");
        let mut mem = [0u8; 16];
        let mut b = Buf::new(&mut mem);
        let _ = write!(b, "short");
        end_line(&mut b);
        assert_eq!(b.as_bytes(), b"short\n");
    }
}
