//! `errno` values as the library's notes name them: the symbol, and what it means here.

use crate::buf::Buf;
use libc::c_int;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub c_int);

/// The name and meaning of an `errno` value, where the notes may meet it. A `match`, not a table
/// of `&str` pairs: every pointer in a static table is a relocation the loader applies at every
/// exec (54 of them, about 700 instructions), for text that only an event may ever want.
fn entry(e: c_int) -> Option<(&'static str, &'static str)> {
    Some(match e {
        libc::ENOENT => ("ENOENT", "a folder on the path does not exist"),
        libc::EACCES => ("EACCES", "permission denied"),
        libc::EPERM => ("EPERM", "operation not permitted"),
        libc::ELOOP => ("ELOOP", "the path is a symlink, which is never followed"),
        libc::ENOTDIR => ("ENOTDIR", "a part of the path is not a folder"),
        libc::EISDIR => ("EISDIR", "the path is a folder"),
        libc::EROFS => ("EROFS", "read-only file system"),
        libc::ENOSPC => ("ENOSPC", "no space left on device"),
        libc::EDQUOT => ("EDQUOT", "disk quota exceeded"),
        libc::EMFILE => ("EMFILE", "too many open files"),
        libc::ENFILE => ("ENFILE", "too many open files in the system"),
        libc::ENAMETOOLONG => ("ENAMETOOLONG", "the path is too long"),
        libc::ERANGE => ("ERANGE", "its path is longer than 4096 bytes"),
        libc::EAGAIN => ("EAGAIN", "it is full: its reader is not reading"),
        libc::EPIPE => ("EPIPE", "its reader is gone"),
        libc::ENXIO => ("ENXIO", "a FIFO with no reader"),
        libc::EFBIG => ("EFBIG", "the file size limit, ulimit -f, would be passed"),
        libc::ENOMEM => ("ENOMEM", "no memory, or no address space left (RLIMIT_AS)"),
        libc::ECONNREFUSED => ("ECONNREFUSED", "nothing listens there"),
        libc::ENOTSOCK => ("ENOTSOCK", "not a socket"),
        libc::EPROTOTYPE => ("EPROTOTYPE", "not a datagram socket"),
        libc::EMSGSIZE => ("EMSGSIZE", "the message is larger than the socket takes"),
        libc::ENOBUFS => ("ENOBUFS", "out of kernel memory"),
        libc::ENOSYS => ("ENOSYS", "not supported here"),
        libc::EBADF => ("EBADF", "stderr is closed, or no longer the program's"),
        libc::EIO => ("EIO", "input/output error"),
        libc::EINVAL => ("EINVAL", "not a file that takes records"),
        _ => return None,
    })
}

impl Errno {
    /// `EAGAIN`, or `errno 123`.
    pub fn write_name(self, b: &mut Buf) {
        match entry(self.0) {
            Some((name, _)) => b.str(name),
            None => b.str("errno ").int(self.0 as i64),
        };
    }

    /// `EAGAIN (it is full: its reader is not reading)`, or `errno 123`.
    pub fn write(self, b: &mut Buf) {
        self.write_name(b);
        if let Some((_, why)) = entry(self.0) {
            b.str(" (").str(why).byte(b')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(e: c_int) -> String {
        let mut mem = [0u8; 128];
        let mut b = Buf::new(&mut mem);
        Errno(e).write(&mut b);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn every_error_is_named_never_just_error() {
        assert_eq!(
            said(libc::EAGAIN),
            "EAGAIN (it is full: its reader is not reading)"
        );
        assert_eq!(said(4242), "errno 4242");
    }
}
