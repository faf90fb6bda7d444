//! The text renderer: an event as people read it on a terminal.

use super::event::{Context, Culprit, Event, Kind, Namer, Note, Outcome, basename};
use crate::buf::Buf;
use crate::policy::Action;
use crate::python::PyFrame;
use crate::signals;

/// Writes `ev` for people, with at most `max_frames` native frames, and its notes (the `extra`
/// ones after its own) under its first lines.
pub fn write(
    b: &mut Buf,
    ev: &Event,
    ctx: &Context,
    namer: &Namer,
    extra: &[Note],
    max_frames: usize,
) {
    b.str("sigaudit: ");
    headline(b, ev, ctx);
    if ev.kind == Kind::Echild {
        b.str(": the kernel reaps children itself, so their exit status is lost\n");
        b.str("  cause: ");
        match ev.cause {
            Some(c) => b.bytes(c),
            None => {
                b.str("not seen by sigaudit (set before it was loaded, or by a raw system call)\n")
            }
        };
    } else {
        b.byte(b'\n');
    }
    for n in ev.notes.iter().chain(extra) {
        if n.reason().is_some() {
            b.str("  note: ");
            n.write_text(b);
            b.byte(b'\n');
        }
    }
    let py = ev.python.frames();
    if ev.missing.is_some() {
        b.str("  ").bytes(ev.missing.text()).byte(b'\n');
    }
    if !py.is_empty() {
        b.str("  ")
            .str(ev.language.title())
            .str(" stack (most recent call last):\n");
        if ev.python.truncated {
            b.str("    ... outer frames cut\n");
        }
        for f in py.iter().rev() {
            b.str("    ");
            py_frame(b, f);
            b.byte(b'\n');
        }
    }
    let frames = ev.backtrace.frames();
    let shown = frames.len().min(max_frames);
    for (i, &ip) in frames.iter().take(shown).enumerate() {
        b.str("    #").dec(i as u64).str("  ");
        let eval_loop = native_frame(b, namer, ip);
        b.byte(b'\n');
        // Below the first Python eval loop the native stack is the interpreter's own business,
        // and the Python stack above says it better; JSON keeps every frame.
        if eval_loop && !py.is_empty() && i + 1 < shown {
            b.str("    ... ").dec((frames.len() - i - 1) as u64);
            b.str(" interpreter frames (all of them are in SIGAUDIT_FORMAT=json)\n");
            return;
        }
    }
    if ev.backtrace.truncated || max_frames < frames.len() {
        b.str("    ... more frames cut\n");
    }
}

/// What happened, in one line without its end: `pid 7 (demo) SIGCHLD ignored via signal():
/// SIG_DFL -> SIG_IGN [logged]`. Also the start of the journal's and syslog's one-line summary.
pub fn headline(b: &mut Buf, ev: &Event, ctx: &Context) {
    b.str("pid ")
        .int(ctx.pid as i64)
        .str(" (")
        .text(basename(ctx.exe));
    if let Some(parent) = ctx.forked_from {
        b.str(", forked from pid ").int(parent as i64);
    }
    b.str(") ");
    match ev.kind {
        Kind::Ignore | Kind::Change => {
            signals::write_name(b, ev.signo);
            b.str(if ev.kind == Kind::Ignore {
                " ignored via "
            } else {
                " changed via "
            });
            b.str(ev.via).str("(): ");
            action(b, ev.old);
            b.str(" -> ");
            action(b, ev.new);
            b.str(" [").str(ev.outcome.name()).str("]");
        }
        Kind::Inherited => {
            signals::write_name(b, ev.signo);
            b.str(" was already SIG_IGN when the program started (inherited across execve from parent pid ");
            b.int(ctx.ppid as i64);
            b.str(if ev.outcome == Outcome::Vetoed {
                ") [vetoed: reset to SIG_DFL]"
            } else {
                ") [logged]"
            });
        }
        Kind::Echild => {
            b.str(ev.via)
                .str("() failed with ECHILD because SIGCHLD is ");
            action(b, ev.old);
        }
    }
}

fn action(b: &mut Buf, a: Action) {
    b.str(a.disposition.name());
    if a.visible_flags() != 0 {
        b.byte(b' ');
        signals::write_flags(b, a.flags, false);
    }
}

fn py_frame(b: &mut Buf, f: &PyFrame) {
    b.str("File \"")
        .text(f.file())
        .str("\", line ")
        .int(f.line as i64);
    b.str(", in ").text(f.function());
}

/// Writes one native frame; returns whether it is an interpreter's loop (CPython's, Perl's). In
/// a secure-execution process without its address (`culprit+0x13 (/tmp/t/a+0x11ac)`).
fn native_frame(b: &mut Buf, namer: &Namer, ip: usize) -> bool {
    if namer.addresses {
        b.hex(ip as u64).byte(b' ');
    }
    let Some(f) = namer.frame(ip) else {
        b.str("(?)");
        return false;
    };
    let mut eval_loop = false;
    if let Some((name, off)) = f.symbol {
        b.text(name).byte(b'+').hex(off as u64).byte(b' ');
        eval_loop = name.starts_with(b"_PyEval_EvalFrame") || name.starts_with(b"Perl_runops_");
    }
    b.str("(")
        .text(f.module)
        .byte(b'+')
        .hex(f.offset as u64)
        .byte(b')');
    eval_loop
}

/// Writes the cause summary of `ev` (an ignore or inherited ignore) for people, for the
/// `cause:` line of a later `echild` event.
pub fn cause(b: &mut Buf, ev: &Event, ctx: &Context, namer: &Namer) {
    let culprit = Culprit::of(ev, namer);
    match ev.kind {
        Kind::Inherited => {
            b.str("SIGCHLD was SIG_IGN when pid ").int(ctx.pid as i64);
            b.str(" started, inherited from parent pid ")
                .int(ctx.ppid as i64);
        }
        _ => {
            signals::write_name(b, ev.signo);
            b.str(" ignored via ")
                .str(ev.via)
                .str("() at ")
                .iso_time(ctx.now.0, ctx.now.1);
        }
    }
    b.byte(b'\n');
    for (i, f) in culprit.python().enumerate() {
        b.str(if i == 0 { "    at " } else { "    from " });
        py_frame(b, f);
        b.byte(b'\n');
    }
    if culprit.python().next().is_none() && ev.missing.is_some() {
        b.str("    (").bytes(ev.missing.text()).str(")\n");
    }
    if let (None, Some(ip)) = (culprit.python().next(), culprit.native) {
        b.str("    at ");
        native_frame(b, namer, ip);
        b.byte(b'\n');
    }
}
