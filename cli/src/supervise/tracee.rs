//! Looking into a process that waits for our answer, through `/proc` only (no ptrace): its
//! registers at the system call (`/proc/TID/syscall`), its memory (`/proc/TID/mem`), its
//! identity and signal state (`/proc/TID/status`), which program image it runs (`stat`), and its
//! mappings (`maps`).
//!
//! A pid can be reused once its process is gone. Everything read here about a notification's
//! caller is trusted only if the notification is still pending afterwards (the caller still
//! waits for us, so the pid is still its own): the serving loop checks that with
//! `SECCOMP_IOCTL_NOTIF_ID_VALID` after reading.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// A file under `/proc/ID/`, read whole (these are small).
fn read_proc(id: u32, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    File::open(format!("/proc/{id}/{name}"))
        .ok()?
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// What `/proc/TID/syscall` tells of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registers {
    /// Asleep in a system call: its stack pointer and program counter.
    At { sp: u64, pc: u64 },
    /// Not asleep at this moment (a signal woke it, say).
    Running,
    /// Gone, or not ours to read.
    Unknown,
}

/// The stack pointer and program counter of thread `tid`, asleep in a system call.
pub fn registers(tid: u32) -> Registers {
    read_proc(tid, "syscall").map_or(Registers::Unknown, |t| parse_syscall(&t))
}

/// `/proc/TID/syscall`: the number, six arguments, then sp and pc, in hex; or `running`.
fn parse_syscall(text: &[u8]) -> Registers {
    let text = std::str::from_utf8(text).unwrap_or("");
    let words: Vec<&str> = text.split_whitespace().collect();
    let hex = |w: &str| u64::from_str_radix(w.strip_prefix("0x")?, 16).ok();
    match words[..] {
        ["running"] => Registers::Running,
        [_, _, _, _, _, _, _, sp, pc] => match (hex(sp), hex(pc)) {
            (Some(sp), Some(pc)) => Registers::At { sp, pc },
            _ => Registers::Unknown,
        },
        _ => Registers::Unknown,
    }
}

/// What `/proc/TID/status` says about a thread's process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub tgid: u32,
    pub ppid: u32,
    /// Ignored signals (bit n-1 for signal n), per process.
    pub ignored: u64,
    /// Caught signals (with a handler).
    pub caught: u64,
}

pub fn status(tid: u32) -> Option<Status> {
    parse_status(&read_proc(tid, "status")?)
}

fn parse_status(text: &[u8]) -> Option<Status> {
    let text = String::from_utf8_lossy(text);
    let mut s = Status::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Tgid" => s.tgid = value.parse().ok()?,
            "PPid" => s.ppid = value.parse().ok()?,
            "SigIgn" => s.ignored = u64::from_str_radix(value, 16).ok()?,
            "SigCgt" => s.caught = u64::from_str_radix(value, 16).ok()?,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 4).then_some(s)
}

/// Which program image a process runs: the start of its code and of its stack. They are set at
/// `exec` (the stack randomly placed) and copied by `fork`, so a change means the process has
/// run a new program since we last looked, and a fork child shares its parent's until it execs.
pub type Image = (u64, u64, u64);

/// What `/proc/TID/stat` says: cheaper to read than `status`, but its signal masks stop at
/// signal 31 and it does not name the thread's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// When the thread started (clock ticks since boot): with its id, names it for good.
    pub start_time: u64,
    pub image: Image,
    /// Signals 1-31 ignored, and caught.
    pub ignored: u64,
    pub caught: u64,
}

pub fn stat(tid: u32) -> Option<Stat> {
    parse_stat(&read_proc(tid, "stat")?)
}

fn parse_stat(text: &[u8]) -> Option<Stat> {
    let text = String::from_utf8_lossy(text);
    // The command name in parentheses may hold anything: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0].
    let f = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let image = (f(26)?, f(27)?, f(28)?);
    (image != (0, 0, 0)).then_some(Stat {
        ppid: f(4)? as u32,
        start_time: f(22)?,
        image,
        ignored: f(33)?,
        caught: f(34)?,
    })
}

/// The program's path (`/proc/PID/exe`), as bytes.
pub fn exe(pid: u32) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_default()
}

/// The arguments (`/proc/PID/cmdline`).
pub fn argv(pid: u32) -> Vec<Vec<u8>> {
    read_proc(pid, "cmdline")
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub executable: bool,
    pub offset: u64,
    /// The file, or a pseudo-name (`[stack]`), or empty.
    pub path: String,
}

pub fn maps(pid: u32) -> Option<Vec<Mapping>> {
    Some(parse_maps(&String::from_utf8_lossy(&read_proc(
        pid, "maps",
    )?)))
}

fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(6, ' ');
            let (range, perms, offset) = (it.next()?, it.next()?, it.next()?);
            let _dev = it.next()?;
            let _inode = it.next()?;
            let path = it.next().unwrap_or("").trim_start().to_string();
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                executable: perms.as_bytes().get(2) == Some(&b'x'),
                offset: u64::from_str_radix(offset, 16).ok()?,
                path,
            })
        })
        .collect()
}

/// A process's memory, through `/proc/TID/mem` (the same checks as ptrace: ours, or our
/// descendant's).
pub struct Memory {
    file: File,
}

impl Memory {
    pub fn open(tid: u32) -> Option<Memory> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{tid}/mem"))
            .ok()?;
        Some(Memory { file })
    }

    /// Reads exactly `buf.len()` bytes at `addr`, or fails.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.file.read_exact_at(buf, addr).is_ok()
    }

    /// Reads up to `buf.len()` bytes at `addr`; how many.
    pub fn read_some(&self, addr: u64, buf: &mut [u8]) -> usize {
        self.file.read_at(buf, addr).unwrap_or(0)
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) -> bool {
        self.file.write_all_at(bytes, addr).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        assert_eq!(
            parse_syscall(b"13 0x11 0x7ffc9d0 0x0 0x8 0x0 0x0 0x7ffc9c8 0x41a2bd\n"),
            Registers::At {
                sp: 0x7ffc9c8,
                pc: 0x41a2bd
            }
        );
        assert_eq!(parse_syscall(b"running\n"), Registers::Running);
        assert_eq!(parse_syscall(b"-1 0x7ffc 0x41a2\n"), Registers::Unknown);
    }

    #[test]
    fn status_and_stat() {
        let s = parse_status(
            b"Name:\tx\nTgid:\t42\nPid:\t43\nPPid:\t7\nSigBlk:\t0\nSigIgn:\t0000000000010000\nSigCgt:\t0000000000000002\n",
        )
        .unwrap();
        assert_eq!(
            s,
            Status {
                tgid: 42,
                ppid: 7,
                ignored: 1 << 16,
                caught: 2
            }
        );
        let mut stat = String::from("42 (a b) c) S");
        for i in 4..=40 {
            stat.push_str(&format!(" {i}"));
        }
        stat.push('\n');
        let st = parse_stat(stat.as_bytes()).unwrap();
        assert_eq!(st.image, (26, 27, 28));
        assert_eq!(
            (st.ppid, st.start_time, st.ignored, st.caught),
            (4, 22, 33, 34)
        );
    }

    #[test]
    fn maps_lines() {
        let m = parse_maps(
            "00400000-00401000 r--p 00000000 08:01 123   /tmp/a b\n\
             00401000-00480000 r-xp 00001000 08:01 123   /tmp/a b\n\
             7ffd0000-7ffd2000 rw-p 00000000 00:00 0          [stack]\n\
             7ffd3000-7ffd4000 rw-p 00000000 00:00 0\n",
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].path, "/tmp/a b");
        assert!(m[1].executable && !m[0].executable);
        assert_eq!(m[1].offset, 0x1000);
        assert_eq!(m[2].path, "[stack]");
        assert_eq!(m[3].path, "");
    }

    #[test]
    fn this_process() {
        let me = std::process::id();
        let s = status(me).unwrap();
        assert_eq!(s.tgid, me);
        let st = stat(me).unwrap();
        assert_eq!(st.ppid, s.ppid);
        assert!(maps(me).unwrap().iter().any(|m| m.executable));
        let mem = Memory::open(me).unwrap();
        let x = 0x1234_5678u32;
        let mut buf = [0u8; 4];
        assert!(mem.read(&x as *const u32 as u64, &mut buf));
        assert_eq!(u32::from_ne_bytes(buf), x);
    }
}
