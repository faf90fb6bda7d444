//! Where the walk finds things in one CPython build: a [`Layout`]. For 3.8 to 3.12, written here
//! from each minor version's headers; for 3.13 and later, made by `debug_offsets.rs` from the
//! interpreter's own `_Py_DebugOffsets`.
//!
//! The hand-written layouts hold for 64-bit Linux release builds with the GIL (x86_64, aarch64:
//! the structures have no architecture-dependent fields there). Each was checked with `offsetof`
//! against the installed headers of 3.8.18, 3.9.18, 3.10.13, 3.11.7 and 3.12.1, and with a run
//! of every one of them (and Debian's 3.11.2). CPython does not move these fields within a
//! minor version, which out-of-process profilers such as py-spy rely on too; and the detection
//! checks `PyCode_Type.tp_basicsize` (and `PyFrame_Type`'s before 3.11) against the layout, so a
//! build whose objects differ (a debug build with `Py_TRACE_REFS`) gets no frames rather than
//! wrong ones.

use super::lines::LineTable;
use super::strings::StrLayout;

/// Offsets, in bytes, of what the walk reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The minor version (3.`minor`).
    pub minor: u8,
    pub free_threaded: bool,
    /// `_PyRuntimeState`: `_finalizing` (the thread state finalising the runtime, or null),
    /// `interpreters.head`.
    pub rt_finalizing: usize,
    pub rt_interpreters: usize,
    /// `PyInterpreterState`: `next`, the head of its thread states.
    pub interp_next: usize,
    pub interp_threads: usize,
    /// `PyThreadState`: `next`, `thread_id` (the `pthread_self()` of its thread).
    pub ts_next: usize,
    pub ts_thread_id: usize,
    pub holder: Holder,
    pub frames: Frames,
    pub code: Code,
    pub lines: LineTable,
    /// `PyObject.ob_type`; `PyBytesObject`: `ob_size`, `ob_sval`.
    pub ob_type: usize,
    pub bytes_size: usize,
    pub bytes_data: usize,
    pub str: StrLayout,
}

/// How to tell that a thread state holds the GIL (is attached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// 3.8 to 3.11: `_PyRuntime.gilstate.tstate_current` is the GIL holder's thread state
    /// (CPython clears it before it drops the GIL and sets it after taking it).
    Runtime { tstate_current: usize },
    /// 3.12+: the thread state is attached, and its interpreter's GIL (`interp->ceval.gil`, a
    /// pointer) is `locked` with it as `last_holder`.
    Gil {
        interp_gil: usize,
        locked: usize,
        last_holder: usize,
        attached: Attached,
    },
    /// Free-threaded builds: attached is all there is.
    Attached(Attached),
}

/// The thread state's own word that says it is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// 3.12: this bit of the `_status` bit-field word (`active`).
    StatusBit { offset: usize, mask: u32 },
    /// 3.13+: the atomic `int state` equals this (`_Py_THREAD_ATTACHED`).
    State { offset: usize, value: i32 },
}

/// How the frames of a thread are chained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frames {
    /// 3.8 to 3.10: `PyFrameObject`s from `tstate->frame` through `f_back`; `f_lasti` (an int)
    /// is the last instruction's offset in `lasti_unit` bytes (1 before 3.10, 2 in 3.10), -1
    /// before the first. `basicsize` is `sizeof(PyFrameObject)`, as `PyFrame_Type` has it.
    Objects {
        ts_frame: usize,
        back: usize,
        code: usize,
        lasti: usize,
        lasti_unit: usize,
        basicsize: usize,
    },
    /// 3.11+: `_PyInterpreterFrame`s from the thread's current frame (through `tstate->cframe`
    /// where there is one) along `previous`.
    Interpreter(InterpreterFrames),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterpreterFrames {
    /// `PyThreadState.cframe` (3.11, 3.12), in which `current` is; else `current` is in the
    /// thread state itself (3.13+).
    pub ts_cframe: Option<usize>,
    pub current: usize,
    /// `_PyInterpreterFrame`: `previous`, the code (`f_code`, `f_executable`), the instruction
    /// pointer (`prev_instr`, `instr_ptr`), `owner` (a char).
    pub previous: usize,
    pub code: usize,
    pub instr: usize,
    pub owner: usize,
    /// The code reference carries tag bits in its low bits (3.14+'s `_PyStackRef`).
    pub tag_mask: usize,
    /// Free-threaded 3.14+: the instruction pointer is in a per-thread copy of the bytecode.
    pub tlbc: Option<Tlbc>,
}

/// Thread-local bytecode (free-threaded 3.14+): the frame's `tlbc_index` (an `int32_t`) picks an
/// entry of the code's `co_tlbc` array (`_PyCodeArray`: a `Py_ssize_t` size, then the entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlbc {
    pub frame_index: usize,
    pub code_array: usize,
    pub entries: usize,
}

/// `PyCodeObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// `co_firstlineno` (an int), `co_filename`, the function name (`co_qualname` from 3.11,
    /// `co_name` before), the line table (`co_lnotab` before 3.10, `co_linetable`).
    pub firstlineno: usize,
    pub filename: usize,
    pub name: usize,
    pub linetable: usize,
    /// 3.11+: `_co_firsttraceable` (an int, in code units) and where the bytecode starts
    /// (`co_code_adaptive`, which is also `PyCode_Type.tp_basicsize`); the code object's
    /// `ob_size` counts its code units.
    pub first_traceable: Option<usize>,
    /// `PyCode_Type.tp_basicsize` of this build.
    pub basicsize: usize,
}

/// Frame owners (3.11+): a generator's frame is never incomplete; from 3.12 an owner of 3 or
/// more (`FRAME_OWNED_BY_CSTACK` in 3.12 and 3.13, `FRAME_OWNED_BY_INTERPRETER` and `_CSTACK`
/// in 3.14, `_INTERPRETER` in 3.15) is a frame without Python code of its own.
pub const OWNED_BY_GENERATOR: u8 = 1;
pub const OWNED_BY_C: u8 = 3;

/// `PyTypeObject.tp_basicsize` (after the 24-byte `PyVarObject` header and `tp_name`) in every
/// GIL build.
pub const TP_BASICSIZE: usize = 32;

/// `str` in 3.8 to 3.11 (`PyASCIIObject` still has `wstr`) and in 3.12 (it has not).
const STR_3_8: StrLayout = StrLayout {
    ob_type: 8,
    length: 16,
    state: 32,
    ascii_data: 48,
    compact_data: 72,
    kind_shift: 2,
    compact_bit: 1 << 5,
    ascii_bit: 1 << 6,
};
const STR_3_12: StrLayout = StrLayout {
    ascii_data: 40,
    compact_data: 56,
    ..STR_3_8
};

const V3_8: Layout = Layout {
    minor: 8,
    free_threaded: false,
    rt_finalizing: 16,
    rt_interpreters: 32,
    interp_next: 0,
    interp_threads: 8,
    ts_next: 8,
    ts_thread_id: 176,
    holder: Holder::Runtime {
        tstate_current: 1368,
    },
    frames: Frames::Objects {
        ts_frame: 24,
        back: 24,
        code: 32,
        lasti: 104,
        lasti_unit: 1,
        basicsize: 368,
    },
    code: Code {
        firstlineno: 40,
        filename: 104,
        name: 112,
        linetable: 120,
        first_traceable: None,
        basicsize: 176,
    },
    lines: LineTable::Lnotab,
    ob_type: 8,
    bytes_size: 16,
    bytes_data: 32,
    str: STR_3_8,
};

const V3_9: Layout = Layout {
    minor: 9,
    holder: Holder::Runtime {
        tstate_current: 568,
    },
    ..V3_8
};

const V3_10: Layout = Layout {
    minor: 10,
    frames: Frames::Objects {
        ts_frame: 24,
        back: 24,
        code: 32,
        lasti: 96,
        lasti_unit: 2,
        basicsize: 360,
    },
    lines: LineTable::Pairs,
    ..V3_9
};

const V3_11: Layout = Layout {
    minor: 11,
    rt_finalizing: 24,
    rt_interpreters: 40,
    interp_threads: 16,
    ts_thread_id: 152,
    holder: Holder::Runtime {
        tstate_current: 576,
    },
    frames: Frames::Interpreter(InterpreterFrames {
        ts_cframe: Some(56),
        current: 8,
        previous: 48,
        code: 32,
        instr: 56,
        owner: 69,
        tag_mask: 0,
        tlbc: None,
    }),
    code: Code {
        firstlineno: 72,
        filename: 112,
        name: 128,
        linetable: 136,
        first_traceable: Some(168),
        basicsize: 184,
    },
    lines: LineTable::Locations,
    ..V3_8
};

const V3_12: Layout = Layout {
    minor: 12,
    interp_threads: 72,
    ts_thread_id: 136,
    holder: Holder::Gil {
        interp_gil: 384,
        locked: 16,
        last_holder: 8,
        attached: Attached::StatusBit {
            offset: 24,
            mask: 1 << 4,
        },
    },
    frames: Frames::Interpreter(InterpreterFrames {
        ts_cframe: Some(56),
        current: 0,
        previous: 8,
        code: 0,
        instr: 56,
        owner: 70,
        tag_mask: 0,
        tlbc: None,
    }),
    code: Code {
        firstlineno: 68,
        filename: 112,
        name: 128,
        linetable: 136,
        first_traceable: Some(176),
        basicsize: 192,
    },
    str: STR_3_12,
    ..V3_11
};

/// The hand-written layout of 3.`minor`, for 3.8 to 3.12.
pub fn hand_written(minor: u8) -> Option<&'static Layout> {
    match minor {
        8 => Some(&V3_8),
        9 => Some(&V3_9),
        10 => Some(&V3_10),
        11 => Some(&V3_11),
        12 => Some(&V3_12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_3_8_to_3_12_are_written_by_hand() {
        for minor in [6, 7, 13, 14, 15] {
            assert!(hand_written(minor).is_none(), "3.{minor}");
        }
        for minor in 8..=12 {
            assert_eq!(hand_written(minor).map(|l| l.minor), Some(minor));
        }
    }
}
