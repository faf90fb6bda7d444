//! The journald sink (`SIGAUDIT_OUTPUT=journal[:PATH]`): one entry per event, sent to journald's
//! native socket (`/run/systemd/journal/socket`) in its native protocol, as `sd_journal_send()`
//! would, without linking libsystemd and without allocating.
//!
//! The protocol: one datagram per entry, a series of fields, each `NAME=value\n` or, for a value
//! that holds a newline, `NAME\n`, the value's length as 64-bit little-endian, the value, `\n`.
//! journald adds what it knows of the sender itself (`_PID`, `_COMM`, `_EXE`, `_CMDLINE`,
//! `_SYSTEMD_UNIT`, `_HOSTNAME`, ...) from the socket's credentials.
//!
//! A datagram larger than the socket's send buffer (`EMSGSIZE`; `net.core.wmem_default`, 208 KiB
//! on a stock kernel, far above the largest record of 64 KiB, so this is rare) goes the way
//! journald documents for large entries: written into a memfd, sealed against any change, and the
//! descriptor passed with `SCM_RIGHTS` in an empty datagram. Either way one `sendmsg` carries
//! the event, and the entry is never cut.

use super::socket::Socket;
use crate::buf::Buf;
use libc::c_int;

/// The culprit's place, for `CODE_FILE`, `CODE_LINE` and `CODE_FUNC` (empty or `None`: left out).
#[derive(Clone, Copy, Default)]
pub struct Code<'a> {
    pub file: &'a [u8],
    pub line: Option<i64>,
    pub function: &'a [u8],
}

/// One journal entry.
pub struct Entry<'a> {
    /// The one-line summary.
    pub message: &'a [u8],
    /// syslog severity, 0 (emerg) to 7 (debug).
    pub priority: u8,
    pub code: Code<'a>,
    /// `ignore`, `change`, `inherited`, `echild`.
    pub event: &'a str,
    /// The function the program called (`sigaction`, `waitpid`, ...).
    pub via: &'a str,
    /// The parent's pid (journald records the sender's pid, not its parent's).
    pub ppid: i64,
    /// `SIGCHLD`.
    pub signal: &'a [u8],
    /// `logged`, `vetoed`, `aborted`.
    pub action: &'a str,
    /// The whole JSON record (its final newline is not kept).
    pub record: &'a [u8],
}

/// How an entry went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Datagram,
    /// As a sealed memfd, the datagram being too large.
    Memfd,
}

/// Writes every field of `e` but the record (which [`send`] passes as it is, not copied).
pub fn encode_head(b: &mut Buf, e: &Entry) {
    field(b, "MESSAGE", e.message);
    let prio = [b'0' + e.priority.min(7)];
    field(b, "PRIORITY", &prio);
    field(b, "SYSLOG_IDENTIFIER", b"sigaudit");
    if !e.code.file.is_empty() {
        field(b, "CODE_FILE", e.code.file);
    }
    if let Some(line) = e.code.line {
        number(b, "CODE_LINE", line);
    }
    if !e.code.function.is_empty() {
        field(b, "CODE_FUNC", e.code.function);
    }
    field(b, "SIGAUDIT_EVENT", e.event.as_bytes());
    field(b, "SIGAUDIT_VIA", e.via.as_bytes());
    number(b, "SIGAUDIT_PPID", e.ppid);
    field(b, "SIGAUDIT_SIGNAL", e.signal);
    field(b, "SIGAUDIT_ACTION", e.action.as_bytes());
}

fn number(b: &mut Buf, name: &str, v: i64) {
    let mut mem = [0u8; 24];
    let mut n = Buf::new(&mut mem);
    n.int(v);
    field(b, name, n.as_bytes());
}

/// One field: `NAME=value\n`, or the length-prefixed form when the value holds a newline.
fn field(b: &mut Buf, name: &str, value: &[u8]) {
    b.str(name);
    if value.contains(&b'\n') {
        b.byte(b'\n')
            .bytes(&(value.len() as u64).to_le_bytes())
            .bytes(value)
            .byte(b'\n');
    } else {
        b.byte(b'=').bytes(value).byte(b'\n');
    }
}

/// Sends `e` to the journal socket at `path`. `head` is working memory for the fields other than
/// the record (4 KiB is ample: the message and the culprit's names are bounded). Errors are
/// `errno` values of the connect or send.
pub fn send(path: &[u8], e: &Entry, head: &mut [u8]) -> Result<Sent, c_int> {
    let mut b = Buf::new(head);
    encode_head(&mut b, e);
    if b.overflowed() {
        return Err(libc::EMSGSIZE);
    }
    let record = e.record.strip_suffix(b"\n").unwrap_or(e.record);
    // A JSON record never holds a raw newline (strings escape it), so it goes in the short form;
    // the length-prefixed one is there should one ever do.
    let len = (record.len() as u64).to_le_bytes();
    let short: [&[u8]; 4] = [b.as_bytes(), b"SIGAUDIT_RECORD=", record, b"\n"];
    let long: [&[u8]; 5] = [b.as_bytes(), b"SIGAUDIT_RECORD\n", &len, record, b"\n"];
    let parts: &[&[u8]] = if record.contains(&b'\n') {
        &long
    } else {
        &short
    };
    let socket = Socket::connect(path)?;
    match socket.send(parts, None) {
        Ok(()) => Ok(Sent::Datagram),
        Err(libc::EMSGSIZE | libc::ENOBUFS) => {
            let fd = sealed_memfd(parts)?;
            let r = socket.send(&[], Some(fd));
            // Our own descriptor; journald holds its own reference once sent.
            crate::sys::close(fd);
            r.map(|()| Sent::Memfd)
        }
        Err(e) => Err(e),
    }
}

/// A memfd holding `parts`, sealed so that it can no longer change (journald takes only such).
fn sealed_memfd(parts: &[&[u8]]) -> Result<c_int, c_int> {
    // The descriptor is closed by the caller or below.
    let fd = crate::sys::memfd_create(
        c"sigaudit-journal",
        libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
    )?;
    let filled = parts
        .iter()
        .try_for_each(|p| super::sink::write_plain(fd, p))
        .and_then(|()| {
            let seals =
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
            crate::sys::fcntl_int(fd, libc::F_ADD_SEALS, seals).map(|_| ())
        });
    match filled {
        Ok(()) => Ok(fd),
        Err(e) => {
            crate::sys::close(fd);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::socket::tests::{bytes, temp_dir};
    use super::*;
    use std::os::fd::FromRawFd;
    use std::os::unix::net::UnixDatagram;

    /// Parses a native-protocol entry into (name, value) pairs, both forms.
    pub fn parse(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let nl = data.iter().position(|&c| c == b'\n').expect("a newline");
            let line = &data[..nl];
            if let Some(eq) = line.iter().position(|&c| c == b'=') {
                out.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
                data = &data[nl + 1..];
            } else {
                let len = u64::from_le_bytes(data[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = data[nl + 9..nl + 9 + len].to_vec();
                assert_eq!(data[nl + 9 + len], b'\n');
                out.push((String::from_utf8(line.to_vec()).unwrap(), value));
                data = &data[nl + 10 + len..];
            }
        }
        out
    }

    fn entry<'a>(record: &'a [u8], file: &'a [u8]) -> Entry<'a> {
        Entry {
            message: b"pid 7 (demo) SIGCHLD ignored via signal(): SIG_DFL -> SIG_IGN [logged]",
            priority: 4,
            code: Code {
                file,
                line: Some(12),
                function: b"setup",
            },
            event: "ignore",
            via: "signal",
            ppid: 1,
            signal: b"SIGCHLD",
            action: "logged",
            record,
        }
    }

    #[test]
    fn fields_in_both_forms() {
        let mut mem = [0u8; 4096];
        let mut b = Buf::new(&mut mem);
        encode_head(&mut b, &entry(b"", b"/srv/odd\nname.py"));
        let fields = parse(b.as_bytes());
        let get = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("PRIORITY").as_deref(), Some("4"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("sigaudit"));
        assert_eq!(get("CODE_FILE").as_deref(), Some("/srv/odd\nname.py"));
        assert_eq!(get("CODE_LINE").as_deref(), Some("12"));
        assert_eq!(get("CODE_FUNC").as_deref(), Some("setup"));
        assert_eq!(get("SIGAUDIT_EVENT").as_deref(), Some("ignore"));
        assert_eq!(get("SIGAUDIT_SIGNAL").as_deref(), Some("SIGCHLD"));
        assert_eq!(get("SIGAUDIT_ACTION").as_deref(), Some("logged"));
        assert_eq!(get("SIGAUDIT_VIA").as_deref(), Some("signal"));
        assert_eq!(get("SIGAUDIT_PPID").as_deref(), Some("1"));
        assert!(get("MESSAGE").unwrap().starts_with("pid 7 (demo) SIGCHLD"));
    }

    #[test]
    fn one_datagram_per_entry() {
        let dir = temp_dir("journal-dgram");
        let path = dir.join("socket");
        let rx = UnixDatagram::bind(&path).unwrap();
        let record = b"{\"event\":\"ignore\",\"pid\":7}\n";
        let mut head = [0u8; 4096];
        let sent = send(&bytes(&path), &entry(record, b"/srv/app.py"), &mut head).unwrap();
        assert_eq!(sent, Sent::Datagram);
        let mut buf = vec![0u8; 65536];
        let n = rx.recv(&mut buf).unwrap();
        let fields = parse(&buf[..n]);
        let rec = fields.iter().find(|(k, _)| k == "SIGAUDIT_RECORD").unwrap();
        assert_eq!(rec.1, b"{\"event\":\"ignore\",\"pid\":7}");
        assert_eq!(fields.len(), 12);
    }

    /// A datagram the socket cannot take goes as a sealed memfd, whole.
    #[test]
    fn too_large_for_a_datagram_goes_as_a_sealed_memfd() {
        let dir = temp_dir("journal-memfd");
        let path = dir.join("socket");
        let rx = UnixDatagram::bind(&path).unwrap();
        // Larger than any send buffer the kernel gives by default (wmem_default).
        let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(212_992);
        let mut record = b"{\"pad\":\"".to_vec();
        record.resize(wmem + 1000, b'x');
        record.extend_from_slice(b"\"}\n");
        let mut head = [0u8; 4096];
        let sent = send(&bytes(&path), &entry(&record, b"/srv/app.py"), &mut head).unwrap();
        assert_eq!(sent, Sent::Memfd);

        // Receive the empty datagram and its descriptor.
        let mut data = [0u8; 16];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut _;
        msg.msg_controllen = std::mem::size_of_val(&control);
        use std::os::fd::AsRawFd;
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert_eq!(n, 0, "an empty datagram");
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        assert!(!cmsg.is_null());
        assert_eq!(unsafe { (*cmsg).cmsg_type }, libc::SCM_RIGHTS);
        let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32) };
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        let all = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        assert_eq!(seals & all, all, "sealed against every change");
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut content = Vec::new();
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        file.read_to_end(&mut content).unwrap();
        let fields = parse(&content);
        let rec = fields.iter().find(|(k, _)| k == "SIGAUDIT_RECORD").unwrap();
        assert_eq!(rec.1, record[..record.len() - 1]);
    }
}
