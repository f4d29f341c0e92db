//! A `#![no_std]` consumer of the runtime: no allocator, abort on panic.

#![no_std]

use tollgate_runtime::Reason;

/// Exposes something of the runtime so the linker keeps it.
#[no_mangle]
pub extern "C" fn tollgate_reason_name_len(code: u8) -> usize {
    Reason::from_code(code).map_or(0, |reason| reason.as_str().len())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
