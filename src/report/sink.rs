//! The output sink: where a finished record goes, and how it gets there without ever making the
//! program wait, die, or find our bytes in its own data.
//!
//! # Destinations, in order
//!
//! 1. `SIGAUDIT_OUTPUT`, a file opened for each record and closed after it (append, close-on-exec,
//!    non-blocking, never through a symlink, created `0600`). A descriptor kept open between
//!    events would be the host's business: a program that lists its descriptors would see it,
//!    and one that closes every descriptor and opens its own files could get its number.
//! 2. When that file cannot be written and the `sigaudit` command runs the process tree
//!    (`SIGAUDIT_SOCKET`): the command's abstract Unix socket, which a private `/tmp`, a full or
//!    removed folder do not hide. The record carries a note saying why it came that way.
//! 3. stderr, after one line that says why the file was not used, but only while descriptor 2
//!    still is the program's stderr as it was when we first looked ([`note_stderr`]).
//! 4. Nowhere: the record is counted, and the next record that gets through says how many were
//!    lost and why (a `lost` note).
//!
//! The journald and syslog sinks (`SIGAUDIT_OUTPUT=journal`, `syslog`, `rfc5424`) send through
//! `socket.rs` instead of step 1, and fall back to stderr here ([`socket_failed`]), with the same
//! once-said line, patience and loss counting.
//!
//! # Never blocking, never a signal, never a torn record
//!
//! The program's stderr is its own open file description, shared with whoever else has it;
//! setting `O_NONBLOCK` on it would change the program's own writes. So each kind of descriptor
//! is written its own way (see [`write_record`]): a socket with `send(MSG_DONTWAIT |
//! MSG_NOSIGNAL)`; a pipe with `pwritev2(RWF_NOWAIT)` (Linux 6.4 and later honour it on pipes),
//! or, where the kernel refuses that (a FIFO, which opens with its own file operations, and pipes
//! before 6.4), only when the pipe has room for the record (`FIONREAD` against `F_GETPIPE_SZ`),
//! checked just before; a terminal only when `poll` says it takes output. Our own output file is
//! opened `O_NONBLOCK`, so a FIFO there never blocks either. A record that finds no room waits for
//! it, with `poll`, 50 ms at most ([`write_patiently`]): a reader that is merely slow keeps every
//! record, and one that has stalled costs those 50 ms once; after that, records to it do not wait
//! at all (they are counted as lost, with the reason) until one gets through again.
//!
//! Records to a pipe, FIFO or socket are cut (frames first) to `PIPE_BUF`, which the kernel
//! writes whole, so processes that share one never tear each other's records. A regular file
//! takes any record whole: a record that would pass `RLIMIT_FSIZE` is not written (so SIGXFSZ
//! is never raised), and one that a full disk cuts short is cut back off the file.
//!
//! Every signal is blocked while an event runs (`stack.rs`): a SIGPIPE (a pipe whose reader is
//! gone) or SIGXFSZ our write raises is taken back before the mask is restored, unless the
//! program already had one pending.

use super::event::{Errno, Note};
use crate::buf::Buf;
use crate::config::{Config, Output};
use crate::stack::Held;
use crate::sys;
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use libc::c_int;

/// The longest record any destination takes.
pub const OUT_CAP: usize = 64 * 1024;

/// Where a record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    File,
    Command,
    Stderr,
    /// A journald or syslog socket.
    Socket,
}

/// Delivers one record: `render(out, limit, note)` writes it into `out`, at most `limit` bytes,
/// with `note` (why it did not go to its first destination) and the losses so far among its
/// notes, and returns its length. It may be called again for a destination that takes less.
/// Returns where the record went, or the `errno` of the last failure.
pub fn deliver(
    cfg: &Config,
    held: &Held,
    files: bool,
    out: &mut [u8],
    path: &mut [u8],
    mut render: impl FnMut(&mut [u8], usize, &[Note]) -> usize,
) -> Result<Dest, c_int> {
    let lost = losses();
    let mut notes = [Note::None; 2];
    if let Some((count, errno)) = lost {
        notes[0] = Note::Lost { count, errno };
    }
    let mut failure = None;
    if let Some(template) = cfg.output_path() {
        let r = if let Some(errno) = cfg.output_unanchored {
            Err(Failure::Unanchored(errno))
        } else if !files {
            Err(Failure::Sandboxed)
        } else {
            to_file(template, Name::Pid, held, out, path, &mut |o, l| {
                render(o, l, &notes)
            })
        };
        match r {
            Ok(()) => return Ok(settle_count(Dest::File, lost)),
            Err(f) => failure = Some(f),
        }
    }
    if let (Some(f), Some(name), true) = (failure, cfg.socket(), files) {
        notes[1] = f.note();
        let len = render(out, OUT_CAP, &notes);
        if to_command(name, out.get(..len).unwrap_or(&[])).is_ok() {
            return Ok(settle_count(Dest::Command, lost));
        }
        notes[1] = Note::None;
    }
    let stderr = Stderr::now();
    if let (Some(f), Some(_)) = (failure, &stderr) {
        say_once(cfg, f);
    }
    let errno = match stderr {
        Some(fd) => {
            let len = render(out, fd.limit, &notes);
            match write_patiently(fd, out.get(..len).unwrap_or(&[]), held, Dest::Stderr) {
                Ok(()) => return Ok(settle_count(Dest::Stderr, lost)),
                Err(e) => e,
            }
        }
        None => libc::EBADF,
    };
    LOST.fetch_add(1, Ordering::Relaxed);
    LOST_ERRNO.store(errno, Ordering::Relaxed);
    Err(errno)
}

/// Delivers a record that only the `sigaudit` command wants (a process's `loaded` record): to
/// the output path with `%p` as `loaded` (one file for all), else to the command's socket; never
/// to stderr.
pub fn deliver_to_command(
    cfg: &Config,
    held: &Held,
    out: &mut [u8],
    path: &mut [u8],
    render: impl Fn(&mut [u8], &[Note]) -> usize,
) {
    let Some(template) = cfg.output_path() else {
        return;
    };
    let r = match cfg.output_unanchored {
        Some(errno) => Err(Failure::Unanchored(errno)),
        None => to_file(template, Name::Loaded, held, out, path, &mut |o, _| {
            render(o, &[])
        }),
    };
    if let (Err(f), Some(name)) = (r, cfg.socket()) {
        let len = render(out, &[f.note()]);
        let _ = to_command(name, out.get(..len).unwrap_or(&[]));
    }
}

/// Why the output file was not used.
#[derive(Clone, Copy)]
enum Failure {
    Open(c_int),
    Write(c_int),
    /// A relative path that could not be made absolute at load.
    Unanchored(c_int),
    /// The program sandboxed itself since it started: no file is opened.
    Sandboxed,
}

impl Failure {
    fn note(self) -> Note {
        match self {
            Failure::Open(e) => Note::OutputFailed("cannot open", Errno(e)),
            Failure::Write(e) => Note::OutputFailed("cannot write to", Errno(e)),
            Failure::Unanchored(e) => Note::OutputFailed("cannot anchor", Errno(e)),
            Failure::Sandboxed => Note::Sandboxed,
        }
    }
}

/// The file could not be used and that has been said.
static FAILURE_SAID: AtomicBool = AtomicBool::new(false);

/// Says once on stderr why records go there instead of to `SIGAUDIT_OUTPUT`.
fn say_once(cfg: &Config, f: Failure) {
    if FAILURE_SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    let template = cfg.output_path().unwrap_or(&[]);
    let mut mem = [0u8; 1400];
    let mut b = Buf::new(&mut mem);
    b.str("sigaudit: pid ").int(sys::getpid() as i64).str(": ");
    match f {
        Failure::Open(e) | Failure::Write(e) => {
            b.str(if matches!(f, Failure::Open(_)) {
                "cannot open"
            } else {
                "cannot write to"
            });
            b.str(" SIGAUDIT_OUTPUT ").text(template).str(": ");
            Errno(e).write(&mut b);
        }
        Failure::Unanchored(e) => {
            b.str("SIGAUDIT_OUTPUT ").text(template);
            b.str(" is relative, and the folder the program started in could not be found (");
            Errno(e).write(&mut b);
            b.byte(b')');
        }
        Failure::Sandboxed => {
            b.str("the program installed a seccomp filter after it started, so SIGAUDIT_OUTPUT ");
            b.text(template).str(" is not opened");
        }
    }
    b.str("; reporting on stderr instead\n");
    // Signals are held by the caller (an event); this line is short.
    if let Some(fd) = Stderr::now() {
        let _ = write_plain(fd.fd, b.as_bytes());
    }
}

// ---- losses -----------------------------------------------------------------------------------

/// Records that could not be written anywhere since the last one that was, and the last reason.
static LOST: AtomicU32 = AtomicU32::new(0);
static LOST_ERRNO: AtomicI32 = AtomicI32::new(0);

fn losses() -> Option<(u32, Errno)> {
    match LOST.load(Ordering::Relaxed) {
        0 => None,
        n => Some((n, Errno(LOST_ERRNO.load(Ordering::Relaxed)))),
    }
}

/// A record got through, carrying the losses counted before it: they are said.
fn settle_count(dest: Dest, said: Option<(u32, Errno)>) -> Dest {
    if let Some((n, _)) = said {
        LOST.fetch_sub(n, Ordering::Relaxed);
    }
    dest
}

/// The note on earlier losses for a record that goes another way than [`deliver`] (the socket
/// sinks): `[Note::None]` when nothing was lost.
pub fn losses_note() -> [Note; 1] {
    [match losses() {
        Some((count, errno)) => Note::Lost { count, errno },
        None => Note::None,
    }]
}

/// A record that carried `notes` (from [`losses_note`]) got through: its losses are said.
pub fn settle(notes: &[Note]) {
    for n in notes {
        if let Note::Lost { count, .. } = n {
            LOST.fetch_sub(*count, Ordering::Relaxed);
        }
    }
}

/// Counts a record that could not even be built (no memory for the event): the next record says so.
pub fn count_lost(errno: c_int) {
    LOST.fetch_add(1, Ordering::Relaxed);
    LOST_ERRNO.store(errno, Ordering::Relaxed);
}

// ---- the output file --------------------------------------------------------------------------

/// What `%p` becomes in the output path.
#[derive(Clone, Copy)]
enum Name {
    /// This process's pid: its own record file.
    Pid,
    /// `loaded`: the one file all processes announce themselves in. Appending to a file that
    /// exists costs a few microseconds; creating one per process, every exec of a tree under the
    /// command, cost 100-150 µs each on ext4 (measured).
    Loaded,
}

fn to_file(
    template: &[u8],
    name: Name,
    held: &Held,
    out: &mut [u8],
    path: &mut [u8],
    render: &mut dyn FnMut(&mut [u8], usize) -> usize,
) -> Result<(), Failure> {
    let fd = open_output(template, name, path).map_err(Failure::Open)?;
    let target = Target::of(fd, true);
    let r = match target {
        Some(t) => {
            let len = render(out, t.limit);
            write_patiently(t, out.get(..len).unwrap_or(&[]), held, Dest::File)
        }
        None => Err(libc::EINVAL),
    };
    sys::close(fd);
    r.map_err(Failure::Write)
}

/// Opens the output file for `pid`: `%p` becomes the pid, `%%` a `%` (the path is built in
/// `path`). Append-only, close-on-exec, non-blocking, never through a symlink, created private to
/// the user.
fn open_output(template: &[u8], name: Name, path: &mut [u8]) -> Result<c_int, c_int> {
    let mut b = Buf::new(path);
    let mut it = template.iter().peekable();
    while let Some(&c) = it.next() {
        match (c, it.peek()) {
            (b'%', Some(b'p')) => {
                it.next();
                match name {
                    Name::Pid => b.int(sys::getpid() as i64),
                    Name::Loaded => b.str("loaded"),
                };
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
    // O_NONBLOCK: a FIFO with no reader fails (ENXIO) instead of hanging the program, and one
    // whose reader stalls fails (EAGAIN) instead of making it wait.
    let flags = libc::O_WRONLY
        | libc::O_NONBLOCK
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NOCTTY;
    // The template has no NUL (the configuration refuses one), so the path ends at ours.
    let path = CStr::from_bytes_with_nul(b.as_bytes()).map_err(|_| libc::EINVAL)?;
    sys::open(path, flags, 0o600)
}

// ---- the command's socket ---------------------------------------------------------------------

/// Sends one record to the `sigaudit` command's abstract `SOCK_SEQPACKET` socket `name`: a
/// connection per record, never waiting (a full backlog or buffer fails with `EAGAIN`).
fn to_command(name: &[u8], record: &[u8]) -> Result<(), c_int> {
    // SAFETY: a zeroed sockaddr_un is valid; the name fits (checked when configured).
    let mut addr = unsafe { core::mem::zeroed::<libc::sockaddr_un>() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = addr
        .sun_path
        .get_mut(1..1 + name.len())
        .ok_or(libc::EINVAL)?;
    for (d, &s) in path.iter_mut().zip(name) {
        *d = s as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    let fd = sys::socket(
        libc::AF_UNIX,
        libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        0,
    )?;
    // SAFETY: `addr` is a valid address of `len` bytes.
    let r = unsafe {
        sys::connect(
            fd,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len as libc::socklen_t,
        )
    }
    .and_then(|()| sys::send(fd, record, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL))
    .and_then(|n| {
        if n == record.len() {
            Ok(())
        } else {
            Err(libc::EMSGSIZE)
        }
    });
    sys::close(fd);
    r
}

// ---- stderr -----------------------------------------------------------------------------------

/// What stderr is: 0 not looked at yet; 1 not to be written; 2 seen at the first look (its device
/// and inode follow), not yet judged; 3 the program's stderr, to be written while it stays the
/// same file.
#[unsafe(link_section = ".data.sigaudit_load")]
static STDERR_STATE: AtomicU8 = AtomicU8::new(0);
#[unsafe(link_section = ".data.sigaudit_load")]
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
#[unsafe(link_section = ".data.sigaudit_load")]
static STDERR_INO: AtomicU64 = AtomicU64::new(0);

/// Notes which file descriptor 2 is at the first look (`guard.rs`), the earliest moment any of
/// our code runs (our constructor, or a hook before it). It is judged at the first record that
/// would go there ([`judge_stderr`]): one `fstat` per exec, the rest only when needed.
pub fn note_stderr() {
    match fstat(2) {
        Some(st) => {
            STDERR_DEV.store(st.st_dev, Ordering::Relaxed);
            STDERR_INO.store(st.st_ino, Ordering::Relaxed);
            STDERR_STATE.store(2, Ordering::Release);
        }
        None => STDERR_STATE.store(1, Ordering::Release),
    }
}

/// Whether descriptor 2, the file seen at the first look, is the program's stderr, to be written.
///
/// It is, when it was inherited across `execve` (not close-on-exec: a descriptor with that flag
/// was opened in this process, by a constructor that ran before us, say, while stderr was closed)
/// and is open for writing to a terminal or another character device, a pipe or FIFO, a socket (a
/// service manager's log stream), or a regular file opened for appending (`2>>log`) or shared
/// with stdout (`>log 2>&1`). A regular file opened for writing alone is what a program's own
/// data file looks like when it took descriptor 2 (`open` gives the lowest free number), and
/// also what `2>file` gives: the two cannot be told apart, and a record in the program's data
/// is the worse mistake, so such a stderr gets no records (use `2>>file`, or
/// `SIGAUDIT_OUTPUT`).
fn judge_stderr(st: &libc::stat) -> bool {
    let (Ok(fd_flags), Ok(fl_flags)) = (sys::fcntl_int(2, libc::F_GETFD, 0), sys::status_flags(2))
    else {
        return false;
    };
    if fd_flags & libc::FD_CLOEXEC != 0 {
        return false;
    }
    if fl_flags & libc::O_ACCMODE == libc::O_RDONLY {
        return false;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR | libc::S_IFIFO | libc::S_IFSOCK => true,
        libc::S_IFREG => fl_flags & libc::O_APPEND != 0 || same_description_as_stdout(),
        _ => false,
    }
}

/// Whether descriptors 1 and 2 are one open file description (`>log 2>&1`).
fn same_description_as_stdout() -> bool {
    // kcmp fails (and we say no) where it is not available.
    let pid = sys::getpid();
    sys::kcmp(pid, pid, 0 /* KCMP_FILE */, 1, 2) == Ok(0)
}

fn fstat(fd: c_int) -> Option<libc::stat> {
    // A bad descriptor just fails.
    sys::fstat(fd).ok()
}

/// A journal or syslog socket did not take `record` (with `errno`): says so once, and writes the
/// record to stderr instead, patiently, or counts it as lost. The next event tries the socket
/// again. `notes`: the losses the record carries, said if it gets through.
pub fn socket_failed(
    kind: Output,
    path: &[u8],
    errno: c_int,
    record: &[u8],
    held: &Held,
    notes: &[Note],
) {
    let Some(t) = Stderr::now() else {
        count_lost(errno);
        return;
    };
    if !SOCKET_FAILURE_SAID.swap(true, Ordering::Relaxed) {
        let mut mem = [0u8; 512];
        let mut b = Buf::new(&mut mem);
        let pid = sys::getpid();
        b.str("sigaudit: pid ")
            .int(pid as i64)
            .str(": cannot send to ");
        b.str(kind.name()).str(" socket ").text(path).str(": ");
        Errno(errno).write(&mut b);
        b.str("; reporting on stderr instead\n");
        let _ = write_plain(t.fd, b.as_bytes());
    }
    match write_patiently(t, record, held, Dest::Stderr) {
        Ok(()) => settle(notes),
        Err(e) => count_lost(e),
    }
}

/// A socket has failed and that has been said.
static SOCKET_FAILURE_SAID: AtomicBool = AtomicBool::new(false);

/// The longest record stderr takes whole now (`PIPE_BUF` for a pipe or socket).
pub fn stderr_limit() -> usize {
    Stderr::now().map_or(OUT_CAP, |t| t.limit)
}

/// Writes `bytes` (a line of the library's own) to stderr while it still is the program's.
pub fn to_stderr(bytes: &[u8], held: &Held) {
    if let Some(t) = Stderr::now() {
        let _ = write_record(t, bytes, held);
    }
}

struct Stderr;

impl Stderr {
    /// Descriptor 2, if it still is the program's stderr as at the first look.
    fn now() -> Option<Target> {
        let state = STDERR_STATE.load(Ordering::Acquire);
        if state < 2 {
            return None;
        }
        let st = fstat(2)?;
        let same = st.st_dev == STDERR_DEV.load(Ordering::Relaxed)
            && st.st_ino == STDERR_INO.load(Ordering::Relaxed);
        if !same {
            return None;
        }
        if state == 2 {
            let ok = judge_stderr(&st);
            STDERR_STATE.store(if ok { 3 } else { 1 }, Ordering::Release);
            if !ok {
                return None;
            }
        }
        Target::with(2, false, &st)
    }
}

// ---- writing ----------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Socket,
    Pipe,
    Terminal,
    File,
    /// Another character device (`/dev/null`), or our own non-blocking descriptor of anything.
    Plain,
}

/// A descriptor to write a record to, how, and the longest record it takes whole.
#[derive(Clone, Copy)]
struct Target {
    fd: c_int,
    kind: Kind,
    limit: usize,
}

impl Target {
    /// `own`: a descriptor we opened ourselves, with `O_NONBLOCK`.
    fn of(fd: c_int, own: bool) -> Option<Target> {
        Target::with(fd, own, &fstat(fd)?)
    }

    fn with(fd: c_int, own: bool, st: &libc::stat) -> Option<Target> {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFSOCK => Kind::Socket,
            _ if own => Kind::Plain,
            libc::S_IFIFO => Kind::Pipe,
            libc::S_IFCHR if sys::isatty(fd) => Kind::Terminal,
            libc::S_IFCHR => Kind::Plain,
            _ => return None,
        };
        let limit = match st.st_mode & libc::S_IFMT {
            libc::S_IFIFO | libc::S_IFSOCK => libc::PIPE_BUF,
            _ => OUT_CAP,
        };
        Some(Target { fd, kind, limit })
    }
}

/// The longest a record waits for room in a full destination (a pipe, FIFO, terminal or socket
/// whose reader is slow: a stalled log collector, a journald whose queue, 10 datagrams by
/// default, is full). A reader that is merely slow loses nothing. A wait that runs out marks the
/// destination stalled ([`STALLED`]): records to it never wait again in this process (each then
/// goes through at once, or is counted as lost), so a stalled reader costs one wait per
/// process, not one per event.
pub const PATIENCE_MS: u64 = 1000;

/// Per destination ([`Dest`]): a wait ran out, and records to it no longer wait.
static STALLED: [AtomicBool; 4] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];

/// Whether records to `dest` may still wait for room.
pub fn patient(dest: Dest) -> bool {
    !STALLED[dest as usize].load(Ordering::Relaxed)
}

/// A wait for `dest` ran out: no more waiting for it.
pub fn stalled(dest: Dest) {
    STALLED[dest as usize].store(true, Ordering::Relaxed);
}

/// Lets every destination wait again, as in a fresh process (unit tests).
#[cfg(test)]
pub fn reset_patience() {
    for s in &STALLED {
        s.store(false, Ordering::Relaxed);
    }
}

/// Writes one record, waiting for room no longer than [`PATIENCE_MS`], and not at all once the
/// destination has stalled; `Err(errno)` if it could not be written whole.
fn write_patiently(t: Target, bytes: &[u8], held: &Held, dest: Dest) -> Result<(), c_int> {
    let deadline = super::clock() + PATIENCE_MS * 1_000_000;
    loop {
        match write_record(t, bytes, held) {
            Err(libc::EAGAIN) if patient(dest) => {
                let left = deadline.saturating_sub(super::clock());
                if left == 0 {
                    stalled(dest);
                    return Err(libc::EAGAIN);
                }
                // Room may come sooner than the time-out says, or the room check may want more
                // than poll's one free page: at most 5 ms per look.
                sys::wait_writable(t.fd, (left / 1_000_000).clamp(1, 5) as i64);
            }
            r => return r,
        }
    }
}

/// Writes one record without waiting; `Err(errno)` if it could not be written whole.
fn write_record(t: Target, bytes: &[u8], held: &Held) -> Result<(), c_int> {
    match t.kind {
        Kind::Socket => send_all(t.fd, bytes),
        Kind::File => write_file(t.fd, bytes, held),
        Kind::Pipe => write_pipe(t.fd, bytes, held),
        Kind::Terminal => {
            if !sys::writable_now(t.fd) {
                return Err(libc::EAGAIN);
            }
            write_plain(t.fd, bytes)
        }
        Kind::Plain => {
            let before = held.pending();
            let r = write_plain(t.fd, bytes);
            if r == Err(libc::EPIPE) {
                held.take_back(libc::SIGPIPE, &before);
            }
            r
        }
    }
}

/// `write` until all is written or it fails (an interruption is retried; nothing waits).
pub fn write_plain(fd: c_int, mut bytes: &[u8]) -> Result<(), c_int> {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_all(fd: c_int, mut bytes: &[u8]) -> Result<(), c_int> {
    let mut tries = 0;
    while !bytes.is_empty() {
        match sys::send(fd, bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(libc::EINTR) if tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A pipe or FIFO we do not own: `RWF_NOWAIT`, or a write only when the room is there.
fn write_pipe(fd: c_int, bytes: &[u8], held: &Held) -> Result<(), c_int> {
    let before = held.pending();
    let r = match sys::pwritev2(fd, bytes, libc::RWF_NOWAIT) {
        Ok(n) if n == bytes.len() => Ok(()),
        // Only a record longer than PIPE_BUF can be cut, and none is sent to a pipe.
        Ok(_) => Err(libc::EAGAIN),
        Err(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
            if pipe_has_room(fd, bytes.len()) {
                write_plain(fd, bytes)
            } else {
                Err(libc::EAGAIN)
            }
        }
        Err(e) => Err(e),
    };
    if r == Err(libc::EPIPE) {
        held.take_back(libc::SIGPIPE, &before);
    }
    r
}

/// Whether a write of `len` bytes (at most `PIPE_BUF`) to the pipe `fd` goes through without
/// waiting: the bytes queued in it, against its capacity, leave room for the record and for the
/// kernel's page granularity (a partly filled first and last page).
fn pipe_has_room(fd: c_int, len: usize) -> bool {
    let (Ok(queued), Ok(capacity)) = (sys::queued(fd), sys::fcntl_int(fd, libc::F_GETPIPE_SZ, 0))
    else {
        return false;
    };
    let page = crate::stack::page_size();
    len <= libc::PIPE_BUF && queued + len + 2 * page <= capacity.max(0) as usize
}

/// A regular file: whole records only, never past `RLIMIT_FSIZE`.
fn write_file(fd: c_int, bytes: &[u8], held: &Held) -> Result<(), c_int> {
    let lim = sys::soft_limit(libc::RLIMIT_FSIZE);
    if lim != libc::RLIM64_INFINITY {
        let append = sys::status_flags(fd).is_ok_and(|f| f & libc::O_APPEND != 0);
        let at = if append {
            fstat(fd).map_or(0, |st| st.st_size)
        } else {
            sys::lseek(fd, 0, libc::SEEK_CUR).unwrap_or(0)
        };
        if at.max(0) as u64 + bytes.len() as u64 > lim {
            return Err(libc::EFBIG);
        }
    }
    let before = held.pending();
    let mut done = 0;
    let r = loop {
        let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) else {
            break Ok(());
        };
        match sys::write(fd, rest) {
            Ok(0) => break Err(libc::EIO),
            Ok(n) => done += n,
            Err(libc::EINTR) => continue,
            Err(e) => break Err(e),
        }
    };
    if r == Err(libc::EFBIG) {
        held.take_back(libc::SIGXFSZ, &before);
    }
    if r.is_err() && done > 0 {
        cut_back(fd, done);
    }
    r
}

/// Removes the `done` bytes of a record cut short (a full disk) from the end of the file, if
/// they still are its end (no other process wrote after them).
fn cut_back(fd: c_int, done: usize) {
    let Ok(end) = sys::lseek(fd, 0, libc::SEEK_CUR) else {
        return;
    };
    if end >= done as i64 && fstat(fd).is_some_and(|st| st.st_size == end) {
        let _ = sys::ftruncate(fd, end - done as i64);
    }
}
