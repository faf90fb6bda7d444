//! Native stack capture and lock-free naming of the frames, for use inside hooks.
//!
//! Capture: libgcc's `_Unwind_Backtrace` (linked statically, see `build.rs`) walks the DWARF
//! call-frame information into a fixed array of [`MAX_FRAMES`] return addresses; deeper stacks
//! are cut and marked so. The frames of this library itself are skipped. GCC 12's unwinder finds
//! each frame's unwind table with glibc's `_dl_find_object`, which takes no lock, so this is safe
//! in a signal handler or a `fork()` child. (`std::backtrace` is not: its first use costs about
//! 100 ms and 100,000 allocations.)
//!
//! Modules: `_dl_find_object` (glibc 2.35+, async-signal-safe; see `objects.rs`) gives each
//! address's module and load base; `symbols.rs` names the function.

use crate::objects::{self, LinkMap};
use libc::{c_int, c_void};

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

// What GCC's unwinder imports, answered inside the library.
//
// libgcc_eh.a (GCC 12) refers to `malloc`, `free`, `strlen`, `pthread_once`, the two
// `pthread_mutex` calls and `__pthread_key_create`. As imports the loader would look each up on
// every exec (about 800 instructions apiece); none of them is needed for what we use:
//
// - `malloc`, `free` and the mutex serve the list of frame tables registered with
//   `__register_frame_info`. That list is this library's own copy (its symbols are not
//   exported), nothing registers anything in it (we link no C start files, see `build.rs`), and
//   with it empty the unwinder never takes the mutex (its `any_objects_registered` fast path)
//   and never allocates. They are stubs: `malloc` fails, the rest succeed doing nothing.
// - `__pthread_key_create` is only looked at for its address, which tells the unwinder whether
//   threads are in use: as 0 it says no, so `pthread_once` is never called (its stub fails, and
//   the unwinder initialises its register-size table directly, writing the same constants each
//   time, which is what it does in a program without threads).
// - `strlen` measures the augmentation strings of the unwind tables: it is in `mem.rs`.
//
// - `rust_eh_personality` (not the unwinder's, but core's: precompiled with unwinding, its
//   functions name Rust's personality routine in their unwind tables, which only a debug build
//   keeps). Nothing unwinds through Rust frames here (`panic = "abort"`); if a foreign unwind
//   ever asked, the answer is "continue unwinding" (`_URC_CONTINUE_UNWIND`).
//
// Each is defined hidden, so the unwinder's references bind to them at link time and nothing
// of ours is exported or interposed on the program. (Not in the unit-test build: there they
// would be the test program's own malloc and free.)
#[cfg(not(test))]
core::arch::global_asm!(
    ".globl __pthread_key_create",
    ".hidden __pthread_key_create",
    ".set __pthread_key_create, 0",
    ".globl malloc, free, pthread_once, pthread_mutex_lock, pthread_mutex_unlock",
    ".hidden malloc, free, pthread_once, pthread_mutex_lock, pthread_mutex_unlock",
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
);
#[cfg(all(target_arch = "x86_64", not(test)))]
core::arch::global_asm!(
    ".pushsection .text.sigaudit_unwinder_imports,\"ax\",@progbits",
    ".type rust_eh_personality, @function",
    "rust_eh_personality:",
    "    mov eax, 8",
    "    ret",
    ".type malloc, @function",
    "malloc:",
    "    xor eax, eax",
    "    ret",
    ".type free, @function",
    "free:",
    "    ret",
    ".type pthread_once, @function",
    "pthread_once:",
    "    mov eax, 22",
    "    ret",
    ".type pthread_mutex_lock, @function",
    "pthread_mutex_lock:",
    ".type pthread_mutex_unlock, @function",
    "pthread_mutex_unlock:",
    "    xor eax, eax",
    "    ret",
    ".popsection",
);
#[cfg(all(target_arch = "aarch64", not(test)))]
core::arch::global_asm!(
    ".pushsection .text.sigaudit_unwinder_imports,\"ax\",@progbits",
    ".type rust_eh_personality, %function",
    "rust_eh_personality:",
    "    mov w0, #8",
    "    ret",
    ".type malloc, %function",
    "malloc:",
    "    mov x0, #0",
    "    ret",
    ".type free, %function",
    "free:",
    "    ret",
    ".type pthread_once, %function",
    "pthread_once:",
    "    mov w0, #22",
    "    ret",
    ".type pthread_mutex_lock, %function",
    "pthread_mutex_lock:",
    ".type pthread_mutex_unlock, %function",
    "pthread_mutex_unlock:",
    "    mov w0, #0",
    "    ret",
    ".popsection",
);

/// Whether `ip` is in our own code.
fn is_ours(ip: usize) -> bool {
    let (lo, hi) = objects::own_code();
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

/// Fills `bt` with the caller's stack, our own frames left out. Called on the event's own stack
/// (`stack.rs`), which has room for the unwinder's state whatever stack the caller was on; the
/// walk crosses back onto the caller's stack through the switch's call-frame information.
#[inline(never)]
pub fn capture(bt: &mut Backtrace) {
    bt.len = 0;
    bt.truncated = false;
    let mut walk = Walk { bt, skipping: true };
    // SAFETY: `collect` matches the callback type and `walk` outlives the call.
    unsafe {
        _Unwind_Backtrace(collect, &mut walk as *mut Walk as *mut c_void);
    }
}

/// How many frames libgcc's unwinder walks from here, none skipped (for the tests of the stack
/// switch, whatever `init` has said our own code is).
#[cfg(test)]
pub fn frames_walked() -> usize {
    extern "C" fn count(_ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the counter below, alive for the walk.
        unsafe { *(arg as *mut usize) += 1 };
        URC_NO_REASON
    }
    let mut n = 0usize;
    // SAFETY: `count` matches the callback type; `n` outlives the walk.
    unsafe { _Unwind_Backtrace(count, &mut n as *mut usize as *mut c_void) };
    n
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

/// Finds the module of `ip` (a return address) without locks or allocation; `None` for an
/// address in no module (JIT code, say).
pub fn locate(ip: usize) -> Option<Location> {
    // Look up the call instruction, not the one after it.
    let held = objects::holding(ip.saturating_sub(1))?;
    let map = held.map;
    Some(Location {
        base: map.l_addr,
        // SAFETY: l_name is a NUL-terminated string owned by the loader (maybe empty).
        module: unsafe { objects::cstr(map.l_name, 4096) },
        map,
        start: held.start,
        end: held.end,
    })
}
