//! sigaudit: an `LD_PRELOAD` library that reports every change that makes a process ignore
//! SIGCHLD (or any watched signal), with the native and Python stacks of the caller, links a
//! later `ECHILD` from the wait family back to it, and can veto the change.
//!
//! # How it works
//!
//! The library exports every public glibc function that can change a signal's disposition
//! (`hooks.rs`): the dynamic loader binds the program's calls to ours, and ours call the real
//! ones (`real.rs`), found as `dlsym(RTLD_NEXT)` would find them but by reading the loader's
//! hash tables (`objects.rs`). An unwatched change passes straight through: one bit test and a
//! jump into libc. Anything else goes to a cold path that describes the request and hands it
//! to `audit::intercept`, which asks `policy::decide` what it is. A watched one is reported
//! (`report/`) with its stacks (`unwind.rs`, `python/`) and then let through, refused or turned
//! into an `abort()`, per `SIGAUDIT_MODE`.
//! The configuration is read once by the constructor (`init.rs`, `config.rs`).
//!
//! # Safety model
//!
//! A hook can run anywhere a program can call `signal()`: in a signal handler, in a `vfork()`
//! child that shares its parent's heap and locks, in a `fork()` child of a multithreaded parent
//! whose other threads held locks at the fork, in several threads at once, and before our own
//! constructor. So no hooked path allocates from the heap, takes a lock, waits on a once-cell or
//! panics (`panic = "abort"` is set for every profile, and nothing on those paths unwraps).
//! Shared state is atomics only: the resolved symbol table, the loaded configuration (published
//! once), what stderr was at the first look, and the cause record (a sequence lock that never
//! waits). An event runs on a stack of its own, in memory mapped for it (and kept for the next),
//! with every signal blocked (`stack.rs`), and its record is written in one write that never
//! blocks (`report/sink.rs`). `errno` is saved and restored around everything we do, and the
//! real call's return value, `errno` and old action reach the caller untouched.
//!
//! The library is `#![no_std]` and allocates nothing anywhere. Locks are confined to the
//! constructor, which runs in an ordinary context before `main` (`__register_atfork`, and
//! `dlsym` where the hash tables cannot answer); its own system calls are made directly
//! (`sys.rs`), and the C library's memory functions are its own (`mem.rs`), both so that the
//! loader has little to bind on every exec (see "Cost" in the README). The statics the
//! constructor writes are placed in `.data.sigaudit_load`, beside the data the loader already
//! writes when it relocates the library, rather than in `.bss`: every page of memory first
//! written at load is a page fault on every exec (about 2 µs each here), and nothing in `.bss`
//! is written before the first event.

// The library is `core` and `libc` only (see "Cost" in the README); unit tests use std.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// The unit-test build leaves out the exported hooks and the constructor (the test binary must not
// interpose its own sigaction), so much of the hook path is unused there.
#![cfg_attr(test, allow(dead_code))]

mod audit;
mod buf;
mod buildid;
mod cause;
mod config;
mod diag;
mod guard;
#[cfg(test)]
mod layout_check;
mod mem;
mod objects;
mod peek;
mod perl;
mod policy;
mod python;
mod real;
mod report;
mod script;
mod shell;
mod signals;
mod stack;
mod symbols;
mod sys;
mod unwind;

#[cfg(not(test))]
mod hooks;
#[cfg(not(test))]
mod init;

/// A panic cannot happen on purpose (nothing unwraps), and must not unwind into the host.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
