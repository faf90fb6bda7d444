//! Signal names and numbers, and the `sa_flags` names, for parsing `SIGAUDIT_WATCH` and for
//! reports. Linux numbering; real-time signals are named the way glibc and bash number them
//! (`SIGRTMIN` is 34: glibc keeps 32 and 33 for itself).

use crate::buf::Buf;
use libc::c_int;

/// Highest signal number on Linux.
pub const MAX_SIGNAL: c_int = 64;
/// glibc's `SIGRTMIN` (32 and 33 are reserved for its threads implementation).
pub const RTMIN: c_int = 34;

const NAMES: [(&str, c_int); 31] = [
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

/// Other spellings accepted on input.
const ALIASES: [(&str, c_int); 4] = [
    ("SIGCLD", libc::SIGCHLD),
    ("SIGIOT", libc::SIGABRT),
    ("SIGPOLL", libc::SIGIO),
    ("SIGUNUSED", libc::SIGSYS),
];

/// `sa_flags` bits worth naming. `SA_RESTORER` is glibc's own business and never shown.
pub const FLAG_NAMES: [(&str, c_int); 10] = [
    ("SA_NOCLDSTOP", libc::SA_NOCLDSTOP),
    ("SA_NOCLDWAIT", libc::SA_NOCLDWAIT),
    ("SA_SIGINFO", libc::SA_SIGINFO),
    ("SA_UNSUPPORTED", 0x400),
    ("SA_EXPOSE_TAGBITS", 0x800),
    ("SA_ONSTACK", libc::SA_ONSTACK),
    ("SA_RESTART", libc::SA_RESTART),
    ("SA_INTERRUPT", 0x2000_0000),
    ("SA_NODEFER", libc::SA_NODEFER),
    ("SA_RESETHAND", libc::SA_RESETHAND),
];

/// The bit glibc adds to every action it installs; hidden from reports and comparisons.
pub const SA_RESTORER: c_int = 0x0400_0000;

/// A set of signals 1..=64 as a bit mask (bit `n-1` is signal `n`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SigSet(pub u64);

impl SigSet {
    pub const fn contains(self, signo: c_int) -> bool {
        signo >= 1 && signo <= MAX_SIGNAL && self.0 & (1u64 << (signo - 1)) != 0
    }
    pub fn insert(&mut self, signo: c_int) {
        if (1..=MAX_SIGNAL).contains(&signo) {
            self.0 |= 1u64 << (signo - 1);
        }
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = c_int> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            let lowest = bits.trailing_zeros();
            bits &= bits.wrapping_sub(1);
            (lowest < 64).then(|| lowest as c_int + 1)
        })
    }
}

/// Writes the name of `signo` (`SIGCHLD`, `SIGRTMIN+3`, `SIG32`, or `SIG?<n>` when out of range).
pub fn write_name(b: &mut Buf, signo: c_int) {
    if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == signo) {
        b.str(name);
    } else if signo == MAX_SIGNAL {
        b.str("SIGRTMAX");
    } else if signo == RTMIN {
        b.str("SIGRTMIN");
    } else if signo > RTMIN && signo < MAX_SIGNAL {
        b.str("SIGRTMIN+").dec((signo - RTMIN) as u64);
    } else if (32..RTMIN).contains(&signo) {
        b.str("SIG").dec(signo as u64);
    } else {
        b.str("SIG?").int(signo as i64);
    }
}

/// Parses a signal given as a name (any case, with or without `SIG`), `RTMIN+n`, `RTMAX-n`, or a
/// number. Returns `None` for anything else or out of range.
pub fn parse(s: &[u8]) -> Option<c_int> {
    if s.is_empty() {
        return None;
    }
    let number = |digits: &[u8]| {
        let n = parse_small(digits)?;
        (1..=MAX_SIGNAL).contains(&n).then_some(n)
    };
    if s.iter().all(u8::is_ascii_digit) {
        return number(s);
    }
    let mut up = [0u8; 16];
    let upper = up.get_mut(..s.len())?;
    for (d, c) in upper.iter_mut().zip(s) {
        *d = c.to_ascii_uppercase();
    }
    let bare: &[u8] = upper.strip_prefix(b"SIG").unwrap_or(upper);
    if !bare.is_empty() && bare.iter().all(u8::is_ascii_digit) {
        return number(bare);
    }
    let named = |table: &[(&str, c_int)]| {
        table
            .iter()
            .find(|(name, _)| name.as_bytes().get(3..) == Some(bare))
            .map(|&(_, n)| n)
    };
    if let Some(n) = named(&NAMES).or_else(|| named(&ALIASES)) {
        return Some(n);
    }
    let rt = |prefix: &[u8], base: c_int, sign: c_int| -> Option<c_int> {
        let rest = bare.strip_prefix(prefix)?;
        let n = if rest.is_empty() {
            base
        } else {
            let digits = match rest.first() {
                Some(b'+') if sign > 0 => rest.get(1..)?,
                Some(b'-') if sign < 0 => rest.get(1..)?,
                _ => return None,
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            base + sign * parse_small(digits)?
        };
        (RTMIN..=MAX_SIGNAL).contains(&n).then_some(n)
    };
    rt(b"RTMIN", RTMIN, 1).or_else(|| rt(b"RTMAX", MAX_SIGNAL, -1))
}

/// Decimal digits to a number no larger than 9999.
fn parse_small(digits: &[u8]) -> Option<c_int> {
    if digits.len() > 4 {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |acc, d| acc * 10 + c_int::from(d - b'0')),
    )
}

/// Writes the names of the `flags` bits as a JSON array (`json`) or space-separated (`!json`).
pub fn write_flags(b: &mut Buf, flags: c_int, json: bool) {
    let mut first = true;
    if json {
        b.byte(b'[');
    }
    for (name, bit) in FLAG_NAMES {
        if flags & bit != 0 {
            if !first {
                b.str(if json { "," } else { "|" });
            }
            first = false;
            if json {
                b.json_str(name.as_bytes());
            } else {
                b.str(name);
            }
        }
    }
    let unknown = flags
        & !FLAG_NAMES
            .iter()
            .fold(SA_RESTORER, |acc, (_, bit)| acc | bit);
    if unknown != 0 {
        if !first {
            b.str(if json { "," } else { "|" });
        }
        first = false;
        if json {
            b.byte(b'"').hex(unknown as u32 as u64).byte(b'"');
        } else {
            b.hex(unknown as u32 as u64);
        }
    }
    if json {
        b.byte(b']');
    } else if first {
        b.byte(b'0');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(signo: c_int) -> String {
        let mut mem = [0u8; 32];
        let mut b = Buf::new(&mut mem);
        write_name(&mut b, signo);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn names_round_trip() {
        for signo in 1..=MAX_SIGNAL {
            let n = name(signo);
            assert_eq!(parse(n.as_bytes()), Some(signo), "{n}");
        }
        assert_eq!(name(17), "SIGCHLD");
        assert_eq!(name(34), "SIGRTMIN");
        assert_eq!(name(36), "SIGRTMIN+2");
        assert_eq!(name(64), "SIGRTMAX");
        assert_eq!(name(32), "SIG32");
        assert_eq!(name(0), "SIG?0");
    }

    #[test]
    fn parses_the_spellings_people_use() {
        for s in ["CHLD", "chld", "SIGCHLD", "sigchld", "CLD", "17"] {
            assert_eq!(parse(s.as_bytes()), Some(libc::SIGCHLD), "{s}");
        }
        assert_eq!(parse(b"RTMAX-1"), Some(63));
        assert_eq!(parse(b"SIGRTMIN+30"), Some(64));
        for bad in [
            "",
            "0",
            "65",
            "99999999999",
            "SIG",
            "CHLDX",
            "RTMIN+31",
            "RTMIN-1",
            "RTMAX+1",
            "+",
            "RTMIN+",
            "averyveryverylongname",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn flag_names() {
        let mut mem = [0u8; 128];
        let mut b = Buf::new(&mut mem);
        write_flags(
            &mut b,
            libc::SA_NOCLDWAIT | libc::SA_RESTART | SA_RESTORER | 0x100,
            true,
        );
        assert_eq!(b.as_bytes(), br#"["SA_NOCLDWAIT","SA_RESTART","0x100"]"#);
        let mut mem = [0u8; 128];
        let mut b = Buf::new(&mut mem);
        write_flags(&mut b, SA_RESTORER, false);
        assert_eq!(b.as_bytes(), b"0");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::buf::fuzz::Rng;

    const TOKENS: &[&[u8]] = &[
        b"SIG", b"sig", b"RTMIN", b"RTMAX", b"+", b"-", b"CHLD", b"0", b"1", b"9", b"64", b"65",
        b"99999", b"\xff", b" ", b":any",
    ];

    #[test]
    fn parse_never_panics_and_stays_in_range() {
        let mut rng = Rng::new(0x5eed_0101);
        for _ in 0..50_000 {
            let input = rng.bytes(TOKENS);
            if let Some(n) = parse(&input) {
                assert!((1..=MAX_SIGNAL).contains(&n), "{input:?} -> {n}");
            }
        }
    }

    #[test]
    fn every_name_written_parses_back_and_every_number_is_named() {
        for signo in -1000..1000 {
            let mut mem = [0u8; 32];
            let mut b = Buf::new(&mut mem);
            write_name(&mut b, signo);
            assert!(!b.overflowed());
            let name = b.as_bytes().to_vec();
            let back = parse(&name);
            if (1..=MAX_SIGNAL).contains(&signo) {
                assert_eq!(back, Some(signo), "{}", String::from_utf8_lossy(&name));
                assert_eq!(parse(signo.to_string().as_bytes()), Some(signo));
            } else {
                assert_eq!(back, None);
            }
        }
    }

    #[test]
    fn flags_are_valid_json_for_any_bits() {
        let mut rng = Rng::new(0x5eed_0102);
        for _ in 0..20_000 {
            let flags = rng.next() as c_int;
            let mut mem = [0u8; 512];
            let mut b = Buf::new(&mut mem);
            write_flags(&mut b, flags, true);
            assert!(!b.overflowed());
            let v: Vec<String> = serde_json::from_slice(b.as_bytes()).unwrap();
            assert!(v.len() <= FLAG_NAMES.len() + 1);
        }
    }
}
