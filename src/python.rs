//! Python frames for events raised from CPython code, read straight from the interpreter's memory.
//!
//! # How it works
//!
//! The constructor ([`init`]) asks the dynamic loader, once, whether this process runs CPython:
//! it looks up the exported `Py_Version` (3.11 and later export it) and, for a supported version,
//! `_PyRuntime`, `PyCode_Type`, `PyUnicode_Type` and `PyCode_Addr2Line`. That works whether
//! libpython is a shared library (pyenv's build) or linked into the executable (Debian's
//! `/usr/bin/python3.11`, which exports its symbols for extension modules), and nothing links
//! against Python. In a process without Python (or with one older than 3.11) it costs one failed
//! `dlsym`.
//!
//! In a hook, [`capture`] then does what CPython's own `faulthandler` does, which is
//! async-signal-safe: it reads the calling thread's state and walks its frames with plain memory
//! reads. It takes no lock, allocates nothing, calls into Python only for `PyCode_Addr2Line` (in
//! 3.11 a pure decoder of the code object's line table: it reads the table, or the line array
//! when tracing built one, and allocates nothing), and decodes the strings itself into the
//! event's fixed buffers.
//!
//! 1. `_PyRuntime.core_initialized` must be set and `_PyRuntime._finalizing` unset: before the
//!    core is up there are no frames, and once `Py_FinalizeEx` has started it frees thread
//!    states and modules while we might read them. (So an `atexit` handler, which runs before
//!    that, gets its frames; a `__del__` run by the module teardown after it gets none.)
//! 2. `_PyRuntime.gilstate.tstate_current` is the thread state holding the GIL (CPython clears it
//!    before it drops the GIL and sets it after taking it). It must exist and its `thread_id`
//!    must be this thread's `pthread_self()`: one comparison that proves both that this thread
//!    has a thread state and that it holds the GIL, with no thread-specific-storage lookup
//!    (`PyGILState_GetThisThreadState`) and no lock. That is the safety argument for
//!    the rest: a thread that holds the GIL is the only one that may change its own frames or
//!    free the objects they hold, and it is busy calling us. A thread that released the GIL
//!    (ctypes, `os.waitpid`, any `Py_BEGIN_ALLOW_THREADS`), a thread Python never saw, or a
//!    `fork()` child forked from a thread without the GIL all fail this check and get no frames.
//!    A `vfork()` child (which shares its parent's memory and must not trust it) is refused
//!    before anything is read.
//! 3. From `tstate->cframe->current_frame` the walk follows `_PyInterpreterFrame.previous`.
//!    Each frame's `f_code` must be a code object (its type pointer is `&PyCode_Type`); frames
//!    still being set up ("incomplete": `prev_instr` before the code's first traceable
//!    instruction, unless a generator owns the frame) are skipped, as CPython's own tracebacks
//!    skip them. The line comes from `PyCode_Addr2Line(code, byte offset of prev_instr)`, only
//!    when that offset lies inside the code's bytecode.
//! 4. `co_filename` and `co_qualname` must be `str` objects (type pointer `&PyUnicode_Type`) in
//!    the compact layout every code object's strings have. Their characters (1, 2 or 4 bytes
//!    each) are converted to UTF-8 here. Lone surrogates U+DC80..U+DCFF, which is how Python
//!    holds undecodable bytes of a file name (`surrogateescape`), become those bytes again, so
//!    the name is the file's real name; the event's JSON writer escapes any byte that is not
//!    UTF-8. A file name that does not fit keeps its end (`...` then the tail), a function name
//!    its start.
//!
//! `PyCode_Addr2Line` calls `_PyCode_CheckLineNumber` through libpython's PLT. The first such
//! call in a process goes through glibc's lazy binding, which resolves a symbol without taking
//! the loader's lock (it is what lets a signal handler call a function for the first time);
//! libpython usually has made that call itself already. It is never made in a `vfork()` child,
//! which is refused first.
//!
//! Every walk is bounded ([`MAX_PY_FRAMES`] frames kept, a few times that visited), every
//! pointer is checked for null, alignment and a user-space address before it is read, and every
//! length before it is used. The checks are there for memory that is consistent but not what we
//! expect (a version we misjudged, a frame half pushed when a signal handler interrupted the
//! interpreter on this thread): they turn a wrong guess into no frames instead of garbage. They
//! cannot make a read of unmapped memory safe; CPython's `faulthandler` carries the same risk,
//! and relies, as we do, on the GIL holder's frames being intact.
//!
//! # Versions
//!
//! CPython 3.11 only (any 3.11.x: the layout below is the same in 3.11.2 and 3.11.7, checked
//! against both sets of headers with `offsetof`). Older versions have no `Py_Version` and a
//! different frame layout (3.10 and before keep `PyFrameObject`s); 3.12 moved the current thread
//! state into a thread-local and changed the frame and string layouts. For any version but 3.11
//! [`init`] leaves capture disabled, and events simply carry no Python frames. Only 64-bit Linux
//! (x86_64, aarch64), where the offsets below hold, and release builds of CPython (the ones
//! checked; a debug build's objects are checked by type like any others, and a mismatch gives
//! no frames).
//!
//! Not covered: a libpython loaded with `dlopen()` after our constructor ran (a plugin host):
//! the symbols are looked up once, at load time, since `dlsym` takes the loader's lock and may
//! not run in a hook. Such a process gets events without Python frames.

use crate::real;
use libc::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Python frames kept per event.
pub const MAX_PY_FRAMES: usize = 32;
/// Bytes kept of a frame's file name and function name.
pub const FILE_CAP: usize = 256;
pub const FUNC_CAP: usize = 96;

#[derive(Clone, Copy)]
pub struct PyFrame {
    pub file: [u8; FILE_CAP],
    pub file_len: usize,
    pub function: [u8; FUNC_CAP],
    pub function_len: usize,
    pub line: i32,
}

impl PyFrame {
    pub fn file(&self) -> &[u8] {
        self.file.get(..self.file_len).unwrap_or(&[])
    }
    pub fn function(&self) -> &[u8] {
        self.function.get(..self.function_len).unwrap_or(&[])
    }
}

/// Python frames, innermost first.
pub struct PyStack {
    pub frames: [PyFrame; MAX_PY_FRAMES],
    pub len: usize,
    /// The thread had more frames than [`MAX_PY_FRAMES`]: the outermost ones are cut.
    pub truncated: bool,
}

impl PyStack {
    pub fn frames(&self) -> &[PyFrame] {
        self.frames.get(..self.len).unwrap_or(&[])
    }
}

/// Offsets into CPython 3.11's structures on LP64, from its headers (`Include/internal/
/// pycore_runtime.h`, `pycore_frame.h`, `Include/cpython/pystate.h`, `code.h`, `unicodeobject.h`).
mod v3_11 {
    /// `_PyRuntimeState`
    pub const RT_CORE_INITIALIZED: usize = 12; // int
    pub const RT_FINALIZING: usize = 24; // _Py_atomic_address
    pub const RT_TSTATE_CURRENT: usize = 576; // gilstate.tstate_current, _Py_atomic_address
    /// `PyThreadState`
    pub const TS_CFRAME: usize = 56; // _PyCFrame *
    pub const TS_THREAD_ID: usize = 152; // unsigned long
    /// `_PyCFrame`
    pub const CF_CURRENT_FRAME: usize = 8; // _PyInterpreterFrame *
    /// `_PyInterpreterFrame`
    pub const IF_CODE: usize = 32; // PyCodeObject *
    pub const IF_PREVIOUS: usize = 48; // _PyInterpreterFrame *
    pub const IF_PREV_INSTR: usize = 56; // _Py_CODEUNIT *
    pub const IF_OWNER: usize = 69; // char
    pub const FRAME_OWNED_BY_GENERATOR: u8 = 1;
    /// `PyObject`
    pub const OB_TYPE: usize = 8;
    /// `PyCodeObject` (a `PyVarObject`: `ob_size` counts 2-byte code units)
    pub const CO_SIZE: usize = 16; // Py_ssize_t
    pub const CO_FIRSTLINENO: usize = 72; // int
    pub const CO_FILENAME: usize = 112; // PyObject *
    pub const CO_QUALNAME: usize = 128; // PyObject *
    pub const CO_FIRSTTRACEABLE: usize = 168; // int
    pub const CO_CODE: usize = 184; // co_code_adaptive[]
    /// `PyASCIIObject` / `PyCompactUnicodeObject`
    pub const STR_LENGTH: usize = 16; // Py_ssize_t
    pub const STR_STATE: usize = 32; // bit-field word
    pub const STR_KIND_SHIFT: u32 = 2; // kind: 3 bits
    pub const STR_COMPACT: u32 = 1 << 5;
    pub const STR_ASCII: u32 = 1 << 6;
    pub const STR_ASCII_DATA: usize = 48; // sizeof(PyASCIIObject)
    pub const STR_COMPACT_DATA: usize = 72; // sizeof(PyCompactUnicodeObject)
}
use v3_11 as off;

/// Frames visited per capture, kept or skipped, at most: stops a walk on a damaged chain.
const MAX_VISITS: usize = 4 * MAX_PY_FRAMES;
/// Characters of a name looked at, at most.
const MAX_CHARS: usize = 1 << 16;
/// Code units in one code object, at most (a sanity bound far above real code).
const MAX_CODE_UNITS: isize = 1 << 26;

/// `&_PyRuntime`; 0 when this process runs no supported Python. Published last, with Release.
static RUNTIME: AtomicUsize = AtomicUsize::new(0);
static CODE_TYPE: AtomicUsize = AtomicUsize::new(0);
static UNICODE_TYPE: AtomicUsize = AtomicUsize::new(0);
static ADDR2LINE: AtomicUsize = AtomicUsize::new(0);
type Addr2LineFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;

/// Finds the interpreter, if this process runs one. Constructor only (it calls `dlsym`).
pub fn init() {
    if !cfg!(all(target_os = "linux", target_pointer_width = "64")) {
        return;
    }
    let version = real::lookup_global(b"Py_Version\0");
    if version.is_null() {
        return;
    }
    // SAFETY: `Py_Version` is CPython's `const unsigned long`, found by name in a loaded object.
    let v = unsafe { *(version as *const libc::c_ulong) } as u32;
    if v >> 16 != 0x030b {
        log::debug!(
            "Python {}.{}: not supported (3.11 only), events carry no Python frames",
            v >> 24,
            (v >> 16) & 0xff
        );
        return;
    }
    let runtime = real::lookup_global(b"_PyRuntime\0") as usize;
    let code_type = real::lookup_global(b"PyCode_Type\0") as usize;
    let unicode_type = real::lookup_global(b"PyUnicode_Type\0") as usize;
    let addr2line = real::lookup_global(b"PyCode_Addr2Line\0") as usize;
    if runtime == 0 || code_type == 0 || unicode_type == 0 || addr2line == 0 {
        log::debug!("Python 3.11 without the symbols we need: events carry no Python frames");
        return;
    }
    CODE_TYPE.store(code_type, Ordering::Relaxed);
    UNICODE_TYPE.store(unicode_type, Ordering::Relaxed);
    ADDR2LINE.store(addr2line, Ordering::Relaxed);
    RUNTIME.store(runtime, Ordering::Release);
}

/// Fills `stack` with the calling thread's Python frames, or leaves it empty. Safe in any
/// context a hook runs in (see the module docs for why).
pub fn capture(stack: &mut PyStack) {
    stack.len = 0;
    stack.truncated = false;
    let runtime = RUNTIME.load(Ordering::Acquire);
    if runtime == 0 || crate::guard::in_shared_memory_child() {
        return;
    }
    let py = Interpreter {
        code_type: CODE_TYPE.load(Ordering::Relaxed),
        unicode_type: UNICODE_TYPE.load(Ordering::Relaxed),
        addr2line: ADDR2LINE.load(Ordering::Relaxed),
    };
    // SAFETY: `runtime` is `&_PyRuntime` of a CPython 3.11 found by `init`; `walk` reads only
    // through pointers it has checked, as the module docs explain.
    unsafe { py.walk(runtime, stack) };
}

/// The addresses `init` found.
struct Interpreter {
    code_type: usize,
    unicode_type: usize,
    addr2line: usize,
}

/// True for an address that can be a user-space object aligned to `align`.
fn plausible(addr: usize, align: usize) -> bool {
    (0x1000..1 << 48).contains(&addr) && addr.is_multiple_of(align)
}

/// Reads a `T` at `addr`.
///
/// # Safety
/// `addr` is readable for `size_of::<T>()` bytes and aligned for `T`.
unsafe fn read<T: Copy>(addr: usize) -> T {
    // SAFETY: per the contract. Volatile: the interpreter's memory is not ours to reason about.
    unsafe { std::ptr::read_volatile(addr as *const T) }
}

impl Interpreter {
    /// Walks the frames of the thread state holding the GIL, if that is this thread's.
    ///
    /// # Safety
    /// `runtime` is the address of a CPython 3.11 `_PyRuntime`.
    unsafe fn walk(&self, runtime: usize, stack: &mut PyStack) {
        // SAFETY: fields of `_PyRuntime` (a static, aligned, always mapped) at 3.11 offsets.
        let (core_initialized, finalizing, tstate) = unsafe {
            (
                read::<c_int>(runtime + off::RT_CORE_INITIALIZED),
                AtomicUsize::from_ptr((runtime + off::RT_FINALIZING) as *mut usize)
                    .load(Ordering::Acquire),
                AtomicUsize::from_ptr((runtime + off::RT_TSTATE_CURRENT) as *mut usize)
                    .load(Ordering::Acquire),
            )
        };
        if core_initialized == 0 || finalizing != 0 || !plausible(tstate, 8) {
            return;
        }
        // SAFETY: pthread_self has no preconditions and only reads the thread pointer.
        let me = unsafe { libc::pthread_self() } as usize;
        // SAFETY: `tstate` is the live thread state that holds the GIL (it cannot be freed while
        // the GIL is held, and the holder is either this thread or not: we only read its id).
        let (owner, cframe) = unsafe {
            (
                read::<libc::c_ulong>(tstate + off::TS_THREAD_ID) as usize,
                read::<usize>(tstate + off::TS_CFRAME),
            )
        };
        if owner != me || !plausible(cframe, 8) {
            return;
        }
        // SAFETY: this thread holds the GIL, so its `_PyCFrame` is live and only it changes it.
        let mut frame = unsafe { read::<usize>(cframe + off::CF_CURRENT_FRAME) };
        for _ in 0..MAX_VISITS {
            if !plausible(frame, 8) {
                return;
            }
            // SAFETY: `frame` is on this GIL-holding thread's frame chain.
            let (code, prev_instr, owner, previous) = unsafe {
                (
                    read::<usize>(frame + off::IF_CODE),
                    read::<usize>(frame + off::IF_PREV_INSTR),
                    read::<u8>(frame + off::IF_OWNER),
                    read::<usize>(frame + off::IF_PREVIOUS),
                )
            };
            // SAFETY: `code` is checked to be a code object before its fields are used.
            match unsafe { self.frame(code, prev_instr, owner) } {
                Step::Bad => return,
                Step::Skip => {}
                Step::Keep(line) => {
                    let Some(slot) = stack.frames.get_mut(stack.len) else {
                        stack.truncated = true;
                        return;
                    };
                    // SAFETY: `code` is a live code object (checked in `frame`).
                    unsafe { self.fill(slot, code, line) };
                    stack.len += 1;
                }
            }
            frame = previous;
            if frame == 0 {
                return;
            }
        }
        // The chain is longer than any we expect: keep what we have and say it was cut.
        stack.truncated = true;
    }

    /// Checks one frame's code object and finds the frame's line.
    ///
    /// # Safety
    /// `code` is a frame's `f_code` on the GIL holder's frame chain (checked here before use).
    unsafe fn frame(&self, code: usize, prev_instr: usize, owner: u8) -> Step {
        // SAFETY: a plausible pointer from a live frame: the object header is readable.
        if !plausible(code, 8) || unsafe { read::<usize>(code + off::OB_TYPE) } != self.code_type {
            return Step::Bad;
        }
        // SAFETY: `code` is a code object: these are its fields.
        let (units, first_traceable, first_line) = unsafe {
            (
                read::<isize>(code + off::CO_SIZE),
                read::<c_int>(code + off::CO_FIRSTTRACEABLE),
                read::<c_int>(code + off::CO_FIRSTLINENO),
            )
        };
        if !(0..=MAX_CODE_UNITS).contains(&units) {
            return Step::Bad;
        }
        let start = code + off::CO_CODE;
        let offset = prev_instr as isize - start as isize;
        // `_PyFrame_IsIncomplete`: a frame being set up has not reached its first traceable
        // instruction yet (generators' frames are always complete).
        if owner != off::FRAME_OWNED_BY_GENERATOR && offset < 2 * first_traceable as isize {
            return Step::Skip;
        }
        if offset < 0 || offset >= 2 * units || offset % 2 != 0 {
            return Step::Keep(first_line);
        }
        // SAFETY: `addr2line` is CPython 3.11's PyCode_Addr2Line, given a code object and a
        // byte offset inside its bytecode: it only decodes the code's line table.
        let f: Addr2LineFn = unsafe { std::mem::transmute(self.addr2line) };
        // SAFETY: as above.
        Step::Keep(unsafe { f(code as *mut c_void, offset as c_int) })
    }

    /// Writes a kept frame.
    ///
    /// # Safety
    /// `code` is a live CPython 3.11 code object.
    unsafe fn fill(&self, slot: &mut PyFrame, code: usize, line: c_int) {
        // SAFETY: fields of a code object.
        let (file, name) = unsafe {
            (
                read::<usize>(code + off::CO_FILENAME),
                read::<usize>(code + off::CO_QUALNAME),
            )
        };
        // SAFETY: strings held by a live code object (their type is checked in `text`).
        slot.file_len = unsafe { self.text(file, &mut slot.file, Cut::KeepEnd) };
        // SAFETY: as above.
        slot.function_len = unsafe { self.text(name, &mut slot.function, Cut::KeepStart) };
        slot.line = line;
    }

    /// Copies the `str` at `obj` into `out` as UTF-8 (see the module docs); `?` if it is not a
    /// compact string. Returns the length written.
    ///
    /// # Safety
    /// `obj` is a pointer held by a live code object.
    unsafe fn text(&self, obj: usize, out: &mut [u8], cut: Cut) -> usize {
        let unknown = |out: &mut [u8]| match out.first_mut() {
            Some(b) => {
                *b = b'?';
                1
            }
            None => 0,
        };
        // SAFETY: a plausible pointer held by a live object: its header is readable.
        if !plausible(obj, 8) || unsafe { read::<usize>(obj + off::OB_TYPE) } != self.unicode_type {
            return unknown(out);
        }
        // SAFETY: `obj` is a str: these are its `PyASCIIObject` fields.
        let (length, state) = unsafe {
            (
                read::<isize>(obj + off::STR_LENGTH),
                read::<u32>(obj + off::STR_STATE),
            )
        };
        let kind = ((state >> off::STR_KIND_SHIFT) & 7) as usize;
        if state & off::STR_COMPACT == 0 || !matches!(kind, 1 | 2 | 4) || length < 0 {
            return unknown(out);
        }
        let ascii = state & off::STR_ASCII != 0;
        if ascii && kind != 1 {
            return unknown(out);
        }
        let data = obj
            + if ascii {
                off::STR_ASCII_DATA
            } else {
                off::STR_COMPACT_DATA
            };
        let chars = Chars {
            data,
            kind,
            len: (length as usize).min(MAX_CHARS),
        };
        // SAFETY: a compact str holds `length` characters of `kind` bytes right after its
        // header; `chars` reads no more than that.
        unsafe { chars.utf8(out, cut) }
    }
}

/// What to do with one frame.
enum Step {
    /// Not a frame we can read: stop the walk.
    Bad,
    /// An incomplete frame: go on to the caller.
    Skip,
    /// A frame to keep, at this line.
    Keep(c_int),
}

/// Which end of a name to keep when it does not fit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    KeepStart,
    KeepEnd,
}

/// The characters of a compact `str`: `len` code points of `kind` bytes each at `data`.
struct Chars {
    data: usize,
    kind: usize,
    len: usize,
}

impl Chars {
    /// The `i`th code point.
    ///
    /// # Safety
    /// `i < self.len` and the string's data is readable.
    unsafe fn at(&self, i: usize) -> u32 {
        let p = self.data + i * self.kind;
        // SAFETY: per the contract; `data` is aligned for `kind` (CPython aligns it).
        unsafe {
            match self.kind {
                1 => read::<u8>(p) as u32,
                2 => read::<u16>(p) as u32,
                _ => read::<u32>(p),
            }
        }
    }

    /// Writes the string as UTF-8 into `out`, cut per `cut` with `...` when it does not fit.
    ///
    /// # Safety
    /// The string's data is readable for `len` characters.
    unsafe fn utf8(&self, out: &mut [u8], cut: Cut) -> usize {
        const MARK: &[u8] = b"...";
        let cap = out.len();
        // Does it all fit? Count the bytes, stopping as soon as it does not.
        let mut total = 0;
        for i in 0..self.len {
            // SAFETY: i < len.
            total += encoded_len(unsafe { self.at(i) });
            if total > cap {
                break;
            }
        }
        let room = cap.saturating_sub(MARK.len());
        let (from, to, mark_first) = if total <= cap {
            (0, self.len, false)
        } else if cut == Cut::KeepEnd {
            // The longest tail that fits beside the mark.
            let mut from = self.len;
            let mut used = 0;
            while from > 0 {
                // SAFETY: from - 1 < len.
                let n = encoded_len(unsafe { self.at(from - 1) });
                if used + n > room {
                    break;
                }
                used += n;
                from -= 1;
            }
            (from, self.len, true)
        } else {
            let mut to = 0;
            let mut used = 0;
            while to < self.len {
                // SAFETY: to < len.
                let n = encoded_len(unsafe { self.at(to) });
                if used + n > room {
                    break;
                }
                used += n;
                to += 1;
            }
            (0, to, false)
        };
        let mut w = Writer { out, len: 0 };
        if mark_first {
            w.put(MARK);
        }
        for i in from..to {
            let mut tmp = [0u8; 4];
            // SAFETY: i < len.
            let n = encode(unsafe { self.at(i) }, &mut tmp);
            w.put(tmp.get(..n).unwrap_or(&[]));
        }
        if total > cap && cut == Cut::KeepStart {
            w.put(MARK);
        }
        w.len
    }
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
    let cp = match cp {
        0xdc80..=0xdcff => {
            out[0] = (cp - 0xdc00) as u8;
            return 1;
        }
        0xd800..=0xdfff | 0x11_0000.. => 0xfffd,
        c => c,
    };
    match char::from_u32(cp) {
        Some(c) => c.encode_utf8(out).len(),
        None => {
            out[..3].copy_from_slice("\u{fffd}".as_bytes());
            3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake compact string of `kind`-byte characters, for `Chars`.
    fn chars_of(s: &[u32], kind: usize, storage: &mut Vec<u32>) -> Chars {
        let mut bytes = Vec::new();
        for &c in s {
            bytes.extend_from_slice(&c.to_ne_bytes()[..kind]);
        }
        // Held in u32s so that every kind's reads are aligned, as in CPython.
        storage.clear();
        storage.resize(bytes.len().div_ceil(4), 0);
        for (i, b) in bytes.iter().enumerate() {
            let word = &mut storage[i / 4];
            let mut w = word.to_ne_bytes();
            w[i % 4] = *b;
            *word = u32::from_ne_bytes(w);
        }
        Chars {
            data: storage.as_ptr() as usize,
            kind,
            len: s.len(),
        }
    }

    fn utf8(s: &[u32], kind: usize, cap: usize, cut: Cut) -> Vec<u8> {
        let mut storage = Vec::new();
        let chars = chars_of(s, kind, &mut storage);
        let mut out = vec![0u8; cap];
        // SAFETY: `storage` holds `s.len()` characters of `kind` bytes.
        let n = unsafe { chars.utf8(&mut out, cut) };
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

    #[test]
    fn implausible_pointers_are_refused() {
        assert!(!plausible(0, 8));
        assert!(!plausible(0x10, 8));
        assert!(!plausible(0x7f00_0000_0004, 8));
        assert!(!plausible(usize::MAX & !7, 8));
        assert!(plausible(0x7f00_0000_0008, 8));
    }
}
