//! `sigaudit`: runs a command with `libsigaudit.so` preloaded into it and everything it starts,
//! shows what the library reports, and summarizes; `sigaudit symbolize` adds source lines to
//! recorded events; `sigaudit report` summarizes records kept by any number of processes and
//! hosts (files, or the journal).
//!
//! This program must never link the library (it would interpose its own `sigaction`): it finds
//! the built `.so` at run time (`library.rs`) and only hands it to the command.
//!
//! Files: `args.rs` (command line), `library.rs` (finding the `.so`), `run.rs` (environment,
//! spawn, wait), `collect.rs` (reading the records, knowing what may be lost), `forward.rs` (passing signals on), `record.rs` (reading a record,
//! choosing the frame to blame), `preflight.rs` (a command the library cannot enter), `text.rs` (records for people), `summary.rs`, `symbolize.rs`
//! (DWARF lookups), `debuginfod.rs` (debug files from servers), `signals.rs` (names),
//! `supervise/` (`--supervise`: the seccomp supervisor), `input.rs` (reading stored records: the
//! library's, the command's, the journal's), `counts.rs` (bounded counts of
//! processes and names), `report.rs` (`sigaudit report`).

mod args;
mod collect;
mod counts;
mod debuginfod;
mod forward;
mod input;
mod library;
mod preflight;
mod record;
mod report;
mod run;
mod signals;
mod summary;
mod supervise;
mod symbolize;
mod text;
mod tree;

use std::io::Write;

fn main() {
    let code = match args::parse(std::env::args_os().skip(1).collect()) {
        Err(reason) => {
            eprintln!("sigaudit: {reason} (see sigaudit --help)");
            2
        }
        Ok(args::Invocation::Help) => {
            let _ = writeln!(std::io::stdout(), "{}", args::HELP);
            0
        }
        Ok(args::Invocation::Version) => {
            let _ = writeln!(std::io::stdout(), "sigaudit {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(args::Invocation::Run(opts)) => run::main(&opts),
        Ok(args::Invocation::Symbolize(opts)) => symbolize::main(&opts),
        Ok(args::Invocation::Report(opts)) => report::main(&opts),
    };
    std::process::exit(code);
}
