//! The load-time constructor: everything that may lock, allocate or log happens here, once,
//! before `main`, so the hooks need none of it.

use crate::audit;
use crate::config::{self, Config, Problems};
use crate::diag;
use crate::guard;
use crate::perl;
use crate::real::{self, Need};
use crate::report;
use crate::shell;
use crate::unwind;

/// Runs when the dynamic loader initialises this library: after the libraries it depends on,
/// possibly after other preloaded or linked libraries whose constructors already called hooks
/// (see `audit::before_constructor`).
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    guard::set_owner_pid();
    report::note_load_pid();
    report::note_stderr();
    let mut problems = Problems::new();
    let mut cfg = config::from_process_env(&mut problems);
    anchor_relative_output(&mut cfg);
    real::resolve_all(|entry, why| {
        debug_assert_eq!(entry.need, Need::Required);
        diag::error(format_args!(
            "libc has no {} ({why}); calls to it will fail with ENOSYS",
            entry.name
        ));
    });
    // Diagnostics first, so that what the set-up below logs (with SIGAUDIT_LOG) is shown.
    diag::problems(&problems);
    diag::loaded(&cfg);
    unwind::init();
    perl::init();
    shell::init();
    // SAFETY: registers a plain function; only the child handler is needed.
    unsafe { libc::pthread_atfork(None, None, Some(guard::after_fork_in_child)) };
    config::install(cfg);
    if let Some(cfg) = config::loaded() {
        audit::check_inherited(cfg);
    }
}

/// Makes a relative `SIGAUDIT_OUTPUT` path (a file's or a socket's) absolute against the working
/// directory at load.
///
/// Only a relative path asks for the working directory, and `getcwd` writes into a stack buffer:
/// `std::env::current_dir` would be the process's first heap allocation (malloc's set-up:
/// `getrandom`, two `brk` and a page fault), about 10 µs added to every exec although the default
/// output, stderr, needs no directory at all.
fn anchor_relative_output(cfg: &mut Config) {
    let path = cfg.given_path();
    if path.is_empty() || path.starts_with(b"/") {
        return;
    }
    let mut cwd = [0u8; config::PATH_CAP];
    // SAFETY: `cwd` is writable for its whole length; getcwd NUL-terminates what it writes, or
    // fails (a longer path could not be anchored anyway).
    let p = unsafe { libc::getcwd(cwd.as_mut_ptr() as *mut libc::c_char, cwd.len()) };
    if p.is_null() {
        return;
    }
    let len = cwd.iter().position(|&b| b == 0).unwrap_or(0);
    cfg.anchor_output(cwd.get(..len).unwrap_or(&[]));
}
