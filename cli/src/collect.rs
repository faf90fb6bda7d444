//! Collecting the records of a run: from the private folder the library writes one file per
//! process into, and from the socket that takes what the folder cannot; and knowing when records
//! may have been lost, so that a run is never called clean when it may not have been.
//!
//! The folder is hostile ground: anything running as the user can put anything there. Files are
//! opened with `O_NONBLOCK | O_NOFOLLOW` through a descriptor of the folder (so a FIFO never
//! blocks, a symlink is never followed, and a folder put in the place of ours is never read), and
//! only regular files are read, each up to [`FILE_CAP`] bytes and [`LINE_CAP`] per line. Which
//! files changed comes from inotify (so a run of thousands of processes, each with its `loaded`
//! record, costs nothing between events); without it, or when its queue overflows, every file
//! is looked at.
//!
//! What may have been lost, each said in the summary with what to do about it: records the
//! library could not write (it counts them, and its next record says how many); the folder
//! removed, replaced or full during the run; a file that is not a regular file, too large, or
//! ends in the middle of a record; the command itself never announcing itself (its `loaded`
//! record), so that nothing it did was seen.

use crate::symbolize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes read from one record file at most: about 30,000 records.
const FILE_CAP: u64 = 64 << 20;
/// The longest line taken: a record is at most 64 KiB.
const LINE_CAP: usize = 1 << 20;
/// Bytes read from one file per look, so that one busy file does not hold up the rest.
const CHUNK: usize = 1 << 20;

/// Something that means records may be missing, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loss {
    pub what: String,
    pub advice: &'static str,
}

const ADVICE_FOLDER: &str = "run it again with TMPDIR set to a folder that every process of the \
     program can see and write, on a file system with room";
const ADVICE_ALONE: &str = "let no other program touch sigaudit's folder while it runs";

/// The records of a run, and what is known about their completeness.
pub struct Collector {
    dir: PathBuf,
    dir_fd: OwnedFd,
    dir_id: (u64, u64),
    inotify: Option<OwnedFd>,
    socket: Option<Listener>,
    files: BTreeMap<OsString, FileState>,
    /// Event records (not `loaded` ones), in the order read.
    pub records: Vec<Value>,
    /// pid -> the programs it ran (a process that execs announces itself again).
    pub audited: BTreeMap<i64, Vec<String>>,
    losses: BTreeSet<Loss>,
    /// Records that came through the socket because the folder could not be written: why, how
    /// many.
    rescued: BTreeMap<String, usize>,
    /// Every file has been looked at once.
    scanned: bool,
    /// Files with more waiting than one look reads.
    reread: BTreeSet<OsString>,
}

#[derive(Default)]
struct FileState {
    offset: u64,
    partial: Vec<u8>,
    /// Nothing more is read from it (not a regular file, too large).
    done: bool,
    /// A line was too long: skip to the next newline.
    skipping: bool,
}

impl Collector {
    /// Starts collecting from `dir` (already made, private) and, when one could be bound, a
    /// socket whose name goes to the library as `SIGAUDIT_SOCKET`.
    pub fn new(dir: &Path) -> std::io::Result<Collector> {
        let c = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just opened, ours alone.
        let dir_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(dir_fd.as_raw_fd())?;
        Ok(Collector {
            dir: dir.to_path_buf(),
            dir_id: (st.st_dev, st.st_ino),
            inotify: watch(&c),
            socket: dir
                .file_name()
                .and_then(|n| Listener::bind(&n.to_string_lossy()).ok()),
            dir_fd,
            files: BTreeMap::new(),
            records: Vec::new(),
            audited: BTreeMap::new(),
            losses: BTreeSet::new(),
            rescued: BTreeMap::new(),
            scanned: false,
            reread: BTreeSet::new(),
        })
    }

    /// `@name` of the socket, for `SIGAUDIT_SOCKET`.
    pub fn socket_name(&self) -> Option<String> {
        self.socket.as_ref().map(|l| format!("@{}", l.name))
    }

    /// Reads what was added since last time; calls `each` on every new event record, oldest
    /// first.
    pub fn drain(&mut self, mut each: impl FnMut(&mut Value)) {
        let start = self.records.len();
        self.check_folder();
        for name in self.changed() {
            self.read_file(&name);
        }
        let mut from_socket = Vec::new();
        if let Some(l) = &mut self.socket {
            l.drain(&mut from_socket, &mut self.losses);
        }
        for msg in from_socket {
            for line in msg.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                self.take_line(line, true);
            }
        }
        self.records[start..].sort_by(by_time);
        for i in start..self.records.len() {
            let (earlier, new) = self.records.split_at_mut(i);
            if let Some(rec) = new.first_mut() {
                crate::supervise::link_cause(rec, earlier);
                each(rec);
            }
        }
    }

    /// After the last drain: a file that ends in the middle of a record lost its end.
    pub fn finish(&mut self) {
        for (name, f) in &self.files {
            if !f.partial.is_empty() && !f.done {
                self.losses.insert(Loss {
                    what: format!(
                        "{} ends in the middle of a record (its writer was cut off)",
                        name.to_string_lossy()
                    ),
                    advice: ADVICE_FOLDER,
                });
            }
        }
    }

    /// Notes that the command's own process (`pid`) never announced itself, unless it could
    /// not have (`expected` false: said before the run, a static or setuid program).
    pub fn check_root(&mut self, pid: i64, expected: bool) {
        if expected && !self.audited.contains_key(&pid) {
            self.losses.insert(Loss {
                what: format!(
                    "the command (pid {pid}) never reported that the library loaded in it: its \
                     records, and its children's, may not have reached sigaudit"
                ),
                advice: "check that the program is dynamically linked for this machine, and \
                         that it keeps LD_PRELOAD for the programs it starts",
            });
        }
    }

    /// How many processes were audited: those that announced themselves (each exec of the
    /// library), and those with events (a forked child runs no constructor, so it announces
    /// nothing, but it has the library; `--supervise` sees programs the library cannot enter).
    pub fn audited_count(&self) -> usize {
        let mut pids: BTreeSet<i64> = self.audited.keys().copied().collect();
        pids.extend(
            self.records
                .iter()
                .filter_map(|r| crate::record::int(r, "pid")),
        );
        pids.len()
    }

    /// What may be missing, in a stable order.
    pub fn losses(&self) -> Vec<Loss> {
        let mut all: Vec<Loss> = self.losses.iter().cloned().collect();
        // What the library itself counted, from the notes of the records it could write.
        let lost: u64 = self
            .records
            .iter()
            .flat_map(|r| crate::record::array(r, "notes"))
            .filter(|n| crate::record::s(n, "reason") == "lost")
            .map(|n| n.get("count").and_then(Value::as_u64).unwrap_or(1))
            .sum();
        if lost > 0 {
            all.push(Loss {
                what: format!(
                    "the library could not write {lost} {} (see the notes of the records after them)",
                    if lost == 1 { "record" } else { "records" }
                ),
                advice: ADVICE_FOLDER,
            });
        }
        all
    }

    /// Records that came by the socket, and why, for the summary's notes.
    pub fn rescued(&self) -> Vec<String> {
        self.rescued
            .iter()
            .map(|(why, n)| {
                format!(
                    "{n} {} came through sigaudit's socket instead of its folder: {why}",
                    if *n == 1 { "record" } else { "records" }
                )
            })
            .collect()
    }

    fn check_folder(&mut self) {
        let Ok(st) = fstat(self.dir_fd.as_raw_fd()) else {
            return;
        };
        if st.st_nlink == 0 {
            self.losses.insert(Loss {
                what: format!(
                    "the folder {} was removed during the run: records written to it before \
                     were not all read, and later ones could go only through the socket",
                    self.dir.display()
                ),
                advice: ADVICE_ALONE,
            });
        } else if std::fs::symlink_metadata(&self.dir)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino()) != self.dir_id
            })
            .unwrap_or(true)
        {
            self.losses.insert(Loss {
                what: format!(
                    "the folder {} was moved or replaced during the run",
                    self.dir.display()
                ),
                advice: ADVICE_ALONE,
            });
        }
        // SAFETY: fstatvfs writes only into `vfs`.
        let full = unsafe {
            let mut vfs = std::mem::zeroed::<libc::statvfs>();
            libc::fstatvfs(self.dir_fd.as_raw_fd(), &mut vfs) == 0 && vfs.f_bavail == 0
        };
        if full {
            self.losses.insert(Loss {
                what: format!(
                    "the file system of {} was full during the run",
                    self.dir.display()
                ),
                advice: ADVICE_FOLDER,
            });
        }
    }

    /// The names of the files that may have new data: from inotify, or all of them.
    fn changed(&mut self) -> Vec<OsString> {
        let mut names = std::mem::take(&mut self.reread);
        let overflowed = match &self.inotify {
            Some(fd) => read_inotify(fd, &mut names),
            None => true,
        };
        let rescan = overflowed || !self.scanned;
        self.scanned = true;
        if rescan {
            // Through our descriptor of the folder, not its path.
            let path = format!("/proc/self/fd/{}", self.dir_fd.as_raw_fd());
            let listing = std::fs::read_dir(&path).or_else(|_| std::fs::read_dir(&self.dir));
            if let Ok(entries) = listing {
                names.extend(entries.filter_map(Result::ok).map(|e| e.file_name()));
            }
        }
        names
            .into_iter()
            .filter(|n| {
                let n = n.as_bytes();
                n.starts_with(b"events.") && n.ends_with(b".jsonl")
            })
            .collect()
    }

    fn read_file(&mut self, name: &OsStr) {
        let state = self.files.entry(name.to_os_string()).or_default();
        if state.done {
            return;
        }
        let Ok(c) = CString::new(name.as_bytes()) else {
            return;
        };
        // SAFETY: a NUL-terminated name relative to our folder's descriptor.
        let fd = unsafe {
            libc::openat(
                self.dir_fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        let shown = name.to_string_lossy();
        if fd < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ELOOP) {
                state.done = true;
                self.losses.insert(Loss {
                    what: format!("{shown} in the folder is a symlink: not followed, not read"),
                    advice: ADVICE_ALONE,
                });
            }
            return;
        }
        // SAFETY: just opened, ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let regular =
            fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        if !regular {
            state.done = true;
            self.losses.insert(Loss {
                what: format!("{shown} in the folder is not a regular file: not read"),
                advice: ADVICE_ALONE,
            });
            return;
        }
        let room = FILE_CAP.saturating_sub(state.offset).min(CHUNK as u64) as usize;
        let mut added = vec![0u8; room];
        // SAFETY: pread into our buffer, at most its length.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                added.as_mut_ptr() as *mut libc::c_void,
                room,
                state.offset as libc::off_t,
            )
        };
        if n <= 0 {
            if room == 0 {
                state.done = true;
                self.losses.insert(Loss {
                    what: format!(
                        "{shown} is larger than {} MiB: the rest was not read",
                        FILE_CAP >> 20
                    ),
                    advice: "watch fewer signals, or run the part of the program that matters",
                });
            }
            return;
        }
        added.truncate(n as usize);
        state.offset += n as u64;
        let more = n as usize == room;
        let mut lines = Vec::new();
        let mut long = false;
        for chunk in added.split_inclusive(|&b| b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            if state.skipping {
                state.skipping = !complete;
                continue;
            }
            state.partial.extend_from_slice(chunk);
            if complete {
                lines.push(std::mem::take(&mut state.partial));
            } else if state.partial.len() > LINE_CAP {
                state.partial.clear();
                state.skipping = true;
                long = true;
            }
        }
        if long {
            self.losses.insert(Loss {
                what: format!("{shown} has a line longer than 1 MiB, which no record is: skipped"),
                advice: ADVICE_ALONE,
            });
        }
        for line in lines {
            self.take_line(&line, false);
        }
        // A file with more than one chunk waiting is read on at the next look.
        if more {
            self.reread.insert(name.to_os_string());
        }
    }

    fn take_line(&mut self, line: &[u8], via_socket: bool) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.is_empty() {
            return;
        }
        let Some(rec) = symbolize::parse_record(line) else {
            // Not a record: shown as it is, as before.
            let mut raw = line.to_vec();
            raw.push(b'\n');
            let _ = std::io::stderr().write_all(&raw);
            return;
        };
        if via_socket {
            for n in crate::record::array(&rec, "notes") {
                if crate::record::s(n, "reason") == "output-failed" {
                    *self
                        .rescued
                        .entry(crate::record::s(n, "text").to_string())
                        .or_default() += 1;
                }
            }
        }
        if crate::record::s(&rec, "event") == "loaded" {
            let pid = crate::record::int(&rec, "pid").unwrap_or(0);
            self.audited
                .entry(pid)
                .or_default()
                .push(crate::record::program(&rec));
            return;
        }
        self.records.push(rec);
    }
}

/// Oldest first (the times are ISO 8601 UTC of one width, so they sort as text).
pub fn by_time(a: &Value, b: &Value) -> std::cmp::Ordering {
    use crate::record::{int, s};
    (s(a, "time"), int(a, "pid")).cmp(&(s(b, "time"), int(b, "pid")))
}

fn fstat(fd: i32) -> std::io::Result<libc::stat> {
    // SAFETY: fstat writes only into `st`.
    unsafe {
        let mut st = std::mem::zeroed::<libc::stat>();
        if libc::fstat(fd, &mut st) == 0 {
            Ok(st)
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

// ---- inotify ----------------------------------------------------------------------------------

fn watch(dir: &CString) -> Option<OwnedFd> {
    // SAFETY: plain system calls; the descriptor is owned below.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mask = libc::IN_CREATE | libc::IN_MODIFY | libc::IN_MOVED_TO | libc::IN_ONLYDIR;
        (libc::inotify_add_watch(fd.as_raw_fd(), dir.as_ptr(), mask) >= 0).then_some(fd)
    }
}

/// Adds the names inotify reports to `names`; returns whether its queue overflowed, so that
/// everything must be looked at.
fn read_inotify(fd: &OwnedFd, names: &mut BTreeSet<OsString>) -> bool {
    let mut rescan = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: read into our buffer, at most its length.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n <= 0 {
            return rescan;
        }
        let mut at = 0usize;
        let header = std::mem::size_of::<libc::inotify_event>();
        while at + header <= n as usize {
            // SAFETY: the kernel wrote whole events; read_unaligned copes with any alignment.
            let ev = unsafe {
                std::ptr::read_unaligned(buf.as_ptr().add(at) as *const libc::inotify_event)
            };
            let name_bytes = buf
                .get(at + header..at + header + ev.len as usize)
                .unwrap_or(&[]);
            let name = name_bytes.split(|&b| b == 0).next().unwrap_or(&[]);
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                rescan = true;
            } else if !name.is_empty() {
                names.insert(OsStr::from_bytes(name).to_os_string());
            }
            at += header + ev.len as usize;
        }
    }
}

// ---- the socket -------------------------------------------------------------------------------

/// An abstract `SOCK_SEQPACKET` socket: one connection, one record. Reachable from any process
/// in this network namespace, whatever its mount namespace (a private `/tmp`), and whatever
/// became of the folder.
struct Listener {
    fd: OwnedFd,
    name: String,
    /// Accepted connections whose record has not come yet.
    waiting: Vec<(OwnedFd, Instant)>,
}

impl Listener {
    /// Binds `@name` (the run folder's name: see `run.rs`, which tells a dead run's folder by
    /// its socket).
    fn bind(name: &str) -> std::io::Result<Listener> {
        // SAFETY: plain socket calls; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just made, ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (addr, len) = abstract_addr(name);
        // SAFETY: a valid address of `len` bytes; listen on our bound socket.
        unsafe {
            if libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                len,
            ) != 0
                || libc::listen(fd.as_raw_fd(), 4096) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Listener {
            fd,
            name: name.to_string(),
            waiting: Vec::new(),
        })
    }

    /// Accepts what connected, and takes each record that came, from our own user (or root):
    /// anyone on the machine can connect to an abstract socket.
    fn drain(&mut self, out: &mut Vec<Vec<u8>>, losses: &mut BTreeSet<Loss>) {
        loop {
            // SAFETY: accept4 without an address; the descriptor is owned below.
            let c = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if c < 0 {
                break;
            }
            // SAFETY: just accepted, ours alone.
            let c = unsafe { OwnedFd::from_raw_fd(c) };
            if !same_user(&c) {
                losses.insert(Loss {
                    what: "a process of another user sent sigaudit a record, which was not \
                           taken (a process of the program that changed its user cannot \
                           report to sigaudit)"
                        .into(),
                    advice: "run sigaudit as the user the program runs as",
                });
                continue;
            }
            if self.waiting.len() < 1024 {
                self.waiting.push((c, Instant::now()));
            }
        }
        let mut buf = vec![0u8; 80 * 1024];
        self.waiting.retain(|(c, since)| {
            // SAFETY: recv into our buffer, at most its length, never waiting.
            let n = unsafe {
                libc::recv(
                    c.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                out.push(buf[..n as usize].to_vec());
                return false;
            }
            // Nothing yet: wait a little for a slow writer, then give up on it.
            n < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
                && since.elapsed() < Duration::from_secs(2)
        });
    }
}

/// Whether a sigaudit listens on `@name` (a run still alive, in whatever pid namespace).
pub fn listening(name: &str) -> bool {
    let (addr, len) = abstract_addr(name);
    // SAFETY: plain socket calls on our own descriptor, closed when dropped.
    unsafe {
        let fd = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return true;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let r = libc::connect(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        );
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ECONNREFUSED)
    }
}

fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_un is valid.
    let mut addr = unsafe { std::mem::zeroed::<libc::sockaddr_un>() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = &name.as_bytes()[..name.len().min(addr.sun_path.len() - 1)];
    for (d, &s) in addr.sun_path[1..].iter_mut().zip(name) {
        *d = s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (addr, len as libc::socklen_t)
}

fn same_user(c: &OwnedFd) -> bool {
    // SAFETY: getsockopt writes one ucred of the given length.
    unsafe {
        let mut cred = std::mem::zeroed::<libc::ucred>();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let r = libc::getsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        );
        r == 0 && (cred.uid == libc::geteuid() || cred.uid == 0)
    }
}
