//! The library's own diagnostics (bad settings, a missing libc symbol), through `log` and
//! `env_logger`, in ordinary contexts only: the constructor. Never from a hook.
//!
//! env_logger is set up with our own variable (`SIGAUDIT_LOG`, default `warn`), so a Rust host's
//! `RUST_LOG` is never read, and only when the first message is due or `SIGAUDIT_LOG` is set:
//! initialising it costs tens of microseconds per exec.

use crate::config::{self, Config, Format, Mode, Problems};
use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STARTED: AtomicBool = AtomicBool::new(false);

fn start() {
    if STARTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let raw = config::getenv_bytes(config::LOG);
    let level = raw.and_then(|v| {
        LEVELS
            .into_iter()
            .find(|l| l.as_bytes().eq_ignore_ascii_case(v.trim_ascii()))
    });
    let pid = std::process::id();
    let _ = env_logger::Builder::new()
        .parse_filters(level.unwrap_or("warn"))
        .target(env_logger::Target::Stderr)
        .format(move |out, record| {
            writeln!(
                out,
                "sigaudit: pid {pid}: {}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            )
        })
        .try_init();
    if let (Some(v), None) = (raw, level) {
        let shown = v.get(..64).unwrap_or(v);
        log::warn!(
            "{}={:?}{} is not off, error, warn, info, debug or trace; using warn",
            config::LOG,
            String::from_utf8_lossy(shown),
            if shown.len() < v.len() { "..." } else { "" }
        );
    }
}

/// What `SIGAUDIT_LOG` takes: a level (env_logger's richer filter syntax is not needed for one
/// crate, and a typo in it would be taken silently as a module name).
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

pub fn error(args: Arguments) {
    start();
    log::error!("{args}");
}

/// Reports each bad setting once, by name, with what is used instead.
pub fn problems(problems: &Problems) {
    for p in problems.iter() {
        start();
        log::warn!(
            "{}={:?}{} {}; using {}",
            p.var,
            String::from_utf8_lossy(p.value()),
            if p.value_cut { "..." } else { "" },
            p.reason,
            p.used
        );
    }
    if problems.dropped > 0 {
        log::warn!("{} more bad settings not shown", problems.dropped);
    }
}

/// With `SIGAUDIT_LOG` set, says what this process runs with.
pub fn loaded(cfg: &Config) {
    if config::getenv_bytes(config::LOG).is_none() {
        return;
    }
    start();
    let watch: Vec<String> = cfg
        .watch
        .iter()
        .map(|s| {
            format!(
                "{s}{}",
                if cfg.watch_any.contains(s) {
                    ":any"
                } else {
                    ""
                }
            )
        })
        .collect();
    log::debug!(
        "loaded: mode={} watch={} format={} output={}{}",
        match cfg.mode {
            Mode::Log => "log",
            Mode::Veto => "veto",
            Mode::Abort => "abort",
        },
        watch.join(","),
        match cfg.format {
            Format::Text => "text",
            Format::Json => "json",
        },
        match (cfg.output, cfg.output_socket()) {
            (config::Output::Stderr, _) => "stderr".to_string(),
            (config::Output::File, _) => String::from_utf8_lossy(cfg.given_path()).into_owned(),
            (kind, Some((_, socket))) =>
                format!("{}:{}", kind.name(), String::from_utf8_lossy(socket)),
            (kind, None) => kind.name().to_string(),
        },
        if cfg.secure {
            " (secure-execution mode)"
        } else {
            ""
        }
    );
}
