//! Unix datagram sockets for the journal and syslog sinks.
//!
//! Each event opens its own socket, connects it to the receiver's path, hands the whole message
//! to one `sendmsg` and closes it again, as the file sink opens and closes its file: a descriptor
//! kept between events would be the host's business (a program that closes every descriptor, or
//! lists them, would meet it). The socket is non-blocking and connected: a receiver whose queue
//! is full (journald's socket holds `net.unix.max_dgram_qlen` datagrams, 10 by default, before
//! senders must wait) makes `sendmsg` fail with `EAGAIN`, and `poll` on a connected datagram
//! socket waits for room in the receiver's queue. The wait is bounded (`sink::PATIENCE_MS` in
//! all) and happens once per process: after a wait that ran out, sends to these sockets no longer
//! wait (`sink::patient`), so a stopped receiver delays one event, never each, and never hangs the
//! program.
//!
//! Everything here is a system call on memory the caller owns: no allocation, no lock, safe in a
//! signal handler and in a `vfork()` child.

use crate::sys;
use libc::{c_int, c_void};

/// The longest socket path, without its NUL (`sun_path` holds 108 bytes).
pub const PATH_MAX: usize = 107;

/// A connected, non-blocking, close-on-exec datagram socket, closed when dropped.
pub struct Socket(c_int);

impl Socket {
    /// Connects to the datagram socket at `path`. Errors are `errno` values: `ENOENT` (no socket
    /// there), `ECONNREFUSED` (a socket file nobody listens on), `EACCES`, `ENAMETOOLONG`, ...
    pub fn connect(path: &[u8]) -> Result<Socket, c_int> {
        let (addr, len) = address(path)?;
        // The descriptor is owned by the Socket made from it.
        let fd = sys::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )?;
        let socket = Socket(fd);
        loop {
            // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
            let r = unsafe {
                sys::connect(
                    fd,
                    &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                    len,
                )
            };
            match r {
                Ok(()) => return Ok(socket),
                Err(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `parts` as one datagram, with `fd` passed along (`SCM_RIGHTS`) when given. Waits,
    /// boundedly, while the receiver's queue is full. Errors are `errno` values; `EMSGSIZE` means
    /// the datagram is larger than this socket's send buffer.
    pub fn send(&self, parts: &[&[u8]], fd: Option<c_int>) -> Result<(), c_int> {
        let mut iov = [libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        }; 8];
        if parts.len() > iov.len() {
            return Err(libc::EINVAL);
        }
        for (slot, part) in iov.iter_mut().zip(parts) {
            slot.iov_base = part.as_ptr() as *mut c_void;
            slot.iov_len = part.len();
        }
        // Room for one cmsghdr carrying one descriptor, aligned for cmsghdr.
        let mut control = [0u64; 4];
        // SAFETY: msghdr is plain data; all-zero is a valid empty one.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = parts.len();
        if let Some(fd) = fd {
            // SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic.
            let (space, len) = unsafe {
                (
                    libc::CMSG_SPACE(size_of::<c_int>() as u32) as usize,
                    libc::CMSG_LEN(size_of::<c_int>() as u32) as usize,
                )
            };
            if space > size_of_val(&control) {
                return Err(libc::EINVAL);
            }
            msg.msg_control = control.as_mut_ptr() as *mut c_void;
            msg.msg_controllen = space;
            // SAFETY: msg_control points at `space` bytes of aligned, zeroed memory, so
            // CMSG_FIRSTHDR returns a pointer into it with room for a header and one int.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                if cmsg.is_null() {
                    return Err(libc::EINVAL);
                }
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = len;
                core::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut c_int, fd);
            }
        }
        use super::sink::{self, Dest};
        let deadline = sys::monotonic_ms() + sink::PATIENCE_MS as i64;
        loop {
            // SAFETY: msg points at iovecs and control data that outlive the call.
            match unsafe { sys::sendmsg(self.0, &msg, libc::MSG_NOSIGNAL) } {
                Ok(_) => return Ok(()),
                Err(libc::EINTR) => continue,
                Err(libc::EAGAIN) if sink::patient(Dest::Socket) => {
                    let left = deadline - sys::monotonic_ms();
                    if left <= 0 {
                        sink::stalled(Dest::Socket);
                        return Err(libc::EAGAIN);
                    }
                    sys::wait_writable(self.0, left);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Our own descriptor, closed once.
        sys::close(self.0);
    }
}

/// The socket address of `path`.
fn address(path: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t), c_int> {
    if path.is_empty() || path.contains(&0) {
        return Err(libc::EINVAL);
    }
    if path.len() > PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, &b) in addr.sun_path.iter_mut().zip(path) {
        *slot = b as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + path.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;

    /// A fresh folder for one unit test, short enough for socket paths.
    pub fn temp_dir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("sigaudit-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn bytes(p: &std::path::Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }

    #[test]
    fn one_datagram_from_parts() {
        let dir = temp_dir("parts");
        let path = dir.join("sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let s = Socket::connect(&bytes(&path)).unwrap();
        s.send(&[b"one ", b"two ", b"three"], None).unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one two three");
    }

    #[test]
    fn a_dead_socket_is_named() {
        let dir = temp_dir("dead");
        let path = dir.join("sock");
        assert_eq!(Socket::connect(&bytes(&path)).err(), Some(libc::ENOENT));
        // A socket file whose receiver is gone.
        drop(UnixDatagram::bind(&path).unwrap());
        assert_eq!(
            Socket::connect(&bytes(&path)).err(),
            Some(libc::ECONNREFUSED)
        );
        let long = vec![b'x'; PATH_MAX + 1];
        assert_eq!(Socket::connect(&long).err(), Some(libc::ENAMETOOLONG));
    }

    /// A receiver that does not read: sends wait for room, a bounded time, then fail with
    /// EAGAIN; once it reads, they go through.
    #[test]
    fn a_full_queue_waits_a_bounded_time() {
        let dir = temp_dir("full");
        let path = dir.join("sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let s = Socket::connect(&bytes(&path)).unwrap();
        let mut sent = 0;
        let start = std::time::Instant::now();
        let err = loop {
            match s.send(&[b"x"], None) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100_000, "the queue never filled");
        };
        assert_eq!(err, libc::EAGAIN);
        let waited = start.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(900),
            "{waited:?}"
        );
        assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");
        // The wait ran out: later sends to a full queue fail at once (one wait per process).
        let start = std::time::Instant::now();
        assert_eq!(s.send(&[b"z"], None), Err(libc::EAGAIN));
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
        // A reader that drains it while a sender waits lets the sender through (in a process
        // whose sends may still wait).
        super::super::sink::reset_patience();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut buf = [0u8; 8];
            for _ in 0..=sent {
                rx.recv(&mut buf).unwrap();
            }
        });
        s.send(&[b"y"], None).unwrap();
        reader.join().unwrap();
    }
}
