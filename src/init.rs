//! The load-time constructor: everything that may lock, allocate or log happens here, once,
//! before `main`, so the hooks need none of it.

use crate::audit;
use crate::config::{self, Problems};
use crate::diag;
use crate::guard;
use crate::objects;
use crate::perl;
use crate::real::{self, Need};
use crate::report;
use crate::shell;
use libc::{c_char, c_int, c_void};

/// Runs when the dynamic loader initialises this library: after the libraries it depends on,
/// possibly after other preloaded or linked libraries whose constructors already called hooks
/// (see `audit::before_constructor`).
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = constructor;

/// glibc calls `.init_array` functions with `argc`, `argv` and `envp`.
extern "C" fn constructor(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    guard::first_look();
    report::note_load_pid();
    // SAFETY: glibc passes the program's own argc and argv.
    unsafe { report::note_arguments(argc, argv) };
    let mut problems = Problems::new();
    // Read in place into the configuration hooks will use (a `Config` holds a 4 KiB path: copies
    // of it on this stack would be pages touched in every exec); relative paths anchored.
    let Some(cfg) = config::load_from_process_env(&mut problems) else {
        return;
    };
    // Diagnostics first, so that what the set-up below logs (with SIGAUDIT_LOG) is shown.
    diag::start(cfg);
    let level = cfg.log;
    real::resolve_all(|entry| {
        debug_assert_eq!(entry.need, Need::Required);
        diag::install(level);
        log::error!(
            "libc has no {}; calls to it will fail with ENOSYS",
            entry.name
        );
    });
    diag::problems(&problems, cfg);
    diag::loaded(cfg);
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
    config::publish();
    report::announce(cfg);
    audit::check_inherited(cfg);
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
