//! The calling thread's thread state, and its frames (see the module docs for why each read is
//! safe).

use super::detect::Types;
use super::layout::{
    Attached, Frames, Holder, InterpreterFrames, Layout, OWNED_BY_C, OWNED_BY_GENERATOR,
};
use super::lines::{self, Stream};
use super::memory::{Fields, Memory, Req, plausible};
use super::strings;
use super::{PyFrame, PyStack, Reason};
use crate::peek::Cut;

/// Interpreters and thread states looked at, at most, to find this thread's.
const MAX_INTERPRETERS: usize = 8;
const MAX_THREADS: usize = 256;
/// Searches of the lists of thread states, at most, for this thread's (see `thread_state`).
const LIST_SEARCHES: usize = 4;
/// Frames visited per capture, kept or skipped, at most: stops a walk on a damaged chain.
const MAX_VISITS: usize = 4 * super::MAX_PY_FRAMES;
/// Code units in one code object, at most (a sanity bound far above real code).
const MAX_CODE_UNITS: i64 = 1 << 26;
/// Bytes of a line table, at most.
const MAX_LINE_TABLE: i64 = 1 << 24;

/// What the walk needs besides memory: the interpreter and who is asking.
pub struct Walk<'a> {
    pub layout: &'a Layout,
    pub types: &'a Types,
    pub runtime: usize,
    /// `pthread_self()` of the calling thread.
    pub me: usize,
}

/// This thread's thread state, and whether it holds the GIL (is attached).
#[derive(Debug, PartialEq, Eq)]
pub struct ThreadState {
    pub addr: usize,
    pub attached: bool,
    /// Its frame pointer field (the first frame, or 3.11 and 3.12's `cframe`), read with it.
    pub frame_field: usize,
}

impl Walk<'_> {
    /// Whether the runtime is being finalised. `_PyRuntime` is a static of the interpreter.
    pub fn finalizing<S: Memory>(&self, statics: &S) -> bool {
        statics
            .word(self.runtime + self.layout.rt_finalizing)
            .is_none_or(|t| t != 0)
    }

    /// Finds this thread's thread state. `_PyRuntime`'s own fields are read through `statics`;
    /// the rest through `checked` (another thread's state may be freed while we look), each
    /// object's fields in one read. The GIL's holder is looked at first; else every
    /// interpreter's list of thread states.
    pub fn thread_state<S: Memory, C: Memory>(
        &self,
        statics: &S,
        checked: &C,
    ) -> Option<ThreadState> {
        let l = self.layout;
        let state_word = |how: Attached| match how {
            Attached::StatusBit { offset, .. } | Attached::State { offset, .. } => offset,
        };
        let is_attached = |word: usize, how: Attached| match how {
            Attached::StatusBit { mask, .. } => word as u32 & mask != 0,
            Attached::State { value, .. } => word as u32 == value as u32,
        };
        // A thread state's `thread_id`, `next`, attached word (`next` again without one) and
        // frame pointer field, in one read.
        let attached_at = match l.holder {
            Holder::Gil { attached, .. } | Holder::Attached(attached) => Some(attached),
            Holder::Runtime { .. } => None,
        };
        let frame_at = self.frame_field();
        let thread = |ts: usize| {
            let at = attached_at.map_or(l.ts_next, state_word);
            words(checked, ts, [l.ts_thread_id, l.ts_next, at, frame_at])
        };
        let interpreters = || {
            let mut next = statics.word(self.runtime + l.rt_interpreters);
            core::iter::from_fn(move || {
                let interp = next.filter(|&i| plausible(i, 8))?;
                let gil_at = match l.holder {
                    Holder::Gil { interp_gil, .. } => interp_gil,
                    _ => l.interp_next,
                };
                let [after, threads, gil] =
                    words(checked, interp, [l.interp_next, l.interp_threads, gil_at])?;
                next = Some(after);
                Some((threads, gil))
            })
            .take(MAX_INTERPRETERS)
        };
        match l.holder {
            Holder::Runtime { tstate_current } => {
                let holder = statics.word(self.runtime + tstate_current)?;
                if let Some([id, _, _, frame]) = thread(holder).filter(|_| plausible(holder, 8))
                    && id == self.me
                {
                    return Some(ThreadState {
                        addr: holder,
                        attached: true,
                        frame_field: frame,
                    });
                }
            }
            Holder::Gil {
                locked,
                last_holder,
                attached: how,
                ..
            } => {
                for (_, gil) in interpreters() {
                    if !plausible(gil, 8) {
                        continue;
                    }
                    let Some([is_locked, holder]) = words(checked, gil, [locked, last_holder])
                    else {
                        continue;
                    };
                    if is_locked as u32 == 0 || !plausible(holder, 8) {
                        continue;
                    }
                    if let Some([id, _, word, frame]) = thread(holder)
                        && id == self.me
                        && is_attached(word, how)
                    {
                        return Some(ThreadState {
                            addr: holder,
                            attached: true,
                            frame_field: frame,
                        });
                    }
                }
            }
            Holder::Attached(_) => {}
        }
        // Not the GIL's holder (or no GIL): this thread's state in the lists, if it has one.
        // Other threads add and remove their states while we look (under a lock we do not
        // take): a state removed and freed under us can end the walk early or send it into
        // garbage, which the checked reads and `plausible` contain. Ours cannot go away while
        // we run, so a search that missed it is tried again, a bounded number of times.
        for _ in 0..LIST_SEARCHES {
            let mut visits = 0;
            for (mut ts, _) in interpreters() {
                while plausible(ts, 8) && visits < MAX_THREADS {
                    visits += 1;
                    let Some([id, next, word, frame]) = thread(ts) else {
                        break;
                    };
                    if id == self.me {
                        let attached = match l.holder {
                            Holder::Attached(how) => is_attached(word, how),
                            _ => false,
                        };
                        return Some(ThreadState {
                            addr: ts,
                            attached,
                            frame_field: frame,
                        });
                    }
                    ts = next;
                }
            }
        }
        None
    }

    /// Where a thread state points to its frames: the first frame, or the `cframe` that does.
    fn frame_field(&self) -> usize {
        match self.layout.frames {
            Frames::Objects { ts_frame, .. } => ts_frame,
            Frames::Interpreter(f) => f.ts_cframe.unwrap_or(f.current),
        }
    }

    /// Fills `stack` with the frames of the thread state `ts`, reading through `mem`.
    pub fn frames<M: Memory>(
        &self,
        mem: &M,
        ts: &ThreadState,
        stack: &mut PyStack,
    ) -> Result<(), Reason> {
        let l = self.layout;
        let mut frame = match l.frames {
            Frames::Interpreter(InterpreterFrames {
                ts_cframe: Some(_),
                current,
                ..
            }) => Some(ts.frame_field)
                .filter(|&c| plausible(c, 8))
                .and_then(|c| mem.word(c + current)),
            _ => Some(ts.frame_field),
        }
        .ok_or(Reason::Unreadable)?;
        if frame == 0 {
            return Err(Reason::NoPythonCode);
        }
        let need = self.frame_window();
        // The next frame's bytes, when they came with the last kept frame's batch.
        let mut prefetched: Option<(usize, [u8; FRAME_WINDOW])> = None;
        for _ in 0..MAX_VISITS {
            if !plausible(frame, 8) {
                break;
            }
            let mut w = match prefetched.take() {
                Some((at, w)) if at == frame => w,
                _ => {
                    let mut w = [0u8; FRAME_WINDOW];
                    if !w.get_mut(..need).is_some_and(|w| mem.read(frame, w)) {
                        break;
                    }
                    w
                }
            };
            let window = Fields(w.get(..need).unwrap_or(&[]));
            let (step, previous) = match l.frames {
                Frames::Objects {
                    back,
                    code,
                    lasti,
                    lasti_unit,
                    ..
                } => {
                    if window.word(l.ob_type) != Some(self.types.frame) {
                        break;
                    }
                    let lasti = window.i32(lasti).unwrap_or(-1);
                    let offset = (lasti >= 0).then(|| lasti as usize * lasti_unit);
                    let code = window.word(code).unwrap_or(0);
                    (
                        self.code_step(mem, code, offset),
                        window.word(back).unwrap_or(0),
                    )
                }
                Frames::Interpreter(fl) => {
                    let Some((step, previous)) = self.interpreter_frame(mem, &fl, &window) else {
                        break;
                    };
                    (step, previous)
                }
            };
            match step {
                Step::Bad => break,
                Step::Skip => {}
                Step::Keep { info, offset } => {
                    let Some(slot) = stack.frames.get_mut(stack.len) else {
                        stack.truncated = true;
                        return Ok(());
                    };
                    let next = (plausible(previous, 8)).then_some(previous);
                    let got_next = self.keep(mem, slot, &info, offset, next, &mut w[..need]);
                    if got_next {
                        prefetched = Some((previous, w));
                    }
                    stack.len += 1;
                }
            }
            if previous == 0 {
                return if stack.len == 0 {
                    Err(Reason::NoPythonCode)
                } else {
                    Ok(())
                };
            }
            frame = previous;
        }
        if stack.len == 0 {
            return Err(Reason::Unreadable);
        }
        // A chain that goes on past the bound, or a damaged caller: keep what we have, cut.
        stack.truncated = true;
        Ok(())
    }

    /// One `_PyInterpreterFrame`: what to do with it, and its caller.
    fn interpreter_frame<M: Memory>(
        &self,
        mem: &M,
        fl: &InterpreterFrames,
        f: &Fields,
    ) -> Option<(Step, usize)> {
        let previous = f.word(fl.previous)?;
        let owner = f.u8(fl.owner)?;
        if self.layout.minor >= 12 && owner >= OWNED_BY_C {
            // An entry frame pushed by C (or the interpreter's base frame): no code of its own.
            return Some((Step::Skip, previous));
        }
        let code = f.word(fl.code)? & !fl.tag_mask;
        let instr = f.word(fl.instr)?;
        let Some(info) = self.code_info(mem, code) else {
            return Some((Step::Bad, previous));
        };
        // The bytecode the instruction pointer is in: the code object's own, or in a
        // free-threaded build the frame's thread-local copy.
        let start = match fl.tlbc {
            None => code + self.layout.code.basicsize,
            Some(t) => {
                let index = f.i32(t.frame_index)?;
                let array = mem.word(code + t.code_array).filter(|&a| plausible(a, 8));
                match array {
                    Some(array) if index >= 0 => {
                        let size = mem.word(array).unwrap_or(0);
                        if index as usize >= size {
                            return Some((Step::Bad, previous));
                        }
                        mem.word(array + t.entries + 8 * index as usize)
                            .unwrap_or(code + self.layout.code.basicsize)
                    }
                    _ => code + self.layout.code.basicsize,
                }
            }
        };
        let offset = instr.wrapping_sub(start) as isize;
        // `_PyFrame_IsIncomplete`: a frame being set up has not reached its first traceable
        // instruction yet (a generator's frame is always complete).
        if owner != OWNED_BY_GENERATOR && offset < 2 * info.first_traceable as isize {
            return Some((Step::Skip, previous));
        }
        let in_code = offset >= 0 && offset < 2 * info.units as isize && offset % 2 == 0;
        let step = Step::Keep {
            info,
            offset: in_code.then_some(offset as usize),
        };
        Some((step, previous))
    }

    /// Bytes of a frame the walk reads.
    fn frame_window(&self) -> usize {
        let l = self.layout;
        match l.frames {
            Frames::Objects {
                back, code, lasti, ..
            } => (back.max(code) + 8).max(lasti + 4).max(l.ob_type + 8),
            Frames::Interpreter(fl) => (fl.previous.max(fl.code).max(fl.instr) + 8)
                .max(fl.owner + 1)
                .max(fl.tlbc.map_or(0, |t| t.frame_index + 4)),
        }
        .min(FRAME_WINDOW)
    }

    /// A frame's code before 3.11: what to do with it.
    fn code_step<M: Memory>(&self, mem: &M, code: usize, offset: Option<usize>) -> Step {
        match self.code_info(mem, code) {
            Some(info) => Step::Keep { info, offset },
            None => Step::Bad,
        }
    }

    /// Checks that `code` is a code object and reads what the walk needs of it.
    fn code_info<M: Memory>(&self, mem: &M, code: usize) -> Option<CodeInfo> {
        let l = self.layout;
        let c = &l.code;
        if !plausible(code, 8) {
            return None;
        }
        let mut w = [0u8; 256];
        let need = (l.ob_type + 16)
            .max(c.filename + 8)
            .max(c.name + 8)
            .max(c.linetable + 8)
            .max(c.firstlineno + 4)
            .max(c.first_traceable.map_or(0, |at| at + 4));
        let window = w.get_mut(..need)?;
        if !mem.read(code, window) {
            return None;
        }
        let f = Fields(window);
        if f.word(l.ob_type)? != self.types.code {
            return None;
        }
        let units = f.i64(l.ob_type + 8)?;
        let first_traceable = match c.first_traceable {
            Some(at) => f.i32(at)?,
            None => 0,
        };
        if c.first_traceable.is_some() && !(0..=MAX_CODE_UNITS).contains(&units) {
            return None;
        }
        Some(CodeInfo {
            units: units.max(0) as usize,
            first_traceable: first_traceable.max(0) as usize,
            first_line: f.i32(c.firstlineno)?,
            linetable: f.word(c.linetable)?,
            filename: f.word(c.filename)?,
            name: f.word(c.name)?,
        })
    }

    /// Writes a kept frame: its file and function names and its line, which is that of the
    /// instruction at byte `offset` (`None`: not started, or outside the bytecode), or the code's
    /// first line when the table gives none. (Seen: a timer signal landing as a 3.12 generator
    /// started, at an instruction with no line of its own, which Python also shows at the
    /// generator's first line.) The three objects, and the caller's frame `next` into
    /// `next_window`, are read in one batch: one system call for the checked reader. Returns
    /// whether `next_window` was filled.
    fn keep<M: Memory>(
        &self,
        mem: &M,
        slot: &mut PyFrame,
        info: &CodeInfo,
        offset: Option<usize>,
        next: Option<usize>,
        next_window: &mut [u8],
    ) -> bool {
        let l = self.layout;
        let (s, unicode) = (&l.str, self.types.unicode);
        let (mut file, mut name, mut table) =
            ([0u8; strings::WINDOW], [0u8; strings::WINDOW], [0u8; 320]);
        let table_header = (l.ob_type + 8).max(l.bytes_size + 8);
        let next_len = next_window.len();
        let mut reqs = [
            Req {
                addr: info.filename,
                buf: &mut file,
                need: strings::header_len(s),
                got: None,
            },
            Req {
                addr: info.name,
                buf: &mut name,
                need: strings::header_len(s),
                got: None,
            },
            Req {
                addr: info.linetable,
                buf: &mut table,
                need: table_header,
                got: None,
            },
            Req {
                addr: next.unwrap_or(0),
                buf: next_window,
                need: next_len,
                got: None,
            },
        ];
        // The line table only when there is an offset to look up; the caller's frame only when
        // there is one.
        let (line_wanted, next_wanted) = (offset.is_some(), next.is_some());
        if !line_wanted {
            reqs.swap(2, 3);
        }
        let n = 2 + usize::from(line_wanted) + usize::from(next_wanted);
        mem.read_batch(reqs.get_mut(..n).unwrap_or(&mut []));
        if !line_wanted {
            reqs.swap(2, 3);
        }
        let [f, nm, t, nx] = &reqs;
        let got_next = next_wanted && nx.got == Some(next_len);
        let copy_name = |req: &Req, obj: usize, out: &mut [u8], cut: Cut| {
            let window = req.bytes().unwrap_or(&[]);
            strings::from_window(mem, s, unicode, obj, window, out, cut)
        };
        slot.file_len = copy_name(f, info.filename, &mut slot.file, Cut::KeepEnd);
        slot.function_len = copy_name(nm, info.name, &mut slot.function, Cut::KeepStart);
        let decoded = offset.and_then(|offset| {
            let window = Fields(t.bytes()?);
            if window.word(l.ob_type)? != self.types.bytes {
                return None;
            }
            let len = window.i64(l.bytes_size)?;
            if !(0..=MAX_LINE_TABLE).contains(&len) {
                return None;
            }
            let start = window.0.get(l.bytes_data..).unwrap_or(&[]);
            let mut stream = Stream::new(mem, info.linetable + l.bytes_data, len as usize, start);
            lines::line_at(l.lines, &mut stream, info.first_line, offset)
        });
        slot.line = match decoded {
            Some(line) if line > 0 => line,
            _ => info.first_line,
        };
        got_next
    }
}

/// The pointer-sized words at offsets `at` of the object at `base`, fields of one structure,
/// read in as few reads as they fit (one read covers fields up to [`SPAN`] bytes apart). A
/// 32-bit field read this way is the low half of its word (little-endian: x86_64, aarch64).
fn words<M: Memory, const N: usize>(mem: &M, base: usize, at: [usize; N]) -> Option<[usize; N]> {
    let mut out = [0usize; N];
    let mut done = [false; N];
    while let Some(lo) = (0..N).filter(|&i| !done[i]).map(|i| at[i]).min() {
        let hi = (0..N)
            .filter(|&i| !done[i] && at[i] + 8 - lo <= SPAN)
            .map(|i| at[i] + 8)
            .max()?;
        let mut window = [0u8; SPAN];
        let window = window.get_mut(..hi - lo)?;
        if !mem.read(base.checked_add(lo)?, window) {
            return None;
        }
        let f = Fields(window);
        for i in 0..N {
            if !done[i] && at[i] >= lo && at[i] + 8 <= hi {
                out[i] = f.word(at[i] - lo)?;
                done[i] = true;
            }
        }
    }
    Some(out)
}

/// Bytes of a frame read at most (every version's fields are within its first 128).
const FRAME_WINDOW: usize = 128;

/// The widest read [`words`] makes.
const SPAN: usize = 512;

/// What the walk needs of a code object.
struct CodeInfo {
    units: usize,
    first_traceable: usize,
    first_line: i32,
    linetable: usize,
    filename: usize,
    name: usize,
}

/// What to do with one frame.
enum Step {
    /// Not a frame we can read: stop the walk.
    Bad,
    /// A frame without code of its own, or one still being set up: go on to its caller.
    Skip,
    /// A frame to keep, at the instruction at this byte offset (if it has one).
    Keep {
        info: CodeInfo,
        offset: Option<usize>,
    },
}
