//! The event model: what happened ([`Event`], [`Kind`], [`Outcome`]), what degraded or was lost
//! on the way ([`Note`]), the process it happened in ([`Context`]), its native frames as modules,
//! offsets and names ([`Namer`]), what it is blamed on ([`Culprit`]), and the working memory an
//! event is built in ([`Scratch`]).

pub use super::errno::Errno;
use crate::buf::Buf;
use crate::buildid::{self, BuildId};
use crate::policy::{Action, Disposition};
use crate::python::{PyFrame, PyStack};
use crate::script::{Language, Missing};
use crate::stack;
use crate::symbols;
use crate::sys;
use crate::unwind::{self, Backtrace};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use libc::c_int;

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
    pub fn name(self) -> &'static str {
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
    pub fn name(self) -> &'static str {
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
    /// Script frames (Python, Perl or shell, per `language`), innermost first.
    pub python: &'a PyStack,
    pub language: Language,
    /// Why a process that runs an interpreter has no frames from it for this event.
    pub missing: &'a Missing,
    /// For `echild`: the cause as recorded in this process's format, or `None` if unknown.
    pub cause: Option<&'a [u8]>,
    /// What degraded while the event was captured.
    pub notes: &'a [Note],
}

/// Something a record says about itself: what could not be done for it, or what was lost before
/// it. Each has a short code (`reason`) for tools and a sentence for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    None,
    /// The event's memory could not be mapped; it was built in the library's reserve.
    NoMemory(Errno),
    /// The program installed a seccomp filter after it started: nothing was opened for this
    /// event (no module file, no output file), and names come from `.dynsym` in memory.
    Sandboxed,
    /// Records before this one that could not be written anywhere, and the last reason.
    Lost {
        count: u32,
        errno: Errno,
    },
    /// A setuid, setgid or capability program: only modules and offsets are shown.
    AddressesWithheld,
    /// The output file could not be used (how, why); this record came another way.
    OutputFailed(&'static str, Errno),
}

impl Note {
    pub fn reason(self) -> Option<&'static str> {
        Some(match self {
            Note::None => return None,
            Note::NoMemory(_) => "no-memory",
            Note::Sandboxed => "seccomp",
            Note::Lost { .. } => "lost",
            Note::AddressesWithheld => "secure-execution",
            Note::OutputFailed(..) => "output-failed",
        })
    }

    /// The `errno` the note is about, if any.
    pub fn errno(self) -> Option<Errno> {
        match self {
            Note::NoMemory(e) | Note::Lost { errno: e, .. } | Note::OutputFailed(_, e) => Some(e),
            _ => None,
        }
    }

    /// The sentence for people.
    pub fn write_text(self, b: &mut Buf) {
        match self {
            Note::None => {}
            Note::NoMemory(e) => {
                b.str("the event's memory could not be mapped (");
                e.write(b);
                b.str("); it was built in the library's reserve");
            }
            Note::Sandboxed => {
                b.str("the program installed a seccomp filter after it started: nothing was ");
                b.str("opened for this event (names only from .dynsym, no output file)");
            }
            Note::Lost { count, errno } => {
                b.dec(count as u64);
                b.str(if count == 1 {
                    " earlier record could not be written ("
                } else {
                    " earlier records could not be written ("
                });
                errno.write(b);
                b.byte(b')');
            }
            Note::AddressesWithheld => {
                b.str("a setuid/setgid/capability program: addresses withheld (module and offset only)");
            }
            Note::OutputFailed(what, e) => {
                b.str(what).str(" SIGAUDIT_OUTPUT: ");
                e.write(b);
                b.str("; sent to the sigaudit command's socket instead");
            }
        }
    }
}

/// Room for one record.
pub const OUT_CAP: usize = super::sink::OUT_CAP;
/// Room for a cause summary kept for later `echild` events.
pub const CAUSE_CAP: usize = 2048;

/// Working memory for one event, mapped for it (`stack.rs`) and kept for the next; all-zero bytes
/// are a valid `Scratch`. From the library's reserve it holds an earlier event's bytes: every
/// part is written before it is read (the captures set their lengths first).
pub struct Scratch {
    pub backtrace: Backtrace,
    pub python: PyStack,
    pub missing: Missing,
    /// The cause an `echild` event points back to, as recorded earlier.
    pub prior_cause: [u8; CAUSE_CAP],
    pub text: Text,
}

/// Where a record is rendered.
pub struct Text {
    pub out: [u8; OUT_CAP],
    /// The cause summary of this event, kept for later `echild` events.
    pub cause: [u8; CAUSE_CAP],
    pub exe: [u8; 1024],
    pub cmdline: [u8; 1024],
    /// For the journal and syslog sinks: the one-line summary, the message sent, and names read
    /// back from a JSON cause.
    pub line: [u8; 2048],
    pub message: [u8; 8192],
    pub names: [u8; 1024],
    pub uts: libc::utsname,
    /// The output file's path, `%p` expanded (no zeroed stack buffer of `PATH_MAX` per event).
    pub path: [u8; crate::config::PATH_CAP + 32],
}

/// Runs `f` with a [`Scratch`] on the event's own stack, with every signal blocked (see
/// `stack.rs`); `Err(errno)` when no memory could be had for it.
pub fn with_scratch<T>(f: impl FnOnce(&mut Scratch, &stack::Frame) -> T) -> Result<T, c_int> {
    stack::run(f)
}

/// Names native frames: module and offset always, a function name from the module file's
/// `.symtab` or else from `.dynsym` in memory.
pub struct Namer<'a> {
    pub exe: &'a [u8],
    /// Module files may be opened (see `guard::files_allowed`).
    pub files: bool,
    /// Absolute addresses may be shown (not in a secure-execution process).
    pub addresses: bool,
}

pub struct Frame<'n> {
    pub module: &'n [u8],
    pub offset: usize,
    pub symbol: Option<(&'static [u8], usize)>,
    /// The module's GNU build ID.
    pub build_id: Option<BuildId>,
}

impl<'a> Namer<'a> {
    pub fn frame(&self, ip: usize) -> Option<Frame<'a>> {
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
            symbol: symbols::name(loc.map, module, offset.saturating_sub(1), self.files),
            build_id: buildid::of(&loc.buildid_module()),
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

pub struct Context<'a> {
    pub exe: &'a [u8],
    pub cmdline: &'a [u8],
    /// The host's name (`uname`'s nodename), for records gathered from several hosts.
    pub host: &'a [u8],
    /// The time of the event: seconds and microseconds since the epoch.
    pub now: (i64, u32),
    pub pid: c_int,
    pub ppid: c_int,
    pub tid: c_int,
    /// In a child forked (or vforked) without exec: the parent it was forked from, whose
    /// executable and command line it still has.
    pub forked_from: Option<c_int>,
}

/// The pid of the process that loaded the library (and ran its constructor); 0 before that.
#[unsafe(link_section = ".data.sigaudit_load")]
static LOAD_PID: AtomicI32 = AtomicI32::new(0);

/// Notes the pid the library was loaded in. Constructor only.
pub fn note_load_pid() {
    LOAD_PID.store(sys::getpid(), Ordering::Relaxed);
}

impl<'a> Context<'a> {
    /// This process, now; its executable's path, its command line and the host's name are read
    /// into `exe`, `cmdline` and `uts`. With `files` false nothing is opened: the path is the one
    /// `execve` was given (`AT_EXECFN`), and the command line comes from memory (or is empty
    /// before our constructor).
    pub fn of_this_process(
        exe: &'a mut [u8],
        cmdline: &'a mut [u8],
        uts: &'a mut libc::utsname,
        files: bool,
    ) -> Self {
        let exe_len = if files {
            sys::readlink(c"/proc/self/exe", exe).unwrap_or(0)
        } else {
            exec_fn(exe)
        };
        let cmd_len = match arguments(cmdline) {
            Some(n) => n,
            None if files => read_file(b"/proc/self/cmdline\0", cmdline),
            None => 0,
        };
        let (pid, ppid) = (sys::getpid(), sys::getppid());
        let loaded_in = LOAD_PID.load(Ordering::Relaxed);
        Context {
            exe: exe.get(..exe_len).unwrap_or(&[]),
            cmdline: cmdline.get(..cmd_len).unwrap_or(&[]),
            host: host_name(uts),
            now: now(),
            pid,
            ppid,
            tid: sys::gettid(),
            // A fork's child keeps the library's memory but runs no constructor: its pid is
            // not the one the library was loaded in. Its parent is the one that forked it
            // (unless that one has exited since).
            forked_from: (loaded_in != 0 && loaded_in != pid).then_some(ppid),
        }
    }
}

/// The host's name, read by `uname` into `uts` (in the event's scratch memory: the structure is
/// 390 bytes, too many for a small alternate signal stack).
fn host_name(uts: &mut libc::utsname) -> &[u8] {
    if sys::uname(uts).is_err() {
        return &[];
    }
    // SAFETY: c_char and u8 have the same size and alignment; the array is the kernel's, read
    // only within its length.
    let name: &[u8] = unsafe {
        core::slice::from_raw_parts(uts.nodename.as_ptr() as *const u8, uts.nodename.len())
    };
    let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    name.get(..len).unwrap_or(&[])
}

/// Where the program's arguments are, as `execve` laid them out (`argv[0]` to the end of the
/// last one, NUL-separated: what `/proc/self/cmdline` shows), from our constructor.
#[unsafe(link_section = ".data.sigaudit_load")]
static ARGS_START: AtomicUsize = AtomicUsize::new(0);
#[unsafe(link_section = ".data.sigaudit_load")]
static ARGS_END: AtomicUsize = AtomicUsize::new(0);

/// Notes where the arguments are. Constructor only, with the `argc` and `argv` glibc passes.
///
/// # Safety
/// `argv` has `argc` valid NUL-terminated strings (or is null).
pub unsafe fn note_arguments(argc: c_int, argv: *const *const libc::c_char) {
    if argv.is_null() || argc <= 0 {
        return;
    }
    // SAFETY: per the contract.
    let (first, last) = unsafe { (*argv, *argv.add(argc as usize - 1)) };
    if first.is_null() || last.is_null() || (last as usize) < (first as usize) {
        return;
    }
    // SAFETY: `last` is a NUL-terminated string.
    let last_len = unsafe { crate::objects::cstr(last, 1 << 20) }.len();
    ARGS_START.store(first as usize, Ordering::Relaxed);
    ARGS_END.store(last as usize + last_len + 1, Ordering::Relaxed);
}

/// Copies the arguments (as noted by [`note_arguments`]) into `buf`, as `/proc/self/cmdline`
/// would give them but without opening anything; `None` before the constructor.
pub fn arguments(buf: &mut [u8]) -> Option<usize> {
    let (start, end) = (
        ARGS_START.load(Ordering::Relaxed),
        ARGS_END.load(Ordering::Relaxed),
    );
    if start == 0 || end <= start {
        return None;
    }
    let n = (end - start).min(buf.len());
    // SAFETY: the arguments' area on the initial stack, which lives as long as the process;
    // the program may rewrite its bytes (as `setproctitle` does), never unmap them.
    let args = unsafe { core::slice::from_raw_parts(start as *const u8, n) };
    buf.get_mut(..n)?.copy_from_slice(args);
    Some(n)
}

/// The path `execve` was given, from the auxiliary vector (no system call).
fn exec_fn(buf: &mut [u8]) -> usize {
    // SAFETY: getauxval has no preconditions; AT_EXECFN is a NUL-terminated string on the
    // initial stack, or 0.
    let name = unsafe {
        crate::objects::cstr(
            libc::getauxval(libc::AT_EXECFN) as *const libc::c_char,
            4096,
        )
    };
    let n = name.len().min(buf.len());
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), name.get(..n)) {
        dst.copy_from_slice(src);
    }
    n
}

fn now() -> (i64, u32) {
    let (secs, nanos) = sys::realtime();
    (secs, (nanos / 1000) as u32)
}

pub fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => path.get(i + 1..).unwrap_or(path),
        None => path,
    }
}

/// Reads the start of a file into `buf`, returning how much was read (0 on failure).
/// `path` ends with its NUL.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> usize {
    let Ok(path) = core::ffi::CStr::from_bytes_with_nul(path) else {
        return 0;
    };
    let Ok(fd) = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0) else {
        return 0;
    };
    let n = sys::read(fd, buf).unwrap_or(0);
    sys::close(fd);
    n
}

/// True for a file of Python's own standard library (or frozen module), which is never the
/// culprit: `signal.py` wraps `_signal.signal`, for one.
pub fn is_stdlib(file: &[u8]) -> bool {
    let has = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    file.starts_with(b"<frozen ") || (has(b"/lib/python3") && !has(b"-packages/"))
}

/// True for a file of Perl's own library (`privlib`, `archlib`): Debian's
/// `/usr/share/perl/5.36/` and `/usr/lib/x86_64-linux-gnu/perl/5.36/`, a default build's
/// `PREFIX/lib/perl5/5.36.0/`, perlbrew's `.../perl-5.36.0/lib/5.36.0/`. Not the vendor or site
/// folders (`/usr/share/perl5/`, `/usr/local/...`, `site_perl`): a module there is a third-party
/// one, which can be the culprit.
pub fn is_perl_lib(file: &[u8]) -> bool {
    let has = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    (has(b"/perl/5.") && !has(b"/local/"))
        || has(b"/lib/perl5/5.")
        || (has(b"perl") && has(b"/lib/5."))
}

/// True for a file of the interpreter's own library, which is never the culprit.
pub fn is_interpreter_lib(language: Language, file: &[u8]) -> bool {
    match language {
        Language::Python => is_stdlib(file),
        Language::Perl => is_perl_lib(file),
        Language::Shell | Language::None => false,
    }
}

/// The frame to blame: the innermost script frame outside the interpreter's own library.
pub fn script_culprit(language: Language, frames: &PyStack) -> Option<usize> {
    frames
        .frames()
        .iter()
        .position(|f| !is_interpreter_lib(language, f.file()))
}

/// True for frames of libc itself, of an interpreter (Python, Perl, a shell), or of the
/// trampolines through which Python calls C (ctypes, libffi), which are never the culprit:
/// `PyOS_setsig` and `Perl_rsignal` are the same for every ignore.
fn is_runtime_module(module: &[u8]) -> bool {
    let name = basename(module);
    [
        &b"libc.so"[..],
        b"libpthread",
        b"libpython",
        b"python",
        b"libffi.so",
        b"_ctypes.",
        b"libperl",
        b"perl",
        b"bash",
        b"dash",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || name == b"sh"
}

/// The first native frame outside libc and the interpreter.
fn native_culprit(bt: &Backtrace, namer: &Namer) -> Option<usize> {
    bt.frames()
        .iter()
        .copied()
        .find(|&ip| !namer.in_runtime(ip))
}

/// How many script frames, from the culprit outwards, a cause keeps.
const CAUSE_PY_FRAMES: usize = 6;

/// What an ignore is blamed on, for the cause summary a later `echild` event shows.
pub struct Culprit<'e> {
    /// The innermost script frame outside the interpreter's library, and its callers.
    chain: &'e [PyFrame],
    pub language: Language,
    /// The first native frame outside libc and the interpreter.
    pub native: Option<usize>,
}

impl<'e> Culprit<'e> {
    pub fn of(ev: &Event<'e>, namer: &Namer) -> Self {
        let py = ev.python.frames();
        let chain = script_culprit(ev.language, ev.python)
            .map(|c| py.get(c..).unwrap_or(&[]))
            .unwrap_or(&[]);
        Culprit {
            chain,
            language: ev.language,
            native: native_culprit(ev.backtrace, namer),
        }
    }

    /// The culprit and the frames that led to it, without the standard library's (an import
    /// passes through several `<frozen importlib._bootstrap>` frames on its way).
    pub fn python(&self) -> impl Iterator<Item = &'e PyFrame> + Clone {
        let language = self.language;
        self.chain
            .iter()
            .filter(move |f| !is_interpreter_lib(language, f.file()))
            .take(CAUSE_PY_FRAMES)
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
    fn perls_own_library_is_never_the_culprit() {
        assert!(is_perl_lib(b"/usr/share/perl/5.36/IPC/Open3.pm"));
        assert!(is_perl_lib(b"/usr/lib/x86_64-linux-gnu/perl/5.36/POSIX.pm"));
        assert!(is_perl_lib(b"/opt/perl/lib/perl5/5.36.0/IPC/Open3.pm"));
        assert!(is_perl_lib(
            b"/home/me/perl5/perlbrew/perls/perl-5.36.0/lib/5.36.0/IPC/Open3.pm"
        ));
        // Third-party modules: Debian's vendor folders, CPAN's site folders, a project's lib/.
        assert!(!is_perl_lib(b"/usr/share/perl5/Net/Server.pm"));
        assert!(!is_perl_lib(b"/usr/lib/x86_64-linux-gnu/perl5/5.36/Foo.pm"));
        assert!(!is_perl_lib(b"/usr/local/share/perl/5.36.0/Foo.pm"));
        assert!(!is_perl_lib(b"/opt/perl/lib/perl5/site_perl/5.36.0/Foo.pm"));
        assert!(!is_perl_lib(b"lib/Server.pm"));
        assert!(!is_perl_lib(b"-e"));
    }

    #[test]
    fn runtime_modules() {
        assert!(is_runtime_module(b"/usr/bin/perl"));
        assert!(is_runtime_module(b"/usr/bin/bash"));
        assert!(is_runtime_module(b"/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_runtime_module(b"/usr/lib/libpython3.11.so.1.0"));
        assert!(is_runtime_module(b"/usr/bin/python3.11"));
        assert!(is_runtime_module(b"/usr/lib/x86_64-linux-gnu/libffi.so.8"));
        assert!(is_runtime_module(
            b"/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so"
        ));
        assert!(!is_runtime_module(b"/tmp/demo"));
        assert!(!is_runtime_module(b"/usr/lib/libcrypto.so.3"));
    }
}
