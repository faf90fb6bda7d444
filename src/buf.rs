//! A bounded byte writer for building output on hooked paths.
//!
//! `Buf` appends into a caller-provided slice and never allocates or panics: once the slice is
//! full, further bytes are dropped and [`Buf::overflowed`] says so. Every formatter used inside a
//! hook (decimal and hex numbers, JSON string escaping, ISO-8601 time) lives here so that the
//! event code can be written as a plain sequence of pushes.

/// Appends bytes to a fixed slice; excess bytes are dropped, and [`Buf::overflowed`] says so.
pub struct Buf<'a> {
    bytes: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> Buf<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Buf {
            bytes,
            len: 0,
            overflowed: false,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// True when something did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        self.bytes.len() - self.len
    }

    /// Bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Drops what was written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn byte(&mut self, b: u8) -> &mut Self {
        match self.bytes.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
        self
    }

    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.room());
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + n), s.get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        if n < s.len() {
            self.overflowed = true;
        }
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Unsigned decimal.
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            if let Some(slot) = tmp.get_mut(i) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        self.bytes(tmp.get(i..).unwrap_or(&[]))
    }

    /// Signed decimal.
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.byte(b'-');
        }
        self.dec(v.unsigned_abs())
    }

    /// Decimal, left-padded with zeros to `width` digits.
    pub fn dec_pad(&mut self, v: u64, width: usize) -> &mut Self {
        let mut digits = 1;
        let mut t = v / 10;
        while t > 0 {
            digits += 1;
            t /= 10;
        }
        for _ in digits..width {
            self.byte(b'0');
        }
        self.dec(v)
    }

    /// `0x`-prefixed lower-case hex.
    pub fn hex(&mut self, v: u64) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            if let Some(slot) = tmp.get_mut(i) {
                *slot = DIGITS[(v & 0xf) as usize];
            }
            v >>= 4;
            if v == 0 || i == 0 {
                break;
            }
        }
        self.str("0x");
        self.bytes(tmp.get(i..).unwrap_or(&[]))
    }

    /// A JSON string literal, quotes included. Valid UTF-8 passes through; control characters
    /// are escaped; each byte of an invalid UTF-8 sequence becomes `\u00XX` (its Latin-1
    /// reading), so the output stays valid JSON for any input bytes. A record that overflowed its
    /// buffer must be thrown away by the caller (see `report::render`), never written half-done.
    pub fn json_str(&mut self, s: &[u8]) -> &mut Self {
        self.byte(b'"');
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            let seq = utf8_len(s.get(i..).unwrap_or(&[]));
            if seq > 1 {
                self.bytes(s.get(i..i + seq).unwrap_or(&[]));
                i += seq;
                continue;
            }
            match b {
                b'"' => {
                    self.str("\\\"");
                }
                b'\\' => {
                    self.str("\\\\");
                }
                b'\n' => {
                    self.str("\\n");
                }
                b'\r' => {
                    self.str("\\r");
                }
                b'\t' => {
                    self.str("\\t");
                }
                0x20..=0x7e => {
                    self.byte(b);
                }
                _ => {
                    self.u_escape(b);
                }
            }
            i += 1;
        }
        self.byte(b'"')
    }

    fn u_escape(&mut self, b: u8) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.str("\\u00");
        self.byte(DIGITS[(b >> 4) as usize]);
        self.byte(DIGITS[(b & 0xf) as usize]);
    }

    /// Bytes for people: printable ASCII and valid UTF-8 as they are, anything else as `\xNN`.
    pub fn text(&mut self, s: &[u8]) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut i = 0;
        while i < s.len() {
            let seq = utf8_len(s.get(i..).unwrap_or(&[]));
            if seq > 1 {
                self.bytes(s.get(i..i + seq).unwrap_or(&[]));
                i += seq;
                continue;
            }
            let b = s[i];
            if (0x20..=0x7e).contains(&b) {
                self.byte(b);
            } else {
                self.str("\\x");
                self.byte(DIGITS[(b >> 4) as usize]);
                self.byte(DIGITS[(b & 0xf) as usize]);
            }
            i += 1;
        }
        self
    }

    /// UTC time as `YYYY-MM-DDThh:mm:ss.uuuuuuZ`.
    pub fn iso_time(&mut self, secs: i64, micros: u32) -> &mut Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u64;
        let (y, m, d) = civil_from_days(days);
        self.int(y)
            .byte(b'-')
            .dec_pad(m as u64, 2)
            .byte(b'-')
            .dec_pad(d as u64, 2)
            .byte(b'T')
            .dec_pad(rem / 3600, 2)
            .byte(b':')
            .dec_pad(rem / 60 % 60, 2)
            .byte(b':')
            .dec_pad(rem % 60, 2)
            .byte(b'.')
            .dec_pad(micros as u64, 6)
            .byte(b'Z')
    }
}

/// Length of the valid UTF-8 sequence at the start of `s`, or 0/1 when the first byte does not
/// start one (ASCII is 1).
fn utf8_len(s: &[u8]) -> usize {
    let Some(&b0) = s.first() else { return 0 };
    let (n, min) = match b0 {
        0x00..=0x7f => return 1,
        0xc2..=0xdf => (2, 0x80),
        0xe0..=0xef => (3, 0x800),
        0xf0..=0xf4 => (4, 0x1_0000),
        _ => return 0,
    };
    let Some(seq) = s.get(..n) else { return 0 };
    let mut cp: u32 = (b0 as u32) & (0x7f >> n);
    for &b in seq.iter().skip(1) {
        if b & 0xc0 != 0x80 {
            return 0;
        }
        cp = (cp << 6) | (b & 0x3f) as u32;
    }
    if cp < min || cp > 0x10_ffff || (0xd800..=0xdfff).contains(&cp) {
        return 0;
    }
    n
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// For `core::fmt` (the library's diagnostics): never fails; what does not fit is dropped.
impl core::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Buf)) -> String {
        let mut mem = [0u8; 256];
        let mut b = Buf::new(&mut mem);
        f(&mut b);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(
            render(|b| {
                b.dec(0);
            }),
            "0"
        );
        assert_eq!(
            render(|b| {
                b.dec(u64::MAX);
            }),
            "18446744073709551615"
        );
        assert_eq!(
            render(|b| {
                b.int(-42);
            }),
            "-42"
        );
        assert_eq!(
            render(|b| {
                b.int(i64::MIN);
            }),
            "-9223372036854775808"
        );
        assert_eq!(
            render(|b| {
                b.hex(0);
            }),
            "0x0"
        );
        assert_eq!(
            render(|b| {
                b.hex(0xdead_beef);
            }),
            "0xdeadbeef"
        );
        assert_eq!(
            render(|b| {
                b.dec_pad(7, 3);
            }),
            "007"
        );
    }

    #[test]
    fn json_escapes_anything_into_valid_json() {
        let s = render(|b| {
            b.json_str(b"a\"b\\c\n\x01\xff\xc3\xa9\xed\xa0\x80");
        });
        assert_eq!(s, r#""a\"b\\c\n\u0001\u00ffé\u00ed\u00a0\u0080""#);
    }

    #[test]
    fn text_shows_bad_bytes() {
        assert_eq!(
            render(|b| {
                b.text("ok\u{e9}".as_bytes()).text(b"\xff\n");
            }),
            "ok\u{e9}\\xff\\x0a"
        );
    }

    #[test]
    fn time() {
        assert_eq!(
            render(|b| {
                b.iso_time(0, 5);
            }),
            "1970-01-01T00:00:00.000005Z"
        );
        assert_eq!(
            render(|b| {
                b.iso_time(1_795_641_030, 123_456);
            }),
            "2026-11-25T21:10:30.123456Z"
        );
        assert_eq!(
            render(|b| {
                b.iso_time(951_782_400, 0);
            }),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}

/// A small deterministic generator of hostile inputs for the property tests of the pure parsers
/// and formatters (no extra dependency: a xorshift and a few token lists go a long way).
#[cfg(test)]
pub(crate) mod fuzz {
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed | 1)
        }
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        /// Bytes built from `tokens` and random bytes, sometimes empty, sometimes long.
        pub fn bytes(&mut self, tokens: &[&[u8]]) -> Vec<u8> {
            let len = match self.below(20) {
                0 => 0,
                1 => 200 + self.below(3000),
                _ => self.below(12),
            };
            let mut v = Vec::new();
            for _ in 0..len {
                match self.below(4) {
                    0 => v.push(self.next() as u8),
                    1 => {
                        v.extend_from_slice("é€😀".as_bytes().get(..self.below(10)).unwrap_or(b""))
                    }
                    _ => v.extend_from_slice(tokens[self.below(tokens.len())]),
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod properties {
    use super::fuzz::Rng;
    use super::*;

    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"\n",
        b"\x00",
        b"\x7f",
        b"\xc3",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"a",
        b"u00",
        b"\x1b[31m",
    ];

    #[test]
    fn json_strings_are_valid_json_for_any_bytes_and_any_room() {
        let mut rng = Rng::new(0x5eed_0001);
        for _ in 0..20_000 {
            let input = rng.bytes(TOKENS);
            let mut mem = vec![0u8; rng.below(input.len() * 7 + 8)];
            let mut b = Buf::new(&mut mem);
            b.json_str(&input);
            assert!(b.len() <= b.bytes.len());
            if b.overflowed() {
                continue;
            }
            let out = b.as_bytes();
            let decoded: String = serde_json::from_slice(out).unwrap_or_else(|e| {
                panic!("{e}: {:?} -> {:?}", input, String::from_utf8_lossy(out))
            });
            // Valid UTF-8 comes back as it was.
            if let Ok(s) = core::str::from_utf8(&input) {
                assert_eq!(decoded, s);
            }
        }
    }

    #[test]
    fn text_is_valid_utf8_for_any_bytes() {
        let mut rng = Rng::new(0x5eed_0002);
        for _ in 0..20_000 {
            let input = rng.bytes(TOKENS);
            let mut mem = vec![0u8; input.len() * 4 + 4];
            let mut b = Buf::new(&mut mem);
            b.text(&input);
            assert!(!b.overflowed());
            let out = core::str::from_utf8(b.as_bytes()).expect("valid UTF-8");
            assert!(!out.contains('\n') && !out.contains('\x1b'), "{out:?}");
        }
    }

    #[test]
    fn numbers_and_times_never_panic_and_never_overrun() {
        let mut rng = Rng::new(0x5eed_0003);
        for _ in 0..20_000 {
            let mut mem = vec![0u8; rng.below(40)];
            let mut b = Buf::new(&mut mem);
            let v = rng.next();
            b.dec(v)
                .int(v as i64)
                .hex(v)
                .dec_pad(v % 1000, rng.below(30));
            b.iso_time(v as i64 >> rng.below(64), (v % 2_000_000) as u32);
            assert!(b.len() <= b.bytes.len());
        }
    }
}
