//! The layout of CPython 3.13 and later, read from the interpreter's own `_Py_DebugOffsets`.
//!
//! Since 3.13, `_PyRuntime` starts with a table for debuggers and profilers: the cookie
//! `xdebugpy`, the `PY_VERSION_HEX` it was built as, whether the build is free-threaded, then
//! sections of `uint64_t` offsets (`Include/internal/pycore_debug_offsets.h` from 3.14,
//! `pycore_runtime.h` in 3.13). Every offset the walk needs that the table has comes from it: the
//! runtime's, the interpreters' and the thread states' fields, the frame, the code object, the
//! object header, `bytes` and `str`. The table's own layout changes between minor versions
//! (fields are added inside its sections), so where each entry is comes from that version's
//! header ([`Positions`]: checked with `offsetof` against the headers of 3.13.0, 3.14.10 and
//! 3.15.2).
//!
//! A few facts are not in the table, and come from the headers too ([`Facts`]): where a thread
//! state's `state` word is relative to `_status`, where `_co_firsttraceable` is relative to the
//! bytecode, the tag bits of 3.14's `_PyStackRef`, the bits of a `str`'s state word, and for
//! free-threaded 3.14+ where the thread-local bytecode is. Each is stated relative to a field the
//! table gives, and only for the builds it was derived from: the object header must be where that
//! build has it (8 with the GIL, 24 free-threaded; not a `Py_TRACE_REFS` debug build).
//!
//! A table is refused, and the interpreter gets no frames with one diagnostic, when its cookie is
//! missing, its version is not the running `Py_Version`, its minor version has no known
//! positions (3.16 and later), or an offset it gives falls outside the structure it is in.

use super::layout::{Attached, Code, Frames, Holder, InterpreterFrames, Layout, Tlbc};
use super::lines::LineTable;
use super::memory::Fields;
use super::strings::StrLayout;

pub const COOKIE: &[u8; 8] = b"xdebugpy";
/// The longest table we know (3.15's), so the most that is read.
pub const MAX_TABLE: usize = 888;

/// Where each entry the walk uses is in one minor version's table (byte offsets into it).
pub(super) struct Positions {
    pub(super) size: usize,
    pub(super) finalizing: usize,
    pub(super) interpreters_head: usize,
    pub(super) interp_next: usize,
    pub(super) interp_threads_head: usize,
    pub(super) ceval_gil: usize,
    pub(super) gil_runtime_state: usize,
    pub(super) gil_locked: usize,
    pub(super) gil_holder: usize,
    pub(super) ts_size: usize,
    pub(super) ts_next: usize,
    pub(super) ts_current_frame: usize,
    pub(super) ts_thread_id: usize,
    pub(super) ts_status: usize,
    pub(super) frame_size: usize,
    pub(super) frame_previous: usize,
    pub(super) frame_executable: usize,
    pub(super) frame_instr_ptr: usize,
    pub(super) frame_owner: usize,
    pub(super) code_size: usize,
    pub(super) code_filename: usize,
    pub(super) code_qualname: usize,
    pub(super) code_linetable: usize,
    pub(super) code_firstlineno: usize,
    pub(super) code_adaptive: usize,
    pub(super) ob_type: usize,
    pub(super) bytes_ob_size: usize,
    pub(super) bytes_sval: usize,
    pub(super) str_state: usize,
    pub(super) str_length: usize,
    pub(super) str_ascii_size: usize,
    /// 3.15+ gives `sizeof(PyCompactUnicodeObject)`; before, it is the ASCII header + 16.
    pub(super) str_compact_size: Option<usize>,
}

const V3_13: Positions = Positions {
    size: 584,
    finalizing: 32,
    interpreters_head: 40,
    interp_next: 64,
    interp_threads_head: 72,
    ceval_gil: 112,
    gil_runtime_state: 120,
    gil_locked: 136,
    gil_holder: 144,
    ts_size: 152,
    ts_next: 168,
    ts_current_frame: 184,
    ts_thread_id: 192,
    ts_status: 216,
    frame_size: 224,
    frame_previous: 232,
    frame_executable: 240,
    frame_instr_ptr: 248,
    frame_owner: 264,
    code_size: 272,
    code_filename: 280,
    code_qualname: 296,
    code_linetable: 304,
    code_firstlineno: 312,
    code_adaptive: 344,
    ob_type: 360,
    bytes_ob_size: 520,
    bytes_sval: 528,
    str_state: 544,
    str_length: 552,
    str_ascii_size: 560,
    str_compact_size: None,
};

const V3_14: Positions = Positions {
    size: 760,
    ceval_gil: 120,
    gil_runtime_state: 128,
    gil_locked: 144,
    gil_holder: 152,
    ts_size: 176,
    ts_next: 192,
    ts_current_frame: 208,
    ts_thread_id: 216,
    ts_status: 240,
    frame_size: 248,
    frame_previous: 256,
    frame_executable: 264,
    frame_instr_ptr: 272,
    frame_owner: 288,
    code_size: 312,
    code_filename: 320,
    code_qualname: 336,
    code_linetable: 344,
    code_firstlineno: 352,
    code_adaptive: 384,
    ob_type: 408,
    bytes_ob_size: 600,
    bytes_sval: 608,
    str_state: 624,
    str_length: 632,
    str_ascii_size: 640,
    ..V3_13
};

const V3_15: Positions = Positions {
    size: 888,
    ts_thread_id: 240,
    ts_status: 264,
    frame_size: 312,
    frame_previous: 320,
    frame_executable: 328,
    frame_instr_ptr: 336,
    frame_owner: 352,
    code_size: 376,
    code_filename: 384,
    code_qualname: 400,
    code_linetable: 408,
    code_firstlineno: 416,
    code_adaptive: 448,
    ob_type: 472,
    bytes_ob_size: 696,
    bytes_sval: 704,
    str_state: 720,
    str_length: 728,
    str_ascii_size: 736,
    str_compact_size: Some(744),
    ..V3_14
};

/// What the table does not say, for one minor version, with and without the GIL.
pub(super) struct Facts {
    /// `PyThreadState.state` is this many bytes after `_status`.
    pub(super) state_after_status: usize,
    /// `_co_firsttraceable` is this many bytes before the bytecode (`co_code_adaptive`), with
    /// the GIL and free-threaded.
    first_traceable_before_code: [usize; 2],
    /// Low bits of `f_executable` that are tags, not address.
    tag_mask: usize,
    /// Free-threaded: thread-local bytecode (3.14+): `tlbc_index` is this many bytes before
    /// `owner`, `co_tlbc` this many before the bytecode.
    tlbc: Option<(usize, usize)>,
    /// Bits of a `str`'s state word, free-threaded (where 3.14 widened `interned` to a byte).
    free_threaded_str_bits: (u32, u32, u32),
}

const FACTS_3_13: Facts = Facts {
    state_after_status: 8,
    first_traceable_before_code: [16, 16],
    tag_mask: 0,
    tlbc: None,
    free_threaded_str_bits: (2, 1 << 5, 1 << 6),
};

const FACTS_3_14: Facts = Facts {
    state_after_status: 12,
    first_traceable_before_code: [16, 24],
    tag_mask: 3,
    tlbc: Some((6, 8)),
    free_threaded_str_bits: (8, 1 << 11, 1 << 12),
};

const FACTS_3_15: Facts = Facts {
    state_after_status: 16,
    ..FACTS_3_14
};

/// `_Py_THREAD_ATTACHED` (3.13 to 3.15).
const THREAD_ATTACHED: i32 = 1;
/// `PyObject.ob_type` with the GIL and free-threaded.
const OB_TYPE: [usize; 2] = [8, 24];

pub(super) fn known(minor: u8) -> Option<(&'static Positions, &'static Facts)> {
    match minor {
        13 => Some((&V3_13, &FACTS_3_13)),
        14 => Some((&V3_14, &FACTS_3_14)),
        15 => Some((&V3_15, &FACTS_3_15)),
        _ => None,
    }
}

/// Why a table was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A version whose table sigaudit does not know (3.16 and later).
    UnknownVersion,
    /// No cookie, another version than the running one, or offsets that cannot be right.
    Disagrees,
}

/// The length of the table of `version` (a `PY_VERSION_HEX`), if it is one we know.
pub fn table_len(version: u32) -> Option<usize> {
    known(((version >> 16) & 0xff) as u8).map(|(p, _)| p.size)
}

/// Makes the layout of the running interpreter (`Py_Version` = `version`) from its table.
pub fn layout(table: &[u8], version: u32) -> Result<Layout, Refused> {
    let minor = ((version >> 16) & 0xff) as u8;
    let (p, facts) = known(minor).ok_or(Refused::UnknownVersion)?;
    let t = Fields(table.get(..p.size).ok_or(Refused::Disagrees)?);
    if table.get(..8) != Some(&COOKIE[..]) || t.word(8) != Some(version as usize) {
        return Err(Refused::Disagrees);
    }
    let free_threaded = match t.word(16) {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(Refused::Disagrees),
    };
    let ft = usize::from(free_threaded);
    // Every entry is an offset into a structure of at most 64 KiB (PyInterpreterState is the
    // largest, about 10 KiB).
    let get = |at: usize| {
        t.word(at)
            .filter(|&v| v < 1 << 16)
            .ok_or(Refused::Disagrees)
    };
    let ob_type = get(p.ob_type)?;
    if ob_type != OB_TYPE[ft] {
        return Err(Refused::Disagrees);
    }
    // Fields of a structure whose size the table gives must lie inside it.
    let within = |size_at: usize, fields: &[usize], width: usize| -> Result<(), Refused> {
        let size = get(size_at)?;
        for &at in fields {
            if get(at)? + width > size {
                return Err(Refused::Disagrees);
            }
        }
        Ok(())
    };
    within(
        p.ts_size,
        &[p.ts_next, p.ts_current_frame, p.ts_thread_id],
        8,
    )?;
    within(p.ts_size, &[p.ts_status], 4)?;
    within(
        p.frame_size,
        &[p.frame_previous, p.frame_executable, p.frame_instr_ptr],
        8,
    )?;
    within(p.frame_size, &[p.frame_owner], 1)?;
    within(
        p.code_size,
        &[p.code_filename, p.code_qualname, p.code_linetable],
        8,
    )?;
    within(p.code_size, &[p.code_firstlineno], 4)?;

    let status = get(p.ts_status)?;
    let attached = Attached::State {
        offset: status + facts.state_after_status,
        value: THREAD_ATTACHED,
    };
    let holder = if free_threaded {
        Holder::Attached(attached)
    } else {
        let gil = get(p.gil_runtime_state)?;
        let inside = |at: usize| get(at)?.checked_sub(gil).ok_or(Refused::Disagrees);
        Holder::Gil {
            interp_gil: get(p.ceval_gil)?,
            locked: inside(p.gil_locked)?,
            last_holder: inside(p.gil_holder)?,
            attached,
        }
    };
    let code_start = get(p.code_adaptive)?;
    let owner = get(p.frame_owner)?;
    let before = |d: usize| code_start.checked_sub(d).ok_or(Refused::Disagrees);
    let tlbc = match (free_threaded, facts.tlbc) {
        (true, Some((index_before_owner, array_before_code))) => Some(Tlbc {
            frame_index: owner
                .checked_sub(index_before_owner)
                .ok_or(Refused::Disagrees)?,
            code_array: before(array_before_code)?,
            entries: 8,
        }),
        _ => None,
    };
    let ascii_data = get(p.str_ascii_size)?;
    let compact_data = match p.str_compact_size {
        Some(at) => get(at)?,
        None => ascii_data + 16,
    };
    let (kind_shift, compact_bit, ascii_bit) = if free_threaded {
        facts.free_threaded_str_bits
    } else {
        (2, 1 << 5, 1 << 6)
    };
    Ok(Layout {
        minor,
        free_threaded,
        rt_finalizing: get(p.finalizing)?,
        rt_interpreters: get(p.interpreters_head)?,
        interp_next: get(p.interp_next)?,
        interp_threads: get(p.interp_threads_head)?,
        ts_next: get(p.ts_next)?,
        ts_thread_id: get(p.ts_thread_id)?,
        holder,
        frames: Frames::Interpreter(InterpreterFrames {
            ts_cframe: None,
            current: get(p.ts_current_frame)?,
            previous: get(p.frame_previous)?,
            code: get(p.frame_executable)?,
            instr: get(p.frame_instr_ptr)?,
            owner,
            tag_mask: facts.tag_mask,
            tlbc,
        }),
        code: Code {
            firstlineno: get(p.code_firstlineno)?,
            filename: get(p.code_filename)?,
            name: get(p.code_qualname)?,
            linetable: get(p.code_linetable)?,
            first_traceable: Some(before(facts.first_traceable_before_code[ft])?),
            basicsize: code_start,
        },
        lines: LineTable::Locations,
        ob_type,
        bytes_size: get(p.bytes_ob_size)?,
        bytes_data: get(p.bytes_sval)?,
        str: StrLayout {
            ob_type,
            length: get(p.str_length)?,
            state: get(p.str_state)?,
            ascii_data,
            compact_data,
            kind_shift,
            compact_bit,
            ascii_bit,
        },
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::Value;

    /// The tables of real interpreters: CPython 3.13.0 (pyenv's build), 3.14.10 and 3.15.2
    /// (Debian's builds), copied out of their `_PyRuntime` (by `dumptable.py`'s one line:
    /// `ctypes.string_at(addressof(c_char.in_dll(pythonapi, "_PyRuntime")), size)`).
    pub fn real_tables() -> Vec<(u32, Vec<u8>)> {
        include_str!("testdata/debug_offsets.json")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let hex = v["table"].as_str().unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (v["hexversion"].as_u64().unwrap() as u32, bytes)
            })
            .collect()
    }

    /// The offsets each release's headers give (`offsetof` on the installed headers; see the
    /// module docs), against what the reader made of that release's own table.
    #[test]
    fn real_tables_give_the_layouts_of_the_headers() {
        let tables = real_tables();
        assert_eq!(tables.len(), 3);
        for (version, table) in tables {
            let l = layout(&table, version).unwrap_or_else(|e| panic!("{version:#x}: {e:?}"));
            let minor = l.minor;
            assert!(!l.free_threaded);
            // (finalizing, interpreters, threads head, tstate thread_id, state, frame owner,
            //  firsttraceable, co_code_adaptive)
            let want = match minor {
                13 => (608, 632, 7344, 152, 40, 70, 184, 200),
                14 => (784, 808, 7344, 152, 44, 74, 192, 208),
                15 => (912, 936, 7336, 176, 48, 74, 192, 208),
                _ => panic!("3.{minor}"),
            };
            let Holder::Gil {
                attached: Attached::State { offset: state, .. },
                locked,
                last_holder,
                ..
            } = l.holder
            else {
                panic!("3.{minor}: a GIL build");
            };
            let Frames::Interpreter(f) = l.frames else {
                panic!("3.{minor}");
            };
            let got = (
                l.rt_finalizing,
                l.rt_interpreters,
                l.interp_threads,
                l.ts_thread_id,
                state,
                f.owner,
                l.code.first_traceable.unwrap(),
                l.code.basicsize,
            );
            assert_eq!(got, want, "3.{minor}");
            assert_eq!((last_holder, locked), (8, 16), "3.{minor}");
            assert_eq!((f.previous, f.code, f.instr), (8, 0, 56), "3.{minor}");
            assert_eq!(f.tag_mask, if minor >= 14 { 3 } else { 0 });
            assert_eq!(
                (
                    l.code.filename,
                    l.code.name,
                    l.code.linetable,
                    l.code.firstlineno
                ),
                (112, 128, 136, 68)
            );
            assert_eq!((l.str.ascii_data, l.str.compact_data), (40, 56));
            assert_eq!((l.ob_type, l.bytes_size, l.bytes_data), (8, 16, 32));
        }
    }

    #[test]
    fn a_table_that_disagrees_is_refused() {
        for (version, table) in real_tables() {
            assert!(layout(&table, version).is_ok());
            // Another release than the running one.
            assert_eq!(layout(&table, version + 0x100), Err(Refused::Disagrees));
            let broken = |at: usize, value: u64| {
                let mut t = table.clone();
                t[at..at + 8].copy_from_slice(&value.to_ne_bytes());
                layout(&t, version)
            };
            let p = known(((version >> 16) & 0xff) as u8).unwrap().0;
            // No cookie; a free-threaded flag that is neither; an object header elsewhere (a
            // Py_TRACE_REFS build); a code field outside the code object; an absurd offset.
            for (at, value) in [
                (0, 0),
                (16, 7),
                (p.ob_type, 24),
                (p.code_filename, 4096),
                (p.ts_thread_id, 1 << 40),
            ] {
                assert_eq!(
                    broken(at, value),
                    Err(Refused::Disagrees),
                    "{version:#x} @{at}"
                );
            }
            // A short table.
            assert_eq!(layout(&table[..100], version), Err(Refused::Disagrees));
        }
        // 3.16 has no known positions.
        assert_eq!(
            layout(&[0; MAX_TABLE], 0x0310_00f0),
            Err(Refused::UnknownVersion)
        );
    }

    /// A free-threaded table: the header facts for that build are used.
    #[test]
    fn free_threaded_tables_use_their_own_facts() {
        for (version, table) in real_tables() {
            let minor = ((version >> 16) & 0xff) as u8;
            let p = known(minor).unwrap().0;
            let mut t = table.clone();
            let mut set = |at: usize, v: u64| t[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            // What 3.13t/3.14t/3.15t's headers give for these (offsetof, built with
            // Py_GIL_DISABLED): the object header is 16 bytes longer.
            set(16, 1);
            set(p.ob_type, 24);
            let (adaptive, owner) = match minor {
                13 => (216, 70),
                _ => (232, 78),
            };
            set(p.code_adaptive, adaptive);
            set(p.frame_owner, owner);
            set(p.str_ascii_size, 56);
            if let Some(at) = p.str_compact_size {
                set(at, 72);
            }
            let l = layout(&t, version).unwrap();
            assert!(l.free_threaded);
            assert!(matches!(l.holder, Holder::Attached(Attached::State { .. })));
            let Frames::Interpreter(f) = l.frames else {
                panic!()
            };
            let first = l.code.first_traceable.unwrap();
            match minor {
                13 => {
                    assert_eq!(first, 200);
                    assert_eq!(f.tlbc, None);
                    assert_eq!(l.str.kind_shift, 2);
                }
                _ => {
                    assert_eq!(first, 208);
                    assert_eq!(
                        f.tlbc,
                        Some(Tlbc {
                            frame_index: 72,
                            code_array: 224,
                            entries: 8
                        })
                    );
                    assert_eq!((l.str.kind_shift, l.str.compact_bit), (8, 1 << 11));
                }
            }
            assert_eq!((l.str.ascii_data, l.str.compact_data), (56, 72));
        }
    }
}
