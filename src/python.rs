//! Python frames for events raised from CPython code, read straight from the interpreter's memory.
//!
//! # How it works
//!
//! The constructor ([`init`]) asks the dynamic loader, once, whether this process runs CPython:
//! it looks up the exported `Py_Version` (3.11 and later export it) and, for a supported version,
//! `_PyRuntime`, `PyCode_Type`, `PyUnicode_Type` and `PyCode_Addr2Line`, and picks the
//! [`Layout`] of that version's structures. That works whether libpython is a shared library
//! (pyenv's build) or linked into the executable (Debian's `/usr/bin/python3.11`, which exports
//! its symbols for extension modules), and nothing links against Python. In a process without
//! Python (or with an unsupported one) it costs one failed `dlsym`.
//!
//! In a hook, [`capture`] then does what CPython's own `faulthandler` does, which is
//! async-signal-safe: it finds the calling thread's state and walks its frames with plain memory
//! reads. It takes no lock, allocates nothing, calls into Python only for `PyCode_Addr2Line` (in
//! 3.11 to 3.13 a pure decoder of the code object's line table: it reads the table, or the line
//! array when tracing built one, and allocates nothing; its only callee is
//! `_PyCode_CheckLineNumber`), and decodes the strings itself into the event's fixed buffers.
//!
//! 1. `_PyRuntime.core_initialized` must be set and `_PyRuntime._finalizing` unset: before the
//!    core is up there are no frames, and once `Py_FinalizeEx` has started it frees thread
//!    states and modules while we might read them. (So an `atexit` handler, which runs before
//!    that, gets its frames; a `__del__` run by the module teardown after it gets none.)
//! 2. This thread must have a thread state, and that thread state must hold the GIL. That is the
//!    safety argument for the rest: a thread that holds the GIL is the only one that may change
//!    its own frames or free the objects they hold, and it is busy calling us. A thread that
//!    released the GIL (ctypes, `os.waitpid`, any `Py_BEGIN_ALLOW_THREADS`), a thread Python
//!    never saw, or a `fork()` child forked from a thread without the GIL all fail this check and
//!    get no frames. A `vfork()` child (which shares its parent's memory and must not trust it)
//!    is refused before anything is read. How the check is made depends on the version:
//!    - 3.11: `_PyRuntime.gilstate.tstate_current` is the thread state holding the GIL (CPython
//!      clears it before it drops the GIL and sets it after taking it). It must exist and its
//!      `thread_id` must be this thread's `pthread_self()`: one comparison proves both.
//!    - 3.12 and 3.13 keep the current thread state in a C thread-local (`_Py_tss_tstate`),
//!      which libpython does not export and reaches through `__tls_get_addr`; calling
//!      `_PyThreadState_UncheckedGet` would go there too, and `__tls_get_addr` may allocate
//!      (glibc grows a thread's TLS vector lazily after a `dlopen`). So we use the other
//!      per-thread record CPython keeps, the one `PyGILState_GetThisThreadState` and
//!      `faulthandler` use: `_PyRuntime.autoTSSkey`, a `pthread` key whose value is this thread's
//!      thread state. We check the key is initialised and read it with `pthread_getspecific`
//!      ourselves (glibc: two loads from the thread's own descriptor, no lock, no allocation),
//!      without calling Python. That thread state's `thread_id` must be `pthread_self()`. Then
//!      it must be attached, i.e. hold the GIL: in 3.12 the `_status.active` bit (set after
//!      `take_gil`, cleared before `drop_gil`), in 3.13 `state == _Py_THREAD_ATTACHED` (same
//!      order). Last, as a debugger would, the interpreter's GIL (`interp->ceval.gil`) must be
//!      `locked` with `last_holder` this thread state; while we hold the GIL both stay so, so
//!      this second test never refuses a thread that holds it. A thread with a second thread
//!      state swapped in (sub-interpreters) fails the check and gets no frames.
//! 3. The walk starts at the thread's current frame (`tstate->cframe->current_frame` in 3.11 and
//!    3.12, `tstate->current_frame` in 3.13) and follows `_PyInterpreterFrame.previous`.
//!    Frames owned by the C stack (3.12+'s entry frames, `FRAME_OWNED_BY_CSTACK`) are skipped
//!    without reading them further. Each other frame's code (`f_code`, `f_executable` in 3.13)
//!    must be a code object (its type pointer is `&PyCode_Type`); frames still being set up
//!    ("incomplete": the instruction pointer (`prev_instr`, `instr_ptr` in 3.13) before the
//!    code's first traceable instruction, unless a generator owns the frame) are skipped, as
//!    CPython's own tracebacks skip them. The line comes from `PyCode_Addr2Line(code, byte
//!    offset of the instruction pointer)`, only when that offset lies inside the code's bytecode;
//!    otherwise, and for an instruction that has no line of its own (3.12 compiles a few: the
//!    one a generator starts from, its hidden `StopIteration` handler; `frame.f_lineno` is then
//!    `None`), the frame is shown at the code's first line. (Seen: a timer signal landing as a
//!    3.12 generator started gave line -1 before this rule.)
//! 4. `co_filename` and `co_qualname` must be `str` objects (type pointer `&PyUnicode_Type`) in
//!    the compact layout every code object's strings have. Their characters (1, 2 or 4 bytes
//!    each) are converted to UTF-8 here. Lone surrogates U+DC80..U+DCFF, which is how Python
//!    holds undecodable bytes of a file name (`surrogateescape`), become those bytes again, so
//!    the name is the file's real name; the event's JSON writer escapes any byte that is not
//!    UTF-8. A file name that does not fit keeps its end (`...` then the tail), a function name
//!    its start.
//!
//! `PyCode_Addr2Line` calls `_PyCode_CheckLineNumber` through libpython's PLT, and we call
//! `pthread_getspecific` through ours (the constructor calls it once to bind it). The first such
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
//! CPython 3.11, 3.12 and 3.13: the offsets are those of each minor version's headers on LP64,
//! checked with `offsetof` against 3.11.2 and 3.11.7, 3.12.1 and 3.13.0. CPython does not move
//! these fields within a minor version (out-of-process profilers such as py-spy rely on that
//! too), but nothing enforces it for 3.11 and 3.12: a patch release that did would be caught
//! only by the type and range checks below. 3.13 also publishes its own
//! offsets in `_PyRuntime.debug_offsets` (`_Py_DebugOffsets`, for debuggers and profilers): [`init`]
//! checks its cookie (`xdebugpy`), that its version is the running `Py_Version`, that the build
//! is not free-threaded, and that every offset it gives and we use equals ours; anything else
//! leaves capture off. The table does not give everything the walk needs (the `pthread` key,
//! `_co_firsttraceable`, `core_initialized`), and its own layout changed in 3.14 (fields added
//! inside its sections), so it cannot drive an unknown version blind: 3.14 and later stay off
//! until a layout for them is added here (and then checked against their table the same way).
//! Older versions have no `Py_Version` and a different frame layout (3.10 and before keep
//! `PyFrameObject`s). For an unsupported version events simply carry no Python frames. Only
//! 64-bit Linux (x86_64, aarch64), where the offsets below hold, and release builds with the GIL
//! (the ones checked). A debug build may place fields elsewhere: 3.13's table catches that for
//! the fields it lists, and otherwise the type and range checks turn a mismatch into no frames.
//! A free-threaded build (3.13t) has another object header, so the type checks fail, and its
//! table says it is free-threaded, which [`init`] refuses outright.
//!
//! Not covered: a libpython loaded with `dlopen()` after our constructor ran (a plugin host):
//! the symbols are looked up once, at load time, since `dlsym` takes the loader's lock and may
//! not run in a hook. Such a process gets events without Python frames.

use crate::peek::{Cut, MARK, load, plausible, read};
use crate::real;
use libc::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

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

/// How a version tells which thread state is this thread's and that it holds the GIL.
#[derive(Clone, Copy)]
enum Current {
    /// 3.11: `_PyRuntime.gilstate.tstate_current` (a `_Py_atomic_address`) at this offset.
    GilHolder { tstate_current: usize },
    /// 3.12+: `_PyRuntime.autoTSSkey` at `key` (`Py_tss_t`: `int _is_initialized` then the
    /// `pthread_key_t`), then the attached test and the GIL's fields.
    Tss {
        key: usize,
        attached: Attached,
        /// `PyThreadState.interp`, `PyInterpreterState.ceval.gil`, and in
        /// `struct _gil_runtime_state` `last_holder` and `locked`.
        ts_interp: usize,
        interp_gil: usize,
        gil_last_holder: usize,
        gil_locked: usize,
    },
}

/// The thread state's own word that says it is attached (holds the GIL).
#[derive(Clone, Copy)]
enum Attached {
    /// 3.12: this bit of the `_status` bit-field word (`active`).
    StatusBit { offset: usize, mask: u32 },
    /// 3.13: the atomic `int state` equals this (`_Py_THREAD_ATTACHED`).
    State { offset: usize, value: i32 },
}

/// Offsets into one CPython minor version's structures on LP64, from its headers
/// (`Include/internal/pycore_runtime.h`, `pycore_interp.h`, `pycore_frame.h`,
/// `Include/cpython/pystate.h`, `code.h`, `unicodeobject.h`), checked with `offsetof`.
struct Layout {
    /// `_PyRuntimeState`: `core_initialized` (int), `_finalizing` (pointer-sized, atomic)
    rt_core_initialized: usize,
    rt_finalizing: usize,
    current: Current,
    /// `PyThreadState.thread_id` (unsigned long, the creator's `pthread_self()`)
    ts_thread_id: usize,
    /// `PyThreadState.cframe` (3.11, 3.12), whose `current_frame` is at `frame`; without a
    /// cframe, `frame` is `PyThreadState.current_frame` (3.13).
    ts_cframe: Option<usize>,
    frame: usize,
    /// `_PyInterpreterFrame`: code, caller, instruction pointer, owner (char)
    if_code: usize,
    if_previous: usize,
    if_instr: usize,
    if_owner: usize,
    /// `FRAME_OWNED_BY_CSTACK`, where it exists (3.12+): such frames are skipped.
    owned_by_cstack: Option<u8>,
    /// `PyCodeObject` (a `PyVarObject`: `ob_size` counts 2-byte code units)
    co_firstlineno: usize,
    co_filename: usize,
    co_qualname: usize,
    co_firsttraceable: usize,
    co_code: usize,
    /// `sizeof(PyASCIIObject)`, `sizeof(PyCompactUnicodeObject)`: where the characters start
    str_ascii_data: usize,
    str_compact_data: usize,
    /// `(offset in _Py_DebugOffsets, our value)` pairs that must agree (3.13+).
    debug: &'static [(usize, usize)],
}

/// The same in every version (3.11-3.13): `PyObject.ob_type`, `PyVarObject.ob_size`, the
/// `PyASCIIObject` length and state word and the state bits (interned: 2 bits, kind: 3,
/// compact, ascii), `FRAME_OWNED_BY_GENERATOR`.
const OB_TYPE: usize = 8;
const CO_SIZE: usize = 16;
const STR_LENGTH: usize = 16;
const STR_STATE: usize = 32;
const STR_KIND_SHIFT: u32 = 2;
const STR_COMPACT: u32 = 1 << 5;
const STR_ASCII: u32 = 1 << 6;
const FRAME_OWNED_BY_GENERATOR: u8 = 1;

const V3_11: Layout = Layout {
    rt_core_initialized: 12,
    rt_finalizing: 24,
    current: Current::GilHolder {
        tstate_current: 576,
    },
    ts_thread_id: 152,
    ts_cframe: Some(56),
    frame: 8,
    if_code: 32,
    if_previous: 48,
    if_instr: 56,
    if_owner: 69,
    owned_by_cstack: None,
    co_firstlineno: 72,
    co_filename: 112,
    co_qualname: 128,
    co_firsttraceable: 168,
    co_code: 184,
    str_ascii_data: 48,
    str_compact_data: 72,
    debug: &[],
};

const V3_12: Layout = Layout {
    rt_core_initialized: 12,
    rt_finalizing: 24,
    current: Current::Tss {
        key: 1544,
        attached: Attached::StatusBit {
            offset: 24,
            mask: 1 << 4,
        },
        ts_interp: 16,
        interp_gil: 384,
        gil_last_holder: 8,
        gil_locked: 16,
    },
    ts_thread_id: 136,
    ts_cframe: Some(56),
    frame: 0,
    if_code: 0,
    if_previous: 8,
    if_instr: 56,
    if_owner: 70,
    owned_by_cstack: Some(3),
    co_firstlineno: 68,
    co_filename: 112,
    co_qualname: 128,
    co_firsttraceable: 176,
    co_code: 192,
    str_ascii_data: 40,
    str_compact_data: 56,
    debug: &[],
};

const V3_13: Layout = Layout {
    rt_core_initialized: 596,
    rt_finalizing: 608,
    current: Current::Tss {
        key: 2160,
        attached: Attached::State {
            offset: 40,
            value: 1,
        },
        ts_interp: 16,
        interp_gil: 16,
        gil_last_holder: 8,
        gil_locked: 16,
    },
    ts_thread_id: 152,
    ts_cframe: None,
    frame: 72,
    if_code: 0,
    if_previous: 8,
    if_instr: 56,
    if_owner: 70,
    owned_by_cstack: Some(3),
    co_firstlineno: 68,
    co_filename: 112,
    co_qualname: 128,
    co_firsttraceable: 184,
    co_code: 200,
    str_ascii_data: 40,
    str_compact_data: 56,
    // 3.13's `_Py_DebugOffsets`: `cookie[8]`, `version`, `free_threaded`, then sections of
    // `uint64_t` offsets; the position of each entry we rely on, with the value we use.
    debug: &[
        (32, 608),      // runtime_state.finalizing
        (112, 16),      // interpreter_state.ceval_gil
        (176, 16),      // thread_state.interp
        (184, 72),      // thread_state.current_frame
        (192, 152),     // thread_state.thread_id
        (232, 8),       // interpreter_frame.previous
        (240, 0),       // interpreter_frame.executable
        (248, 56),      // interpreter_frame.instr_ptr
        (264, 70),      // interpreter_frame.owner
        (280, 112),     // code_object.filename
        (296, 128),     // code_object.qualname
        (312, 68),      // code_object.firstlineno
        (344, 200),     // code_object.co_code_adaptive
        (360, OB_TYPE), // pyobject.ob_type
        (544, STR_STATE),
        (552, STR_LENGTH),
        (560, 40), // unicode_object.asciiobject_size
    ],
};

/// `_Py_DebugOffsets`: where its cookie, version and free-threaded flag are.
const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";
const DEBUG_VERSION: usize = 8;
const DEBUG_FREE_THREADED: usize = 16;

/// The layout for a `Py_VERSION_HEX` minor version (`0x030b` ...), if supported.
fn layout(minor: u32) -> Option<&'static Layout> {
    match minor {
        0x030b => Some(&V3_11),
        0x030c => Some(&V3_12),
        0x030d => Some(&V3_13),
        _ => None,
    }
}

/// Frames visited per capture, kept or skipped, at most: stops a walk on a damaged chain.
const MAX_VISITS: usize = 4 * MAX_PY_FRAMES;
/// Characters of a name looked at, at most.
const MAX_CHARS: usize = 1 << 16;
/// Code units in one code object, at most (a sanity bound far above real code).
const MAX_CODE_UNITS: isize = 1 << 26;

/// `&_PyRuntime`; 0 when this process runs no supported Python. Published last, with Release.
static RUNTIME: AtomicUsize = AtomicUsize::new(0);
/// The running version's `0x030b`..., which selects its [`Layout`].
static MINOR: AtomicU32 = AtomicU32::new(0);
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
    let (major, minor) = (v >> 24, (v >> 16) & 0xff);
    let Some(layout) = layout(v >> 16) else {
        log::debug!(
            "Python {major}.{minor}: not supported (3.11 to 3.13), events carry no Python frames"
        );
        return;
    };
    let runtime = real::lookup_global(b"_PyRuntime\0") as usize;
    let code_type = real::lookup_global(b"PyCode_Type\0") as usize;
    let unicode_type = real::lookup_global(b"PyUnicode_Type\0") as usize;
    let addr2line = real::lookup_global(b"PyCode_Addr2Line\0") as usize;
    if runtime == 0 || code_type == 0 || unicode_type == 0 || addr2line == 0 {
        log::debug!(
            "Python {major}.{minor} without the symbols we need: events carry no Python frames"
        );
        return;
    }
    // SAFETY: `runtime` is `&_PyRuntime` of this version, a static at least as large as the
    // table (the table is its first member where `layout.debug` is not empty).
    if let Err(why) = unsafe { check_debug_offsets(runtime, v, layout) } {
        log::debug!("Python {major}.{minor}: {why}: events carry no Python frames");
        return;
    }
    if let Current::Tss { .. } = layout.current {
        // Binds `pthread_getspecific` now, in an ordinary context. Key 0 is in range, and
        // reading it has no effect.
        // SAFETY: no preconditions; an unused key gives null.
        let _ = unsafe { libc::pthread_getspecific(0) };
    }
    CODE_TYPE.store(code_type, Ordering::Relaxed);
    UNICODE_TYPE.store(unicode_type, Ordering::Relaxed);
    ADDR2LINE.store(addr2line, Ordering::Relaxed);
    MINOR.store(v >> 16, Ordering::Relaxed);
    RUNTIME.store(runtime, Ordering::Release);
}

/// Checks the interpreter's own `_Py_DebugOffsets` (3.13+) against `layout`.
///
/// # Safety
/// `runtime` is `&_PyRuntime` of the version `layout` describes.
unsafe fn check_debug_offsets(runtime: usize, version: u32, layout: &Layout) -> Result<(), &str> {
    if layout.debug.is_empty() {
        return Ok(());
    }
    // SAFETY: `_PyRuntime` starts with the table, which is longer than every offset in
    // `layout.debug` (its last entry is at 560 of 584 bytes), and is 8-aligned.
    let word = |at: usize| unsafe { read::<u64>(runtime + at) };
    let mut cookie = [0u8; 8];
    for (i, b) in cookie.iter_mut().enumerate() {
        // SAFETY: as above.
        *b = unsafe { read::<u8>(runtime + i) };
    }
    if &cookie != DEBUG_COOKIE {
        return Err("no _Py_DebugOffsets cookie");
    }
    if word(DEBUG_VERSION) != u64::from(version) {
        return Err("_Py_DebugOffsets is of another version");
    }
    if word(DEBUG_FREE_THREADED) != 0 {
        return Err("a free-threaded build");
    }
    if layout
        .debug
        .iter()
        .any(|&(at, ours)| word(at) != ours as u64)
    {
        return Err("_Py_DebugOffsets disagrees with the offsets we know");
    }
    Ok(())
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
    let Some(layout) = layout(MINOR.load(Ordering::Relaxed)) else {
        return;
    };
    let py = Interpreter {
        layout,
        code_type: CODE_TYPE.load(Ordering::Relaxed),
        unicode_type: UNICODE_TYPE.load(Ordering::Relaxed),
        addr2line: ADDR2LINE.load(Ordering::Relaxed),
    };
    // SAFETY: `runtime` is `&_PyRuntime` of the CPython `layout` describes, found by `init`;
    // `walk` reads only through pointers it has checked, as the module docs explain.
    unsafe { py.walk(runtime, stack) };
}

/// What `init` found.
struct Interpreter {
    layout: &'static Layout,
    code_type: usize,
    unicode_type: usize,
    addr2line: usize,
}

impl Interpreter {
    /// This thread's thread state, if it holds the GIL (module docs, step 2).
    ///
    /// # Safety
    /// `runtime` is the address of `_PyRuntime` of the version `self.layout` describes, and the
    /// runtime is initialised and not finalising.
    unsafe fn this_thread_state(&self, runtime: usize) -> Option<usize> {
        let l = self.layout;
        // SAFETY: pthread_self has no preconditions and only reads the thread pointer.
        let me = unsafe { libc::pthread_self() } as usize;
        let tstate = match l.current {
            // SAFETY: a field of `_PyRuntime` (a static, aligned, always mapped).
            Current::GilHolder { tstate_current } => unsafe { load(runtime + tstate_current) },
            Current::Tss { key, .. } => {
                // SAFETY: `autoTSSkey`, a `Py_tss_t` in `_PyRuntime`.
                let (initialised, key) = unsafe {
                    (
                        read::<c_int>(runtime + key),
                        read::<libc::pthread_key_t>(runtime + key + 4),
                    )
                };
                if initialised != 1 {
                    return None;
                }
                // SAFETY: an initialised key; glibc reads this thread's own slot, no lock.
                unsafe { libc::pthread_getspecific(key) as usize }
            }
        };
        if !plausible(tstate, 8) {
            return None;
        }
        // SAFETY: `tstate` is the GIL holder's (3.11: live while it holds it) or this thread's
        // own (3.12+: live while the thread is bound to it); we only read its creator's id.
        let owner = unsafe { read::<libc::c_ulong>(tstate + l.ts_thread_id) } as usize;
        if owner != me {
            return None;
        }
        let Current::Tss {
            attached,
            ts_interp,
            interp_gil,
            gil_last_holder,
            gil_locked,
            ..
        } = l.current
        else {
            return Some(tstate);
        };
        // SAFETY: this thread's own thread state: only this thread attaches or detaches it.
        let is_attached = unsafe {
            match attached {
                Attached::StatusBit { offset, mask } => {
                    AtomicU32::from_ptr((tstate + offset) as *mut u32).load(Ordering::Acquire)
                        & mask
                        != 0
                }
                Attached::State { offset, value } => {
                    AtomicI32::from_ptr((tstate + offset) as *mut i32).load(Ordering::Acquire)
                        == value
                }
            }
        };
        if !is_attached {
            return None;
        }
        // SAFETY: an attached thread state's interpreter is live, and so is its GIL.
        let interp = unsafe { read::<usize>(tstate + ts_interp) };
        if !plausible(interp, 8) {
            return None;
        }
        // SAFETY: as above.
        let gil = unsafe { read::<usize>(interp + interp_gil) };
        if !plausible(gil, 8) {
            return None;
        }
        // SAFETY: the interpreter's `struct _gil_runtime_state`.
        let (holder, locked) = unsafe {
            (
                load(gil + gil_last_holder),
                AtomicI32::from_ptr((gil + gil_locked) as *mut i32).load(Ordering::Acquire),
            )
        };
        (holder == tstate && locked != 0).then_some(tstate)
    }

    /// Walks the frames of this thread, if it holds the GIL.
    ///
    /// # Safety
    /// `runtime` is the address of `_PyRuntime` of the version `self.layout` describes.
    unsafe fn walk(&self, runtime: usize, stack: &mut PyStack) {
        let l = self.layout;
        // SAFETY: fields of `_PyRuntime` (a static, aligned, always mapped).
        let (core_initialized, finalizing) = unsafe {
            (
                read::<c_int>(runtime + l.rt_core_initialized),
                load(runtime + l.rt_finalizing),
            )
        };
        if core_initialized == 0 || finalizing != 0 {
            return;
        }
        // SAFETY: per this function's contract, and the runtime is up.
        let Some(tstate) = (unsafe { self.this_thread_state(runtime) }) else {
            return;
        };
        // SAFETY: this thread holds the GIL, so its thread state and `_PyCFrame` are live and
        // only it changes them.
        let mut frame = unsafe {
            match l.ts_cframe {
                Some(cframe_at) => {
                    let cframe = read::<usize>(tstate + cframe_at);
                    if !plausible(cframe, 8) {
                        return;
                    }
                    read::<usize>(cframe + l.frame)
                }
                None => read::<usize>(tstate + l.frame),
            }
        };
        for _ in 0..MAX_VISITS {
            if !plausible(frame, 8) {
                return;
            }
            // SAFETY: `frame` is on this GIL-holding thread's frame chain.
            let (code, instr, owner, previous) = unsafe {
                (
                    read::<usize>(frame + l.if_code),
                    read::<usize>(frame + l.if_instr),
                    read::<u8>(frame + l.if_owner),
                    read::<usize>(frame + l.if_previous),
                )
            };
            let step = if Some(owner) == l.owned_by_cstack {
                // An entry frame pushed by C (3.12+): no Python code of its own.
                Step::Skip
            } else {
                // SAFETY: `code` is checked to be a code object before its fields are used.
                unsafe { self.frame(code, instr, owner) }
            };
            match step {
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
    /// `code` is a frame's code on the GIL holder's frame chain (checked here before use).
    unsafe fn frame(&self, code: usize, instr: usize, owner: u8) -> Step {
        let l = self.layout;
        // SAFETY: a plausible pointer from a live frame: the object header is readable.
        if !plausible(code, 8) || unsafe { read::<usize>(code + OB_TYPE) } != self.code_type {
            return Step::Bad;
        }
        // SAFETY: `code` is a code object: these are its fields.
        let (units, first_traceable, first_line) = unsafe {
            (
                read::<isize>(code + CO_SIZE),
                read::<c_int>(code + l.co_firsttraceable),
                read::<c_int>(code + l.co_firstlineno),
            )
        };
        if !(0..=MAX_CODE_UNITS).contains(&units) {
            return Step::Bad;
        }
        let start = code + l.co_code;
        let offset = instr as isize - start as isize;
        // `_PyFrame_IsIncomplete`: a frame being set up has not reached its first traceable
        // instruction yet (generators' frames are always complete).
        if owner != FRAME_OWNED_BY_GENERATOR && offset < 2 * first_traceable as isize {
            return Step::Skip;
        }
        if offset < 0 || offset >= 2 * units || offset % 2 != 0 {
            return Step::Keep(first_line);
        }
        // SAFETY: `addr2line` is this CPython's PyCode_Addr2Line, given a code object and a
        // byte offset inside its bytecode: it only decodes the code's line table.
        let f: Addr2LineFn = unsafe { std::mem::transmute(self.addr2line) };
        // SAFETY: as above.
        let line = unsafe { f(code as *mut c_void, offset as c_int) };
        // An instruction the compiler gave no line (-1: in 3.12, the one a generator resumes
        // at first, right after its RETURN_GENERATOR, or its hidden StopIteration handler) is
        // shown at the code's first line, as Python shows a generator that has not started.
        Step::Keep(if line > 0 { line } else { first_line })
    }

    /// Writes a kept frame.
    ///
    /// # Safety
    /// `code` is a live code object of this CPython.
    unsafe fn fill(&self, slot: &mut PyFrame, code: usize, line: c_int) {
        // SAFETY: fields of a code object.
        let (file, name) = unsafe {
            (
                read::<usize>(code + self.layout.co_filename),
                read::<usize>(code + self.layout.co_qualname),
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
        if !plausible(obj, 8) || unsafe { read::<usize>(obj + OB_TYPE) } != self.unicode_type {
            return unknown(out);
        }
        // SAFETY: `obj` is a str: these are its `PyASCIIObject` fields.
        let (length, state) = unsafe {
            (
                read::<isize>(obj + STR_LENGTH),
                read::<u32>(obj + STR_STATE),
            )
        };
        let kind = ((state >> STR_KIND_SHIFT) & 7) as usize;
        if state & STR_COMPACT == 0 || !matches!(kind, 1 | 2 | 4) || length < 0 {
            return unknown(out);
        }
        let ascii = state & STR_ASCII != 0;
        if ascii && kind != 1 {
            return unknown(out);
        }
        let data = obj
            + if ascii {
                self.layout.str_ascii_data
            } else {
                self.layout.str_compact_data
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

    /// A 3.13 `_Py_DebugOffsets` as CPython fills it, with the values of [`V3_13`].
    fn debug_table(version: u32) -> Vec<u64> {
        let mut table = vec![0u64; 584 / 8];
        table[0] = u64::from_ne_bytes(*DEBUG_COOKIE);
        table[DEBUG_VERSION / 8] = u64::from(version);
        for &(at, value) in V3_13.debug {
            table[at / 8] = value as u64;
        }
        table
    }

    fn table_ok(table: &[u64], version: u32, layout: &Layout) -> bool {
        // SAFETY: `table` is as long as 3.13's `_Py_DebugOffsets` (or unused, for no table).
        unsafe { check_debug_offsets(table.as_ptr() as usize, version, layout) }.is_ok()
    }

    #[test]
    fn debug_offsets_are_checked_before_use() {
        let v = 0x030d_00f0;
        let table = debug_table(v);
        assert!(table_ok(&table, v, &V3_13));
        // The table of another release than the running one.
        assert!(!table_ok(&table, 0x030d_01f0, &V3_13));
        // A free-threaded build, a table without its cookie, a field we use moved.
        for (word, value) in [(DEBUG_FREE_THREADED / 8, 1), (0, 0), (184 / 8, 80)] {
            let mut bad = table.clone();
            bad[word] = value;
            assert!(!table_ok(&bad, v, &V3_13), "word {word} = {value}");
        }
        // 3.11 and 3.12 publish no table: nothing to check.
        assert!(table_ok(&[], 0x030c_01f0, &V3_12));
        assert!(table_ok(&[], 0x030b_07f0, &V3_11));
    }

    /// Every 3.13 offset the walk uses and the table gives is one the table is checked for.
    #[test]
    fn the_3_13_table_covers_the_offsets_the_walk_uses() {
        let l = &V3_13;
        let Current::Tss {
            ts_interp,
            interp_gil,
            ..
        } = l.current
        else {
            panic!("3.13 finds its thread state through the TSS key");
        };
        let used = [
            (32, l.rt_finalizing),
            (112, interp_gil),
            (176, ts_interp),
            (184, l.frame),
            (192, l.ts_thread_id),
            (232, l.if_previous),
            (240, l.if_code),
            (248, l.if_instr),
            (264, l.if_owner),
            (280, l.co_filename),
            (296, l.co_qualname),
            (312, l.co_firstlineno),
            (344, l.co_code),
            (360, OB_TYPE),
            (544, STR_STATE),
            (552, STR_LENGTH),
            (560, l.str_ascii_data),
        ];
        for entry in used {
            assert!(l.debug.contains(&entry), "{entry:?} is not checked");
        }
        assert!(l.ts_cframe.is_none());
    }

    #[test]
    fn only_known_versions_have_a_layout() {
        for minor in [0x0207, 0x0306, 0x030a, 0x030e, 0x0400] {
            assert!(layout(minor).is_none(), "{minor:#x}");
        }
        for minor in [0x030b, 0x030c, 0x030d] {
            assert!(layout(minor).is_some(), "{minor:#x}");
        }
    }
}
