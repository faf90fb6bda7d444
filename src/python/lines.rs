//! Line numbers from a code object's own line table, decoded here, without calling Python.
//!
//! `PyCode_Addr2Line` would do it, but from 3.11 it first consults data that tracing and
//! `sys.monitoring` allocate and free at run time (3.11's `_co_linearray`, 3.12+'s
//! `_co_monitoring->lines`): safe for the thread that holds the GIL, not for one that waits
//! without it while another thread turns tracing on. The table itself (`co_lnotab`,
//! `co_linetable`) is an immutable `bytes` object held by the code object, so decoding it is safe
//! wherever reading the code object is. Three formats, each taking a byte offset into the
//! bytecode, as `PyCode_Addr2Line` does:
//!
//! - 3.8 and 3.9, `co_lnotab`: pairs of (bytecode delta, signed line delta) from
//!   `co_firstlineno`; the line is the one reached before the bytecode passes the offset.
//! - 3.10, `co_linetable` (PEP 626): pairs of (bytecode delta, signed line delta), a line delta
//!   of -128 meaning "no line"; each pair is one address range.
//! - 3.11 to 3.15, `co_linetable` (PEP 657's location table, `Objects/locations.md`): entries of
//!   a first byte (high bit set; bits 3-6 the kind, bits 0-2 the length in code units minus one)
//!   and kind-dependent bytes after it; kinds 13 and 14 start with a signed varint line delta,
//!   10 to 12 move 0 to 2 lines, 15 has no line, the rest stay on the line.
//!
//! A test decodes tables taken from every one of these versions and compares each instruction's
//! line with what that interpreter's own `PyCode_Addr2Line` said.

use super::memory::Memory;

/// A version's line table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTable {
    /// 3.8, 3.9: `co_lnotab`.
    Lnotab,
    /// 3.10: `co_linetable`, PEP 626 pairs.
    Pairs,
    /// 3.11+: `co_linetable`, PEP 657 locations.
    Locations,
}

/// The bytes of a line table, one at a time.
pub trait Source {
    fn peek(&mut self) -> Option<u8>;
    fn next(&mut self) -> Option<u8>;
}

/// A line table in the interpreter's memory, read a chunk at a time.
pub struct Stream<'m, M: Memory> {
    mem: &'m M,
    data: usize,
    len: usize,
    pos: usize,
    buf: [u8; 256],
    buf_start: usize,
    buf_len: usize,
}

impl<'m, M: Memory> Stream<'m, M> {
    /// The `len` bytes at `data`, of which `start` holds the first ones already read.
    pub fn new(mem: &'m M, data: usize, len: usize, start: &[u8]) -> Self {
        let mut stream = Stream {
            mem,
            data,
            len,
            pos: 0,
            buf: [0; 256],
            buf_start: 0,
            buf_len: 0,
        };
        let n = start.len().min(len).min(stream.buf.len());
        if let (Some(dst), Some(src)) = (stream.buf.get_mut(..n), start.get(..n)) {
            dst.copy_from_slice(src);
            stream.buf_len = n;
        }
        stream
    }

    fn at(&mut self, pos: usize) -> Option<u8> {
        if pos >= self.len {
            return None;
        }
        if !(self.buf_start..self.buf_start + self.buf_len).contains(&pos) {
            let n = (self.len - pos).min(self.buf.len());
            let chunk = self.buf.get_mut(..n)?;
            if !self.mem.read(self.data.checked_add(pos)?, chunk) {
                return None;
            }
            self.buf_start = pos;
            self.buf_len = n;
        }
        self.buf.get(pos - self.buf_start).copied()
    }
}

impl<M: Memory> Source for Stream<'_, M> {
    fn peek(&mut self) -> Option<u8> {
        self.at(self.pos)
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.at(self.pos)?;
        self.pos += 1;
        Some(b)
    }
}

/// The line of the instruction at byte `offset` of the bytecode, given the code's first line;
/// `None` when the table gives it no line (or ends before it).
pub fn line_at(
    format: LineTable,
    table: &mut impl Source,
    first_line: i32,
    offset: usize,
) -> Option<i32> {
    match format {
        LineTable::Lnotab => Some(lnotab(table, first_line, offset)),
        LineTable::Pairs => pairs(table, first_line, offset),
        LineTable::Locations => locations(table, first_line, offset),
    }
}

fn lnotab(t: &mut impl Source, first_line: i32, offset: usize) -> i32 {
    let (mut line, mut addr) = (first_line, 0usize);
    while let (Some(da), Some(dl)) = (t.next(), t.next()) {
        addr += usize::from(da);
        if addr > offset {
            break;
        }
        line = line.wrapping_add(i32::from(dl as i8));
    }
    line
}

fn pairs(t: &mut impl Source, first_line: i32, offset: usize) -> Option<i32> {
    let (mut computed, mut end) = (first_line, 0usize);
    while let (Some(da), Some(dl)) = (t.next(), t.next()) {
        let start = end;
        end += usize::from(da);
        let line = match dl as i8 {
            -128 => None,
            d => {
                computed = computed.wrapping_add(i32::from(d));
                Some(computed)
            }
        };
        if start <= offset && offset < end {
            return line;
        }
    }
    None
}

const NO_LOCATION: u8 = 15;
const NO_COLUMNS: u8 = 13;
const LONG: u8 = 14;
const ONE_LINE0: u8 = 10;
const ONE_LINE2: u8 = 12;

fn locations(t: &mut impl Source, first_line: i32, offset: usize) -> Option<i32> {
    let (mut computed, mut end) = (first_line, 0usize);
    while let Some(head) = t.next() {
        let kind = (head >> 3) & 15;
        let units = usize::from(head & 7) + 1;
        let delta = match kind {
            NO_COLUMNS | LONG => signed_varint(t)?,
            ONE_LINE0..=ONE_LINE2 => i32::from(kind - ONE_LINE0),
            _ => 0,
        };
        computed = computed.wrapping_add(delta);
        let start = end;
        end += 2 * units;
        if start <= offset && offset < end {
            return (kind != NO_LOCATION).then_some(computed);
        }
        // The rest of this entry: up to the next byte with the high bit set.
        while t.peek().is_some_and(|b| b & 0x80 == 0) {
            t.next();
        }
    }
    None
}

/// A varint of 6-bit groups, least significant first, bit 6 meaning "more follows".
fn varint(t: &mut impl Source) -> Option<u32> {
    let mut b = t.next()?;
    let mut value = u32::from(b & 63);
    let mut shift = 0;
    while b & 64 != 0 {
        b = t.next()?;
        shift += 6;
        if shift >= 32 {
            return None;
        }
        value |= u32::from(b & 63) << shift;
    }
    Some(value)
}

/// A varint whose lowest bit is the sign.
fn signed_varint(t: &mut impl Source) -> Option<i32> {
    let v = varint(t)?;
    let magnitude = (v >> 1) as i32;
    Some(if v & 1 != 0 { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    struct Slice<'a>(&'a [u8], usize);
    impl Source for Slice<'_> {
        fn peek(&mut self) -> Option<u8> {
            self.0.get(self.1).copied()
        }
        fn next(&mut self) -> Option<u8> {
            let b = self.peek()?;
            self.1 += 1;
            Some(b)
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Line tables of real code objects from CPython 3.8 to 3.15, with the line each
    /// instruction's offset had according to that interpreter's own `PyCode_Addr2Line` (made by
    /// `linetables.py` beside this file; see there).
    #[test]
    fn decodes_every_version_as_cpython_does() {
        let data = include_str!("testdata/linetables.json");
        let mut versions = std::collections::BTreeMap::new();
        for record in data.lines().filter(|l| !l.trim().is_empty()) {
            let r: Value = serde_json::from_str(record).unwrap();
            let version = r["version"].as_str().unwrap().to_string();
            let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
            let format = match minor {
                8 | 9 => LineTable::Lnotab,
                10 => LineTable::Pairs,
                _ => LineTable::Locations,
            };
            let table = hex(r["table"].as_str().unwrap());
            let first = r["first_line"].as_i64().unwrap() as i32;
            for pair in r["lines"].as_array().unwrap() {
                let offset = pair[0].as_u64().unwrap() as usize;
                let want = pair[1].as_i64().map(|l| l as i32);
                let got = line_at(format, &mut Slice(&table, 0), first, offset);
                // PyCode_Addr2Line says -1 where there is no line; so do we, as None.
                assert_eq!(
                    got.unwrap_or(-1),
                    want.unwrap_or(-1),
                    "{version} {} at offset {offset}",
                    r["name"]
                );
            }
            *versions.entry(version).or_insert(0) += 1;
        }
        let minors: Vec<String> = versions.keys().cloned().collect();
        for minor in ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"] {
            assert!(
                minors.iter().any(|v| v.starts_with(&format!("{minor}."))),
                "no tables from {minor} in {minors:?}"
            );
        }
    }

    #[test]
    fn damaged_tables_end_the_search() {
        // A varint that never ends, a table cut in the middle of a pair.
        let endless = [0xf0, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f];
        assert_eq!(locations(&mut Slice(&endless, 0), 1, 0), None);
        assert_eq!(pairs(&mut Slice(&[6], 0), 1, 0), None);
        assert_eq!(lnotab(&mut Slice(&[6], 0), 7, 10), 7);
    }
}
