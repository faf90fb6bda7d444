//! Reading another runtime's memory from a hook: the pointer checks and plain reads the
//! interpreter readers (`python.rs`, `perl/`, `shell.rs`) share.
//!
//! Every value read here comes from structures we do not own and whose layout we took from a
//! version's headers, so each pointer is checked before it is followed: not null, aligned, and in
//! the user half of the address space. That turns a wrong guess (a version we misjudged, a
//! structure half built when a signal interrupted its owner) into a refusal instead of garbage;
//! it cannot make a read of unmapped memory safe, which is why every reader also proves first
//! that the structures it walks are live (see each reader's docs).

use core::sync::atomic::{AtomicUsize, Ordering};

/// True for an address that can be a user-space object aligned to `align`.
pub fn plausible(addr: usize, align: usize) -> bool {
    (0x1000..1 << 48).contains(&addr) && addr.is_multiple_of(align)
}

/// Reads a `T` at `addr`.
///
/// # Safety
/// `addr` is readable for `size_of::<T>()` bytes and aligned for `T`.
pub unsafe fn read<T: Copy>(addr: usize) -> T {
    // SAFETY: per the contract. Volatile: the runtime's memory is not ours to reason about.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// Loads an atomic word another thread may write.
///
/// # Safety
/// `addr` is readable and aligned for a `usize`.
pub unsafe fn load(addr: usize) -> usize {
    // SAFETY: per the contract; the runtime writes these words atomically.
    unsafe { AtomicUsize::from_ptr(addr as *mut usize) }.load(Ordering::Acquire)
}

/// Which end of a name to keep when it does not fit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cut {
    KeepStart,
    KeepEnd,
}

/// The mark a cut name carries where bytes were left out.
pub const MARK: &[u8] = b"...";

/// Copies `len` bytes at `src` into `out`, cut per `cut` with [`MARK`] when they do not fit.
/// Returns the length written.
///
/// # Safety
/// `src` is readable for `len` bytes.
pub unsafe fn copy_bytes(src: usize, len: usize, out: &mut [u8], cut: Cut) -> usize {
    let cap = out.len();
    let (from, take, mark_first, mark_last) = if len <= cap {
        (0, len, false, false)
    } else {
        let room = cap.saturating_sub(MARK.len());
        match cut {
            Cut::KeepEnd => (len - room, room, true, false),
            Cut::KeepStart => (0, room, false, true),
        }
    };
    let mut n = 0;
    let mut put = |b: u8| {
        if let Some(slot) = out.get_mut(n) {
            *slot = b;
            n += 1;
        }
    };
    if mark_first {
        MARK.iter().for_each(|&b| put(b));
    }
    for i in from..from + take {
        // SAFETY: i < len, per the contract.
        put(unsafe { read::<u8>(src + i) });
    }
    if mark_last {
        MARK.iter().for_each(|&b| put(b));
    }
    n
}

/// The length of the NUL-terminated string at `src`, looking at most `max` bytes.
///
/// # Safety
/// `src` is a NUL-terminated string, or readable for `max` bytes.
pub unsafe fn strnlen(src: usize, max: usize) -> usize {
    // SAFETY: per the contract, up to the NUL or `max`.
    (0..max)
        .find(|&i| unsafe { read::<u8>(src + i) } == 0)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_pointers_are_refused() {
        assert!(!plausible(0, 8));
        assert!(!plausible(0x10, 8));
        assert!(!plausible(0x7f00_0000_0004, 8));
        assert!(!plausible(usize::MAX & !7, 8));
        assert!(plausible(0x7f00_0000_0008, 8));
    }

    fn copy(s: &[u8], cap: usize, cut: Cut) -> Vec<u8> {
        let mut out = vec![0u8; cap];
        // SAFETY: `s` is readable for its length.
        let n = unsafe { copy_bytes(s.as_ptr() as usize, s.len(), &mut out, cut) };
        out.truncate(n);
        out
    }

    #[test]
    fn long_names_keep_the_useful_end() {
        assert_eq!(copy(b"lib/Foo.pm", 64, Cut::KeepEnd), b"lib/Foo.pm");
        assert_eq!(
            copy(b"/srv/app/lib/Foo.pm", 10, Cut::KeepEnd),
            b".../Foo.pm"
        );
        assert_eq!(
            copy(b"Long::Package::name", 10, Cut::KeepStart),
            b"Long::P..."
        );
        assert_eq!(copy(b"", 4, Cut::KeepEnd), b"");
    }

    #[test]
    fn strings_end_at_their_nul_or_the_bound() {
        let s = b"abc\0def";
        // SAFETY: readable for 7 bytes.
        assert_eq!(unsafe { strnlen(s.as_ptr() as usize, 7) }, 3);
        // SAFETY: as above.
        assert_eq!(unsafe { strnlen(s.as_ptr() as usize, 2) }, 2);
    }
}
