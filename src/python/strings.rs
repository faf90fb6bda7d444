//! A code object's names (`str` objects) copied out as UTF-8 into fixed buffers.
//!
//! Every name a code object holds is a compact `str`: a `PyASCIIObject` header (length, and a
//! state word whose bits say how wide each character is: 1, 2 or 4 bytes, and whether it is
//! ASCII), then the characters, right after the header for ASCII strings and after the longer
//! `PyCompactUnicodeObject` header for the others. The string's type pointer must be
//! `&PyUnicode_Type`, and the state must say compact, or the name is shown as `?`.
//!
//! Lone surrogates U+DC80..U+DCFF, which is how Python holds the undecodable bytes of a file name
//! (`surrogateescape`), become those bytes again, so the name is the file's real name; the event's
//! JSON writer escapes any byte that is not UTF-8. A file name that does not fit keeps its end
//! (`...` then the tail), a function name its start.

use super::memory::{Fields, Memory, plausible};
use crate::peek::{Cut, MARK};

/// Where a `str`'s parts are in one build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrLayout {
    pub ob_type: usize,
    /// `PyASCIIObject.length` (a `Py_ssize_t`) and `.state` (a 32-bit bit-field word).
    pub length: usize,
    pub state: usize,
    /// Where the characters start: `sizeof(PyASCIIObject)`, `sizeof(PyCompactUnicodeObject)`.
    pub ascii_data: usize,
    pub compact_data: usize,
    /// The state word's `kind` field (3 bits) starts at this bit; `compact` and `ascii` bits.
    pub kind_shift: u32,
    pub compact_bit: u32,
    pub ascii_bit: u32,
}

/// Characters read per name at most (a name is cut long before this).
const WINDOW_CHARS: usize = 256;

/// Bytes worth reading at a `str` in one go: its header and, where the reader may read past the
/// object, the start of its characters.
pub const WINDOW: usize = 72 + WINDOW_CHARS;

/// Bytes of a `str`'s header the walk needs (never more: a short ASCII name may end right after
/// its header).
pub fn header_len(l: &StrLayout) -> usize {
    (l.state + 4).max(l.ob_type + 8).max(l.length + 8)
}

/// Copies the `str` at `obj`, of which `window` holds the first bytes (at least
/// [`header_len`]), into `out` as UTF-8 and returns the length written: `?` if it is not a
/// compact `str` of this interpreter (`unicode_type` is `&PyUnicode_Type`).
pub fn from_window<M: Memory>(
    mem: &M,
    l: &StrLayout,
    unicode_type: usize,
    obj: usize,
    window: &[u8],
    out: &mut [u8],
    cut: Cut,
) -> usize {
    let mut copy = || -> Option<usize> {
        let head = Fields(window);
        if !plausible(obj, 8) || head.word(l.ob_type)? != unicode_type {
            return None;
        }
        let length = usize::try_from(head.i64(l.length)?).ok()?;
        let state = head.u32(l.state)?;
        let kind = ((state >> l.kind_shift) & 7) as usize;
        let ascii = state & l.ascii_bit != 0;
        if state & l.compact_bit == 0 || !matches!(kind, 1 | 2 | 4) || (ascii && kind != 1) {
            return None;
        }
        let data = if ascii { l.ascii_data } else { l.compact_data };
        // The characters to convert: all of them, or the end to keep of a long name.
        let n = length.min(WINDOW_CHARS);
        let first = match cut {
            Cut::KeepStart => 0,
            Cut::KeepEnd => length - n,
        };
        let from = data + first * kind;
        let bytes = n * kind;
        let mut chars = [0u8; 4 * WINDOW_CHARS];
        let dst = chars.get_mut(..bytes)?;
        match window.get(from..from + bytes) {
            Some(src) => dst.copy_from_slice(src),
            None => {
                if !mem.read(obj.checked_add(from)?, dst) {
                    return None;
                }
            }
        }
        let chars = chars.get(..bytes)?;
        if ascii {
            return Some(ascii_to(chars, length, cut, out));
        }
        Some(to_utf8(chars, kind, length, cut, out))
    };
    copy().unwrap_or_else(|| unknown(out))
}

fn unknown(out: &mut [u8]) -> usize {
    match out.first_mut() {
        Some(b) => {
            *b = b'?';
            1
        }
        None => 0,
    }
}

/// [`to_utf8`] for ASCII characters, which are their own UTF-8: copied as they are.
fn ascii_to(chars: &[u8], total: usize, cut: Cut, out: &mut [u8]) -> usize {
    let n = chars.len();
    if n >= total && n <= out.len() {
        if let Some(dst) = out.get_mut(..n) {
            dst.copy_from_slice(chars);
        }
        return n;
    }
    let keep = n.min(out.len().saturating_sub(MARK.len()));
    let mut w = Writer { out, len: 0 };
    match cut {
        Cut::KeepEnd => {
            w.put(MARK);
            w.put(chars.get(n - keep..).unwrap_or(&[]));
        }
        Cut::KeepStart => {
            w.put(chars.get(..keep).unwrap_or(&[]));
            w.put(MARK);
        }
    }
    w.len
}

/// Converts characters of `kind` bytes each to UTF-8 in `out`. `chars` holds the whole string of
/// `total` characters, or, when it holds fewer, its start (`KeepStart`) or end (`KeepEnd`);
/// what does not fit is cut at the other end with `...`. Returns the length written.
pub fn to_utf8(chars: &[u8], kind: usize, total: usize, cut: Cut, out: &mut [u8]) -> usize {
    let n = chars.len() / kind.max(1);
    let at = |i: usize| -> u32 {
        let p = i * kind;
        match kind {
            1 => chars.get(p).map_or(0, |&b| u32::from(b)),
            2 => chars
                .get(p..p + 2)
                .map_or(0, |b| u32::from(u16::from_ne_bytes([b[0], b[1]]))),
            _ => chars
                .get(p..p + 4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        }
    };
    let cap = out.len();
    // Does it all fit? Count the bytes, stopping as soon as it does not.
    let mut size = 0;
    for i in 0..n {
        size += encoded_len(at(i));
        if size > cap {
            break;
        }
    }
    let fits = n >= total && size <= cap;
    let room = cap.saturating_sub(MARK.len());
    let (from, to) = if fits {
        (0, n)
    } else if cut == Cut::KeepEnd {
        // The longest tail that fits beside the mark.
        let (mut from, mut used) = (n, 0);
        while from > 0 {
            let len = encoded_len(at(from - 1));
            if used + len > room {
                break;
            }
            used += len;
            from -= 1;
        }
        (from, n)
    } else {
        let (mut to, mut used) = (0, 0);
        while to < n {
            let len = encoded_len(at(to));
            if used + len > room {
                break;
            }
            used += len;
            to += 1;
        }
        (0, to)
    };
    let mut w = Writer { out, len: 0 };
    if !fits && cut == Cut::KeepEnd {
        w.put(MARK);
    }
    for i in from..to {
        let mut tmp = [0u8; 4];
        let len = encode(at(i), &mut tmp);
        w.put(tmp.get(..len).unwrap_or(&[]));
    }
    if !fits && cut == Cut::KeepStart {
        w.put(MARK);
    }
    w.len
}

/// Appends to a fixed slice, dropping what does not fit.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

/// Bytes [`encode`] writes for `cp`.
fn encoded_len(cp: u32) -> usize {
    match cp {
        0..=0x7f | 0xdc80..=0xdcff => 1,
        0x80..=0x7ff => 2,
        0x800..=0xffff => 3,
        0x1_0000..=0x10_ffff => 4,
        _ => 3,
    }
}

/// Writes `cp` as UTF-8. A `surrogateescape`d byte (U+DC80..U+DCFF) becomes that byte again;
/// any other surrogate, or a value past U+10FFFF, becomes U+FFFD.
fn encode(cp: u32, out: &mut [u8; 4]) -> usize {
    if let 0xdc80..=0xdcff = cp {
        out[0] = (cp - 0xdc00) as u8;
        return 1;
    }
    char::from_u32(cp)
        .unwrap_or(char::REPLACEMENT_CHARACTER)
        .encode_utf8(out)
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &[u32], kind: usize) -> Vec<u8> {
        s.iter()
            .flat_map(|&c| c.to_ne_bytes()[..kind].to_vec())
            .collect()
    }

    fn utf8(s: &[u32], kind: usize, cap: usize, cut: Cut) -> Vec<u8> {
        let mut out = vec![0u8; cap];
        let n = to_utf8(&chars(s, kind), kind, s.len(), cut, &mut out);
        out.truncate(n);
        out
    }

    fn cps(s: &str) -> Vec<u32> {
        s.chars().map(|c| c as u32).collect()
    }

    #[test]
    fn converts_every_kind_to_utf8() {
        assert_eq!(utf8(&cps("app.py"), 1, 64, Cut::KeepEnd), b"app.py");
        assert_eq!(
            utf8(&cps("café.py"), 1, 64, Cut::KeepEnd),
            "café.py".as_bytes()
        );
        assert_eq!(
            utf8(&cps("ünï€.py"), 2, 64, Cut::KeepEnd),
            "ünï€.py".as_bytes()
        );
        assert_eq!(
            utf8(&cps("a😀.py"), 4, 64, Cut::KeepEnd),
            "a😀.py".as_bytes()
        );
    }

    #[test]
    fn surrogateescaped_bytes_come_back_as_bytes() {
        // os.fsdecode(b"bad\xff.py") == "bad\udcff.py"
        let name = [b'b' as u32, b'a' as u32, b'd' as u32, 0xdcff, b'.' as u32];
        assert_eq!(utf8(&name, 2, 64, Cut::KeepEnd), b"bad\xff.");
        // Any other lone surrogate is not a character: U+FFFD.
        assert_eq!(utf8(&[0xd800], 2, 64, Cut::KeepEnd), "\u{fffd}".as_bytes());
    }

    #[test]
    fn long_names_keep_the_useful_end() {
        let long = cps(&format!("/srv/{}/helper.py", "x".repeat(100)));
        let file = utf8(&long, 1, 20, Cut::KeepEnd);
        assert_eq!(file, b"...xxxxxxx/helper.py");
        let func = utf8(&cps("averyveryverylongfunction"), 1, 10, Cut::KeepStart);
        assert_eq!(func, b"averyve...");
        // A multi-byte character is never split.
        let euros = utf8(&cps("€€€€€€"), 2, 10, Cut::KeepEnd);
        assert_eq!(euros, "...€€".as_bytes());
    }

    /// ASCII names take a shorter path; it must cut as the general one does.
    #[test]
    fn ascii_names_are_cut_like_any() {
        for (name, total, cap) in [
            ("/srv/app/helper.py", 18, 64),
            ("/srv/app/helper.py", 18, 10),
            ("averyveryverylongfunction", 25, 10),
            (".py", 10, 64),
        ] {
            for cut in [Cut::KeepStart, Cut::KeepEnd] {
                let (mut a, mut b) = (vec![0u8; cap], vec![0u8; cap]);
                let n = ascii_to(name.as_bytes(), total, cut, &mut a);
                let m = to_utf8(name.as_bytes(), 1, total, cut, &mut b);
                assert_eq!(a[..n], b[..m], "{name} {total} {cap} {cut:?}");
            }
        }
    }

    #[test]
    fn a_window_of_a_longer_string_is_marked_cut() {
        // Only the last 3 characters of 10 were read: they fit, but the name is still cut.
        let tail = chars(&cps(".py"), 1);
        let mut out = [0u8; 64];
        let n = to_utf8(&tail, 1, 10, Cut::KeepEnd, &mut out);
        assert_eq!(&out[..n], b"....py");
    }
}
