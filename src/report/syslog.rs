//! The syslog sinks: one line per event to a local syslog socket (`/dev/log`), written and sent
//! here, never through glibc's `syslog()`, which takes a lock (a signal handler interrupting a
//! `syslog()` call in the program would deadlock on it) and keeps a descriptor open in the
//! program.
//!
//! Two forms:
//! - `syslog[:PATH]`: the local form, `<12>sigaudit[4242]: LINE`, as glibc's `syslog()` and
//!   util-linux's `logger` send it to `/dev/log`, without their local-time timestamp (the receiver
//!   stamps the time it got the message; a local time would need the time zone, read from a file).
//!   Every local receiver parses it: journald's `/dev/log`, rsyslog's `imuxsock` as Debian sets it
//!   up, syslog-ng.
//! - `rfc5424[:PATH]`: RFC 5424, `<12>1 2026-11-25T21:39:39.785309Z host sigaudit 4242 ignore -
//!   LINE`, with the event's own time to the microsecond and its kind as MSGID, for a receiver
//!   set up to parse it on that socket (rsyslog: `UseSpecialParser="off"` on the input). journald
//!   (systemd 252) and rsyslog's default `imuxsock` parser do not: they take `1` for the program
//!   name, or keep the header in the message.

use super::socket::Socket;
use crate::buf::Buf;
use libc::c_int;

/// The facility: `user`, as `syslog()` uses by default.
const FACILITY_USER: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Local,
    Rfc5424,
}

/// What the header says besides the line.
pub struct Header<'a> {
    /// syslog severity, 0 (emerg) to 7 (debug).
    pub severity: u8,
    pub pid: c_int,
    /// The event's time, seconds and microseconds since the epoch (RFC 5424 only).
    pub now: (i64, u32),
    /// The event's kind, the RFC 5424 MSGID.
    pub msgid: &'a str,
    /// The host's name (RFC 5424 only).
    pub host: &'a [u8],
}

/// Writes one message: the header in `form`, then `line` (which must be one line).
pub fn encode(b: &mut Buf, form: Form, h: &Header, line: &[u8]) {
    b.byte(b'<')
        .dec((FACILITY_USER * 8 + h.severity.min(7)) as u64)
        .byte(b'>');
    match form {
        Form::Local => {
            b.str("sigaudit[").int(h.pid as i64).str("]: ");
        }
        Form::Rfc5424 => {
            b.str("1 ").iso_time(h.now.0, h.now.1).byte(b' ');
            hostname(b, h.host);
            b.str(" sigaudit ").int(h.pid as i64).byte(b' ');
            b.str(h.msgid).str(" - ");
        }
    }
    b.bytes(line);
}

/// The host's name as RFC 5424 wants it (printable ASCII, no spaces, `-` when unknown).
fn hostname(b: &mut Buf, host: &[u8]) {
    if host.is_empty() {
        b.byte(b'-');
    }
    for &c in host.iter().take(255) {
        b.byte(if (0x21..=0x7e).contains(&c) { c } else { b'_' });
    }
}

/// Sends one message to the syslog socket at `path`, built in `mem` (1 KiB more than the line
/// is enough). Errors are `errno` values.
pub fn send(path: &[u8], form: Form, h: &Header, line: &[u8], mem: &mut [u8]) -> Result<(), c_int> {
    let mut b = Buf::new(mem);
    encode(&mut b, form, h, line);
    if b.overflowed() {
        return Err(libc::EMSGSIZE);
    }
    Socket::connect(path)?.send(&[b.as_bytes()], None)
}

#[cfg(test)]
mod tests {
    use super::super::socket::tests::{bytes, temp_dir};
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn header() -> Header<'static> {
        Header {
            severity: 4,
            pid: 4242,
            now: (1_795_642_779, 785_309),
            msgid: "ignore",
            host: b"web 1",
        }
    }

    fn encoded(form: Form) -> String {
        let mut mem = [0u8; 1024];
        let mut b = Buf::new(&mut mem);
        encode(&mut b, form, &header(), b"SIGCHLD ignored");
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_local_form() {
        assert_eq!(encoded(Form::Local), "<12>sigaudit[4242]: SIGCHLD ignored");
    }

    #[test]
    fn the_rfc5424_form() {
        assert_eq!(
            encoded(Form::Rfc5424),
            "<12>1 2026-11-25T21:39:39.785309Z web_1 sigaudit 4242 ignore - SIGCHLD ignored"
        );
    }

    #[test]
    fn one_datagram_per_message() {
        let dir = temp_dir("syslog");
        let path = dir.join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut mem = [0u8; 2048];
        send(&bytes(&path), Form::Local, &header(), b"line", &mut mem).unwrap();
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<12>sigaudit[4242]: line");
        let mut small = [0u8; 8];
        assert_eq!(
            send(&bytes(&path), Form::Local, &header(), b"line", &mut small),
            Err(libc::EMSGSIZE)
        );
    }
}
