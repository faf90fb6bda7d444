//! Events: what one is, how it is written (text for people, JSON lines for tools), and where.
//!
//! Everything here runs inside hooks, so it allocates nothing from the heap and takes no lock.
//! An event is built in a scratch area mapped for it alone (`mmap`, a system call, so it is safe
//! in a signal handler and in a `vfork()` child), not on the caller's stack, which may be a small
//! alternate signal stack. The finished record goes to its sink in one `write()`, so processes that
//! share a file or a pipe never interleave records. A record that does not fit is written again
//! without its frames, and says so; it is never written half-done.

use crate::buf::Buf;
use crate::config::{Config, Format};
use crate::policy::{Action, Disposition};
use crate::python::{PyFrame, PyStack};
use crate::signals;
use crate::symbols;
use crate::unwind::{self, Backtrace};
use libc::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A watched signal was asked to be ignored (or SIGCHLD given `SA_NOCLDWAIT`).
    Ignore,
    /// Another change of a signal watched with `:any`.
    Change,
    /// The process started with a watched signal ignored, inherited across `execve`.
    Inherited,
    /// A wait failed with `ECHILD` while SIGCHLD was ignored.
    Echild,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ignore => "ignore",
            Kind::Change => "change",
            Kind::Inherited => "inherited",
            Kind::Echild => "echild",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Logged,
    Vetoed,
    Aborted,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Logged => "logged",
            Outcome::Vetoed => "vetoed",
            Outcome::Aborted => "aborted",
        }
    }
}

pub struct Event<'a> {
    pub kind: Kind,
    pub signo: c_int,
    /// The function the program called (`signal`, `syscall`, `waitpid`, ...).
    pub via: &'static str,
    pub old: Action,
    pub new: Action,
    pub outcome: Outcome,
    pub backtrace: &'a Backtrace,
    pub python: &'a PyStack,
    /// For `echild`: the cause as recorded in this process's format, or `None` if unknown.
    pub cause: Option<&'a [u8]>,
}

/// Room for one record.
pub const OUT_CAP: usize = 64 * 1024;
/// Room for a cause summary kept for later `echild` events.
pub const CAUSE_CAP: usize = 2048;

/// Working memory for one event, mapped for it and unmapped after.
pub struct Scratch {
    pub backtrace: Backtrace,
    pub python: PyStack,
    /// The cause an `echild` event points back to, as recorded earlier.
    pub prior_cause: [u8; CAUSE_CAP],
    pub text: Text,
}

/// Where a record is rendered.
pub struct Text {
    pub out: [u8; OUT_CAP],
    /// The cause summary of this event, kept for later `echild` events.
    pub cause: [u8; CAUSE_CAP],
    exe: [u8; 1024],
    cmdline: [u8; 1024],
}

/// Runs `f` with a zeroed [`Scratch`], or returns `None` when the kernel has no memory for one.
pub fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> Option<T> {
    let size = std::mem::size_of::<Scratch>();
    // SAFETY: an anonymous private mapping, checked for failure before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is zero-filled, page-aligned, large enough, and all-zero bytes are a
    // valid Scratch (plain integers and arrays). It is ours alone until unmapped below.
    let r = f(unsafe { &mut *(p as *mut Scratch) });
    // SAFETY: unmaps exactly what was mapped.
    unsafe { libc::munmap(p, size) };
    Some(r)
}

/// Formats `ev` into `s.out` and returns the record's length. Also renders the cause summary for
/// a later `echild` into `s.cause` (its length is returned second).
pub fn render(config: &Config, ev: &Event, s: &mut Text) -> (usize, usize) {
    let exe_len = read_link(b"/proc/self/exe\0", &mut s.exe);
    let cmd_len = read_file(b"/proc/self/cmdline\0", &mut s.cmdline);
    let ctx = Context {
        exe: s.exe.get(..exe_len).unwrap_or(&[]),
        cmdline: s.cmdline.get(..cmd_len).unwrap_or(&[]),
        now: now(),
        // SAFETY: these have no preconditions.
        pid: unsafe { libc::getpid() },
        ppid: unsafe { libc::getppid() },
        tid: unsafe { libc::gettid() },
    };
    let json = config.format == Format::Json;
    let mut namer = Namer { exe: ctx.exe };
    let mut frames = ev.backtrace.len;
    let limit = record_limit(config);
    let len = loop {
        let mut b = Buf::new(&mut s.out);
        if json {
            write_json(&mut b, ev, &ctx, &mut namer, frames);
        } else {
            write_text(&mut b, ev, &ctx, &mut namer, frames);
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
    let mut c = Buf::new(&mut s.cause);
    if matches!(ev.kind, Kind::Ignore | Kind::Inherited) {
        write_cause(&mut c, ev, &ctx, &mut namer, json);
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

/// Names native frames: module and offset always, a function name from `.dynsym` in memory or
/// else from the module file's `.symtab`.
struct Namer<'a> {
    exe: &'a [u8],
}

struct Frame<'n> {
    module: &'n [u8],
    offset: usize,
    symbol: Option<(&'static [u8], usize)>,
}

impl<'a> Namer<'a> {
    fn frame(&self, ip: usize) -> Option<Frame<'a>> {
        let loc = unwind::locate(ip)?;
        // The loader names the main program with an empty string.
        let module = if loc.module.is_empty() {
            self.exe
        } else {
            loc.module
        };
        let offset = ip - loc.base;
        Some(Frame {
            module,
            offset,
            symbol: symbols::name(loc.map, module, offset.saturating_sub(1)),
        })
    }

    /// Whether `ip` is in libc or the interpreter, which are never the culprit.
    fn in_runtime(&self, ip: usize) -> bool {
        unwind::locate(ip).is_some_and(|loc| {
            let module = if loc.module.is_empty() {
                self.exe
            } else {
                loc.module
            };
            is_runtime_module(module)
        })
    }
}

struct Context<'a> {
    exe: &'a [u8],
    cmdline: &'a [u8],
    now: (i64, u32),
    pid: c_int,
    ppid: c_int,
    tid: c_int,
}

fn now() -> (i64, u32) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, (ts.tv_nsec / 1000) as u32)
}

fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => path.get(i + 1..).unwrap_or(path),
        None => path,
    }
}

/// Reads a symlink's target into `buf`, returning its length (0 on failure).
fn read_link(path: &[u8], buf: &mut [u8]) -> usize {
    // SAFETY: path is NUL-terminated; buf is writable for its length.
    let n = unsafe {
        libc::readlink(
            path.as_ptr() as *const libc::c_char,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    n.max(0) as usize
}

/// Reads the start of a file into `buf`, returning how much was read (0 on failure).
fn read_file(path: &[u8], buf: &mut [u8]) -> usize {
    // SAFETY: path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr() as *const libc::c_char,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return 0;
    }
    // SAFETY: buf is writable for its length; fd is ours and closed below.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    n.max(0) as usize
}

fn write_json(b: &mut Buf, ev: &Event, ctx: &Context, namer: &mut Namer, max_frames: usize) {
    b.str("{\"event\":\"")
        .str(ev.kind.name())
        .str("\",\"time\":\"");
    b.iso_time(ctx.now.0, ctx.now.1);
    b.str("\",\"pid\":").int(ctx.pid as i64);
    b.str(",\"ppid\":").int(ctx.ppid as i64);
    b.str(",\"tid\":").int(ctx.tid as i64);
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
    b.str("],\"signal\":\"");
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
    b.str(",\"python\":[");
    for (i, f) in ev.python.frames().iter().enumerate() {
        if i > 0 {
            b.byte(b',');
        }
        json_py_frame(b, f);
    }
    b.str("],\"python_truncated\":")
        .str(bool_str(ev.python.truncated));
    b.str(",\"backtrace\":[");
    let frames = ev.backtrace.frames();
    for (i, &ip) in frames.iter().take(max_frames).enumerate() {
        if i > 0 {
            b.byte(b',');
        }
        json_native_frame(b, namer, ip);
    }
    let cut = ev.backtrace.truncated || max_frames < frames.len();
    b.str("],\"backtrace_truncated\":").str(bool_str(cut));
    b.str("}\n");
}

fn bool_str(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

fn json_py_frame(b: &mut Buf, f: &PyFrame) {
    b.str("{\"file\":").json_str(f.file());
    b.str(",\"line\":").int(f.line as i64);
    b.str(",\"function\":").json_str(f.function());
    b.byte(b'}');
}

fn json_native_frame(b: &mut Buf, namer: &mut Namer, ip: usize) {
    b.str("{\"addr\":\"").hex(ip as u64).byte(b'"');
    if let Some(f) = namer.frame(ip) {
        b.str(",\"module\":").json_str(f.module);
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

fn write_text(b: &mut Buf, ev: &Event, ctx: &Context, namer: &mut Namer, max_frames: usize) {
    b.str("sigaudit: pid ")
        .int(ctx.pid as i64)
        .str(" (")
        .text(basename(ctx.exe))
        .str(") ");
    match ev.kind {
        Kind::Ignore | Kind::Change => {
            signals::write_name(b, ev.signo);
            b.str(if ev.kind == Kind::Ignore {
                " ignored via "
            } else {
                " changed via "
            });
            b.str(ev.via).str("(): ");
            text_action(b, ev.old);
            b.str(" -> ");
            text_action(b, ev.new);
            b.str(" [").str(ev.outcome.name()).str("]\n");
        }
        Kind::Inherited => {
            signals::write_name(b, ev.signo);
            b.str(" was already SIG_IGN when the program started (inherited across execve from parent pid ");
            b.int(ctx.ppid as i64);
            b.str(if ev.outcome == Outcome::Vetoed {
                ") [vetoed: reset to SIG_DFL]\n"
            } else {
                ") [logged]\n"
            });
        }
        Kind::Echild => {
            b.str(ev.via)
                .str("() failed with ECHILD because SIGCHLD is ");
            text_action(b, ev.old);
            b.str(": the kernel reaps children itself, so their exit status is lost\n");
            b.str("  cause: ");
            match ev.cause {
                Some(c) => b.bytes(c),
                None => b.str(
                    "not seen by sigaudit (set before it was loaded, or by a raw system call)\n",
                ),
            };
        }
    }
    let py = ev.python.frames();
    if !py.is_empty() {
        b.str("  Python stack (most recent call last):\n");
        if ev.python.truncated {
            b.str("    ... outer frames cut\n");
        }
        for f in py.iter().rev() {
            b.str("    ");
            text_py_frame(b, f);
            b.byte(b'\n');
        }
    }
    let frames = ev.backtrace.frames();
    let shown = frames.len().min(max_frames);
    for (i, &ip) in frames.iter().take(shown).enumerate() {
        b.str("    #").dec(i as u64).str("  ");
        let eval_loop = text_native_frame(b, namer, ip);
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

fn text_action(b: &mut Buf, a: Action) {
    b.str(a.disposition.name());
    if a.visible_flags() != 0 {
        b.byte(b' ');
        signals::write_flags(b, a.flags, false);
    }
}

fn text_py_frame(b: &mut Buf, f: &PyFrame) {
    b.str("File \"")
        .text(f.file())
        .str("\", line ")
        .int(f.line as i64);
    b.str(", in ").text(f.function());
}

/// Writes one native frame; returns whether it is CPython's eval loop.
fn text_native_frame(b: &mut Buf, namer: &mut Namer, ip: usize) -> bool {
    b.hex(ip as u64);
    let Some(f) = namer.frame(ip) else {
        b.str(" (?)");
        return false;
    };
    let mut eval_loop = false;
    if let Some((name, off)) = f.symbol {
        b.byte(b' ').text(name).byte(b'+').hex(off as u64);
        eval_loop = name.starts_with(b"_PyEval_EvalFrame");
    }
    b.str(" (")
        .text(f.module)
        .byte(b'+')
        .hex(f.offset as u64)
        .byte(b')');
    eval_loop
}

/// True for a file of Python's own standard library (or frozen module), which is never the
/// culprit: `signal.py` wraps `_signal.signal`, for one.
fn is_stdlib(file: &[u8]) -> bool {
    let has = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    file.starts_with(b"<frozen ") || (has(b"/lib/python3") && !has(b"-packages/"))
}

/// The frame to blame: the innermost Python frame outside the standard library.
pub fn python_culprit(py: &PyStack) -> Option<usize> {
    py.frames().iter().position(|f| !is_stdlib(f.file()))
}

/// True for frames of libc itself or of the Python interpreter, which are never the culprit.
fn is_runtime_module(module: &[u8]) -> bool {
    let name = basename(module);
    name.starts_with(b"libc.so")
        || name.starts_with(b"libpthread")
        || name.starts_with(b"libpython")
        || name.starts_with(b"python")
}

/// The first native frame outside libc and the interpreter.
fn native_culprit(bt: &Backtrace, namer: &Namer) -> Option<usize> {
    bt.frames()
        .iter()
        .copied()
        .find(|&ip| !namer.in_runtime(ip))
}

/// How many Python frames, from the culprit outwards, a cause keeps.
const CAUSE_PY_FRAMES: usize = 6;

fn write_cause(b: &mut Buf, ev: &Event, ctx: &Context, namer: &mut Namer, json: bool) {
    let py = ev.python.frames();
    let culprit = python_culprit(ev.python);
    // The culprit and the frames that led to it, without the standard library's (an import
    // passes through several `<frozen importlib._bootstrap>` frames on its way).
    let chain = culprit.map(|c| py.get(c..).unwrap_or(&[])).unwrap_or(&[]);
    let chain = chain
        .iter()
        .filter(|f| !is_stdlib(f.file()))
        .take(CAUSE_PY_FRAMES);
    let native = native_culprit(ev.backtrace, namer);
    if json {
        b.str("{\"event\":\"")
            .str(ev.kind.name())
            .str("\",\"time\":\"");
        b.iso_time(ctx.now.0, ctx.now.1);
        b.str("\",\"pid\":").int(ctx.pid as i64);
        b.str(",\"via\":\"").str(ev.via).str("\",\"signal\":\"");
        signals::write_name(b, ev.signo);
        b.str("\",\"python\":[");
        for (i, f) in chain.clone().enumerate() {
            if i > 0 {
                b.byte(b',');
            }
            json_py_frame(b, f);
        }
        b.str("],\"native\":");
        match native {
            Some(ip) => json_native_frame(b, namer, ip),
            None => {
                b.str("null");
            }
        }
        b.byte(b'}');
    } else {
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
        for (i, f) in chain.clone().enumerate() {
            b.str(if i == 0 { "    at " } else { "    from " });
            text_py_frame(b, f);
            b.byte(b'\n');
        }
        if let (None, Some(ip)) = (chain.clone().next(), native) {
            b.str("    at ");
            text_native_frame(b, namer, ip);
            b.byte(b'\n');
        }
    }
}

// ---- the sink --------------------------------------------------------------------------------

/// The output file could not be opened and that has been said.
static OPEN_FAILED_SAID: AtomicBool = AtomicBool::new(false);

/// Writes a finished record to the configured output; falls back to stderr, saying why, when
/// the file cannot be opened.
///
/// The file is opened for each record and closed after it. A descriptor kept open between events
/// would be the host's business: a program that lists its descriptors (CPython's
/// `test_pass_fds_redirected` does) would see it, and one that closes every descriptor and opens
/// its own files could get ours' number, so that the next record lands in the program's file.
/// Events are rare; an `open` and a `close` each are cheap next to capturing a stack.
pub fn emit(config: &Config, record: &[u8]) {
    let Some(template) = config.output_path() else {
        to_stderr(record);
        return;
    };
    // SAFETY: no preconditions.
    let pid = unsafe { libc::getpid() };
    let failed = match open_output(template, pid) {
        Ok(fd) => {
            let written = write_all(fd, record);
            // SAFETY: our own descriptor, opened above.
            unsafe { libc::close(fd) };
            written.err().map(|e| ("cannot write to", e))
        }
        Err(errno) => Some(("cannot open", errno)),
    };
    // A file that cannot be opened or written (a missing folder, a full disk): say so, once,
    // and report on stderr instead, so that no event is lost without a word.
    if let Some((what, errno)) = failed {
        if !OPEN_FAILED_SAID.swap(true, Ordering::Relaxed) {
            let mut mem = [0u8; 1400];
            let mut b = Buf::new(&mut mem);
            b.str("sigaudit: pid ").int(pid as i64).str(": ").str(what);
            b.str(" SIGAUDIT_OUTPUT ").text(template).str(": ");
            b.str(errno_name(errno))
                .str("; reporting on stderr instead\n");
            to_stderr(b.as_bytes());
        }
        to_stderr(record);
    }
}

/// stderr as it was when the library loaded: 0 not looked at (a hook before our constructor),
/// [`STDERR_CLOSED`], or its [`file_id`].
static STDERR_AT_LOAD: AtomicU64 = AtomicU64::new(0);
const STDERR_CLOSED: u64 = u64::MAX;

/// Notes what stderr is. Constructor only.
pub fn note_stderr() {
    STDERR_AT_LOAD.store(file_id(2).unwrap_or(STDERR_CLOSED), Ordering::Relaxed);
}

/// Writes to stderr, unless descriptor 2 is no longer the program's stderr. A program started
/// with stderr closed, or one that closed it, gets descriptor 2 for the next file it opens: its
/// data, which an event must never be written into. So: nothing when stderr was closed at load;
/// and when descriptor 2 is another file than at load, only if it is not a regular file or is
/// one opened for appending (a log the program sent its stderr to), not a file opened for writing.
fn to_stderr(bytes: &[u8]) {
    let at_load = STDERR_AT_LOAD.load(Ordering::Relaxed);
    if at_load == STDERR_CLOSED {
        return;
    }
    if at_load != 0 && file_id(2) != Some(at_load) {
        // SAFETY: fstat writes only into `st`; F_GETFL reads the descriptor's flags.
        let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
        // SAFETY: as above.
        let regular =
            unsafe { libc::fstat(2, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
        // SAFETY: as above.
        let append = unsafe { libc::fcntl(2, libc::F_GETFL) } & libc::O_APPEND != 0;
        if regular && !append {
            return;
        }
    }
    let _ = write_all(2, bytes);
}

/// A file's identity: its device and inode in one word (never 0 or [`STDERR_CLOSED`] in
/// practice: no file has device and inode 0, and both are below 2^32).
fn file_id(fd: c_int) -> Option<u64> {
    // SAFETY: fstat writes only into `st`.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: as above; a bad descriptor just fails.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some(st.st_dev.rotate_left(32) ^ st.st_ino)
}

/// Opens the output file for `pid`: `%p` becomes the pid, `%%` a `%`. Append-only, close-on-exec,
/// never through a symlink, created private to the user.
fn open_output(template: &[u8], pid: c_int) -> Result<c_int, c_int> {
    let mut mem = [0u8; crate::config::PATH_CAP + 32];
    let mut b = Buf::new(&mut mem);
    let mut it = template.iter().peekable();
    while let Some(&c) = it.next() {
        match (c, it.peek()) {
            (b'%', Some(b'p')) => {
                it.next();
                b.int(pid as i64);
            }
            (b'%', Some(b'%')) => {
                it.next();
                b.byte(b'%');
            }
            _ => {
                b.byte(c);
            }
        }
    }
    b.byte(0);
    if b.overflowed() {
        return Err(libc::ENAMETOOLONG);
    }
    // O_NONBLOCK: a FIFO with no reader fails (ENXIO) instead of hanging the program.
    let flags = libc::O_WRONLY
        | libc::O_NONBLOCK
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NOCTTY;
    // SAFETY: the path is NUL-terminated.
    let fd = unsafe { libc::open(b.as_bytes().as_ptr() as *const libc::c_char, flags, 0o600) };
    if fd < 0 {
        Err(crate::guard::errno())
    } else {
        Ok(fd)
    }
}

/// Writes all of `bytes`, retrying short writes and interruptions, waiting a bounded time for a
/// non-blocking descriptor to drain. Returns the `errno` of a write that failed otherwise.
pub fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<(), c_int> {
    let mut waits = 0;
    while !bytes.is_empty() {
        // SAFETY: bytes is readable for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n > 0 {
            bytes = bytes.get(n as usize..).unwrap_or(&[]);
            continue;
        }
        match crate::guard::errno() {
            libc::EINTR => continue,
            libc::EAGAIN if waits < 20 => {
                waits += 1;
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 50) };
            }
            e => return Err(e),
        }
    }
    Ok(())
}

fn errno_name(e: c_int) -> &'static str {
    match e {
        libc::ENOENT => "ENOENT (a folder on the path does not exist)",
        libc::EACCES => "EACCES (permission denied)",
        libc::ELOOP => "ELOOP (the path is a symlink, which is never followed)",
        libc::ENOTDIR => "ENOTDIR (a part of the path is not a folder)",
        libc::EISDIR => "EISDIR (the path is a folder)",
        libc::EROFS => "EROFS (read-only file system)",
        libc::ENOSPC => "ENOSPC (no space left on device)",
        libc::EMFILE | libc::ENFILE => "EMFILE (too many open files)",
        libc::ENAMETOOLONG => "ENAMETOOLONG (the path is too long)",
        libc::EPERM => "EPERM (operation not permitted)",
        _ => "error",
    }
}

/// Wraps [`Disposition`] and flags read from the kernel into an [`Action`].
pub fn action_of(sa: &libc::sigaction) -> Action {
    Action::new(Disposition::from_raw(sa.sa_sigaction), sa.sa_flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdlib_frames_are_never_the_culprit() {
        assert!(is_stdlib(b"/usr/lib/python3.11/signal.py"));
        assert!(is_stdlib(
            b"/home/dev/.pyenv/versions/3.11.7/lib/python3.11/subprocess.py"
        ));
        assert!(is_stdlib(b"<frozen importlib._bootstrap>"));
        assert!(!is_stdlib(b"/usr/lib/python3/dist-packages/foo/helper.py"));
        assert!(!is_stdlib(b"/srv/app/helper.py"));
        assert!(!is_stdlib(b"helper.py"));
    }

    #[test]
    fn runtime_modules() {
        assert!(is_runtime_module(b"/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_runtime_module(b"/usr/lib/libpython3.11.so.1.0"));
        assert!(is_runtime_module(b"/usr/bin/python3.11"));
        assert!(!is_runtime_module(b"/tmp/demo"));
        assert!(!is_runtime_module(b"/usr/lib/libcrypto.so.3"));
    }
}
