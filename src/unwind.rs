//! Native stack capture and lock-free naming of the frames, for use inside hooks.
//!
//! Capture: libgcc's `_Unwind_Backtrace` (linked statically, see `build.rs`) walks the DWARF
//! call-frame information into a fixed array of [`MAX_FRAMES`] return addresses; deeper stacks
//! are cut and marked so. The frames of this library itself are skipped. GCC 12's unwinder finds
//! each frame's unwind table with glibc's `_dl_find_object`, which takes no lock, so this is safe
//! in a signal handler or a `fork()` child. (`std::backtrace` is not: its first use costs about
//! 100 ms and 100,000 allocations.)
//!
//! Modules: `_dl_find_object` (glibc 2.35+, async-signal-safe) gives each address's module and
//! load base; `symbols.rs` names the function. Where `_dl_find_object` is missing (glibc < 2.35)
//! frames carry their address only; `sigaudit symbolize` adds file and line offline.

use crate::objects::{self, LinkMap};
use libc::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Frames kept per event.
pub const MAX_FRAMES: usize = 64;

/// Return addresses, innermost first.
pub struct Backtrace {
    pub ips: [usize; MAX_FRAMES],
    pub len: usize,
    /// The stack had more frames than [`MAX_FRAMES`].
    pub truncated: bool,
}

impl Backtrace {
    pub fn frames(&self) -> &[usize] {
        self.ips.get(..self.len).unwrap_or(&[])
    }
}

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;

unsafe extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

/// Our own text, to skip: [start, end).
static SELF_START: AtomicUsize = AtomicUsize::new(0);
static SELF_END: AtomicUsize = AtomicUsize::new(0);
/// glibc's `_dl_find_object`, when it has one.
static DL_FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

type DlFindObjectFn = unsafe extern "C" fn(*mut c_void, *mut DlFindObject) -> c_int;

/// `struct dl_find_object` (glibc 2.35, x86_64 and aarch64 layout).
#[repr(C)]
struct DlFindObject {
    flags: u64,
    map_start: *mut c_void,
    map_end: *mut c_void,
    link_map: *const LinkMap,
    eh_frame: *mut c_void,
    reserved: [u64; 7],
}

/// Prepares capture and naming, once: from the constructor, or from the first hook that runs
/// before it (inside another library's constructor, where the loader's lock is already ours).
pub fn init() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let f = objects::lookup_global(b"_dl_find_object\0");
    DL_FIND_OBJECT.store(f as usize, Ordering::Relaxed);
    if let Some((lo, hi)) = objects::text_bounds(init as *const () as usize) {
        SELF_START.store(lo, Ordering::Relaxed);
        SELF_END.store(hi, Ordering::Relaxed);
    }
}

fn is_ours(ip: usize) -> bool {
    let (lo, hi) = (
        SELF_START.load(Ordering::Relaxed),
        SELF_END.load(Ordering::Relaxed),
    );
    lo <= ip && ip < hi
}

struct Walk<'a> {
    bt: &'a mut Backtrace,
    /// Still inside our own frames at the top of the stack.
    skipping: bool,
}

extern "C" fn collect(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` that `capture` passed, alive for the whole walk.
    let walk = unsafe { &mut *(arg as *mut Walk) };
    // SAFETY: ctx is the live unwind context of this callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    if walk.skipping && is_ours(ip) {
        return URC_NO_REASON;
    }
    walk.skipping = false;
    match walk.bt.ips.get_mut(walk.bt.len) {
        Some(slot) => {
            *slot = ip;
            walk.bt.len += 1;
            URC_NO_REASON
        }
        None => {
            walk.bt.truncated = true;
            URC_NORMAL_STOP
        }
    }
}

/// Stack the unwinder needs below its caller: its context and frame-state records take a few
/// KiB (measured: about 3 KiB optimised, 6 KiB in a debug build), with room to spare.
const UNWIND_STACK_NEED: usize = 8 * 1024;

/// Bytes left below us when we run on an alternate signal stack; `None` on any other stack
/// (a thread's or the main stack, which are not near their end in any program that works).
fn alternate_stack_room() -> Option<usize> {
    let mut ss = std::mem::MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: a NULL new stack only reads the current one into `ss`; async-signal-safe.
    if unsafe { libc::sigaltstack(std::ptr::null(), ss.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: zeroed, and filled by the kernel on success.
    let ss = unsafe { ss.assume_init() };
    if ss.ss_flags & libc::SS_ONSTACK == 0 {
        return None;
    }
    let here = &ss as *const libc::stack_t as usize;
    Some(here.saturating_sub(ss.ss_sp as usize))
}

/// Fills `bt` with the caller's stack, our own frames left out. On an alternate signal stack
/// with too little room left (a handler's stack of `SIGSTKSZ`, 8 KiB, is common) nothing is
/// captured and the stack is marked cut: walking it would overflow into whatever lies below and
/// crash the host.
#[inline(never)]
pub fn capture(bt: &mut Backtrace) {
    bt.len = 0;
    bt.truncated = false;
    if alternate_stack_room().is_some_and(|room| room < UNWIND_STACK_NEED) {
        bt.truncated = true;
        return;
    }
    let mut walk = Walk { bt, skipping: true };
    // SAFETY: `collect` matches the callback type and `walk` outlives the call.
    unsafe {
        _Unwind_Backtrace(collect, &mut walk as *mut Walk as *mut c_void);
    }
}

/// Where an address lives: its module's load base, path and link map.
pub struct Location {
    pub base: usize,
    /// The module's path as the loader has it (empty for the main program).
    pub module: &'static [u8],
    pub map: *const LinkMap,
    /// The module's whole mapping, `[start, end)`.
    pub start: usize,
    pub end: usize,
}

impl Location {
    /// The module, as `buildid.rs` reads it.
    pub fn buildid_module(&self) -> crate::buildid::Module {
        crate::buildid::Module {
            map: self.map as usize,
            base: self.base,
            start: self.start,
            end: self.end,
        }
    }
}

/// Finds the module of `ip` (a return address) without locks or allocation; `None` without
/// `_dl_find_object` or for an address in no module (JIT code, say).
pub fn locate(ip: usize) -> Option<Location> {
    let f = DL_FIND_OBJECT.load(Ordering::Relaxed);
    if f == 0 {
        return None;
    }
    // SAFETY: stored from dlsym("_dl_find_object"), whose prototype this is.
    let find: DlFindObjectFn = unsafe { std::mem::transmute::<usize, DlFindObjectFn>(f) };
    let mut dlfo = std::mem::MaybeUninit::<DlFindObject>::zeroed();
    // Look up the call instruction, not the one after it.
    let pc = ip.saturating_sub(1);
    // SAFETY: find only writes `dlfo`; it is documented async-signal-safe.
    if unsafe { find(pc as *mut c_void, dlfo.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: filled on success.
    let dlfo = unsafe { dlfo.assume_init() };
    if dlfo.link_map.is_null() {
        return None;
    }
    // SAFETY: a live link_map of a loaded object; the module cannot be unloaded while one of its
    // frames is on our stack.
    let map = unsafe { &*dlfo.link_map };
    Some(Location {
        base: map.l_addr,
        // SAFETY: l_name is a NUL-terminated string owned by the loader (maybe empty).
        module: unsafe { objects::cstr(map.l_name, 4096) },
        map: dlfo.link_map,
        start: dlfo.map_start as usize,
        end: dlfo.map_end as usize,
    })
}
