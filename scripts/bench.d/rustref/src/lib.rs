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
}
