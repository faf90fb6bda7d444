//! The output sink: where a finished record goes (`SIGAUDIT_OUTPUT`: a file opened for each
//! record, or stderr while it still is the program's stderr), in one `write()`.

use crate::buf::Buf;
use crate::config::{Config, Output};
use crate::sys;
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use libc::c_int;

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
///
/// Never inlined: its buffers (a path, a message) then sit on the stack only while it runs, not
/// under the renderer's frames, which may be on a small alternate signal stack.
#[inline(never)]
pub fn emit(config: &Config, record: &[u8]) {
    let Some(template) = config.output_path() else {
        to_stderr(record);
        return;
    };
    let pid = sys::getpid();
    let failed = match open_output(template, pid) {
        Ok(fd) => {
            let written = write_all(fd, record);
            sys::close(fd);
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

/// A journal or syslog socket failed: say so, once, and write `record` to stderr instead, so that
/// no event is lost without a word. The next event tries the socket again.
#[inline(never)]
pub fn socket_failed(kind: Output, path: &[u8], errno: c_int, record: &[u8]) {
    if !SOCKET_FAILED_SAID.swap(true, Ordering::Relaxed) {
        let mut mem = [0u8; 512];
        let mut b = Buf::new(&mut mem);
        let pid = sys::getpid();
        b.str("sigaudit: pid ")
            .int(pid as i64)
            .str(": cannot send to ");
        b.str(kind.name()).str(" socket ").text(path).str(": ");
        b.str(super::socket::errno_name(errno))
            .str("; reporting on stderr instead\n");
        to_stderr(b.as_bytes());
    }
    to_stderr(record);
}

/// A socket has failed and that has been said.
static SOCKET_FAILED_SAID: AtomicBool = AtomicBool::new(false);

/// stderr as it was when the library loaded: 0 not looked at (a hook before our constructor),
/// [`STDERR_CLOSED`], or its [`file_id`].
#[unsafe(link_section = ".data.sigaudit_load")]
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
pub fn to_stderr(bytes: &[u8]) {
    let at_load = STDERR_AT_LOAD.load(Ordering::Relaxed);
    if at_load == STDERR_CLOSED {
        return;
    }
    if at_load != 0 && file_id(2) != Some(at_load) {
        let regular = sys::fstat(2).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        let append = sys::status_flags(2).is_ok_and(|f| f & libc::O_APPEND != 0);
        if regular && !append {
            return;
        }
    }
    let _ = write_all(2, bytes);
}

/// A file's identity: its device and inode in one word (never 0 or [`STDERR_CLOSED`] in
/// practice: no file has device and inode 0, and both are below 2^32).
fn file_id(fd: c_int) -> Option<u64> {
    // A bad descriptor just fails.
    let st = sys::fstat(fd).ok()?;
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
    // The template has no NUL (the configuration refuses one), so the path ends at ours.
    let path = CStr::from_bytes_with_nul(b.as_bytes()).map_err(|_| libc::EINVAL)?;
    sys::open(path, flags, 0o600)
}

/// Writes all of `bytes`, retrying short writes and interruptions, waiting a bounded time for a
/// non-blocking descriptor to drain. Returns the `errno` of a write that failed otherwise.
pub fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<(), c_int> {
    let mut waits = 0;
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(libc::EINTR) => continue,
            Err(libc::EAGAIN) if waits < 20 => {
                waits += 1;
                sys::wait_writable(fd, 50);
            }
            Err(e) => return Err(e),
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
