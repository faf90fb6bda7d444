//! Signal names and numbers, for checking `--watch` before any process sees it and for naming the
//! signal that ended the command. Linux numbering, spelled the way the library spells it
//! (`SIGRTMIN` is 34: glibc keeps 32 and 33 for itself).

const NAMES: [(&str, i32); 35] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
    ("UNUSED", 31),
];

const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// Parses a signal as the library does: a name in any case with or without `SIG`, `RTMIN+n`,
/// `RTMAX-n`, or a number 1-64.
pub fn parse(s: &str) -> Option<i32> {
    let up = s.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit()) {
        return bare.parse().ok().filter(|n| (1..=RTMAX).contains(n));
    }
    if let Some(&(_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
        return Some(n);
    }
    let rt = |prefix: &str, base: i32, sign: char| -> Option<i32> {
        let rest = bare.strip_prefix(prefix)?;
        let n = if rest.is_empty() {
            base
        } else {
            let digits = rest.strip_prefix(sign)?;
            if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let d: i32 = digits.parse().ok()?;
            if sign == '+' { base + d } else { base - d }
        };
        (RTMIN..=RTMAX).contains(&n).then_some(n)
    };
    rt("RTMIN", RTMIN, '+').or_else(|| rt("RTMAX", RTMAX, '-'))
}

/// The name of `signo` (`SIGTERM`, `SIGRTMIN+2`, `SIG32`).
pub fn name(signo: i32) -> String {
    if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == signo) {
        format!("SIG{name}")
    } else if signo == RTMAX {
        "SIGRTMAX".into()
    } else if signo == RTMIN {
        "SIGRTMIN".into()
    } else if signo > RTMIN && signo < RTMAX {
        format!("SIGRTMIN+{}", signo - RTMIN)
    } else {
        format!("SIG{signo}")
    }
}

/// Checks a `--watch` list the way the library would read it, so that a mistake is one usage
/// error here instead of one complaint from every audited process.
pub fn check_watch(list: &str) -> Result<(), String> {
    let mut any = false;
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (sig, suffix) = match item.split_once(':') {
            Some((sig, suffix)) => (sig.trim(), Some(suffix)),
            None => (item, None),
        };
        if suffix.is_some_and(|s| !s.eq_ignore_ascii_case("any")) {
            return Err(format!(
                "--watch: {item}: the only suffix is :any (report every change, not only ignores)"
            ));
        }
        match parse(sig) {
            None => {
                return Err(format!(
                    "--watch: {item} is not a signal name or number (1-64)"
                ));
            }
            Some(9 | 19) => return Err(format!("--watch: {item} can never be ignored or caught")),
            Some(32 | 33) => {
                return Err(format!(
                    "--watch: {item} is reserved by glibc and cannot be changed by programs"
                ));
            }
            Some(_) => any = true,
        }
    }
    if any {
        Ok(())
    } else {
        Err("--watch: the list names no signal".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("CHLD"), Some(17));
        assert_eq!(parse("sigchld"), Some(17));
        assert_eq!(parse(" cld "), Some(17));
        assert_eq!(parse("13"), Some(13));
        assert_eq!(parse("SIG13"), Some(13));
        assert_eq!(parse("rtmin+2"), Some(36));
        assert_eq!(parse("RTMAX-1"), Some(63));
        assert_eq!(parse("RTMAX+1"), None);
        assert_eq!(parse("65"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(parse("bogus"), None);
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(6), "SIGABRT");
        assert_eq!(name(36), "SIGRTMIN+2");
        assert_eq!(name(64), "SIGRTMAX");
    }

    #[test]
    fn watch_lists() {
        assert!(check_watch("CHLD").is_ok());
        assert!(check_watch("chld, PIPE:any,10:ANY").is_ok());
        assert!(check_watch("CHLD,bogus").unwrap_err().contains("bogus"));
        assert!(check_watch("PIPE:all").unwrap_err().contains(":any"));
        assert!(check_watch("KILL").unwrap_err().contains("never"));
        assert!(check_watch("32").unwrap_err().contains("glibc"));
        assert!(check_watch(" , ").is_err());
    }
}
