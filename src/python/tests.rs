//! The walk on synthetic memory images laid out as each release's structures are, from its
//! headers (`offsetof` on the installed headers of 3.8.18 to 3.13.0, and of Debian's 3.14.10 and
//! 3.15.2, with and without `Py_GIL_DISABLED`): the 3.13+ layouts the reader makes from tables
//! must be exactly these, and the walk must find the frames in every one of them.

use super::debug_offsets::{self, known};
use super::detect::Types;
use super::layout::{
    self, Attached, Code, Frames, Holder, InterpreterFrames, Layout, OWNED_BY_C,
    OWNED_BY_GENERATOR, Tlbc,
};
use super::lines::LineTable;
use super::memory::Memory;
use super::memory::image::Image;
use super::strings::StrLayout;
use super::walk::Walk;
use super::{PyStack, Reason};

/// The header values, in the order the `offsetof` dump printed them: runtime `_finalizing`,
/// `interpreters.head`; interpreter `next`, `threads.head`, `ceval.gil`; GIL `locked`,
/// `last_holder`; thread state `next`, `thread_id`, `state`, `current_frame`; frame `previous`,
/// `f_executable`, `instr_ptr`, `owner`; code `co_firstlineno`, `co_filename`, `co_qualname`,
/// `co_linetable`, `_co_firsttraceable`, `co_code_adaptive`; `ob_type`; bytes `ob_size`,
/// `ob_sval`; str `length`, `state`, `sizeof(PyASCIIObject)`, `sizeof(PyCompactUnicodeObject)`;
/// free-threaded 3.14+: frame `tlbc_index`, code `co_tlbc`.
const HEADERS: [(u8, bool, &[usize]); 6] = [
    (
        13,
        false,
        &[
            608, 632, 7264, 7344, 16, 16, 8, 8, 152, 40, 72, 8, 0, 56, 70, 68, 112, 128, 136, 184,
            200, 8, 16, 32, 16, 32, 40, 56,
        ],
    ),
    (
        13,
        true,
        &[
            608, 632, 7264, 7344, 16, 24, 16, 8, 152, 40, 72, 8, 0, 56, 70, 84, 128, 144, 152, 200,
            216, 24, 32, 48, 32, 48, 56, 72,
        ],
    ),
    (
        14,
        false,
        &[
            784, 808, 7272, 7344, 16, 16, 8, 8, 152, 44, 72, 8, 0, 56, 74, 68, 112, 128, 136, 192,
            208, 8, 16, 32, 16, 32, 40, 56,
        ],
    ),
    (
        14,
        true,
        &[
            784, 808, 7272, 7344, 16, 24, 16, 8, 152, 44, 72, 8, 0, 56, 78, 84, 128, 144, 152, 208,
            232, 24, 32, 48, 32, 48, 56, 72, 72, 224,
        ],
    ),
    (
        15,
        false,
        &[
            912, 936, 7264, 7336, 16, 16, 8, 8, 176, 48, 72, 8, 0, 56, 74, 68, 112, 128, 136, 192,
            208, 8, 16, 32, 16, 32, 40, 56,
        ],
    ),
    (
        15,
        true,
        &[
            912, 936, 7264, 7336, 16, 24, 16, 8, 176, 48, 72, 8, 0, 56, 78, 84, 128, 144, 152, 208,
            232, 24, 32, 48, 32, 48, 56, 72, 72, 224,
        ],
    ),
];

/// The layout of 3.`minor` (free-threaded or not) as its headers give it.
fn header_layout(minor: u8, ft: bool) -> Layout {
    let v = HEADERS
        .iter()
        .find(|(m, f, _)| *m == minor && *f == ft)
        .expect("a release with headers")
        .2;
    let attached = Attached::State {
        offset: v[9],
        value: 1,
    };
    let str_bits = if ft && minor >= 14 {
        (8, 1 << 11, 1 << 12)
    } else {
        (2, 1 << 5, 1 << 6)
    };
    Layout {
        minor,
        free_threaded: ft,
        rt_finalizing: v[0],
        rt_interpreters: v[1],
        interp_next: v[2],
        interp_threads: v[3],
        ts_next: v[7],
        ts_thread_id: v[8],
        holder: if ft {
            Holder::Attached(attached)
        } else {
            Holder::Gil {
                interp_gil: v[4],
                locked: v[5],
                last_holder: v[6],
                attached,
            }
        },
        frames: Frames::Interpreter(InterpreterFrames {
            ts_cframe: None,
            current: v[10],
            previous: v[11],
            code: v[12],
            instr: v[13],
            owner: v[14],
            tag_mask: if minor >= 14 { 3 } else { 0 },
            tlbc: v.get(28).map(|&index| Tlbc {
                frame_index: index,
                code_array: v[29],
                entries: 8,
            }),
        }),
        code: Code {
            firstlineno: v[15],
            filename: v[16],
            name: v[17],
            linetable: v[18],
            first_traceable: Some(v[19]),
            basicsize: v[20],
        },
        lines: LineTable::Locations,
        ob_type: v[21],
        bytes_size: v[22],
        bytes_data: v[23],
        str: StrLayout {
            ob_type: v[21],
            length: v[24],
            state: v[25],
            ascii_data: v[26],
            compact_data: v[27],
            kind_shift: str_bits.0,
            compact_bit: str_bits.1,
            ascii_bit: str_bits.2,
        },
    }
}

/// A `_Py_DebugOffsets` as a release of `layout` would publish it: the real table of that minor
/// version with every entry the reader uses set from `layout` (which changes nothing for the
/// GIL builds, as a test checks; for the free-threaded ones it writes their values).
fn table_for(layout: &Layout, real: &[u8], version: u32) -> Vec<u8> {
    let (p, facts) = known(layout.minor).unwrap();
    let mut t = real.to_vec();
    let mut set = |at: usize, v: usize| t[at..at + 8].copy_from_slice(&(v as u64).to_ne_bytes());
    set(8, version as usize);
    set(16, usize::from(layout.free_threaded));
    set(p.finalizing, layout.rt_finalizing);
    set(p.interpreters_head, layout.rt_interpreters);
    set(p.interp_next, layout.interp_next);
    set(p.interp_threads_head, layout.interp_threads);
    if let Holder::Gil {
        interp_gil,
        locked,
        last_holder,
        ..
    } = layout.holder
    {
        // In the table the GIL's fields are offsets into the interpreter (its own `_gil`, where
        // the real table has it).
        let at = p.gil_runtime_state;
        let gil_in_interp = u64::from_ne_bytes(real[at..at + 8].try_into().unwrap()) as usize;
        set(p.ceval_gil, interp_gil);
        set(p.gil_runtime_state, gil_in_interp);
        set(p.gil_locked, gil_in_interp + locked);
        set(p.gil_holder, gil_in_interp + last_holder);
    }
    let (Holder::Gil { attached, .. } | Holder::Attached(attached)) = layout.holder else {
        panic!("3.13+ layouts have no runtime holder");
    };
    let Attached::State { offset: state, .. } = attached else {
        panic!("3.13+ layouts have a state word");
    };
    set(p.ts_status, state - facts.state_after_status);
    set(p.ts_next, layout.ts_next);
    set(p.ts_thread_id, layout.ts_thread_id);
    let Frames::Interpreter(f) = layout.frames else {
        panic!()
    };
    set(p.ts_current_frame, f.current);
    set(p.frame_previous, f.previous);
    set(p.frame_executable, f.code);
    set(p.frame_instr_ptr, f.instr);
    set(p.frame_owner, f.owner);
    set(p.code_filename, layout.code.filename);
    set(p.code_qualname, layout.code.name);
    set(p.code_linetable, layout.code.linetable);
    set(p.code_firstlineno, layout.code.firstlineno);
    set(p.code_adaptive, layout.code.basicsize);
    set(p.ob_type, layout.ob_type);
    set(p.bytes_ob_size, layout.bytes_size);
    set(p.bytes_sval, layout.bytes_data);
    set(p.str_state, layout.str.state);
    set(p.str_length, layout.str.length);
    set(p.str_ascii_size, layout.str.ascii_data);
    if let Some(at) = p.str_compact_size {
        set(at, layout.str.compact_data);
    }
    t
}

#[test]
fn the_reader_makes_each_release_s_header_layout_from_its_table() {
    for (version, real) in debug_offsets::tests::real_tables() {
        let minor = ((version >> 16) & 0xff) as u8;
        // The release's own table, untouched, gives its headers' layout.
        let want = header_layout(minor, false);
        assert_eq!(debug_offsets::layout(&real, version), Ok(want), "3.{minor}");
        assert_eq!(table_for(&want, &real, version)[..], real[..], "3.{minor}");
        // Its free-threaded build's table gives that build's layout.
        let ft = header_layout(minor, true);
        let table = table_for(&ft, &real, version);
        assert_eq!(debug_offsets::layout(&table, version), Ok(ft), "3.{minor}t");
    }
}

// ---- synthetic memory ---------------------------------------------------------------------------

const BASE: usize = 0x7f00_0000_0000;
const ME: usize = 0x7f55_5555_5000;
const OTHER_THREAD: usize = 0x7f66_6666_6000;

/// A memory image of one interpreter, built as the test goes.
struct World {
    mem: Image,
    next: usize,
    layout: Layout,
    types: Types,
    runtime: usize,
    interp: usize,
}

/// A frame to lay out: (file, function, first line, line of the instruction it is at), or an
/// entry frame of C.
#[derive(Clone, Copy)]
enum Spec {
    Python(&'static str, &'static str, i32, i32),
    /// Not yet at its first traceable instruction.
    Incomplete,
    /// A generator's frame that has not started: at offset 0, before its first traceable one.
    Generator(&'static str, &'static str, i32),
    C,
}

impl World {
    fn new(layout: Layout) -> World {
        let mut w = World {
            mem: Image::new(BASE, 1 << 20),
            next: BASE + 0x1000,
            layout,
            types: Types {
                code: 0,
                unicode: 0,
                bytes: 0,
                frame: 0,
            },
            runtime: 0,
            interp: 0,
        };
        w.types = Types {
            code: w.alloc(512),
            unicode: w.alloc(512),
            bytes: w.alloc(512),
            frame: w.alloc(512),
        };
        w.runtime = w.alloc(16 << 10);
        w.interp = w.alloc(16 << 10);
        w.mem
            .put_word(w.runtime + layout.rt_interpreters, w.interp as u64);
        w
    }

    fn alloc(&mut self, size: usize) -> usize {
        let at = self.next;
        self.next += size.div_ceil(16) * 16;
        at
    }

    fn obj(&mut self, ty: usize, size: usize) -> usize {
        let at = self.alloc(size);
        self.mem.put_word(at + self.layout.ob_type, ty as u64);
        at
    }

    fn str(&mut self, s: &str) -> usize {
        let l = self.layout.str;
        let at = self.obj(self.types.unicode, l.ascii_data + s.len() + 1);
        self.mem.put_word(at + l.length, s.len() as u64);
        self.mem.put_u32(
            at + l.state,
            l.compact_bit | l.ascii_bit | (1 << l.kind_shift),
        );
        self.mem.put(at + l.ascii_data, s.as_bytes());
        at
    }

    fn bytes(&mut self, data: &[u8]) -> usize {
        let l = self.layout;
        let at = self.obj(self.types.bytes, l.bytes_data + data.len() + 1);
        self.mem.put_word(at + l.bytes_size, data.len() as u64);
        self.mem.put(at + l.bytes_data, data);
        at
    }

    /// A code object of 16 code units whose unit 0 is on `first` and units 1 to 15 on `line`,
    /// with its first traceable instruction at unit 1 (after a RESUME's worth of set-up).
    fn code(&mut self, file: &str, name: &str, first: i32, line: i32) -> usize {
        let l = self.layout;
        let delta = line - first;
        let table = match l.lines {
            LineTable::Lnotab => vec![2, delta as u8],
            LineTable::Pairs => vec![2, 0, 30, delta as u8],
            LineTable::Locations => {
                // Kind 13 (a line delta, no columns): one unit at +0, then eight and seven at
                // `delta` (a signed varint: the magnitude shifted left, the sign in bit 0).
                let v = ((delta.unsigned_abs() as u8) << 1) | u8::from(delta < 0);
                vec![
                    0x80 | 13 << 3,
                    0,
                    0x80 | 13 << 3 | 7,
                    v,
                    0x80 | 13 << 3 | 6,
                    0,
                ]
            }
        };
        let (file, name, table) = (self.str(file), self.str(name), self.bytes(&table));
        let c = l.code;
        let code = self.obj(self.types.code, c.basicsize + 32);
        self.mem.put_word(code + l.ob_type + 8, 16);
        self.mem.put_u32(code + c.firstlineno, first as u32);
        self.mem.put_word(code + c.filename, file as u64);
        self.mem.put_word(code + c.name, name as u64);
        self.mem.put_word(code + c.linetable, table as u64);
        if let Some(at) = c.first_traceable {
            self.mem.put_u32(at + code, 1);
        }
        code
    }

    /// Lays out a thread state of `thread` whose frames are `frames`, innermost first, and links
    /// it into the interpreter's list (at its head).
    fn thread(&mut self, thread: usize, frames: &[Spec]) -> usize {
        let l = self.layout;
        let ts = self.alloc(1024);
        self.mem.put_word(ts + l.ts_thread_id, thread as u64);
        let head = self.word(self.interp + l.interp_threads);
        self.mem.put_word(ts + l.ts_next, head as u64);
        self.mem.put_word(self.interp + l.interp_threads, ts as u64);
        // Outermost first, so that each frame can point to its caller.
        let mut previous = 0usize;
        for spec in frames.iter().rev() {
            previous = self.frame(*spec, previous);
        }
        match l.frames {
            Frames::Objects { ts_frame, .. } => self.mem.put_word(ts + ts_frame, previous as u64),
            Frames::Interpreter(f) => match f.ts_cframe {
                Some(at) => {
                    let cframe = self.alloc(64);
                    self.mem.put_word(ts + at, cframe as u64);
                    self.mem.put_word(cframe + f.current, previous as u64);
                }
                None => self.mem.put_word(ts + f.current, previous as u64),
            },
        }
        ts
    }

    fn frame(&mut self, spec: Spec, previous: usize) -> usize {
        let l = self.layout;
        let (code, unit, owner) = match spec {
            Spec::Python(file, name, first, line) => (self.code(file, name, first, line), 5, 0),
            Spec::Incomplete => (self.code("/srv/app/new.py", "not_yet", 1, 1), 0, 0),
            Spec::Generator(file, name, first) => (
                self.code(file, name, first, first + 1),
                0,
                OWNED_BY_GENERATOR,
            ),
            Spec::C => (0, 0, OWNED_BY_C),
        };
        match l.frames {
            Frames::Objects {
                back,
                code: code_at,
                lasti,
                lasti_unit,
                basicsize,
                ..
            } => {
                let f = self.obj(self.types.frame, basicsize);
                self.mem.put_word(f + back, previous as u64);
                self.mem.put_word(f + code_at, code as u64);
                let lasti_value = if matches!(spec, Spec::Generator(..)) {
                    -1
                } else {
                    (unit * 2 / lasti_unit) as i32
                };
                self.mem.put_u32(f + lasti, lasti_value as u32);
                f
            }
            Frames::Interpreter(fl) => {
                let f = self.alloc(128);
                self.mem.put_word(f + fl.previous, previous as u64);
                // 3.14+: a deferred reference carries tag bits.
                let tag = if fl.tag_mask != 0 { 1 } else { 0 };
                self.mem.put_word(f + fl.code, (code | tag) as u64);
                let mut start = code + l.code.basicsize;
                if let Some(t) = fl.tlbc {
                    // The frame runs the second of two thread-local copies of the bytecode.
                    let copy = self.alloc(64);
                    let array = self.alloc(32);
                    self.mem.put_word(array, 2);
                    self.mem.put_word(array + t.entries, start as u64);
                    self.mem.put_word(array + t.entries + 8, copy as u64);
                    if code != 0 {
                        self.mem.put_word(code + t.code_array, array as u64);
                    }
                    self.mem.put_u32(f + t.frame_index, 1);
                    start = copy;
                }
                if code != 0 {
                    self.mem.put_word(f + fl.instr, (start + 2 * unit) as u64);
                }
                self.mem.put(f + fl.owner, &[owner]);
                f
            }
        }
    }

    fn word(&self, at: usize) -> usize {
        let mut b = [0u8; 8];
        assert!(super::memory::Memory::read(&self.mem, at, &mut b));
        usize::from_ne_bytes(b)
    }

    /// Makes `ts` hold the GIL (be attached).
    fn hold_gil(&mut self, ts: usize) {
        let l = self.layout;
        let mark = |w: &mut World, how: Attached| match how {
            Attached::StatusBit { offset, mask } => w.mem.put_u32(ts + offset, mask),
            Attached::State { offset, value } => w.mem.put_u32(ts + offset, value as u32),
        };
        match l.holder {
            Holder::Runtime { tstate_current } => {
                self.mem.put_word(self.runtime + tstate_current, ts as u64)
            }
            Holder::Gil {
                interp_gil,
                locked,
                last_holder,
                attached,
            } => {
                let gil = self.alloc(64);
                self.mem.put_word(self.interp + interp_gil, gil as u64);
                self.mem.put_u32(gil + locked, 1);
                self.mem.put_word(gil + last_holder, ts as u64);
                mark(self, attached);
            }
            Holder::Attached(attached) => mark(self, attached),
        }
    }

    fn walk(&self) -> Walk<'_> {
        Walk {
            layout: &self.layout,
            types: &self.types,
            runtime: self.runtime,
            me: ME,
        }
    }

    /// What `capture` would do, on this image: (frames as `file:line function`, or the reason).
    fn capture(&self) -> Result<Vec<String>, Reason> {
        let w = self.walk();
        if w.finalizing(&self.mem) {
            return Err(Reason::Finalizing);
        }
        let ts = w
            .thread_state(&self.mem, &self.mem)
            .ok_or(Reason::NoThreadState)?;
        let mut stack: Box<PyStack> = unsafe_zeroed_stack();
        w.frames(&self.mem, &ts, &mut stack)?;
        Ok(stack
            .frames()
            .iter()
            .map(|f| {
                format!(
                    "{}:{} {}",
                    String::from_utf8_lossy(f.file()),
                    f.line,
                    String::from_utf8_lossy(f.function())
                )
            })
            .collect())
    }
}

fn unsafe_zeroed_stack() -> Box<PyStack> {
    // SAFETY: all-zero bytes are a valid PyStack (integers, arrays, a `None`).
    unsafe { Box::new(core::mem::zeroed()) }
}

/// Every layout: the hand-written ones and those the reader makes from each release's table, GIL
/// and free-threaded.
fn every_layout() -> Vec<Layout> {
    let mut all: Vec<Layout> = (8..=12)
        .map(|m| *layout::hand_written(m).unwrap())
        .collect();
    for (version, real) in debug_offsets::tests::real_tables() {
        let minor = ((version >> 16) & 0xff) as u8;
        for ft in [false, true] {
            let table = table_for(&header_layout(minor, ft), &real, version);
            all.push(debug_offsets::layout(&table, version).unwrap());
        }
    }
    all
}

fn name(l: &Layout) -> String {
    format!("3.{}{}", l.minor, if l.free_threaded { "t" } else { "" })
}

const HELPER: Spec = Spec::Python("/srv/app/helper.py", "ignore", 8, 10);
const APP: Spec = Spec::Python("/srv/app/app.py", "<module>", 1, 20);

#[test]
fn the_gil_holder_s_frames_in_every_release() {
    for layout in every_layout() {
        let mut w = World::new(layout);
        // Another thread first, so that ours is not alone in the list.
        w.thread(OTHER_THREAD, &[APP]);
        let ts = w.thread(ME, &[HELPER, APP]);
        w.hold_gil(ts);
        assert_eq!(
            w.walk()
                .thread_state(&w.mem, &w.mem)
                .map(|t| (t.addr, t.attached)),
            Some((ts, true)),
            "{}",
            name(&layout)
        );
        assert_eq!(
            w.capture(),
            Ok(vec![
                "/srv/app/helper.py:10 ignore".to_string(),
                "/srv/app/app.py:20 <module>".to_string()
            ]),
            "{}",
            name(&layout)
        );
    }
}

/// The `echild` case: the thread waits without the GIL; its state is found in the list, not
/// attached (so the walk reads it through the checked reader).
#[test]
fn a_thread_without_the_gil_is_found_in_the_list() {
    for layout in every_layout() {
        let mut w = World::new(layout);
        let other = w.thread(OTHER_THREAD, &[APP]);
        w.hold_gil(other);
        let ts = w.thread(ME, &[HELPER, APP]);
        w.thread(OTHER_THREAD + 0x1000, &[]);
        assert_eq!(
            w.walk()
                .thread_state(&w.mem, &w.mem)
                .map(|t| (t.addr, t.attached)),
            Some((ts, false)),
            "{}",
            name(&layout)
        );
        assert_eq!(w.capture().map(|f| f.len()), Ok(2), "{}", name(&layout));
    }
}

/// Memory in which another thread's state cannot be read the first `fails` times it is asked
/// for: that thread removing and freeing its state while we walk the list.
struct Removing<'a> {
    inner: &'a Image,
    state: usize,
    fails: core::cell::Cell<u32>,
}

impl Memory for Removing<'_> {
    fn read(&self, addr: usize, buf: &mut [u8]) -> bool {
        if (self.state..self.state + 1024).contains(&addr) && self.fails.get() > 0 {
            self.fails.set(self.fails.get() - 1);
            return false;
        }
        self.inner.read(addr, buf)
    }
}

/// Another thread's state going away under the walk does not hide ours: the search is made
/// again; and a list that never reads right gives up, without a fault.
#[test]
fn a_state_removed_during_the_search_does_not_hide_ours() {
    for layout in every_layout() {
        let mut w = World::new(layout);
        let other = w.thread(OTHER_THREAD, &[APP]);
        w.hold_gil(other);
        let ts = w.thread(ME, &[HELPER, APP]);
        // Inserted last, so it is the head: the walk meets it before ours.
        let leaving = w.thread(OTHER_THREAD + 0x1000, &[]);
        let once = Removing {
            inner: &w.mem,
            state: leaving,
            fails: core::cell::Cell::new(1),
        };
        assert_eq!(
            w.walk().thread_state(&w.mem, &once).map(|t| t.addr),
            Some(ts),
            "{}",
            name(&layout)
        );
        let always = Removing {
            inner: &w.mem,
            state: leaving,
            fails: core::cell::Cell::new(u32::MAX),
        };
        assert_eq!(
            w.walk().thread_state(&w.mem, &always).map(|t| t.addr),
            None,
            "{}",
            name(&layout)
        );
    }
}

#[test]
fn entry_incomplete_and_unstarted_generator_frames() {
    for layout in every_layout() {
        let generator = Spec::Generator("/srv/app/gen.py", "gen", 30);
        let frames: Vec<Spec> = if layout.minor >= 12 {
            vec![HELPER, Spec::C, Spec::Incomplete, generator, APP]
        } else if layout.minor == 11 {
            vec![HELPER, Spec::Incomplete, generator, APP]
        } else {
            vec![HELPER, generator, APP]
        };
        let mut w = World::new(layout);
        let ts = w.thread(ME, &frames);
        w.hold_gil(ts);
        // Entry and incomplete frames are skipped; a generator's frame, complete by definition,
        // is shown at its first line (before 3.11: f_lasti -1, not started).
        assert_eq!(
            w.capture(),
            Ok(vec![
                "/srv/app/helper.py:10 ignore".to_string(),
                "/srv/app/gen.py:30 gen".to_string(),
                "/srv/app/app.py:20 <module>".to_string()
            ]),
            "{}",
            name(&layout)
        );
    }
}

#[test]
fn every_reason_for_no_frames() {
    for layout in every_layout() {
        let n = name(&layout);
        // No thread state for this thread.
        let mut w = World::new(layout);
        let other = w.thread(OTHER_THREAD, &[APP]);
        w.hold_gil(other);
        assert_eq!(w.capture(), Err(Reason::NoThreadState), "{n}");
        // A thread state, no Python code running (the interpreter calls from C).
        let ts = w.thread(ME, &[]);
        w.hold_gil(ts);
        assert_eq!(w.capture(), Err(Reason::NoPythonCode), "{n}");
        // Shutting down.
        let finalizing = w.runtime + layout.rt_finalizing;
        w.mem.put_word(finalizing, other as u64);
        assert_eq!(w.capture(), Err(Reason::Finalizing), "{n}");
        // A frame whose code is not a code object.
        let mut w = World::new(layout);
        let ts = w.thread(ME, &[HELPER]);
        w.hold_gil(ts);
        w.types.code += 16;
        assert_eq!(w.capture(), Err(Reason::Unreadable), "{n}");
    }
}

/// A chain that loops on itself (memory changed under a racing walk) ends at the bound.
#[test]
fn a_looping_chain_ends() {
    for layout in every_layout() {
        let mut w = World::new(layout);
        let ts = w.thread(ME, &[HELPER]);
        w.hold_gil(ts);
        // Make the only frame its own caller.
        let first = match layout.frames {
            Frames::Objects { ts_frame, back, .. } => {
                let f = w.word(ts + ts_frame);
                w.mem.put_word(f + back, f as u64);
                f
            }
            Frames::Interpreter(fl) => {
                let f = match fl.ts_cframe {
                    Some(at) => w.word(w.word(ts + at) + fl.current),
                    None => w.word(ts + fl.current),
                };
                w.mem.put_word(f + fl.previous, f as u64);
                f
            }
        };
        assert_ne!(first, 0);
        let walk = w.walk();
        let mut stack = unsafe_zeroed_stack();
        let found = walk
            .thread_state(&w.mem, &w.mem)
            .expect("this thread's state");
        assert_eq!(found.addr, ts);
        assert_eq!(walk.frames(&w.mem, &found, &mut stack), Ok(()));
        assert_eq!(stack.len, super::MAX_PY_FRAMES, "{}", name(&layout));
        assert!(stack.truncated);
    }
}
