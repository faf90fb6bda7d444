//! The load-time constructor: everything that may lock, allocate or log happens here, once,
//! before `main`, so the hooks need none of it.

use crate::audit;
use crate::config::{self, Problems};
use crate::diag;
use crate::guard;
use crate::python;
use crate::real::{self, Need};
use crate::unwind;

/// Runs when the dynamic loader initialises this library: after the libraries it depends on,
/// possibly after other preloaded or linked libraries whose constructors already called hooks
/// (see `audit::before_constructor`).
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    guard::set_owner_pid();
    let mut problems = Problems::new();
    let mut cfg = config::from_process_env(&mut problems);
    if let Ok(cwd) = std::env::current_dir() {
        cfg.anchor_output(cwd.as_os_str().as_encoded_bytes());
    }
    real::resolve_all(|entry, why| {
        debug_assert_eq!(entry.need, Need::Required);
        diag::error(format_args!(
            "libc has no {} ({why}); calls to it will fail with ENOSYS",
            entry.name
        ));
    });
    unwind::init();
    python::init();
    // SAFETY: registers a plain function; only the child handler is needed.
    unsafe { libc::pthread_atfork(None, None, Some(guard::after_fork_in_child)) };
    diag::problems(&problems);
    diag::loaded(&cfg);
    config::install(cfg);
    if let Some(cfg) = config::loaded() {
        audit::check_inherited(cfg);
    }
}
