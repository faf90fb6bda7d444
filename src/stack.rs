//! The memory an event runs in: a stack of its own, with a guard page below it, and the working
//! area the record is built in, mapped together for each event and unmapped after it; with every
//! signal held meanwhile.
//!
//! # Why a stack of our own
//!
//! A hook runs on whatever stack its caller has: a thread's of `PTHREAD_STACK_MIN` (16 KiB, part
//! of it taken by the thread's own descriptor and TLS), or an alternate signal stack of
//! `SIGSTKSZ` (glibc's value is the kernel's signal frame size plus a little: 14,528 bytes on an
//! AVX-512 machine, where the kernel's frame alone takes 3,632) of which the kernel and the
//! handler have used part. An event needs more than that on some paths (the first event of a
//! process builds a module's symbol index; libgcc's unwinder keeps a few KiB of state per frame;
//! `SIGAUDIT_LOG=trace` prints what each event used). There is no lock-free, allocation-free way
//! to learn how much room the caller's stack has left: `pthread_getattr_np` allocates and reads
//! `/proc/self/maps`, `sigaltstack` only describes alternate stacks, and the main thread's limit
//! moves with `RLIMIT_STACK`. So every event switches to a stack it maps for itself, whose size is
//! known, and the question never arises. Before the switch the hook path uses a few hundred bytes
//! (measured in the tests with an 8 KiB alternate stack, the smallest on which a handler runs at
//! all on such a machine).
//!
//! The switch is a small assembly function per architecture ([`call_on`]): it saves the caller's
//! stack pointer in its frame pointer register (callee-saved, so the callee keeps it), moves the
//! stack pointer to the new stack, calls, and moves back. Its call-frame information describes
//! the caller's frame through the frame pointer, so libgcc's unwinder, started on the new stack,
//! walks from it back onto the caller's stack and on up to `main`, as if nothing had switched.
//!
//! # Signals
//!
//! All signals are blocked while the event runs (two `rt_sigprocmask` calls). A handler of the
//! program that ran on our stack would find less room than on its own; and a handler that asked
//! for its alternate stack (`SA_ONSTACK`) while the event runs for a handler already on it would
//! be given the top of that stack again, over the live frames of the first, because the kernel
//! judges "already on the alternate stack" by the stack pointer, which is then on our stack.
//! Signals that come in the meantime are delivered when the event ends, about 20 µs later.
//! Blocking also keeps the signals our own writes could raise (SIGPIPE, SIGXFSZ) from reaching
//! the program: the sink takes back any it caused (`sink.rs`).
//!
//! # When no memory can be mapped
//!
//! `RLIMIT_AS`, or a seccomp filter that fails `mmap`, can refuse the mapping. Then the event runs
//! in a reserve in the library's `.bss` (a stack and a working area, untouched, so costing no
//! memory, until needed), claimed with a compare-and-swap, and the record says so. If the reserve
//! is busy too (another thread's event in the same state), the caller gets the error, and the
//! event is reported as a short line built on the caller's stack.

use crate::sys;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The stack an event gets: more than twice the deepest path measured (a debug build's first
/// JSON event in a Python process; see the README's "Cost").
pub const STACK_SIZE: usize = 128 * 1024;

/// The working area a caller of [`run`] may ask for, at most.
pub const DATA_MAX: usize = 112 * 1024;

/// Where the event's memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Mapped for it.
    Mapped,
    /// The mapping failed with this `errno`; the library's reserve was used.
    Reserve(i32),
}

/// What [`run`] tells its callee about the memory and the signal mask.
pub struct Frame<'a> {
    pub source: Source,
    /// Signals are blocked; the mask to restore.
    pub held: &'a Held,
    stack_lo: usize,
    stack_hi: usize,
}

impl Frame<'_> {
    /// The bytes of this event's stack used so far, the deepest point reached (for
    /// `SIGAUDIT_LOG=trace`): the stack was zero when mapped, so the lowest non-zero byte marks
    /// it. Pages never touched are skipped with `mincore`, so untouched memory stays untouched.
    /// For the reserve, which is reused, this is the deepest use since the process started.
    pub fn stack_used(&self) -> usize {
        let page = page_size();
        let mut lo = self.stack_lo;
        while lo < self.stack_hi {
            if crate::sys::resident(lo as *mut c_void, page) {
                break;
            }
            lo += page;
        }
        let mut p = lo;
        // SAFETY: [lo, stack_hi) is our own stack, readable; we read below our own frame only
        // up to where it is.
        while p < self.stack_hi && unsafe { *(p as *const u8) } == 0 {
            p += 1;
        }
        self.stack_hi - p
    }

    pub fn stack_size(&self) -> usize {
        self.stack_hi - self.stack_lo
    }
}

/// The process's page size, from the auxiliary vector (no system call).
pub fn page_size() -> usize {
    // SAFETY: getauxval has no preconditions.
    match unsafe { libc::getauxval(libc::AT_PAGESZ) } as usize {
        0 => 4096,
        n => n,
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Runs `f` with a `T` on a stack of its own, with every signal blocked. The `T` is zeroed the
/// first time, and holds an earlier event's bytes after (the memory is kept, and so is the
/// reserve's): `f` must write every field before it reads it. `Err(errno)` when neither a
/// mapping nor the reserve could be had.
///
/// `T` must be valid for all-zero bytes and no larger than [`DATA_MAX`].
pub fn run<T, R>(f: impl FnOnce(&mut T, &Frame) -> R) -> Result<R, i32> {
    const { assert!(core::mem::size_of::<T>() <= DATA_MAX) };
    const { assert!(core::mem::align_of::<T>() <= 16) };
    let held = Held::all();
    let page = page_size();
    let data_len = round_up(core::mem::size_of::<T>(), page);
    let len = page + STACK_SIZE + data_len;
    let errno = match Mapping::claim(len) {
        Ok(base) => {
            let lo = base + page;
            let hi = lo + STACK_SIZE;
            let frame = Frame {
                source: Source::Mapped,
                held: &held,
                stack_lo: lo,
                stack_hi: hi,
            };
            // SAFETY: the data area follows the stack, page-aligned and ours alone until given
            // back below; it holds zeros or an earlier event's bytes, valid for T per the
            // contract.
            let data = unsafe { &mut *(hi as *mut T) };
            let r = call_on(hi, || f(data, &frame));
            Mapping::give_back(base, len);
            return Ok(r);
        }
        Err(errno) => errno,
    };
    let Some(reserve) = Reserve::claim() else {
        return Err(errno);
    };
    let lo = reserve.stack_lo();
    let hi = lo + STACK_SIZE;
    let frame = Frame {
        source: Source::Reserve(errno),
        held: &held,
        stack_lo: lo,
        stack_hi: hi,
    };
    // SAFETY: the reserve's data area is ours while claimed, aligned for T (checked above), and
    // holds only bytes written by earlier events or zeros: integers and arrays, valid for T.
    let data = unsafe { &mut *(reserve.data() as *mut T) };
    let r = call_on(hi, || f(data, &frame));
    drop(reserve);
    Ok(r)
}

// ---- the mapping -------------------------------------------------------------------------------

/// The last event's mapping, kept for the next (0: none): its page-aligned address with its
/// length in pages in the low bits (at most 61 pages, so they fit below any page size), one word
/// claimed by swapping 0 in. Mapping and unmapping for every event cost an `mmap`, an
/// `mprotect`, a `munmap` and a page fault for each page the event touches: about 7 µs of a 30 µs
/// event on a virtual machine, measured. Kept, an event finds its pages already there. An event
/// that finds it claimed (another thread's event, or a signal handler's inside one) maps its own
/// and unmaps it after, unless the slot is free again. A `fork()` child has its own copy of it; a
/// `vfork()` child shares it with its parent, whose threads claim it the same way.
static KEPT: AtomicUsize = AtomicUsize::new(0);

struct Mapping;

impl Mapping {
    /// Memory of `len` bytes, its first page a guard: the kept mapping, or a new one.
    fn claim(len: usize) -> Result<usize, i32> {
        let page = page_size();
        let kept = KEPT.swap(0, Ordering::Acquire);
        if kept != 0 {
            let (base, kept_len) = (kept & !(page - 1), (kept & (page - 1)) * page);
            if kept_len == len {
                return Ok(base);
            }
            // SAFETY: a mapping of ours that no one else can claim now.
            unsafe { sys::unmap(base as *mut c_void, kept_len) };
        }
        let base = sys::map_noreserve(len)?;
        // The guard page: an overflow faults instead of writing into whatever lies below. If
        // it cannot be set, the event still runs: the budget is measured with a wide margin.
        // SAFETY: the first page of our own mapping.
        let _ = unsafe { sys::mprotect(base, page, libc::PROT_NONE) };
        Ok(base as usize)
    }

    /// Keeps the mapping for the next event, or unmaps it when another is kept already.
    fn give_back(base: usize, len: usize) {
        let page = page_size();
        let pages = len / page;
        if pages < page
            && KEPT
                .compare_exchange(0, base | pages, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        // SAFETY: unmaps exactly what was mapped; nothing refers to it any more.
        unsafe { sys::unmap(base as *mut c_void, len) };
    }
}

// ---- the reserve ------------------------------------------------------------------------------

/// 16-byte alignment is all the stack and `T` need; a page alignment would start `.bss` on a page
/// of its own, one more page resident in every process.
#[repr(C, align(16))]
struct ReserveMem {
    stack: [u8; STACK_SIZE],
    data: [u8; DATA_MAX],
}

struct ReserveCell(UnsafeCell<ReserveMem>);
// SAFETY: the memory is handed to one event at a time, through CLAIMED.
unsafe impl Sync for ReserveCell {}

static RESERVE: ReserveCell = ReserveCell(UnsafeCell::new(ReserveMem {
    stack: [0; STACK_SIZE],
    data: [0; DATA_MAX],
}));
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The reserve, claimed; released when dropped.
struct Reserve;

impl Reserve {
    fn claim() -> Option<Reserve> {
        (!CLAIMED.swap(true, Ordering::Acquire)).then_some(Reserve)
    }
    fn stack_lo(&self) -> usize {
        RESERVE.0.get() as usize
    }
    fn data(&self) -> *mut u8 {
        // SAFETY: a field of the static; no reference is made.
        unsafe { core::ptr::addr_of_mut!((*RESERVE.0.get()).data) as *mut u8 }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        CLAIMED.store(false, Ordering::Release);
    }
}

/// Frees the reserve in a `fork()` child, whose copy of it may have been claimed by a thread that
/// does not exist there. Called when this process takes ownership of its memory (`guard.rs`).
pub fn after_fork() {
    CLAIMED.store(false, Ordering::Release);
}

// ---- signals ----------------------------------------------------------------------------------

/// Signals blocked for this thread; the previous mask is restored when dropped.
pub struct Held {
    /// `None` if the mask could not be read (it then is left as it is).
    old: Option<libc::sigset_t>,
}

impl Held {
    /// Blocks every signal but glibc's two internal ones, which it never lets a program block.
    pub fn all() -> Held {
        Held {
            old: sys::block(&sys::all_signals()).ok(),
        }
    }

    /// The signals pending for this thread or the process now.
    pub fn pending(&self) -> libc::sigset_t {
        sys::pending()
    }

    /// Takes back `signo`, raised by something we did while it was blocked, unless it was
    /// already pending before (`before`, from [`Held::pending`]): then it is the program's.
    pub fn take_back(&self, signo: i32, before: &libc::sigset_t) {
        if !sys::has_signal(before, signo) {
            // A zero time-out: it only collects a signal already pending, never waits.
            sys::take_pending(signo);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            sys::set_mask(old);
        }
    }
}

// ---- the switch -------------------------------------------------------------------------------

unsafe extern "C" {
    /// Calls `f(arg)` with the stack pointer at `top` (16-byte aligned), then returns on the
    /// caller's stack.
    fn sigaudit_call_on_stack(arg: *mut c_void, f: unsafe extern "C" fn(*mut c_void), top: usize);
}

// The caller's stack pointer lives in the frame pointer register across the call (callee-saved
// in both ABIs). The CFI says: after the prologue, the canonical frame address is the frame
// pointer + 16, with the saved frame pointer (and, on arm64, the return address) below it; that
// holds on the new stack too, which is what lets the unwinder cross back.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl sigaudit_call_on_stack",
    ".hidden sigaudit_call_on_stack",
    ".type sigaudit_call_on_stack, @function",
    "sigaudit_call_on_stack:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "mov rsp, rdx",
    "call rsi",
    "mov rsp, rbp",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size sigaudit_call_on_stack, .-sigaudit_call_on_stack",
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".text",
    ".p2align 2",
    ".globl sigaudit_call_on_stack",
    ".hidden sigaudit_call_on_stack",
    ".type sigaudit_call_on_stack, %function",
    "sigaudit_call_on_stack:",
    ".cfi_startproc",
    "stp x29, x30, [sp, #-16]!",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset x29, -16",
    ".cfi_offset x30, -8",
    "mov x29, sp",
    ".cfi_def_cfa_register x29",
    "mov sp, x2",
    "blr x1",
    "mov sp, x29",
    ".cfi_def_cfa_register sp",
    "ldp x29, x30, [sp], #16",
    ".cfi_def_cfa_offset 0",
    ".cfi_restore x29",
    ".cfi_restore x30",
    "ret",
    ".cfi_endproc",
    ".size sigaudit_call_on_stack, .-sigaudit_call_on_stack",
);

/// Runs `f` on the stack whose top is `top` (16-byte aligned, with the stack below it ours).
fn call_on<R, F: FnOnce() -> R>(top: usize, f: F) -> R {
    struct Call<F, R> {
        f: Option<F>,
        r: Option<R>,
    }
    unsafe extern "C" fn enter<F: FnOnce() -> R, R>(arg: *mut c_void) {
        // SAFETY: `arg` is the `Call` below, alive and not otherwise used during the call.
        let call = unsafe { &mut *(arg as *mut Call<F, R>) };
        if let Some(f) = call.f.take() {
            call.r = Some(f());
        }
    }
    let mut call: Call<F, R> = Call {
        f: Some(f),
        r: None,
    };
    debug_assert_eq!(top % 16, 0);
    // SAFETY: `enter::<F, R>` matches the callee type and gets `call`, alive across the call;
    // the stack below `top` is ours (the caller's contract).
    unsafe {
        sigaudit_call_on_stack(
            &mut call as *mut Call<F, R> as *mut c_void,
            enter::<F, R>,
            top,
        )
    };
    match call.r {
        Some(r) => r,
        // `enter` always fills it; no unwinding can cross it (panic = "abort").
        // SAFETY: unreachable, see above.
        None => unsafe { core::hint::unreachable_unchecked() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_its_own_stack_and_comes_back() {
        let here = 0u8;
        let caller_sp = &here as *const u8 as usize;
        let r = run(|data: &mut [u64; 16], frame| {
            let mark = 0u8;
            let sp = &mark as *const u8 as usize;
            assert!(frame.stack_lo < sp && sp < frame.stack_hi);
            assert!(!(frame.stack_lo..frame.stack_hi).contains(&caller_sp));
            assert_eq!(frame.source, Source::Mapped);
            // Zeroed when first mapped; kept after (another test may have run on it).
            data[3] = 7;
            let used = frame.stack_used();
            assert!(used > 0 && used < 16 * 1024, "{used}");
            data[3] + 1
        });
        assert_eq!(r, Ok(8));
    }

    #[test]
    fn signals_are_held_during_the_event_and_restored_after() {
        let blocked = |sig| {
            // SAFETY: reads this thread's mask.
            unsafe {
                let mut now = core::mem::zeroed::<libc::sigset_t>();
                libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut now);
                libc::sigismember(&now, sig) == 1
            }
        };
        assert!(!blocked(libc::SIGUSR2));
        let inside = run(|_: &mut [u8; 8], _| blocked(libc::SIGUSR2)).unwrap();
        assert!(inside);
        assert!(!blocked(libc::SIGUSR2));
    }

    #[test]
    fn the_unwinder_crosses_back_to_the_callers_stack() {
        use crate::unwind::frames_walked;
        let direct = frames_walked();
        let switched = run(|_: &mut [u8; 8], _| frames_walked()).unwrap();
        // Without call-frame information that leads back, the walk would stop at the switch,
        // a handful of frames down; with it, it reaches every frame the direct walk saw, and
        // the switch's own.
        assert!(direct > 4, "{direct}");
        assert!(switched > direct, "{switched} <= {direct}");
    }
}
