//! Python frames for events raised from CPython code, read straight from the interpreter's
//! memory, on CPython 3.8 to 3.15; and, when there are none, why.
//!
//! # How it works
//!
//! Nothing is done at load time: a process that never runs Python pays nothing. At an event,
//! [`capture`] looks at the modules of the event's native frames (found with `_dl_find_object`,
//! which takes no lock). If one of them is a CPython runtime (`detect.rs`: libpython, or an
//! executable with libpython linked in), the calling thread is running the interpreter, and its
//! Python frames are what the event needs. What the detection finds (version, `_PyRuntime`, the
//! type objects, the [`layout::Layout`]) is kept for the process's later events. A thread whose
//! native stack has no interpreter frame is not running Python, and its event is a plain native
//! one: no frames, and nothing missing.
//!
//! The layout says where everything is: written by hand from each version's headers for 3.8 to
//! 3.12 (`layout.rs`), and made from the interpreter's own `_Py_DebugOffsets` table for 3.13 and
//! later (`debug_offsets.rs`). Then the walk (`walk.rs`):
//!
//! 1. `_PyRuntime._finalizing` must be unset: once `Py_FinalizeEx` has started it frees thread
//!    states and modules. (So an `atexit` handler, which runs before that, gets its frames; a
//!    `__del__` run by the module teardown after it gets the reason instead.)
//! 2. This thread's thread state: the one whose `thread_id` is this thread's `pthread_self()`.
//!    The GIL's holder is looked at first (3.8 to 3.11: `_PyRuntime.gilstate.tstate_current`;
//!    3.12+: each interpreter's GIL, `locked` with this thread's state as `last_holder`, and that
//!    state attached); else every interpreter's list of thread states. These reads are
//!    [`memory::Checked`]: another thread's state may be freed while we look.
//! 3. From the thread's current frame (`tstate->frame` before 3.11, `tstate->cframe->
//!    current_frame` in 3.11 and 3.12, `tstate->current_frame` from 3.13) along the chain
//!    (`f_back`, `_PyInterpreterFrame.previous`). Entry frames pushed by C are skipped, as are
//!    frames still being set up (before their first traceable instruction, unless a generator
//!    owns them), as CPython's own tracebacks skip them. Each frame's code must be a code object
//!    (its type pointer is `&PyCode_Type`); its line comes from its line table (`lines.rs`),
//!    decoded here, for the instruction pointer's offset when that lies inside the bytecode (else,
//!    and for an instruction without a line, the code's first line); its file and function names
//!    are `str` objects, copied out as UTF-8 (`strings.rs`).
//!
//! Nothing calls into Python, takes a lock or allocates; every walk is bounded ([`MAX_PY_FRAMES`]
//! kept, a few times that visited), every pointer is checked for null, alignment and a user-space
//! address, every length before it is used, every object's type. A `vfork()` child (which shares
//! its parent's memory and must not trust it) is refused before anything is read.
//!
//! # Why reading the frames is safe
//!
//! A thread's frame chain is changed only by that thread: it pushes and pops its own frames, and
//! every frame holds a strong reference to its code object, which holds its names and its line
//! table, all immutable. The calling thread is inside our hook, so it changes nothing while we
//! read. What remains is other threads freeing memory the walk reads:
//!
//! - **The thread holds the GIL** (an event from Python code: `signal.signal`, a ctypes call
//!   through `PyDLL`) or, free-threaded, is attached. No other thread runs Python code that could
//!   free its objects, and interpreter shutdown cannot start: it needs the GIL (free-threaded: it
//!   stops the world, which waits for attached threads). Its memory stays put, and is read with
//!   plain loads ([`memory::Direct`]), as CPython's own `faulthandler` does.
//! - **The thread does not hold the GIL**: the `echild` event (the thread is inside `waitpid`,
//!   which `os.waitpid` calls with the GIL released: `Py_BEGIN_ALLOW_THREADS`), a `ctypes.CDLL`
//!   call, C code in an extension that released the GIL. Its own chain still cannot change: the
//!   thread is busy in the wait or the call, and no API lets another thread pop, clear or resume
//!   an executing frame (`frame.clear()` and `generator.send()` refuse one that is running). Its
//!   frames keep their code objects alive. The one thing that can free them is interpreter
//!   shutdown by another thread: `Py_FinalizeEx` deletes the thread states of the threads still
//!   running (daemon threads, which are not joined), with their frames (3.11+: their data stack
//!   chunks are unmapped). It can start at any moment, so checking `_finalizing` first narrows the
//!   window but cannot close it. So this walk reads through [`memory::Checked`]
//!   (`process_vm_readv` on our own process), for which a freed or unmapped address is an error,
//!   never a fault: at worst a walk racing with shutdown gets garbage, which the type checks turn
//!   into fewer or no frames. Where the kernel refuses `process_vm_readv` (a seccomp filter),
//!   events get no Python frames, with the reason `no_safe_read`: finding the thread state needs
//!   it too.
//!
//! The remaining risk is memory that is consistent but not what we expect: a version misjudged,
//! a frame half pushed when a signal handler interrupted this very thread in the interpreter.
//! The checks turn that into fewer frames instead of garbage; reading it directly cannot fault,
//! since the GIL holder's own memory is mapped, which is the argument `faulthandler` relies on
//! too.
//!
//! # Versions
//!
//! CPython 3.8 to 3.15 on 64-bit Linux (x86_64, aarch64), release builds with the GIL, and the
//! free-threaded builds of 3.13 to 3.15 (from their headers only: none was at hand to run).
//! Other versions, and builds whose structures differ from what we know (a `Py_TRACE_REFS`
//! debug build), are detected and get no frames, with the reason.
//!
//! A libpython loaded with `dlopen()` by a program that is not Python (a plugin host) is found
//! like any other, through the event's stack. Not covered: an interpreter that does not export
//! its symbols (a static build without `-export-dynamic`) is not found, and its events are plain
//! native ones.

mod debug_offsets;
mod detect;
mod layout;
mod lines;
mod memory;
mod strings;
mod walk;

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::script::{self, Language, Missing};
use detect::{Found, Version};
use memory::{Checked, Direct};

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

/// Script frames, innermost first (the Python reader fills them, and the Perl and shell ones).
/// All-zero bytes are an empty stack (events are built in zeroed memory).
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

/// Why a thread that runs Python has no Python frames in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A version not read (before 3.8, after 3.15).
    Unsupported,
    /// A supported version whose structures are not the ones we know.
    UnknownLayout,
    /// A `vfork()` child, which shares its parent's memory.
    VforkChild,
    /// The interpreter is shutting down.
    Finalizing,
    /// This thread has no Python thread state.
    NoThreadState,
    /// No Python code is running on this thread (the interpreter itself, or C code it called
    /// outside any Python frame).
    NoPythonCode,
    /// The kernel refuses `process_vm_readv` (a seccomp filter), without which the thread states
    /// cannot be looked at safely.
    NoSafeRead,
    /// The frames are not what they should be.
    Unreadable,
}

impl Reason {
    /// The record's short code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Unsupported => "unsupported-version",
            Reason::UnknownLayout => "unknown-layout",
            Reason::VforkChild => "vfork-child",
            Reason::Finalizing => "finalizing",
            Reason::NoThreadState => "no-thread-state",
            Reason::NoPythonCode => "no-python-code",
            Reason::NoSafeRead => "no-safe-read",
            Reason::Unreadable => "unreadable",
        }
    }

    /// Why, for people: the part in parentheses.
    fn why(self) -> &'static str {
        match self {
            Reason::Unsupported => "supported: 3.8 to 3.15",
            Reason::UnknownLayout => {
                "its structures are not those of a release build sigaudit knows"
            }
            Reason::VforkChild => "in a vfork() child, which shares its parent's memory",
            Reason::Finalizing => "the interpreter is shutting down",
            Reason::NoThreadState => "this thread has no Python thread state",
            Reason::NoPythonCode => "no Python code is running on this thread",
            Reason::NoSafeRead => {
                "process_vm_readv, which sigaudit needs to read them safely, is refused here"
            }
            Reason::Unreadable => "its frames could not be read",
        }
    }
}

/// Says in `missing` that Python `version` gave no frames, for `reason`:
/// `Python 3.7: no Python frames (supported: 3.8 to 3.15)`.
fn say_missing(missing: &mut Missing, version: Version, reason: Reason) {
    let mut v = [0u8; script::VERSION_CAP];
    let mut n = 0;
    version.write(|part| {
        n += script::put(v.get_mut(n..).unwrap_or(&mut []), &[part]);
    });
    let v = v.get(..n).unwrap_or(&[]);
    missing.set(
        Language::Python,
        v,
        reason.code(),
        &[
            b"Python ",
            v,
            b": no Python frames (",
            reason.why().as_bytes(),
            b")",
        ],
    );
}

/// Fills `stack` with the calling thread's Python frames, innermost first, when one of the
/// modules of `native` (the event's return addresses) is a CPython runtime, or says in `missing`
/// why they cannot be read. Returns whether the thread runs Python. Safe in any context a hook
/// runs in (see the module docs).
pub fn capture(stack: &mut PyStack, missing: &mut Missing, native: &[usize]) -> bool {
    stack.len = 0;
    stack.truncated = false;
    let shared = crate::guard::in_shared_memory_child();
    let Some(found) = interpreter(native, !shared) else {
        return false;
    };
    if let Err(reason) = read(stack, &found, shared) {
        stack.len = 0;
        say_missing(missing, found.version, reason);
    }
    true
}

/// The walk of [`capture`], for the interpreter `found`.
fn read(stack: &mut PyStack, found: &Found, shared: bool) -> Result<(), Reason> {
    let layout = found.layout?;
    if shared {
        return Err(Reason::VforkChild);
    }
    // SAFETY: pthread_self has no preconditions and only reads the thread pointer.
    let me = unsafe { libc::pthread_self() } as usize;
    let walk = walk::Walk {
        layout: &layout,
        types: &found.types,
        runtime: found.runtime,
        me,
    };
    // SAFETY: only `_PyRuntime`'s own fields are read through this: a static of a module that
    // is on this thread's stack, so mapped.
    let statics = unsafe { Direct::new() };
    if walk.finalizing(&statics) {
        return Err(Reason::Finalizing);
    }
    let checked = Checked::new().ok_or(Reason::NoSafeRead)?;
    let ts = walk
        .thread_state(&statics, &checked)
        .ok_or(Reason::NoThreadState)?;
    if ts.attached {
        // SAFETY: this thread holds the GIL (or is attached): its frames, their code objects and
        // their names stay put while it is busy calling us (module docs).
        walk.frames(&unsafe { Direct::new() }, &ts, stack)
    } else {
        walk.frames(&checked, &ts, stack)
    }
}

// ---- the interpreter found, kept for later events ----------------------------------------------

const EMPTY: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

/// The interpreter of this process, once found: its module's link map and what it holds. Written
/// once by the event that finds it (the state goes EMPTY -> FILLING, by compare-and-swap, then
/// READY with release ordering), then only read.
struct Kept {
    state: AtomicU8,
    map: AtomicUsize,
    found: UnsafeCell<MaybeUninit<Found>>,
}

// SAFETY: `found` is written only by the thread that moved `state` from EMPTY to FILLING, and
// read only after `state` is READY (acquire), after which it never changes.
unsafe impl Sync for Kept {}

static KEPT: Kept = Kept {
    state: AtomicU8::new(EMPTY),
    map: AtomicUsize::new(0),
    found: UnsafeCell::new(MaybeUninit::uninit()),
};

fn kept() -> Option<(usize, Found)> {
    if KEPT.state.load(Ordering::Acquire) != READY {
        return None;
    }
    // SAFETY: READY: written once and published (see `Kept`).
    let found = unsafe { (*KEPT.found.get()).assume_init() };
    Some((KEPT.map.load(Ordering::Relaxed), found))
}

fn keep(map: usize, found: Found) {
    if KEPT
        .state
        .compare_exchange(EMPTY, FILLING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: we moved the state to FILLING: no one else writes, no one reads until READY.
    unsafe { (*KEPT.found.get()).write(found) };
    KEPT.map.store(map, Ordering::Relaxed);
    KEPT.state.store(READY, Ordering::Release);
}

/// The interpreter whose module has a frame in `native`, if any. Found once per process (and
/// kept, unless `may_keep` is false: a `vfork()` child must not write its parent's memory).
fn interpreter(native: &[usize], may_keep: bool) -> Option<Found> {
    let kept = kept();
    if native.is_empty() {
        // No native stack (a signal handler on an alternate stack too small to unwind on): the
        // interpreter this process was already seen to run, if any.
        return kept.map(|(_, found)| found);
    }
    let mut looked_at = [0usize; 8];
    for &ip in native {
        let Some(loc) = crate::unwind::locate(ip) else {
            continue;
        };
        let map = loc.map as usize;
        if let Some((kept_map, found)) = kept {
            if map == kept_map {
                return Some(found);
            }
            continue;
        }
        if looked_at.contains(&map) {
            continue;
        }
        if let Some(slot) = looked_at.iter_mut().find(|m| **m == 0) {
            *slot = map;
        }
        // SAFETY: the module has a frame on this thread's stack, so it stays loaded; its static
        // data is mapped, and `detect` reads only inside the symbols it finds.
        let found = detect::detect(&unsafe { Direct::new() }, |name| unsafe {
            crate::objects::lookup_in(loc.map, name)
        });
        if let Some(found) = found {
            if may_keep {
                keep(map, found);
            }
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests;
