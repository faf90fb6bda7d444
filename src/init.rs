//! The load-time constructor: everything that may lock, allocate or log happens here, once,
//! before `main`, so the hooks need none of it.

use crate::audit;
use crate::config::{self, Config, Problems};
use crate::diag;
use crate::guard;
use crate::objects;
use crate::perl;
use crate::real::{self, Need};
use crate::report;
use crate::shell;
use libc::{c_int, c_void};

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
    // Diagnostics first, so that what the set-up below logs (with SIGAUDIT_LOG) is shown.
    diag::start(&cfg);
    anchor_relative_output(&mut cfg);
    let level = cfg.log;
    real::resolve_all(|entry| {
        debug_assert_eq!(entry.need, Need::Required);
        diag::install(level);
        log::error!(
            "libc has no {}; calls to it will fail with ENOSYS",
            entry.name
        );
    });
    diag::problems(&problems, &cfg);
    diag::loaded(&cfg);
    objects::shared_lookups(|| {
        perl::init();
        shell::init();
    });
    // SAFETY: registers a plain function; only the child handler is needed. The handle says
    // which object the handler belongs to (for dlclose, which never unloads a preloaded one).
    unsafe {
        __register_atfork(
            None,
            None,
            Some(guard::after_fork_in_child),
            objects::own_code().0 as *const c_void,
        )
    };
    config::install(cfg);
    if let Some(cfg) = config::loaded() {
        audit::check_inherited(cfg);
    }
}

unsafe extern "C" {
    /// What `pthread_atfork` calls (it is a static wrapper in libc_nonshared.a that passes the
    /// `__dso_handle` of the C start files, which this library is linked without).
    fn __register_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
        dso_handle: *const c_void,
    ) -> c_int;
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
    // A longer path could not be anchored anyway.
    let mut cwd = [0u8; config::PATH_CAP];
    if let Some(dir) = crate::sys::getcwd(&mut cwd) {
        cfg.anchor_output(dir);
    }
}
