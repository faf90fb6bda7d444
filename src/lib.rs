//! sigaudit: an `LD_PRELOAD` library that reports every change that makes a process ignore
//! SIGCHLD (or any watched signal), with the native and Python stacks of the caller, links a
//! later `ECHILD` from the wait family back to it, and can veto the change.
//!
//! # How it works
//!
//! The library exports every public glibc function that can change a signal's disposition
//! (`hooks.rs`): the dynamic loader binds the program's calls to ours, and ours call the real
//! ones, found with `dlsym(RTLD_NEXT)` (`real.rs`). Each hook describes the request and hands it
//! to `audit::intercept`, which asks `policy::decide` what it is. An unwatched change passes
//! straight through. A watched one is reported (`report/`) with its stacks (`unwind.rs`,
//! `python/`) and then let through, refused or turned into an `abort()`, per `SIGAUDIT_MODE`.
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
//! once), the output descriptor, and the cause record (a sequence lock that never waits). Events
//! are built in a private `mmap` area and written with one `write(2)`. `errno` is saved and
//! restored around everything we do, and the real call's return value, `errno` and old action
//! reach the caller untouched.
//!
//! Allocation, locks and logging are confined to the constructor, which runs in an ordinary
//! context before `main`.

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
mod symbols;
mod unwind;

#[cfg(not(test))]
mod hooks;
#[cfg(not(test))]
mod init;
