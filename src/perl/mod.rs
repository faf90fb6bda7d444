//! Perl frames for events raised from Perl code, read straight from the interpreter's memory:
//! the file and line of the current statement and of each calling statement, with the sub
//! names, as `caller()` would give them.
//!
//! # How it works
//!
//! The constructor ([`init`]) asks the dynamic loader, once, whether this process runs Perl: it
//! looks up `PL_revision`, `PL_version` and `PL_subversion` (exported by every `perl` and
//! `libperl`), picks the [`Layout`] of that version, and checks that the build is one the layout
//! describes: threaded (it exports `PL_thr_key`) with an interpreter of the layout's size (it
//! exports `PL_interp_size`). Anything else is remembered with the reason, which every event then
//! carries (`script_missing`), so a user learns why there are no Perl frames.
//!
//! In a hook, [`capture`] follows what `caller()` does, with plain memory reads:
//!
//! 1. Not in a `vfork()` child (its parent's memory, which it must not trust).
//! 2. The calling thread's interpreter: in a threaded build each thread that runs Perl has its
//!    own, stored under the `pthread` key `PL_thr_key` (`PERL_GET_CONTEXT`), read with
//!    `pthread_getspecific` (glibc: two loads from the thread's own descriptor, no lock, no
//!    allocation). The key is only trusted once `PL_curinterp` is set, since Perl creates the key
//!    before its first interpreter. A thread Perl never ran on has no interpreter: no frames.
//!    An interpreter in global destruction (`PL_phase`) is refused: it is freeing what we read.
//! 3. `PL_curcop`, the statement being run (a `COP`), gives the innermost file and line.
//! 4. The context stack (`PL_curstackinfo->si_cxstack`, `si_cxix` entries) gives the callers:
//!    from the top, each sub, format or eval context (not a `try` block, nor the fake sub context
//!    of a regex code block) is a frame, whose name is the sub's (`Package::name`, from its glob
//!    or, for a lexical sub, its own name) or `(eval)`, or `require File.pm` for the file scope of
//!    a module being loaded; the statement that called it (`blk_oldcop`) is where the next frame
//!    out is. When a stack is exhausted and it is not the main one (a signal handler, a sort
//!    block, a tie), the walk goes on in the stack below (`si_prev`), as `caller()` does. The
//!    outermost frame is the main program's, named `(main)`.
//!
//! Every pointer is checked (not null, aligned, in user space) before it is read, every index
//! against its stack's size, every string length against a bound, every structure's type tag
//! against what it must be (a sub is an `SVt_PVCV`, a glob an `SVt_PVGV`, a stash an
//! `SVt_PVHV`), and every walk is bounded; a failed check ends the walk with what was found so
//! far. The safety argument is the one of the Python reader: an interpreter belongs to one
//! thread, which is busy calling us, so its stacks are consistent, except when a signal handler
//! interrupted that thread halfway through a push: the checks turn that into fewer frames, not a
//! crash.
//!
//! # Versions
//!
//! Perl 5.36, threaded (`useithreads`), on 64-bit Linux: the offsets of [`layout::V5_36`] are
//! checked against the headers of the Perl found at test time (its `CORE` folder). Another
//! version, a non-threaded build (whose interpreter variables are plain globals and whose
//! statements name their file through a glob) or a build with another interpreter size is
//! refused with the reason: `script_missing` says which, and the native frames remain.

mod layout;

use crate::peek::{Cut, copy_bytes, plausible, read, strnlen};
use crate::python::{FILE_CAP, FUNC_CAP, PyFrame, PyStack};
use crate::real;
use crate::script::{Language, Missing, VERSION_CAP, put, write_version};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use layout::Layout;

/// What [`init`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum State {
    /// No Perl in this process.
    Absent = 0,
    /// A supported Perl: frames are read.
    Supported,
    /// Perl of a version without a layout here.
    UnsupportedVersion,
    /// Perl 5.36 without threads.
    NotThreaded,
    /// Perl 5.36 whose interpreter is not the size of the layout's.
    UnknownLayout,
}

#[unsafe(link_section = ".data.sigaudit_load")]
static STATE: AtomicU8 = AtomicU8::new(State::Absent as u8);
/// `5.36.0` packed as `revision << 16 | version << 8 | subversion`.
#[unsafe(link_section = ".data.sigaudit_load")]
static VERSION: AtomicUsize = AtomicUsize::new(0);
/// `&PL_thr_key`, `&PL_curinterp`, and `PL_interp_size` when it disagreed.
#[unsafe(link_section = ".data.sigaudit_load")]
static THR_KEY: AtomicUsize = AtomicUsize::new(0);
#[unsafe(link_section = ".data.sigaudit_load")]
static CURINTERP: AtomicUsize = AtomicUsize::new(0);
#[unsafe(link_section = ".data.sigaudit_load")]
static INTERP_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Frames visited per capture, kept or not, at most; contexts looked at per stack, at most.
const MAX_VISITS: usize = 4 * crate::python::MAX_PY_FRAMES;
const MAX_CONTEXTS: i32 = 1 << 20;
/// Stacks crossed at most (signal handlers, sort blocks and ties each push one).
const MAX_STACKS: usize = 64;
/// Bytes of a name looked at, at most.
const MAX_NAME: usize = 1 << 16;
/// Lines beyond this are not a line.
const MAX_LINE: u32 = 1 << 30;

/// Finds Perl, if this process runs it. Constructor only (it calls `dlsym`).
pub fn init() {
    if !cfg!(all(target_os = "linux", target_pointer_width = "64")) {
        return;
    }
    let revision = real::lookup_global(b"PL_revision\0") as usize;
    let version = real::lookup_global(b"PL_version\0") as usize;
    let subversion = real::lookup_global(b"PL_subversion\0") as usize;
    if revision == 0 || version == 0 || subversion == 0 {
        return;
    }
    // SAFETY: Perl's `const U8` version numbers, found by name in a loaded object.
    let (r, v, s) = unsafe {
        (
            read::<u8>(revision) as u32,
            read::<u8>(version) as u32,
            read::<u8>(subversion) as u32,
        )
    };
    VERSION.store(((r << 16) | (v << 8) | s) as usize, Ordering::Relaxed);
    let thr_key = real::lookup_global(b"PL_thr_key\0") as usize;
    let curinterp = real::lookup_global(b"PL_curinterp\0") as usize;
    let size_at = real::lookup_global(b"PL_interp_size\0") as usize;
    let state = match layout::layout(r, v) {
        None => State::UnsupportedVersion,
        Some(_) if thr_key == 0 || curinterp == 0 => State::NotThreaded,
        Some(l) => {
            // SAFETY: Perl's `const U16 PL_interp_size`, found by name.
            let size = (size_at != 0).then(|| unsafe { read::<u16>(size_at) } as usize);
            INTERP_SIZE.store(size.unwrap_or(0), Ordering::Relaxed);
            if size == Some(l.interp_size) {
                State::Supported
            } else {
                State::UnknownLayout
            }
        }
    };
    if state == State::Supported {
        // Binds `pthread_getspecific` now, in an ordinary context. Key 0 is in range, and
        // reading it has no effect.
        // SAFETY: no preconditions; an unused key gives null.
        let _ = unsafe { libc::pthread_getspecific(0) };
    }
    log::debug!("Perl {r}.{v}.{s}: {state:?}");
    THR_KEY.store(thr_key, Ordering::Relaxed);
    CURINTERP.store(curinterp, Ordering::Relaxed);
    STATE.store(state as u8, Ordering::Release);
}

fn state() -> State {
    match STATE.load(Ordering::Acquire) {
        1 => State::Supported,
        2 => State::UnsupportedVersion,
        3 => State::NotThreaded,
        4 => State::UnknownLayout,
        _ => State::Absent,
    }
}

/// Whether this process runs Perl (supported or not).
pub fn runs() -> bool {
    state() != State::Absent
}

/// Fills `stack` with the calling thread's Perl frames, innermost first, or says in `missing`
/// why there are none. `stack` comes empty
/// (from [`crate::script::capture`]). Safe in any context a hook runs in (see the module docs).
pub fn capture(stack: &mut PyStack, missing: &mut Missing) {
    let mut version = [0u8; VERSION_CAP];
    let packed = VERSION.load(Ordering::Relaxed) as u32;
    let n = write_version(
        &mut version,
        &[packed >> 16, (packed >> 8) & 0xff, packed & 0xff],
    );
    let v = version.get(..n).unwrap_or(&[]);
    let say = |missing: &mut Missing, reason, why: &[u8], more: &[u8]| {
        missing.set(
            Language::Perl,
            v,
            reason,
            &[b"Perl ", v, b": no Perl frames (", why, more, b")"],
        );
    };
    match state() {
        State::Absent => return,
        State::Supported => {}
        State::UnsupportedVersion => {
            return say(
                missing,
                "unsupported-version",
                b"supported: ",
                layout::SUPPORTED,
            );
        }
        State::NotThreaded => {
            return say(
                missing,
                "unsupported-build",
                b"a build without threads; supported: ",
                layout::SUPPORTED,
            );
        }
        State::UnknownLayout => {
            return say(
                missing,
                "unknown-layout",
                b"its interpreter structure is not the size of the layout checked for ",
                layout::SUPPORTED,
            );
        }
    }
    if crate::guard::in_shared_memory_child() {
        return say(
            missing,
            "vfork-child",
            b"a vfork child does not read its parent's memory",
            b"",
        );
    }
    let Some(l) = layout::layout(packed >> 16, (packed >> 8) & 0xff) else {
        return;
    };
    // SAFETY: `PL_curinterp` and `PL_thr_key` are this Perl's globals, found by `init`.
    let interp = unsafe { this_interpreter() };
    let Some(interp) = interp else {
        return say(
            missing,
            "no-interpreter",
            b"this thread runs no Perl interpreter",
            b"",
        );
    };
    // SAFETY: the calling thread's own interpreter (see the module docs).
    let phase = unsafe { read::<u32>(interp + l.phase) };
    if phase == l.phase_destruct {
        return say(
            missing,
            "finalizing",
            b"the interpreter is in global destruction",
            b"",
        );
    }
    let walk = Walk { l };
    // SAFETY: as above.
    if !unsafe { walk.walk(interp, stack) } && stack.len == 0 {
        say(
            missing,
            "unreadable",
            b"its stacks did not pass the checks",
            b"",
        );
    }
}

/// The calling thread's interpreter, if Perl has started and this thread runs one.
///
/// # Safety
/// [`init`] found a supported, threaded Perl.
unsafe fn this_interpreter() -> Option<usize> {
    let curinterp = CURINTERP.load(Ordering::Relaxed);
    let key_at = THR_KEY.load(Ordering::Relaxed);
    // SAFETY: `PL_curinterp`, a pointer-sized global of the program.
    if curinterp == 0 || key_at == 0 || unsafe { crate::peek::load(curinterp) } == 0 {
        return None;
    }
    // SAFETY: `PL_thr_key`, a `pthread_key_t` global, created before `PL_curinterp` was set.
    let key = unsafe { read::<libc::pthread_key_t>(key_at) };
    // SAFETY: an initialised key; glibc reads this thread's own slot, no lock.
    let interp = unsafe { libc::pthread_getspecific(key) } as usize;
    plausible(interp, 8).then_some(interp)
}

/// One capture's walk over the interpreter of a [`Layout`].
struct Walk {
    l: &'static Layout,
}

/// A context of the stack, seen as a frame.
#[derive(Clone, Copy)]
struct Sub {
    /// The context's address.
    cx: usize,
}

/// The stack being walked: its contexts and how many.
#[derive(Clone, Copy)]
struct Stack {
    si: usize,
    cxstack: usize,
    /// The highest valid index (`si_cxmax`).
    max: i32,
}

impl Walk {
    /// Walks the frames; returns false when a check failed (frames found so far are kept).
    ///
    /// # Safety
    /// `interp` is the calling thread's interpreter of this layout.
    unsafe fn walk(&self, interp: usize, out: &mut PyStack) -> bool {
        let l = self.l;
        // SAFETY: fields of the calling thread's interpreter.
        let (mut cop, si) = unsafe {
            (
                read::<usize>(interp + l.curcop),
                read::<usize>(interp + l.curstackinfo),
            )
        };
        // SAFETY: the interpreter's current stack info, checked in `stack`.
        let Some(mut stack) = (unsafe { self.stack(si) }) else {
            return false;
        };
        // SAFETY: as above.
        let Some(top) = (unsafe { self.read_cxix(stack) }) else {
            return false;
        };
        // SAFETY: `stack` passed its checks.
        let mut next = unsafe { self.sub_at_or_below(stack, top) };
        let mut crossed = 0;
        for _ in 0..MAX_VISITS {
            // Out of contexts on this stack: go on below it unless it is the main one.
            while next.is_none() {
                // SAFETY: a checked stack info.
                let (kind, prev) = unsafe {
                    (
                        read::<i32>(stack.si + l.si_type),
                        read::<usize>(stack.si + l.si_prev),
                    )
                };
                if kind == l.perlsi_main || prev == 0 {
                    break;
                }
                crossed += 1;
                if crossed > MAX_STACKS {
                    return false;
                }
                // SAFETY: the stack below, checked in `stack`.
                let Some(below) = (unsafe { self.stack(prev) }) else {
                    return false;
                };
                stack = below;
                // SAFETY: a checked stack.
                let Some(ix) = (unsafe { self.read_cxix(stack) }) else {
                    return false;
                };
                // SAFETY: as above.
                next = unsafe { self.sub_at_or_below(stack, ix) };
            }
            let Some(slot) = out.frames.get_mut(out.len) else {
                out.truncated = true;
                return true;
            };
            let Some((sub, ix)) = next else {
                // The main program: the outermost frame.
                // SAFETY: `cop` is the statement the walk reached, checked in `place`.
                let ok = unsafe { self.frame(slot, cop, None) };
                out.len += usize::from(ok);
                return ok;
            };
            // SAFETY: `sub` is a context of a checked stack.
            if !unsafe { self.frame(slot, cop, Some(sub)) } {
                return false;
            }
            out.len += 1;
            // SAFETY: as above.
            cop = unsafe { read::<usize>(sub.cx + l.cx_oldcop) };
            // SAFETY: a checked stack; `ix - 1` may be -1, which finds nothing.
            next = unsafe { self.sub_at_or_below(stack, ix - 1) };
        }
        out.truncated = true;
        true
    }

    /// A stack info's context stack, checked.
    ///
    /// # Safety
    /// `si` is null or a stack info of the calling thread's interpreter.
    unsafe fn stack(&self, si: usize) -> Option<Stack> {
        let l = self.l;
        if !plausible(si, 8) {
            return None;
        }
        // SAFETY: a plausible stack info.
        let (cxstack, max) = unsafe {
            (
                read::<usize>(si + l.si_cxstack),
                read::<i32>(si + l.si_cxmax),
            )
        };
        (plausible(cxstack, 8) && (0..MAX_CONTEXTS).contains(&max)).then_some(Stack {
            si,
            cxstack,
            max,
        })
    }

    /// The stack's current index (`si_cxix`), -1 for an empty stack, checked against its size.
    ///
    /// # Safety
    /// `stack` passed [`Walk::stack`].
    unsafe fn read_cxix(&self, stack: Stack) -> Option<i32> {
        // SAFETY: a checked stack info.
        let ix = unsafe { read::<i32>(stack.si + self.l.si_cxix) };
        (-1..=stack.max).contains(&ix).then_some(ix)
    }

    /// The innermost sub, format or eval context at index `from` or below, as `caller()`
    /// counts them: not a `try` block, nor the fake sub context of a regex code block.
    ///
    /// # Safety
    /// `stack` passed [`Walk::stack`] and `from <= stack.max`.
    unsafe fn sub_at_or_below(&self, stack: Stack, from: i32) -> Option<(Sub, i32)> {
        let l = self.l;
        let mut ix = from.min(stack.max);
        while ix >= 0 {
            let cx = stack.cxstack + ix as usize * l.cx_size;
            // SAFETY: `ix` is within the stack's allocated contexts.
            let raw = unsafe { read::<u8>(cx + l.cx_type) };
            let kind = raw & l.cxtypemask;
            let counted = (kind == l.cxt_sub && raw & l.cxp_sub_re_fake == 0)
                || (kind == l.cxt_eval && raw & l.cxp_try == 0)
                || kind == l.cxt_format;
            if counted {
                return Some((Sub { cx }, ix));
            }
            ix -= 1;
        }
        None
    }

    /// Fills one frame: the statement `cop`, in `sub` (the main program when `None`).
    ///
    /// # Safety
    /// `cop` is a statement pointer from the interpreter, `sub` a context of a checked stack.
    unsafe fn frame(&self, slot: &mut PyFrame, cop: usize, sub: Option<Sub>) -> bool {
        // SAFETY: checked in `place`.
        if !unsafe { self.place(slot, cop) } {
            return false;
        }
        slot.function_len = match sub {
            None => put(&mut slot.function, &[b"(main)"]),
            // SAFETY: a context of a checked stack.
            Some(sub) => unsafe { self.name(sub, &mut slot.function) },
        };
        true
    }

    /// The file and line of statement `cop`.
    ///
    /// # Safety
    /// `cop` is null or a statement of the interpreter.
    unsafe fn place(&self, slot: &mut PyFrame, cop: usize) -> bool {
        let l = self.l;
        if !plausible(cop, 8) {
            return false;
        }
        // SAFETY: a plausible COP.
        let (line, file) = unsafe {
            (
                read::<u32>(cop + l.cop_line),
                read::<usize>(cop + l.cop_file),
            )
        };
        if line > MAX_LINE || !plausible(file, 1) {
            return false;
        }
        // SAFETY: `cop_file` is a NUL-terminated string in threaded builds.
        let len = unsafe { strnlen(file, MAX_NAME) };
        // SAFETY: readable for `len` bytes (just measured).
        slot.file_len = unsafe { copy_bytes(file, len, &mut slot.file[..FILE_CAP], Cut::KeepEnd) };
        slot.line = line as i32;
        true
    }

    /// The name of a sub, format or eval context, into `out`; returns its length.
    ///
    /// # Safety
    /// `sub` is a sub, format or eval context of a checked stack.
    unsafe fn name(&self, sub: Sub, out: &mut [u8; FUNC_CAP]) -> usize {
        let l = self.l;
        // SAFETY: a context of a checked stack.
        let (raw, u16_) = unsafe {
            (
                read::<u8>(sub.cx + l.cx_type),
                read::<u16>(sub.cx + l.cx_u16),
            )
        };
        if raw & l.cxtypemask == l.cxt_eval {
            if u16_ >> 7 == l.op_require {
                // SAFETY: a require context's `old_namesv`, checked in `pv`.
                let name = unsafe { self.pv(read::<usize>(sub.cx + l.cx_eval_namesv)) };
                if let Some((at, len)) = name {
                    let n = put(out, &[b"require "]);
                    // SAFETY: `pv` checked the string's pointer and length.
                    return n + unsafe { copy_bytes(at, len, &mut out[n..], Cut::KeepStart) };
                }
            }
            return put(out, &[b"(eval)"]);
        }
        // SAFETY: a sub or format context's `cv`, checked in `sub_name`.
        unsafe { self.sub_name(read::<usize>(sub.cx + l.cx_sub_cv), out) }
            .unwrap_or_else(|| put(out, &[b"(unknown)"]))
    }

    /// `Package::name` of a CV.
    ///
    /// # Safety
    /// `cv` is null or a CV held by a context.
    unsafe fn sub_name(&self, cv: usize, out: &mut [u8]) -> Option<usize> {
        let l = self.l;
        // SAFETY: checked as a CV or format before its body is used.
        let body = unsafe { self.body_of(cv, &[l.svt_pvcv, l.svt_pvfm]) }?;
        // SAFETY: a CV's body.
        let (flags, gv_u, cv_stash) = unsafe {
            (
                read::<u32>(body + l.xcv_flags),
                read::<usize>(body + l.xcv_gv_u),
                read::<usize>(body + l.xcv_stash),
            )
        };
        let (hek, stash) = if flags & l.cvf_named != 0 {
            // A lexical sub (or one named without a glob): its name is kept in the CV.
            (gv_u, cv_stash)
        } else {
            // SAFETY: the CV's glob, checked as one.
            let gv = unsafe { self.body_of(gv_u, &[l.svt_pvgv]) }?;
            // SAFETY: a glob's body.
            unsafe {
                (
                    read::<usize>(gv + l.xgv_namehek),
                    read::<usize>(gv + l.xgv_stash),
                )
            }
        };
        // SAFETY: checked in `hek`.
        let (name_at, name_len) = unsafe { self.hek(hek) }?;
        let mut n = 0;
        // SAFETY: checked in `stash_name`.
        if let Some((at, len)) = unsafe { self.stash_name(stash) } {
            // SAFETY: `hek` checked the string.
            n += unsafe { copy_bytes(at, len, out, Cut::KeepStart) };
            n += put(out.get_mut(n..)?, &[b"::"]);
        }
        // SAFETY: as above.
        n += unsafe { copy_bytes(name_at, name_len, out.get_mut(n..)?, Cut::KeepStart) };
        Some(n)
    }

    /// The name of a stash (a package's symbol table), if it has one.
    ///
    /// # Safety
    /// `hv` is null or an HV pointer held by the interpreter.
    unsafe fn stash_name(&self, hv: usize) -> Option<(usize, usize)> {
        let l = self.l;
        // SAFETY: checked as an HV before its body is used.
        let body = unsafe { self.body_of(hv, &[l.svt_pvhv]) }?;
        // SAFETY: a checked SV head.
        let flags = unsafe { read::<u32>(hv + l.sv_flags) };
        if flags & l.svf_ook == 0 {
            return None;
        }
        let aux = body + l.xhv_aux;
        // SAFETY: an HV with its aux part (`SVf_OOK`).
        let (name_u, count) = unsafe {
            (
                read::<usize>(aux + l.xhv_name_u),
                read::<i32>(aux + l.xhv_name_count),
            )
        };
        let hek = if count != 0 {
            // Several names: the first is the stash's own.
            if !plausible(name_u, 8) {
                return None;
            }
            // SAFETY: a plausible array of HEK pointers, at least one long.
            unsafe { read::<usize>(name_u) }
        } else {
            name_u
        };
        // SAFETY: checked in `hek`.
        unsafe { self.hek(hek) }
    }

    /// The key of a HEK: where and how long.
    ///
    /// # Safety
    /// `hek` is null or a HEK pointer held by the interpreter.
    unsafe fn hek(&self, hek: usize) -> Option<(usize, usize)> {
        if !plausible(hek, 4) {
            return None;
        }
        // SAFETY: a plausible HEK.
        let len = unsafe { read::<i32>(hek + self.l.hek_len) };
        (0..MAX_NAME as i32)
            .contains(&len)
            .then_some((hek + self.l.hek_key, len as usize))
    }

    /// The string of a PV scalar (as `require` keeps the name of the file it loads).
    ///
    /// # Safety
    /// `sv` is null or an SV pointer held by the interpreter.
    unsafe fn pv(&self, sv: usize) -> Option<(usize, usize)> {
        let l = self.l;
        // SAFETY: checked as a string-holding SV before its body is used.
        let body = unsafe { self.body_of(sv, &[l.svt_pv, l.svt_pvmg]) }?;
        // SAFETY: a checked SV head and body.
        let (flags, at, len) = unsafe {
            (
                read::<u32>(sv + l.sv_flags),
                read::<usize>(sv + l.sv_u),
                read::<usize>(body + l.xpv_cur),
            )
        };
        (flags & l.svf_pok != 0 && plausible(at, 1) && len < MAX_NAME).then_some((at, len))
    }

    /// The body of the SV at `sv` if its type is one of `types`.
    ///
    /// # Safety
    /// `sv` is null or an SV pointer held by the interpreter.
    unsafe fn body_of(&self, sv: usize, types: &[u32]) -> Option<usize> {
        let l = self.l;
        if !plausible(sv, 8) {
            return None;
        }
        // SAFETY: a plausible SV head.
        let (any, flags) = unsafe { (read::<usize>(sv + l.sv_any), read::<u32>(sv + l.sv_flags)) };
        (types.contains(&(flags & l.svtypemask)) && plausible(any, 8)).then_some(any)
    }
}
