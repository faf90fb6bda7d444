//! A load-time constructor and nothing else: the cost of being a Rust cdylib.
#![cfg_attr(feature = "nostd", no_std)]

#[cfg(feature = "nostd")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

static TOUCHED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

extern "C" fn constructor() {
    TOUCHED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    #[cfg(feature = "logger")]
    {
        // Started at load with `logger_at_load`, else only when BENCHREF_LOG is set (never, in
        // the benchmark), so the code is linked but not run. Read with libc's getenv, as
        // sigaudit does: std::env::var_os would allocate, and a process's first allocation
        // (malloc's set-up) is a cost of its own.
        unsafe extern "C" {
            fn getenv(name: *const core::ffi::c_char) -> *mut core::ffi::c_char;
        }
        // SAFETY: a NUL-terminated name; the result is only compared with NULL.
        let set = unsafe { !getenv(c"BENCHREF_LOG".as_ptr()).is_null() };
        if cfg!(feature = "logger_at_load") || set {
            let _ = env_logger::Builder::new()
                .parse_filters("warn")
                .target(env_logger::Target::Stderr)
                .try_init();
            log::debug!("loaded");
        }
    }
}
