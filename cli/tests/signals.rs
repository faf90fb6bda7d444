//! Signals sent to sigaudit reach the command once: those a process sends to sigaudit are
//! forwarded; those the terminal sends to the whole group are not sent again.

mod common;
use common::*;
use std::os::unix::process::CommandExt;

#[test]
fn signals_sent_to_sigaudit_are_forwarded() {
    let d = Dir::new("forwarded");
    d.cc("sigwatch", "sigwatch.c", &[]);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        let running = d.sigaudit().args(["--quiet", "./sigwatch"]).start();
        running.wait_for_line("ready");
        let sigaudit = running.pid();
        // SAFETY: plain system call to our own child.
        assert_eq!(unsafe { libc::kill(sigaudit, sig) }, 0);
        let run = running.finish().code(0);
        let got: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("sig="))
            .collect();
        // SI_USER (0), sent by sigaudit, exactly once.
        assert_eq!(got, [format!("sig={sig} code=0 pid={sigaudit}")], "{run}");
    }
}

#[test]
fn a_signal_before_the_command_ends_it_like_without_sigaudit() {
    let d = Dir::new("forwarded_death");
    let running = d
        .sigaudit()
        .args(["sh", "-c", "echo ready; exec sleep 30"])
        .start();
    running.wait_for_line("ready");
    // SAFETY: plain system call to our own child.
    unsafe { libc::kill(running.pid(), libc::SIGTERM) };
    running
        .finish()
        .code(143)
        .stderr_has("the command was ended by SIGTERM");
}

#[test]
fn ctrl_c_from_the_terminal_is_not_sent_twice() {
    let d = Dir::new("terminal_ctrl_c");
    d.cc("sigwatch", "sigwatch.c", &[]);
    let (master, slave) = open_pty();
    let mut cmd = d.sigaudit().args(["--quiet", "./sigwatch"]);
    cmd.command.stdin(std::process::Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.command.pre_exec(|| {
            // A session of its own with the pty (stdin) as controlling terminal, so that the
            // terminal's signals go to sigaudit's process group, which the command shares.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let running = cmd.start_with_stdin();
    running.wait_for_line("ready");
    // ^C typed at the terminal, five times: a SIGINT forwarded on top of the terminal's may
    // merge with it while still pending, so one press alone could hide a double delivery.
    for _ in 0..5 {
        // SAFETY: writes one byte from a valid buffer to our pty master.
        let n = unsafe {
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&master),
                b"\x03".as_ptr() as *const libc::c_void,
                1,
            )
        };
        assert_eq!(n, 1);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let sigaudit = running.pid();
    let run = running.finish().code(0);
    let got: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("sig="))
        .collect();
    // Each SIGINT came from the kernel (SI_KERNEL = 0x80), none from sigaudit.
    assert_eq!(got, ["sig=2 code=128 pid=0"; 5], "{run}");
    assert!(!run.stdout.contains(&format!("pid={sigaudit}")), "{run}");
    drop(master);
}
