//! One line per event, for the journal's `MESSAGE` and for syslog: what happened and the
//! culprit's place, `pid 4242 (python3) SIGCHLD ignored via sigaction(): SIG_DFL -> SIG_IGN
//! [logged] at /srv/app/helper.py:10 in <module>`; and that place as the journal's `CODE_FILE`,
//! `CODE_LINE` and `CODE_FUNC`.
//!
//! An `echild` event's culprit is its cause's, which this process recorded earlier as a JSON
//! object (the structured sinks always render causes as JSON): the few fields needed are read
//! back from it here with a small scanner, without allocating.

use super::event::{Context, Culprit, Event, Kind, Namer};
use super::journal::Code;
use super::text;
use crate::buf::Buf;

/// Where the culprit is: a script frame, or a native frame.
#[derive(Clone, Copy, Default)]
pub struct Place<'a> {
    /// The script's file, or the native frame's module.
    pub file: &'a [u8],
    pub line: Option<i64>,
    /// The function, or the native frame's symbol without its offset.
    pub function: &'a [u8],
    /// For a native frame: its offset in the module, and in the symbol when there is one.
    pub native: Option<(u64, Option<u64>)>,
}

impl<'a> Place<'a> {
    /// The culprit of an ignore or change: the innermost script frame outside the standard
    /// library, else the first native frame outside libc and the interpreter.
    #[inline(never)]
    pub fn of(ev: &Event<'a>, namer: &Namer<'a>) -> Option<Place<'a>> {
        let culprit = Culprit::of(ev, namer);
        if let Some(f) = culprit.python().next() {
            return Some(Place {
                file: f.file(),
                line: Some(f.line as i64),
                function: f.function(),
                native: None,
            });
        }
        let f = namer.frame(culprit.native?)?;
        Some(Place {
            file: f.module,
            line: None,
            function: f.symbol.map(|(name, _)| name).unwrap_or(&[]),
            native: Some((f.offset as u64, f.symbol.map(|(_, off)| off as u64))),
        })
    }

    /// The culprit recorded in a JSON cause: its first script frame, else its native frame.
    /// Names are unescaped into `mem`.
    pub fn of_cause(cause: &[u8], mem: &'a mut [u8]) -> Option<Place<'a>> {
        let (file_mem, func_mem) = mem.split_at_mut(mem.len() / 2);
        if let Some(Raw::Str(file)) = find(cause, "file") {
            let line = match find(cause, "line") {
                Some(Raw::Other(n)) => parse_int(n),
                _ => None,
            };
            let function = match find(cause, "function") {
                Some(Raw::Str(f)) => unescape(f, func_mem),
                _ => &[],
            };
            return Some(Place {
                file: unescape(file, file_mem),
                line,
                function,
                native: None,
            });
        }
        let Some(Raw::Str(module)) = find(cause, "module") else {
            return None;
        };
        let offset = match find(cause, "offset") {
            Some(Raw::Str(h)) => parse_hex(h),
            _ => None,
        }?;
        let (function, in_symbol) = match find(cause, "symbol") {
            Some(Raw::Str(s)) => {
                let plus = s.iter().rposition(|&c| c == b'+').unwrap_or(s.len());
                let name = s.get(..plus).unwrap_or(s);
                let off = s.get(plus + 1..).and_then(parse_hex);
                (unescape(name, func_mem), off)
            }
            _ => (&[][..], None),
        };
        Some(Place {
            file: unescape(module, file_mem),
            line: None,
            function,
            native: Some((offset, in_symbol)),
        })
    }

    pub fn code(&self) -> Code<'a> {
        Code {
            file: self.file,
            line: self.line,
            function: self.function,
        }
    }

    /// `FILE:LINE in FUNCTION`, or `SYMBOL+0xOFF (MODULE+0xOFFSET)`.
    fn write(&self, b: &mut Buf) {
        match self.native {
            None => {
                b.text(self.file);
                if let Some(line) = self.line {
                    b.byte(b':').int(line);
                }
                if !self.function.is_empty() {
                    b.str(" in ").text(self.function);
                }
            }
            Some((offset, in_symbol)) => {
                if !self.function.is_empty() {
                    b.text(self.function);
                    if let Some(off) = in_symbol {
                        b.byte(b'+').hex(off);
                    }
                    b.byte(b' ');
                }
                b.byte(b'(')
                    .text(self.file)
                    .byte(b'+')
                    .hex(offset)
                    .byte(b')');
            }
        }
    }
}

/// The syslog severity of an event: an `echild` (a child's exit status was lost) and an abort are
/// errors, an ignore a warning, another change information.
pub fn severity(ev: &Event) -> u8 {
    match (ev.kind, ev.outcome) {
        (Kind::Echild, _) | (_, super::Outcome::Aborted) => 3,
        (Kind::Change, _) => 6,
        _ => 4,
    }
}

/// Writes the one line (no newline): the headline, then the culprit's place or, for an `echild`,
/// the cause and its place. `place` is the culprit's (for an `echild`, its cause's).
pub fn write(b: &mut Buf, ev: &Event, ctx: &Context, place: Option<&Place>) {
    text::headline(b, ev, ctx);
    match (ev.kind, ev.cause) {
        (Kind::Echild, Some(cause)) => {
            b.str(" [").str(ev.outcome.name()).str("]; cause: ");
            write_cause(b, cause, place);
        }
        (Kind::Echild, None) => {
            b.str(" [")
                .str(ev.outcome.name())
                .str("]; cause: not seen by sigaudit");
        }
        (Kind::Inherited, _) => {}
        _ => {
            if let Some(p) = place {
                b.str(" at ");
                p.write(b);
            }
        }
    }
}

/// An `echild` event's cause in one line, from the JSON cause: `SIGCHLD ignored via sigaction()
/// in pid 4242 at /srv/app/helper.py:10 in <module>`.
pub fn write_cause(b: &mut Buf, cause: &[u8], place: Option<&Place>) {
    let signal = match find(cause, "signal") {
        Some(Raw::Str(s)) => s,
        _ => b"SIGCHLD",
    };
    b.text(signal);
    match find(cause, "event") {
        Some(Raw::Str(b"inherited")) => b.str(" inherited as ignored"),
        _ => match find(cause, "via") {
            Some(Raw::Str(via)) => b.str(" ignored via ").text(via).str("()"),
            _ => b.str(" ignored"),
        },
    };
    if let Some(Raw::Other(pid)) = find(cause, "pid") {
        b.str(" in pid ").text(pid);
    }
    if let Some(p) = place {
        b.str(" at ");
        p.write(b);
    }
}

/// A JSON value as it stands in the text.
#[derive(Debug, PartialEq, Eq)]
enum Raw<'a> {
    /// A string's contents, still escaped.
    Str(&'a [u8]),
    /// A number or literal.
    Other(&'a [u8]),
}

/// The value of the first `"key":` in `json`, at any depth. Strings are skipped whole, so their
/// contents are never taken for keys.
fn find<'a>(json: &'a [u8], key: &str) -> Option<Raw<'a>> {
    let mut i = 0;
    while i < json.len() {
        if json.get(i) != Some(&b'"') {
            i += 1;
            continue;
        }
        let end = string_end(json, i + 1)?;
        let name = json.get(i + 1..end)?;
        let mut j = end + 1;
        while json.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        if json.get(j) == Some(&b':') && name == key.as_bytes() {
            j += 1;
            while json.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 1;
            }
            if json.get(j) == Some(&b'"') {
                let end = string_end(json, j + 1)?;
                return json.get(j + 1..end).map(Raw::Str);
            }
            let rest = json.get(j..)?;
            let len = rest
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            return rest.get(..len).map(Raw::Other);
        }
        i = end + 1;
    }
    None
}

/// The index of the quote that ends the string starting at `from`.
fn string_end(json: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        match json.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
}

/// A JSON string's contents unescaped into `mem` (cut to fit). `\u00XX` becomes the byte XX, as
/// the library writes any byte that is not valid UTF-8; other code points become UTF-8.
fn unescape<'m>(s: &[u8], mem: &'m mut [u8]) -> &'m [u8] {
    let mut b = Buf::new(mem);
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        i += 1;
        if c != b'\\' {
            b.byte(c);
            continue;
        }
        let Some(&e) = s.get(i) else { break };
        i += 1;
        match e {
            b'n' => b.byte(b'\n'),
            b'r' => b.byte(b'\r'),
            b't' => b.byte(b'\t'),
            b'b' => b.byte(8),
            b'f' => b.byte(12),
            b'u' => {
                let cp = s
                    .get(i..i + 4)
                    .and_then(|h| core::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .unwrap_or(u32::from(b'?'));
                i += 4;
                if cp < 0x100 {
                    b.byte(cp as u8)
                } else {
                    let ch = char::from_u32(cp).unwrap_or('?');
                    let mut utf8 = [0u8; 4];
                    b.str(ch.encode_utf8(&mut utf8))
                }
            }
            other => b.byte(other),
        };
    }
    let len = b.len();
    mem.get(..len).unwrap_or(&[])
}

fn parse_int(s: &[u8]) -> Option<i64> {
    core::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    let s = core::str::from_utf8(s).ok()?;
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAUSE: &[u8] = br#"{"event":"ignore","time":"2026-11-25T21:39:39.785309Z","pid":14523,"via":"sigaction","signal":"SIGCHLD","python":[{"file":"/srv/a \"b\"\\c\u00ff.py","line":10,"function":"<module>"},{"file":"/srv/app.py","line":20,"function":"main"}],"native":{"addr":"0x7f","module":"/usr/lib/libpython3.11.so.1.0","offset":"0x2947b9","symbol":"PyOS_setsig+0x39"}}"#;

    #[test]
    fn the_scanner_finds_the_first_key_and_skips_strings() {
        assert_eq!(find(CAUSE, "pid"), Some(Raw::Other(b"14523")));
        assert_eq!(find(CAUSE, "via"), Some(Raw::Str(b"sigaction")));
        assert_eq!(find(CAUSE, "line"), Some(Raw::Other(b"10")));
        assert_eq!(find(CAUSE, "nothing"), None);
        // A key's name inside a string value is not a key.
        assert_eq!(
            find(br#"{"a":"\"pid\":1","pid":2}"#, "pid"),
            Some(Raw::Other(b"2"))
        );
        // Cut or broken text: nothing, no panic.
        assert_eq!(find(br#"{"pid":"unterminated"#, "pid"), None);
        assert_eq!(find(br#"{"pid":"#, "pid"), Some(Raw::Other(b"")));
    }

    #[test]
    fn a_cause_names_its_script_frame() {
        let mut mem = [0u8; 512];
        let p = Place::of_cause(CAUSE, &mut mem).unwrap();
        assert_eq!(p.file, b"/srv/a \"b\"\\c\xff.py");
        assert_eq!(p.line, Some(10));
        assert_eq!(p.function, b"<module>");
        assert_eq!(p.native, None);
        let mut out = [0u8; 256];
        let mut b = Buf::new(&mut out);
        p.write(&mut b);
        assert_eq!(b.as_bytes(), br#"/srv/a "b"\c\xff.py:10 in <module>"#);
    }

    #[test]
    fn a_cause_without_script_frames_names_its_native_frame() {
        let cause = br#"{"event":"ignore","pid":7,"via":"signal","signal":"SIGCHLD","python":[],"native":{"addr":"0x5","module":"/tmp/t/a","offset":"0x11ac","symbol":"culprit+0x13"}}"#;
        let mut mem = [0u8; 512];
        let p = Place::of_cause(cause, &mut mem).unwrap();
        assert_eq!((p.file, p.function), (&b"/tmp/t/a"[..], &b"culprit"[..]));
        assert_eq!(p.native, Some((0x11ac, Some(0x13))));
        let mut out = [0u8; 256];
        let mut b = Buf::new(&mut out);
        p.write(&mut b);
        assert_eq!(b.as_bytes(), b"culprit+0x13 (/tmp/t/a+0x11ac)");
        let none = br#"{"event":"inherited","pid":7,"python":[],"native":null}"#;
        assert!(Place::of_cause(none, &mut mem).is_none());
    }

    #[test]
    fn unescaping_cuts_to_fit() {
        let mut mem = [0u8; 4];
        assert_eq!(unescape(br"ab\ncdef", &mut mem), b"ab\nc");
        let mut mem = [0u8; 16];
        assert_eq!(
            unescape(br"\u00e9\u20ac\u12", &mut mem),
            b"\xe9\xe2\x82\xac?"
        );
    }
}
