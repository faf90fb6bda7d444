//! The kernel's side: installing the filter in the child between `fork` and `exec`, passing its
//! listener descriptor back to us over a socket, and the listener's `ioctl`s.
//!
//! [`install_in_child`] runs in the forked child of a multithreaded program, before `exec`, so it
//! makes system calls only (`prctl`, `seccomp`, `sendmsg`, `close`): no allocation, no lock. Its
//! outcome always reaches the parent as one message: 0 with the descriptor attached, or the
//! `errno` of the step that failed (and then the command runs unsupervised, as without the
//! option).

use libc::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The filter, ready for `seccomp(2)`; built before `fork` (the child must not allocate).
pub struct Program {
    code: Vec<libc::sock_filter>,
}

impl Program {
    pub fn new(code: Vec<libc::sock_filter>) -> Program {
        Program { code }
    }
}

/// What the child reports: which step failed, and its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Step {
    Ok = 0,
    NoNewPrivs = 1,
    Seccomp = 2,
}

/// In the child, after `fork`, before `exec`: sets `PR_SET_NO_NEW_PRIVS` (required to install a
/// filter without privilege), installs the filter with a new listener, and sends the listener's
/// descriptor (or the reason it failed) over `sock`. Never fails the `exec`.
///
/// The filter asks that a caller whose notification we have received wait for our answer
/// through every signal but a fatal one (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`, Linux 5.19),
/// so that no signal makes the kernel abandon a call we are answering and run it again (see
/// `restart.rs`); a kernel without it refuses the flag with `EINVAL`, and gets the filter
/// without it.
///
/// # Safety
/// Only to be called in a forked child before `exec`; `sock` is a connected Unix socket.
pub unsafe fn install_in_child(prog: &Program, sock: RawFd) {
    let fprog = libc::sock_fprog {
        len: prog.code.len() as u16,
        filter: prog.code.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain system calls on valid arguments; `fprog` points to the filter, alive here.
    let (step, errno, fd) = unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            (Step::NoNewPrivs, *libc::__errno_location(), -1)
        } else {
            let install = |flags: libc::c_ulong| {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | flags,
                    &fprog as *const libc::sock_fprog,
                )
            };
            let mut fd = install(libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
            if fd < 0 && *libc::__errno_location() == libc::EINVAL {
                fd = install(0);
            }
            if fd < 0 {
                (Step::Seccomp, *libc::__errno_location(), -1)
            } else {
                (Step::Ok, 0, fd as c_int)
            }
        }
    };
    let msg: [i32; 2] = [step as i32, errno];
    // SAFETY: as above; `send_with_fd` only makes system calls.
    unsafe {
        send_with_fd(sock, &msg, fd);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// Room for one `SCM_RIGHTS` control message with one descriptor (`CMSG_SPACE(4)` is 24 on
/// 64-bit Linux; 32 leaves room), aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Cmsg([u8; 32]);

/// Sends `msg`, with `fd` attached when it is not negative. System calls only.
unsafe fn send_with_fd(sock: RawFd, msg: &[i32; 2], fd: RawFd) {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut c_void,
        iov_len: std::mem::size_of_val(msg),
    };
    let mut control = Cmsg([0; 32]);
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if fd >= 0 {
        // SAFETY: CMSG_* only compute sizes and addresses inside `control`, which is large
        // enough and aligned for one cmsghdr with an int.
        unsafe {
            hdr.msg_control = control.0.as_mut_ptr() as *mut c_void;
            hdr.msg_controllen = libc::CMSG_SPACE(4) as usize;
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut c_int, fd);
        }
    }
    // SAFETY: hdr describes valid buffers.
    unsafe { libc::sendmsg(sock, &hdr, libc::MSG_NOSIGNAL) };
}

/// In the parent, after the child has been started: the listener, or why there is none.
pub fn receive(sock: &OwnedFd) -> Result<OwnedFd, String> {
    let mut msg = [0i32; 2];
    let mut iov = libc::iovec {
        iov_base: msg.as_mut_ptr() as *mut c_void,
        iov_len: std::mem::size_of_val(&msg),
    };
    let mut control = Cmsg([0; 32]);
    // SAFETY: a zeroed msghdr is valid; the buffers outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.0.as_mut_ptr() as *mut c_void;
    hdr.msg_controllen = control.0.len();
    // The child wrote before it exec'd, and the command has started, so this does not block;
    // MSG_DONTWAIT all the same, in case it never got that far.
    // SAFETY: hdr describes valid buffers.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut hdr,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n != std::mem::size_of_val(&msg) as isize {
        return Err("the command did not report on the filter".into());
    }
    // SAFETY: CMSG_FIRSTHDR/DATA read inside `control`, as filled by the kernel.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&hdr);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            -1
        } else {
            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const c_int)
        }
    };
    let errno = io::Error::from_raw_os_error(msg[1]);
    match msg[0] {
        0 if fd >= 0 => {
            // SAFETY: the kernel just gave us this descriptor.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        1 => Err(format!("prctl(PR_SET_NO_NEW_PRIVS) failed: {errno}")),
        2 if msg[1] == libc::EBUSY => Err(
            "the command already runs under another seccomp supervisor (a listener filter is \
             installed above it, and the kernel allows only one per process tree)"
                .into(),
        ),
        2 => Err(format!(
            "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER) failed: {errno}"
        )),
        _ => Err("the command did not report on the filter".into()),
    }
}

/// Whether this kernel has what the supervisor needs: `SECCOMP_RET_USER_NOTIF` (Linux 5.0) and
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE` (5.5), and the `seccomp` system call is not itself
/// forbidden (a container's own filter).
pub fn check_kernel() -> Result<(), String> {
    let action = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => {
                "this kernel has no seccomp user notification (Linux 5.0 or later needed)".into()
            }
            _ => format!("seccomp is not available here: {e}"),
        });
    }
    let release = kernel_release();
    match parse_release(&release) {
        Some(v) if v < (5, 5) => Err(format!(
            "this kernel ({release}) cannot let a supervised call continue \
             (SECCOMP_USER_NOTIF_FLAG_CONTINUE needs Linux 5.5 or later)"
        )),
        _ => Ok(()),
    }
}

fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// A listener descriptor: where notifications are read and answered.
pub struct Listener {
    fd: OwnedFd,
}

/// One notification: the calling thread (in our pid namespace) and its system call.
pub type Notif = libc::seccomp_notif;

/// How to answer a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Let the kernel run the call as the program made it.
    Continue,
    /// Do not run it; the program sees this return value.
    Return(i64),
    /// Do not run it; the program sees -1 and this errno.
    Fail(i32),
}

impl Listener {
    pub fn new(fd: OwnedFd) -> Listener {
        Listener { fd }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Waits for the next notification. `ENOENT` means the caller went away before we read it
    /// (killed, or the call interrupted): try again.
    pub fn receive(&self) -> io::Result<Notif> {
        receive_raw(self.raw()).ok_or_else(io::Error::last_os_error)
    }

    /// Whether notification `id` is still pending: its caller still waits for this answer, so
    /// its pid still names the same thread (checked after reading the caller's memory).
    pub fn still_pending(&self, id: u64) -> bool {
        // SAFETY: the ioctl reads one u64.
        unsafe { libc::ioctl(self.raw(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
    }

    /// Answers notification `id`: whether its caller took the answer. `false` when it no longer
    /// waits for one (`ENOENT`): it was killed, or (without `WAIT_KILLABLE_RECV`) a signal
    /// interrupted it, and then the kernel runs the call again.
    pub fn answer(&self, id: u64, a: Answer) -> bool {
        answer_raw(self.raw(), id, a)
    }

    /// Waits up to `ms` for a notification. `Some(true)`: one is there; `Some(false)`: none yet;
    /// `None`: no process uses the filter any more (the tree is gone).
    pub fn wait(&self, ms: i32) -> Option<bool> {
        let mut p = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r <= 0 {
            return Some(false);
        }
        if p.revents & libc::POLLIN != 0 {
            Some(true)
        } else if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            None
        } else {
            Some(false)
        }
    }
}

/// Answers "continue" to every notification on `fd` until no process uses the filter. System
/// calls only: this runs in a forked child of a multithreaded program.
///
/// # Safety
/// `fd` is a listener descriptor.
pub unsafe fn answer_continue_until_unused(fd: RawFd) {
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
            continue;
        }
        if p.revents & libc::POLLIN == 0 {
            // POLLHUP: the last process using the filter is gone.
            return;
        }
        if let Some(n) = receive_raw(fd) {
            answer_raw(fd, n.id, Answer::Continue);
        }
    }
}

/// The next notification on listener `fd`, or `None` (errno says why). System calls only.
fn receive_raw(fd: RawFd) -> Option<Notif> {
    // SAFETY: a zeroed seccomp_notif is valid, and the kernel wants it zeroed.
    let mut n: Notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif.
    let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut n) };
    (r == 0).then_some(n)
}

/// Answers notification `id` on listener `fd`: whether the kernel took it. System calls only.
fn answer_raw(fd: RawFd, id: u64, a: Answer) -> bool {
    let (val, error, flags) = match a {
        Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        Answer::Return(v) => (v, 0, 0),
        Answer::Fail(e) => (0, -e, 0),
    };
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND as _, &resp) == 0 }
}

/// A connected pair of Unix datagram sockets, both close-on-exec (the child's end is used before
/// `exec`, and must not reach the command).
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: socketpair writes two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are ours, just created.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("weird"), None);
    }
}
