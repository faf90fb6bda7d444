//! Is a module CPython, which version, and where is what we need in it.
//!
//! Asked of a module that has a frame on the event's native stack, through its own GNU hash
//! table (`symbols::lookup_in`: no lock, no allocation), and answered from its exported symbols
//! and static data only, never by calling it: so it is safe in a signal handler and in a
//! `vfork()` child, where `Py_GetVersion()` (which formats into a static buffer) or `dlsym()`
//! (which takes the loader's lock and may allocate its error message) are not.
//!
//! - A module that defines `Py_GetVersion` is a CPython runtime (libpython, or an executable with
//!   libpython linked in, which exports its symbols for extension modules); one that does not
//!   (an extension module, which only imports them) is not.
//! - From 3.11 its `Py_Version` (a `const unsigned long` holding `PY_VERSION_HEX`) gives the
//!   version. Before, the version is told by the newest public function the module defines,
//!   each of which arrived in one minor version and stayed: `PyModule_AddObjectRef` (3.10),
//!   `PyModule_AddType` (3.9), `Py_BytesMain` (3.8), `PyOS_BeforeFork` (3.7), `PyOS_FSPath`
//!   (3.6); `PyString_Type` is Python 2, and `PyCapsule_New` 2.7 among those. Only the minor
//!   version is known then (checked on pyenv's 2.7.18, 3.6.15 to 3.10.13).
//! - The layout is checked against the types the module exports: `PyCode_Type.tp_basicsize` is
//!   where the bytecode starts (3.11+) or `sizeof(PyCodeObject)`, and before 3.11
//!   `PyFrame_Type.tp_basicsize` is `sizeof(PyFrameObject)`. A build whose objects differ gets no
//!   frames, with the reason.

use super::Reason;
use super::debug_offsets;
use super::layout::{self, Frames, Layout};
use super::memory::{Fields, Memory};

/// A CPython version. Plain integers: all-zero bytes are a valid value (events are built in
/// zeroed memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    /// The rest of `PY_VERSION_HEX` (micro, release level, serial), known from 3.11 only:
    /// `exact` says whether it is.
    pub micro: u8,
    pub level: u8,
    pub serial: u8,
    pub exact: bool,
}

impl Version {
    pub fn from_hex(v: u32) -> Self {
        Version {
            major: (v >> 24) as u8,
            minor: (v >> 16) as u8,
            micro: (v >> 8) as u8,
            level: ((v >> 4) & 0xf) as u8,
            serial: (v & 0xf) as u8,
            exact: true,
        }
    }

    /// Only the major and minor version are known.
    pub fn minor_only(major: u8, minor: u8) -> Self {
        Version {
            major,
            minor,
            micro: 0,
            level: 0,
            serial: 0,
            exact: false,
        }
    }

    /// Writes `3.11.7`, `3.15.0rc1`, or `3.10` when only the minor version is known.
    pub fn write(&self, mut put: impl FnMut(&[u8])) {
        let num = |n: u8, put: &mut dyn FnMut(&[u8])| {
            let digits = [b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10];
            let from = if n >= 100 {
                0
            } else if n >= 10 {
                1
            } else {
                2
            };
            put(&digits[from..]);
        };
        num(self.major, &mut put);
        put(b".");
        num(self.minor, &mut put);
        if self.exact {
            put(b".");
            num(self.micro, &mut put);
            let tag: &[u8] = match self.level {
                0xa => b"a",
                0xb => b"b",
                0xc => b"rc",
                _ => b"",
            };
            if !tag.is_empty() {
                put(tag);
                num(self.serial, &mut put);
            }
        }
    }
}

/// Addresses of the interpreter's type objects, for the type checks of the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Types {
    pub code: usize,
    pub unicode: usize,
    pub bytes: usize,
    /// `PyFrame_Type` (the walk checks frame objects before 3.11).
    pub frame: usize,
}

/// What a module holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub version: Version,
    /// `&_PyRuntime`.
    pub runtime: usize,
    pub types: Types,
    /// The layout to walk with, or why there is none.
    pub layout: Result<Layout, Reason>,
}

/// The minor versions read.
pub const OLDEST: u8 = 8;
pub const NEWEST: u8 = 15;

/// Looks at the module whose symbols `symbol` finds (address and size of a defined symbol, no
/// NUL in the name), reading its static data through `mem`; `None` if it is not CPython.
pub fn detect<M: Memory>(
    mem: &M,
    symbol: impl Fn(&[u8]) -> Option<(usize, usize)>,
) -> Option<Found> {
    symbol(b"Py_GetVersion")?;
    let hex = symbol(b"Py_Version")
        .and_then(|(at, _)| mem.u32(at))
        .filter(|v| v >> 24 == 3);
    let version = match hex {
        Some(v) => Version::from_hex(v),
        None => {
            let ladder: [(&[u8], u8, u8); 7] = [
                (b"PyModule_AddObjectRef", 3, 10),
                (b"PyModule_AddType", 3, 9),
                (b"Py_BytesMain", 3, 8),
                (b"PyOS_BeforeFork", 3, 7),
                (b"PyOS_FSPath", 3, 6),
                (b"PyCapsule_New", 2, 7),
                (b"PyString_Type", 2, 0),
            ];
            let (major, minor) = ladder
                .iter()
                .find(|(name, _, _)| symbol(name).is_some())
                .map_or((3, 0), |&(_, major, minor)| (major, minor));
            // Python 2 before 2.7 defines `PyString_Type` but not `PyCapsule_New`.
            let (major, minor) = match (major, minor, symbol(b"PyString_Type")) {
                (2, 7, None) => (3, 0),
                other => (other.0, other.1),
            };
            Version::minor_only(major, minor)
        }
    };
    let addr = |name: &[u8]| symbol(name).map_or(0, |(at, _)| at);
    let mut found = Found {
        version,
        runtime: addr(b"_PyRuntime"),
        types: Types {
            code: addr(b"PyCode_Type"),
            unicode: addr(b"PyUnicode_Type"),
            bytes: addr(b"PyBytes_Type"),
            frame: addr(b"PyFrame_Type"),
        },
        layout: Err(Reason::Unsupported),
    };
    if version.major != 3 || !(OLDEST..=NEWEST).contains(&version.minor) {
        return Some(found);
    }
    let t = found.types;
    if found.runtime == 0 || t.code == 0 || t.unicode == 0 || t.bytes == 0 || t.frame == 0 {
        found.layout = Err(Reason::UnknownLayout);
        return Some(found);
    }
    found.layout = layout_of(mem, &symbol, hex, version.minor, found.runtime)
        .filter(|l| types_agree(mem, l, &t))
        .ok_or(Reason::UnknownLayout);
    Some(found)
}

fn layout_of<M: Memory>(
    mem: &M,
    symbol: &impl Fn(&[u8]) -> Option<(usize, usize)>,
    hex: Option<u32>,
    minor: u8,
    runtime: usize,
) -> Option<Layout> {
    if let Some(l) = layout::hand_written(minor) {
        return Some(*l);
    }
    let version = hex?;
    let len = debug_offsets::table_len(version)?;
    // `_PyRuntime` starts with the table; its symbol's size bounds what is read.
    let (_, size) = symbol(b"_PyRuntime")?;
    if size < len {
        return None;
    }
    let mut table = [0u8; debug_offsets::MAX_TABLE];
    let table = table.get_mut(..len)?;
    if !mem.read(runtime, table) {
        return None;
    }
    debug_offsets::layout(table, version).ok()
}

/// Whether the type objects' sizes are those of `layout`.
fn types_agree<M: Memory>(mem: &M, layout: &Layout, t: &Types) -> bool {
    // `tp_basicsize` comes after the `PyVarObject` header (`ob_type`, `ob_size`) and `tp_name`.
    let basicsize_at = layout.ob_type + 8 + 8 + 8;
    debug_assert!(layout.free_threaded || basicsize_at == layout::TP_BASICSIZE);
    let basicsize = |ty: usize| {
        let mut b = [0u8; 8];
        mem.read(ty + basicsize_at, &mut b)
            .then(|| Fields(&b).word(0))
            .flatten()
    };
    let frame_ok = match layout.frames {
        Frames::Objects {
            basicsize: want, ..
        } => basicsize(t.frame) == Some(want),
        Frames::Interpreter(_) => true,
    };
    frame_ok && basicsize(t.code) == Some(layout.code.basicsize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::image::Image;

    fn version_text(v: Version) -> String {
        let mut s = Vec::new();
        v.write(|b| s.extend_from_slice(b));
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn versions_read_as_python_writes_them() {
        assert_eq!(version_text(Version::from_hex(0x030b_07f0)), "3.11.7");
        assert_eq!(version_text(Version::from_hex(0x030f_00c1)), "3.15.0rc1");
        assert_eq!(version_text(Version::from_hex(0x030e_00a4)), "3.14.0a4");
        assert_eq!(version_text(Version::minor_only(3, 10)), "3.10");
        assert_eq!(version_text(Version::minor_only(2, 7)), "2.7");
    }

    /// A module image with the given symbols (name, address, size) over `image`.
    fn module<'a>(
        syms: &'a [(&'a [u8], usize, usize)],
    ) -> impl Fn(&[u8]) -> Option<(usize, usize)> + 'a {
        move |name| {
            syms.iter()
                .find(|(n, _, _)| *n == name)
                .map(|&(_, a, s)| (a, s))
        }
    }

    #[test]
    fn old_versions_are_told_by_the_functions_they_define() {
        let mem = Image::new(0x1_0000, 0x100);
        type Case<'a> = (&'a [&'a [u8]], Option<(u8, u8)>);
        let cases: [Case; 8] = [
            (
                &[
                    b"Py_GetVersion",
                    b"PyModule_AddObjectRef",
                    b"PyModule_AddType",
                ],
                Some((3, 10)),
            ),
            (
                &[b"Py_GetVersion", b"PyModule_AddType", b"Py_BytesMain"],
                Some((3, 9)),
            ),
            (&[b"Py_GetVersion", b"Py_BytesMain"], Some((3, 8))),
            (
                &[b"Py_GetVersion", b"PyOS_BeforeFork", b"PyOS_FSPath"],
                Some((3, 7)),
            ),
            (&[b"Py_GetVersion", b"PyOS_FSPath"], Some((3, 6))),
            (
                &[b"Py_GetVersion", b"PyString_Type", b"PyCapsule_New"],
                Some((2, 7)),
            ),
            (&[b"Py_GetVersion", b"PyString_Type"], Some((2, 0))),
            // An extension module: it defines none of them.
            (&[b"PyInit__ctypes"], None),
        ];
        for (names, want) in cases {
            let syms: Vec<(&[u8], usize, usize)> =
                names.iter().map(|n| (*n, 0x1_0000, 8)).collect();
            let found = detect(&mem, module(&syms));
            assert_eq!(
                found.map(|f| (f.version.major, f.version.minor)),
                want,
                "{names:?}"
            );
            if let Some(f) = found {
                assert!(f.layout.is_err(), "no types, no layout");
            }
        }
    }

    #[test]
    fn py_version_and_the_types_decide() {
        // 3.12: Py_Version, the runtime and the types, with PyCode_Type's size as 3.12 has it.
        let base = 0x10_0000;
        let mut mem = Image::new(base, 0x1000);
        mem.put_u32(base, 0x030c_01f0);
        let code_type = base + 0x100;
        mem.put_word(code_type + 32, 192);
        let syms: [(&[u8], usize, usize); 7] = [
            (b"Py_GetVersion", base + 0x800, 16),
            (b"Py_Version", base, 8),
            (b"_PyRuntime", base + 0x400, 0x200),
            (b"PyCode_Type", code_type, 0x100),
            (b"PyUnicode_Type", base + 0x200, 0x100),
            (b"PyBytes_Type", base + 0x300, 0x100),
            (b"PyFrame_Type", base + 0x380, 0x80),
        ];
        let found = detect(&mem, module(&syms)).unwrap();
        assert_eq!(version_text(found.version), "3.12.1");
        assert_eq!(found.layout.map(|l| l.minor), Ok(12));
        // The same with a code object of another size (a Py_TRACE_REFS build, say).
        mem.put_word(code_type + 32, 208);
        let found = detect(&mem, module(&syms)).unwrap();
        assert_eq!(found.layout, Err(Reason::UnknownLayout));
        // 3.7 (no Py_Version): unsupported, said so.
        let old: [(&[u8], usize, usize); 2] =
            [(b"Py_GetVersion", base, 8), (b"PyOS_BeforeFork", base, 8)];
        let found = detect(&mem, module(&old)).unwrap();
        assert_eq!(found.layout, Err(Reason::Unsupported));
        // 3.16: unsupported too, not "unknown layout".
        mem.put_u32(base, 0x0310_00f0);
        let found = detect(&mem, module(&syms)).unwrap();
        assert_eq!(found.layout, Err(Reason::Unsupported));
    }
}
