//! Configuration: the `SIGAUDIT_*` environment variables, read once at load time into one
//! [`Config`].
//!
//! Parsing is a pure function of a lookup closure, allocation-free, so that a hook running before
//! our constructor (inside another library's constructor) can parse a private copy on its stack.
//! Every bad value becomes a [`Problem`] that names the variable, the value and what was used
//! instead; the constructor reports them once (see `init.rs`). The host never stops for one.
//!
//! In secure-execution mode (`AT_SECURE`: setuid, setgid, file capabilities) nothing that names a
//! file is taken from the environment and nothing that changes the program's behaviour either:
//! output goes to stderr and the mode is `log`.

use crate::signals::{self, SigSet};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use libc::c_int;

/// What to do about an `ignore` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report it and let the change happen.
    Log,
    /// Report it and refuse it, while telling the caller it succeeded.
    Veto,
    /// Report it, then `abort()` so a core dump or debugger shows the caller.
    Abort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Longest `SIGAUDIT_OUTPUT` path we keep, as given or once made absolute: the longest path the
/// system calls take (`PATH_MAX` less its NUL). A longer one is refused (and reported).
pub const PATH_CAP: usize = 4095;
/// Longest `SIGAUDIT_SOCKET` name (an abstract Unix socket's name, without its leading `@`).
pub const SOCKET_CAP: usize = 107;

/// The longest socket path (`sun_path` holds 108 bytes with its NUL).
pub const SOCKET_PATH_CAP: usize = 107;

/// Where events go (`SIGAUDIT_OUTPUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The program's stderr.
    Stderr,
    /// A file, opened for each event (`%p` is the pid).
    File,
    /// journald's native socket (`journal[:PATH]`).
    Journal,
    /// A syslog socket, local form (`syslog[:PATH]`).
    Syslog,
    /// A syslog socket, RFC 5424 (`rfc5424[:PATH]`).
    Rfc5424,
}

impl Output {
    /// The keyword that names a socket sink, and its default socket.
    const SOCKETS: [(&'static str, Output, &'static [u8]); 3] = [
        ("journal", Output::Journal, b"/run/systemd/journal/socket"),
        ("syslog", Output::Syslog, b"/dev/log"),
        ("rfc5424", Output::Rfc5424, b"/dev/log"),
    ];

    /// The sink's own socket, for the socket sinks.
    pub fn default_socket(self) -> Option<&'static [u8]> {
        Output::SOCKETS
            .iter()
            .find(|(_, o, _)| *o == self)
            .map(|(_, _, p)| *p)
    }

    pub fn name(self) -> &'static str {
        match self {
            Output::Stderr => "stderr",
            Output::File => "file",
            Output::Journal => "journal",
            Output::Syslog => "syslog",
            Output::Rfc5424 => "rfc5424",
        }
    }
}

/// Small fields first, so that reading a configuration into the static one touches one page of
/// it (`repr(C)` keeps this order).
#[repr(C)]
pub struct Config {
    pub mode: Mode,
    pub format: Format,
    /// Signals whose being ignored is reported.
    pub watch: SigSet,
    /// Signals watched with `:any`: every change of handler or flags is reported.
    pub watch_any: SigSet,
    /// Where events go.
    pub output: Output,
    output_len: usize,
    /// A relative output file path that could not be made absolute at load: the `errno` of why.
    pub output_unanchored: Option<c_int>,
    socket_len: usize,
    /// The process runs in secure-execution mode.
    pub secure: bool,
    /// The level of the library's own diagnostics.
    pub log: log::LevelFilter,
    /// `SIGAUDIT_SOCKET`: the abstract Unix socket of the `sigaudit` command running this
    /// process tree (empty: none). Set, each process announces itself in its output file at
    /// load, and records that cannot be written there go to this socket.
    socket: [u8; SOCKET_CAP],
    /// The file's path as given (with `%p` still in it) or made absolute, or a socket's path
    /// (empty: the sink's default socket).
    output_path: [u8; PATH_CAP],
}

/// The variables, in one place: name, default, meaning. The README's table follows this list.
pub const MODE: &str = "SIGAUDIT_MODE";
pub const WATCH: &str = "SIGAUDIT_WATCH";
pub const OUTPUT: &str = "SIGAUDIT_OUTPUT";
pub const FORMAT: &str = "SIGAUDIT_FORMAT";
pub const LOG: &str = "SIGAUDIT_LOG";
pub const SOCKET: &str = "SIGAUDIT_SOCKET";

/// One bad setting: `var` had `value` (cut to fit), `reason`, so `used` applies instead.
#[derive(Clone, Copy)]
pub struct Problem {
    pub var: &'static str,
    value: [u8; 64],
    value_len: usize,
    /// True when the value was longer than what `value` keeps.
    pub value_cut: bool,
    pub reason: &'static str,
    pub used: &'static str,
}

impl Problem {
    pub fn value(&self) -> &[u8] {
        self.value.get(..self.value_len).unwrap_or(&[])
    }
}

/// The problems found while parsing, in order; more than fit are counted.
pub struct Problems {
    items: [Option<Problem>; 8],
    pub dropped: usize,
}

impl Problems {
    pub const fn new() -> Self {
        Problems {
            items: [None; 8],
            dropped: 0,
        }
    }
    fn push_problem(&mut self, p: Problem) {
        match self.items.iter_mut().find(|i| i.is_none()) {
            Some(slot) => *slot = Some(p),
            None => self.dropped += 1,
        }
    }
    fn push(&mut self, var: &'static str, value: &[u8], reason: &'static str, used: &'static str) {
        let mut p = Problem {
            var,
            value: [0; 64],
            value_len: value.len().min(64),
            value_cut: value.len() > 64,
            reason,
            used,
        };
        if let (Some(dst), Some(src)) = (p.value.get_mut(..p.value_len), value.get(..p.value_len)) {
            dst.copy_from_slice(src);
        }
        self.push_problem(p);
    }
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter().flatten()
    }
}

impl Default for Problems {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// The configuration with no variable set.
    pub const fn default_config() -> Config {
        Config {
            mode: Mode::Log,
            format: Format::Text,
            watch: SigSet(1 << (libc::SIGCHLD - 1)),
            watch_any: SigSet(0),
            output: Output::Stderr,
            output_len: 0,
            output_unanchored: None,
            socket_len: 0,
            secure: false,
            log: log::LevelFilter::Warn,
            socket: [0; SOCKET_CAP],
            output_path: [0; PATH_CAP],
        }
    }

    /// Makes a relative output path (a file's or a socket's) absolute against `cwd` (the folder
    /// the program started in), so that a later `chdir` by the program does not move the report.
    /// For a file, when `cwd` is an error (the folder is gone, or its path is too long to be
    /// read) or the result would not fit, notes that it could not be done, so that events say so
    /// and go to stderr instead of following the program wherever it moves; a socket path is kept
    /// as it is then.
    pub fn anchor_output(&mut self, cwd: Result<&[u8], c_int>) {
        let path = self.given_path();
        if path.is_empty() || path.first() == Some(&b'/') || self.output_unanchored.is_some() {
            return;
        }
        let file = self.output == Output::File;
        let cwd = match cwd {
            Ok(cwd) if cwd.first() == Some(&b'/') => cwd,
            Ok(_) | Err(_) if !file => return,
            Ok(_) => {
                self.output_unanchored = Some(libc::ENOENT);
                return;
            }
            Err(e) => {
                self.output_unanchored = Some(e);
                return;
            }
        };
        // A trailing slash of the root folder is not doubled.
        let cwd = if cwd == b"/" { &b""[..] } else { cwd };
        let total = cwd.len() + 1 + path.len();
        let cap = if file { PATH_CAP } else { SOCKET_PATH_CAP };
        if total > cap {
            if file {
                self.output_unanchored = Some(libc::ENAMETOOLONG);
            }
            return;
        }
        self.output_path
            .copy_within(..self.output_len, cwd.len() + 1);
        if let Some(dst) = self.output_path.get_mut(..cwd.len()) {
            dst.copy_from_slice(cwd);
        }
        if let Some(slash) = self.output_path.get_mut(cwd.len()) {
            *slash = b'/';
        }
        self.output_len = total;
    }

    /// The name of the command's abstract socket (without `@`), or `None`.
    pub fn socket(&self) -> Option<&[u8]> {
        match self.socket_len {
            0 => None,
            n => self.socket.get(..n),
        }
    }

    /// `SIGAUDIT_LOG=trace`: each event also says what it cost (its stack, its time).
    pub fn trace(&self) -> bool {
        self.log == log::LevelFilter::Trace
    }

    /// The path given with `SIGAUDIT_OUTPUT` (a file template or a socket), empty when none.
    pub fn given_path(&self) -> &[u8] {
        self.output_path.get(..self.output_len).unwrap_or(&[])
    }

    /// The output file's path template, or `None` when events do not go to a file.
    pub fn output_path(&self) -> Option<&[u8]> {
        match self.output {
            Output::File => Some(self.given_path()),
            _ => None,
        }
    }

    /// For the socket sinks: which, and the socket's path.
    pub fn output_socket(&self) -> Option<(Output, &[u8])> {
        let default = self.output.default_socket()?;
        match self.given_path() {
            [] => Some((self.output, default)),
            path => Some((self.output, path)),
        }
    }

    /// Whether `signo` is watched at all.
    #[inline(always)]
    pub fn watches(&self, signo: c_int) -> bool {
        self.watch.contains(signo)
    }

    /// Reads the variables through `lookup` (which returns a variable's bytes, or `None` when it
    /// is unset). `secure` is the process's `AT_SECURE`.
    pub fn parse<'e>(
        lookup: impl Fn(&str) -> Option<&'e [u8]>,
        secure: bool,
        problems: &mut Problems,
    ) -> Config {
        let mut c = Config::default_config();
        c.read(lookup, secure, problems);
        c
    }

    /// Reads the variables into `self` (a default configuration), in place.
    fn read<'e>(
        &mut self,
        lookup: impl Fn(&str) -> Option<&'e [u8]>,
        secure: bool,
        problems: &mut Problems,
    ) {
        let c = self;
        c.secure = secure;

        if let Some(v) = lookup(MODE) {
            let mode = match_word(
                v,
                &[
                    ("log", Mode::Log),
                    ("veto", Mode::Veto),
                    ("abort", Mode::Abort),
                ],
            );
            match mode {
                None => problems.push(MODE, v, "is not log, veto or abort", "log"),
                Some(m) if m != Mode::Log && secure => problems.push(
                    MODE,
                    v,
                    "is not taken in a setuid/setgid/capability (secure-execution) process",
                    "log",
                ),
                Some(m) => c.mode = m,
            }
        }

        if let Some(v) = lookup(FORMAT) {
            match match_word(v, &[("text", Format::Text), ("json", Format::Json)]) {
                Some(f) => c.format = f,
                None => problems.push(FORMAT, v, "is not text or json", "text"),
            }
        }

        if let Some(v) = lookup(OUTPUT) {
            c.parse_output(v, secure, problems);
        }

        if let Some(v) = lookup(SOCKET) {
            let name = v.strip_prefix(b"@");
            match name {
                _ if secure => problems.push(
                    SOCKET,
                    v,
                    "names a destination, which is never used in a setuid/setgid/capability (secure-execution) process",
                    "none",
                ),
                Some(n) if !n.is_empty() && n.len() <= SOCKET_CAP && !n.contains(&0) => {
                    if let Some(dst) = c.socket.get_mut(..n.len()) {
                        dst.copy_from_slice(n);
                        c.socket_len = n.len();
                    }
                }
                _ => problems.push(
                    SOCKET,
                    v,
                    "is not @NAME (an abstract Unix socket, at most 107 bytes)",
                    "none",
                ),
            }
        }

        if let Some(v) = lookup(WATCH) {
            c.parse_watch(v, problems, secure);
        }

        if let Some(v) = lookup(LOG) {
            // A level: env_logger's richer filter syntax is not needed for one crate, and a typo
            // in it would be taken silently as a module name.
            let level = match_word(
                v,
                &[
                    ("off", log::LevelFilter::Off),
                    ("error", log::LevelFilter::Error),
                    ("warn", log::LevelFilter::Warn),
                    ("info", log::LevelFilter::Info),
                    ("debug", log::LevelFilter::Debug),
                    ("trace", log::LevelFilter::Trace),
                ],
            );
            match level {
                Some(l) => c.log = l,
                None => problems.push(
                    LOG,
                    v,
                    "is not off, error, warn, info, debug or trace",
                    "warn",
                ),
            }
        }
    }

    fn parse_output(&mut self, v: &[u8], secure: bool, problems: &mut Problems) {
        if v.is_empty() {
            problems.push(OUTPUT, v, "is empty", "stderr");
            return;
        }
        if v.eq_ignore_ascii_case(b"stderr") {
            return;
        }
        // A socket sink: its keyword alone, or with a path after a colon.
        for (word, output, _) in Output::SOCKETS {
            let word = word.as_bytes();
            let Some(head) = v.get(..word.len()) else {
                continue;
            };
            let rest = v.get(word.len()..).unwrap_or(&[]);
            if !head.eq_ignore_ascii_case(word) || rest.first().is_some_and(|&c| c != b':') {
                continue;
            }
            self.output = output;
            let path = rest.get(1..).unwrap_or(&[]);
            if rest.is_empty() {
                return;
            }
            let default = match output {
                Output::Journal => "journald's own socket",
                _ => "/dev/log",
            };
            let problem = if path.is_empty() {
                Some("has no socket path after the colon")
            } else if secure {
                Some(
                    "names a socket, which is never taken from the environment in a setuid/setgid/capability (secure-execution) process",
                )
            } else if path.len() > SOCKET_PATH_CAP {
                Some("names a socket path longer than 107 bytes, the most a socket address holds")
            } else if path.contains(&0) {
                Some("contains a NUL byte")
            } else {
                None
            };
            match problem {
                Some(reason) => problems.push(OUTPUT, v, reason, default),
                None => self.set_path(path),
            }
            return;
        }
        if secure {
            problems.push(
                OUTPUT,
                v,
                "names a file, which is never opened in a setuid/setgid/capability (secure-execution) process",
                "stderr",
            );
        } else if v.len() > PATH_CAP {
            problems.push(OUTPUT, v, "is longer than 4095 bytes", "stderr");
        } else if v.contains(&0) {
            problems.push(OUTPUT, v, "contains a NUL byte", "stderr");
        } else {
            self.output = Output::File;
            self.set_path(v);
        }
    }

    fn set_path(&mut self, path: &[u8]) {
        if let Some(dst) = self.output_path.get_mut(..path.len()) {
            dst.copy_from_slice(path);
            self.output_len = path.len();
        }
    }

    fn parse_watch(&mut self, v: &[u8], problems: &mut Problems, secure: bool) {
        let mut watch = SigSet::default();
        let mut any = SigSet::default();
        // Bad items are reported only when the list still names a signal; when nothing is left,
        // one diagnostic says so for the whole value.
        let mut bad = Problems::new();
        for item in v.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            let (name, is_any) = match item.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let suffix = item.get(colon + 1..).unwrap_or(&[]);
                    if !suffix.eq_ignore_ascii_case(b"any") {
                        bad.push(
                            WATCH,
                            item,
                            "has a suffix other than :any",
                            "the list without this item",
                        );
                        continue;
                    }
                    (item.get(..colon).unwrap_or(&[]).trim_ascii(), true)
                }
                None => (item, false),
            };
            match signals::parse(name) {
                None => bad.push(
                    WATCH,
                    item,
                    "is not a signal name or number (1-64)",
                    "the list without this item",
                ),
                Some(libc::SIGKILL | libc::SIGSTOP) => bad.push(
                    WATCH,
                    item,
                    "can never be ignored or caught",
                    "the list without this item",
                ),
                Some(32 | 33) => bad.push(
                    WATCH,
                    item,
                    "is reserved by glibc and cannot be changed by programs",
                    "the list without this item",
                ),
                Some(signo) => {
                    watch.insert(signo);
                    // In a setuid program the unprivileged caller would learn when it changes its
                    // handlers, and where: only ignores are reported there.
                    if is_any && secure {
                        bad.push(
                            WATCH,
                            item,
                            "asks for :any, which is not taken in a setuid/setgid/capability (secure-execution) process",
                            "ignores only",
                        );
                    } else if is_any {
                        any.insert(signo);
                    }
                }
            }
        }
        if watch.is_empty() {
            problems.push(WATCH, v, "names no signal that can be watched", "CHLD");
        } else {
            for p in bad.iter() {
                problems.push_problem(*p);
            }
            problems.dropped += bad.dropped;
            self.watch = watch;
            self.watch_any = any;
        }
    }
}

/// The configuration the constructor loaded. Written once, before `READY` is set with release
/// ordering; read only after `READY` is seen with acquire ordering; never written again.
struct Loaded(UnsafeCell<MaybeUninit<Config>>);
// SAFETY: see above: a single write that happens-before every read.
unsafe impl Sync for Loaded {}
// Uninitialised, so it takes no page of the library's data until written (it is in .bss).
#[unsafe(link_section = ".data.sigaudit_load")]
static LOADED: Loaded = Loaded(UnsafeCell::new(MaybeUninit::uninit()));
#[unsafe(link_section = ".data.sigaudit_load")]
static READY: AtomicBool = AtomicBool::new(false);

/// The signals whose calls a hook must look at, as bit `signo % 64` (so signal 64 is bit 0, and
/// shares it with the invalid 0, 128, ...: those take the slow path too when 64 is watched, and
/// pass there). Every signal until the configuration is published; then the watched ones.
static LOOK_AT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Whether a call about `signo` can go straight to libc: one load and a bit test, the whole
/// of the unwatched path's decision. Before the constructor has run, never.
#[inline(always)]
pub fn unwatched(signo: c_int) -> bool {
    passes(LOOK_AT.load(Ordering::Relaxed), signo)
}

#[inline(always)]
fn passes(look_at: u64, signo: c_int) -> bool {
    (look_at >> (signo as u32 & 63)) & 1 == 0
}

/// [`LOOK_AT`] for a watch list: bit n-1 for signal n becomes bit n % 64.
fn look_at(watch: SigSet) -> u64 {
    watch.0.rotate_left(1)
}

/// The loaded configuration, or `None` before the constructor has run.
#[inline(always)]
pub fn loaded() -> Option<&'static Config> {
    if READY.load(Ordering::Acquire) {
        // SAFETY: READY is set only after the one write (see `Loaded`).
        Some(unsafe { (*LOADED.0.get()).assume_init_ref() })
    } else {
        None
    }
}

/// Reads the configuration from the environment straight into the one every later hook will
/// use, before publishing it ([`publish`]): a `Config` holds a path of up to 4 KiB, and copies of
/// it on the constructor's stack would stay resident in every process. Constructor only, once;
/// `None` if it was already published.
pub fn load_from_process_env(problems: &mut Problems) -> Option<&'static Config> {
    if READY.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: the constructor runs once, and no reader looks before READY is set.
    let cfg = unsafe { (*LOADED.0.get()).write(Config::default_config()) };
    let vars = process_vars();
    cfg.read(|name| lookup(&vars, name), secure_execution(), problems);
    if needs_anchoring(cfg) {
        anchor_relative_output(cfg);
    }
    Some(cfg)
}

/// Makes the configuration read by [`load_from_process_env`] the one hooks see.
pub fn publish() {
    if READY.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: written by `load_from_process_env`, which the constructor calls first.
    let watch = unsafe { (*LOADED.0.get()).assume_init_ref() }.watch;
    READY.store(true, Ordering::Release);
    LOOK_AT.store(look_at(watch), Ordering::Release);
}

/// Whether this process runs in secure-execution mode (setuid, setgid, capabilities).
pub fn secure_execution() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Reads our variables from the process environment, in one pass over it (no allocation), and
/// makes a relative output path absolute against the current folder.
pub fn from_process_env(problems: &mut Problems) -> Config {
    let vars = process_vars();
    let mut cfg = Config::parse(|name| lookup(&vars, name), secure_execution(), problems);
    if needs_anchoring(&cfg) {
        anchor_relative_output(&mut cfg);
    }
    cfg
}

fn lookup(vars: &[Option<&'static [u8]>; NAMES.len()], name: &str) -> Option<&'static [u8]> {
    let i = NAMES.iter().position(|n| *n == name)?;
    vars.get(i).copied().flatten()
}

fn needs_anchoring(cfg: &Config) -> bool {
    let path = cfg.given_path();
    !path.is_empty() && !path.starts_with(b"/")
}

/// Makes a relative `SIGAUDIT_OUTPUT` path (a file's or a socket's) absolute against the working
/// directory, now (at load). Only a relative path asks for the working directory. Out of line,
/// so that its 4 KiB buffer is not in its caller's frame: the pages of a frame are touched
/// (stack probes), and would stay resident in every process.
#[inline(never)]
fn anchor_relative_output(cfg: &mut Config) {
    let mut cwd = [0u8; PATH_CAP + 1];
    cfg.anchor_output(crate::sys::getcwd(&mut cwd));
}

/// Every variable, in [`process_vars`]'s order.
const NAMES: [&str; 6] = [MODE, WATCH, OUTPUT, FORMAT, LOG, SOCKET];

/// The values of [`NAMES`] in the environment (the first of each, as `getenv` finds it).
fn process_vars() -> [Option<&'static [u8]>; NAMES.len()] {
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }
    let mut found = [None; NAMES.len()];
    const PREFIX: &[u8] = b"SIGAUDIT_";
    // SAFETY: `environ` is libc's; read once, as getenv does.
    let mut p = unsafe { environ };
    if p.is_null() {
        return found;
    }
    for _ in 0..1 << 20 {
        // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings.
        let e = unsafe { *p } as *const u8;
        if e.is_null() {
            break;
        }
        // SAFETY: as above; each entry is read no further than its NUL (a mismatch stops the
        // comparison before it).
        unsafe {
            p = p.add(1);
            if (0..PREFIX.len()).all(|i| *e.add(i) == PREFIX[i]) {
                let entry = crate::objects::cstr(e as *const libc::c_char, 1 << 20);
                let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let (name, value) = (&entry[..eq], &entry[eq + 1..]);
                if let Some(i) = NAMES.iter().position(|n| n.as_bytes() == name) {
                    found[i].get_or_insert(value);
                }
            }
        }
    }
    found
}

/// Case-insensitive match of a whole word, surrounding blanks ignored.
fn match_word<T: Copy>(v: &[u8], words: &[(&str, T)]) -> Option<T> {
    let v = v.trim_ascii();
    words
        .iter()
        .find(|(w, _)| w.as_bytes().eq_ignore_ascii_case(v))
        .map(|&(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &[u8])], secure: bool) -> (Config, Vec<String>) {
        let mut problems = Problems::new();
        let c = Config::parse(
            |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            secure,
            &mut problems,
        );
        let said = problems
            .iter()
            .map(|p| {
                format!(
                    "{}={} {}; using {}",
                    p.var,
                    String::from_utf8_lossy(p.value()),
                    p.reason,
                    p.used
                )
            })
            .collect();
        (c, said)
    }

    #[test]
    fn relative_output_is_anchored_at_load() {
        let (mut c, _) = parse(&[(OUTPUT, b"out/%p.log")], false);
        c.anchor_output(Ok(b"/srv/app"));
        assert_eq!(c.output_path(), Some(&b"/srv/app/out/%p.log"[..]));
        c.anchor_output(Ok(b"/elsewhere"));
        assert_eq!(c.output_path(), Some(&b"/srv/app/out/%p.log"[..]));
    }

    /// See: a relative output was silently left relative when the start folder's path was
    /// longer than 1,024 bytes, and followed the program's `chdir`.
    #[test]
    fn a_relative_output_that_cannot_be_anchored_says_why() {
        let long = vec![b'd'; 4090];
        let mut cwd = b"/".to_vec();
        cwd.extend_from_slice(&long);
        let (mut c, _) = parse(&[(OUTPUT, b"events.%p.jsonl")], false);
        c.anchor_output(Ok(&cwd));
        assert_eq!(c.output_unanchored, Some(libc::ENAMETOOLONG));
        let (mut c, _) = parse(&[(OUTPUT, b"events.%p.jsonl")], false);
        c.anchor_output(Err(libc::ERANGE));
        assert_eq!(c.output_unanchored, Some(libc::ERANGE));
        // 3,000 bytes of folder are fine now.
        let (mut c, _) = parse(&[(OUTPUT, b"e.log")], false);
        c.anchor_output(Ok(&cwd[..3000]));
        assert_eq!(c.output_path().map(<[u8]>::len), Some(3006));
    }

    #[test]
    fn the_command_socket_is_an_abstract_name() {
        let (c, said) = parse(&[(SOCKET, b"@sigaudit-1-2")], false);
        assert!(said.is_empty());
        assert_eq!(c.socket(), Some(&b"sigaudit-1-2"[..]));
        for bad in [&b"/tmp/sock"[..], b"@", b""] {
            let (c, said) = parse(&[(SOCKET, bad)], false);
            assert_eq!(c.socket(), None);
            assert_eq!(said.len(), 1, "{said:?}");
        }
        let (c, said) = parse(&[(SOCKET, b"@x")], true);
        assert_eq!(c.socket(), None);
        assert!(said[0].contains("secure-execution"), "{said:?}");
    }

    /// See: with the library in /etc/ld.so.preload the unprivileged caller chose `:any` watches
    /// of a setuid program (`SIGAUDIT_WATCH=TERM:any`).
    #[test]
    fn secure_mode_refuses_any_watches_but_keeps_the_signal() {
        let (c, said) = parse(&[(WATCH, b"TERM:any,CHLD")], true);
        assert_eq!(
            c.watch.iter().collect::<Vec<_>>(),
            vec![libc::SIGTERM, libc::SIGCHLD]
        );
        assert!(c.watch_any.is_empty());
        assert_eq!(said.len(), 1);
        assert!(
            said[0].contains(":any") && said[0].contains("secure-execution"),
            "{said:?}"
        );
    }

    #[test]
    fn defaults() {
        let (c, said) = parse(&[], false);
        assert!(said.is_empty());
        assert_eq!(c.mode, Mode::Log);
        assert_eq!(c.format, Format::Text);
        assert_eq!(c.watch.iter().collect::<Vec<_>>(), vec![libc::SIGCHLD]);
        assert!(c.watch_any.is_empty());
        assert_eq!(c.output_path(), None);
    }

    #[test]
    fn good_values() {
        let (c, said) = parse(
            &[
                (MODE, b" Veto "),
                (FORMAT, b"JSON"),
                (OUTPUT, b"/tmp/out.%p"),
                (WATCH, b"chld, SIGPIPE:any ,10:ANY,rtmin+1"),
            ],
            false,
        );
        assert!(said.is_empty(), "{said:?}");
        assert_eq!(c.mode, Mode::Veto);
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.output_path(), Some(&b"/tmp/out.%p"[..]));
        assert_eq!(c.watch.iter().collect::<Vec<_>>(), vec![10, 13, 17, 35]);
        assert_eq!(c.watch_any.iter().collect::<Vec<_>>(), vec![10, 13]);
    }

    #[test]
    fn bad_values_are_named_with_what_is_used_instead() {
        let (c, said) = parse(
            &[
                (MODE, b"vetoo"),
                (FORMAT, b"xml"),
                (OUTPUT, b""),
                (WATCH, b"CHLD,KILL,bogus,PIPE:all,32"),
            ],
            false,
        );
        assert_eq!(c.mode, Mode::Log);
        assert_eq!(c.format, Format::Text);
        assert_eq!(c.output_path(), None);
        assert_eq!(c.watch.iter().collect::<Vec<_>>(), vec![libc::SIGCHLD]);
        assert_eq!(
            said,
            vec![
                "SIGAUDIT_MODE=vetoo is not log, veto or abort; using log",
                "SIGAUDIT_FORMAT=xml is not text or json; using text",
                "SIGAUDIT_OUTPUT= is empty; using stderr",
                "SIGAUDIT_WATCH=KILL can never be ignored or caught; using the list without this item",
                "SIGAUDIT_WATCH=bogus is not a signal name or number (1-64); using the list without this item",
                "SIGAUDIT_WATCH=PIPE:all has a suffix other than :any; using the list without this item",
                "SIGAUDIT_WATCH=32 is reserved by glibc and cannot be changed by programs; using the list without this item",
            ]
        );
    }

    #[test]
    fn socket_outputs() {
        for (v, output, socket) in [
            (
                &b"journal"[..],
                Output::Journal,
                &b"/run/systemd/journal/socket"[..],
            ),
            (b"Journal:/tmp/j/socket", Output::Journal, b"/tmp/j/socket"),
            (b"syslog", Output::Syslog, b"/dev/log"),
            (b"syslog:/run/test/log", Output::Syslog, b"/run/test/log"),
            (b"rfc5424", Output::Rfc5424, b"/dev/log"),
            (b"RFC5424:/srv/log", Output::Rfc5424, b"/srv/log"),
        ] {
            let (c, said) = parse(&[(OUTPUT, v)], false);
            assert!(said.is_empty(), "{said:?}");
            assert_eq!(c.output, output);
            assert_eq!(c.output_socket(), Some((output, socket)));
            assert_eq!(c.output_path(), None, "not a file");
        }
        // Words that only start like a keyword are files.
        for v in [&b"journals"[..], b"syslog.txt", b"./journal"] {
            let (c, _) = parse(&[(OUTPUT, v)], false);
            assert_eq!((c.output, c.output_path()), (Output::File, Some(v)));
        }
        // A relative socket path is anchored where the program started, if it still fits.
        let (mut c, _) = parse(&[(OUTPUT, b"journal:run/socket")], false);
        c.anchor_output(Ok(b"/srv/app"));
        assert_eq!(
            c.output_socket(),
            Some((Output::Journal, &b"/srv/app/run/socket"[..]))
        );
        let (mut c, _) = parse(&[(OUTPUT, b"syslog:log")], false);
        c.anchor_output(Ok(&[b'd'; 200]));
        assert_eq!(c.output_socket(), Some((Output::Syslog, &b"log"[..])));
    }

    #[test]
    fn bad_socket_outputs_keep_the_sink_with_its_own_socket() {
        let long = [&b"syslog:/"[..], &[b'x'; 120]].concat();
        for (v, secure, reason) in [
            (
                &b"journal:"[..],
                false,
                "has no socket path after the colon; using journald's own socket",
            ),
            (
                b"journal:/tmp/s",
                true,
                "names a socket, which is never taken from the environment in a setuid/setgid/capability (secure-execution) process; using journald's own socket",
            ),
            (
                &long,
                false,
                "names a socket path longer than 107 bytes, the most a socket address holds; using /dev/log",
            ),
            (
                b"rfc5424:/a\0b",
                false,
                "contains a NUL byte; using /dev/log",
            ),
        ] {
            let (c, said) = parse(&[(OUTPUT, v)], secure);
            assert_eq!(said.len(), 1, "{said:?}");
            assert!(said[0].ends_with(reason), "{said:?}");
            let (_, socket) = c.output_socket().unwrap();
            assert!(socket == b"/dev/log" || socket == b"/run/systemd/journal/socket");
        }
        // The sinks' own sockets are fine in secure-execution mode: they name nothing the
        // caller chose.
        let (c, said) = parse(&[(OUTPUT, b"journal")], true);
        assert!(said.is_empty());
        assert_eq!(c.output, Output::Journal);
    }

    #[test]
    fn log_levels() {
        let (c, said) = parse(&[(LOG, b" Debug ")], false);
        assert!(said.is_empty());
        assert_eq!(c.log, log::LevelFilter::Debug);
        let (c, said) = parse(&[(LOG, b"loud")], false);
        assert_eq!(c.log, log::LevelFilter::Warn);
        assert_eq!(
            said,
            vec!["SIGAUDIT_LOG=loud is not off, error, warn, info, debug or trace; using warn"]
        );
    }

    #[test]
    fn reads_the_process_environment_in_one_pass() {
        // The test process's own environment, as getenv sees it (nothing set by the harness).
        let vars = process_vars();
        for (name, value) in NAMES.iter().zip(vars) {
            let env = std::env::var_os(name).map(|v| v.into_encoded_bytes());
            assert_eq!(value.map(<[u8]>::to_vec), env, "{name}");
        }
    }

    #[test]
    fn only_watched_signals_take_the_slow_path() {
        let (c, _) = parse(&[(WATCH, b"CHLD,RTMAX")], false);
        let mask = look_at(c.watch);
        for signo in -70..140i32 {
            // A valid signal is looked at exactly when watched; an invalid number when it
            // shares a watched signal's bit (and libc refuses it after the slow path passes it).
            let owner = match signo.rem_euclid(64) {
                0 => 64,
                r => r,
            };
            assert_eq!(!passes(mask, signo), c.watch.contains(owner), "{signo}");
            if (1..=64).contains(&signo) {
                assert_eq!(!passes(mask, signo), c.watch.contains(signo), "{signo}");
            }
        }
        assert!(!passes(mask, libc::SIGCHLD) && !passes(mask, 64) && passes(mask, libc::SIGUSR1));
        // Before the configuration is published, every call is looked at.
        assert!((-70..140i32).all(|signo| !passes(u64::MAX, signo)));
    }

    #[test]
    fn an_empty_watch_list_falls_back_to_chld() {
        let (c, said) = parse(&[(WATCH, b" , ")], false);
        assert_eq!(c.watch.iter().collect::<Vec<_>>(), vec![libc::SIGCHLD]);
        assert_eq!(
            said,
            vec!["SIGAUDIT_WATCH= ,  names no signal that can be watched; using CHLD"]
        );
    }

    #[test]
    fn secure_mode_takes_no_file_and_no_veto() {
        let (c, said) = parse(&[(MODE, b"veto"), (OUTPUT, b"/etc/passwd")], true);
        assert_eq!(c.mode, Mode::Log);
        assert_eq!(c.output_path(), None);
        assert_eq!(said.len(), 2);
        assert!(said[1].starts_with("SIGAUDIT_OUTPUT=/etc/passwd names a file"));
    }

    #[test]
    fn huge_and_binary_values_do_not_break_parsing() {
        let huge = vec![b'x'; 100_000];
        let binary: &[u8] = b"\xff\xfe\x00CHLD";
        let (c, said) = parse(&[(OUTPUT, &huge), (WATCH, binary), (MODE, binary)], false);
        assert_eq!(c.output_path(), None);
        assert_eq!(c.watch.iter().collect::<Vec<_>>(), vec![libc::SIGCHLD]);
        // One diagnostic per variable.
        assert_eq!(said.len(), 3, "{said:?}");
    }

    /// Any bytes in any variable, set or not, secure or not: no panic, and a configuration that
    /// holds together, with one problem per bad variable (at most), each naming it.
    #[test]
    fn any_values_give_a_sane_config() {
        use crate::buf::fuzz::Rng;
        const TOKENS: &[&[u8]] = &[
            b"CHLD", b"chld", b"SIG", b"PIPE", b":any", b":ANY", b":", b",", b" ", b"\t", b"9",
            b"19", b"32", b"33", b"64", b"65", b"RTMIN+", b"RTMAX-", b"KILL", b"log", b"veto",
            b"abort", b"json", b"text", b"stderr", b"/", b"%p", b"%%", b"\x00", b"\xff",
            b"journal", b"syslog:", b"rfc5424",
        ];
        let names = NAMES;
        let mut rng = Rng::new(0x5eed_0201);
        for _ in 0..20_000 {
            let values: Vec<Option<Vec<u8>>> = names
                .iter()
                .map(|_| (rng.below(3) > 0).then(|| rng.bytes(TOKENS)))
                .collect();
            let secure = rng.below(4) == 0;
            let mut problems = Problems::new();
            let c = Config::parse(
                |n| {
                    let i = names.iter().position(|v| *v == n)?;
                    values[i].as_deref()
                },
                secure,
                &mut problems,
            );
            let watched: Vec<i32> = c.watch.iter().collect();
            assert!(!watched.is_empty());
            for s in &watched {
                assert!((1..=64).contains(s) && ![9, 19, 32, 33].contains(s), "{s}");
            }
            assert_eq!(c.watch_any.0 & !c.watch.0, 0);
            if let Some(p) = c.output_path() {
                assert!(!p.is_empty() && p.len() <= PATH_CAP && !p.contains(&0));
                assert!(!secure);
            }
            if let Some((_, socket)) = c.output_socket() {
                assert!(!socket.is_empty() && socket.len() <= SOCKET_PATH_CAP);
                assert!(!socket.contains(&0));
                assert!(!secure || c.given_path().is_empty());
            }
            if secure {
                assert_eq!(c.mode, Mode::Log);
                assert!(c.watch_any.is_empty() && c.socket().is_none());
            }
            // More than fit are counted (and said so), never lost silently.
            assert!(problems.dropped == 0 || problems.iter().count() == 8);
            for name in names {
                let n = problems.iter().filter(|p| p.var == name).count();
                // WATCH may name several bad items; the others have one value, one problem.
                assert!(name == WATCH || n <= 1, "{name}: {n}");
            }
            for p in problems.iter() {
                assert!(p.value().len() <= 64);
                assert!(!p.reason.is_empty() && !p.used.is_empty());
            }
        }
    }
}
