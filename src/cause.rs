//! The cause kept for `echild` events: the last `ignore` (or `inherited`) event that took effect
//! in this process, already rendered in the configured format.
//!
//! A sequence lock over atomic words, so neither side takes a lock or allocates: a writer makes
//! the sequence odd, writes, and makes it even again; a reader copies and keeps the copy only if
//! the sequence was even and unchanged around it. A writer that finds another writer at work
//! leaves the record to it; a reader retries a few times and then reports the cause as unknown,
//! so nothing ever waits.

use crate::report::CAUSE_CAP;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

const WORDS: usize = CAUSE_CAP / 8;

static SEQ: AtomicU64 = AtomicU64::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static DATA: [AtomicU64; WORDS] = [ZERO; WORDS];

/// Keeps `bytes` (at most [`CAUSE_CAP`]) as the current cause.
pub fn record(bytes: &[u8]) {
    let seq = SEQ.load(Ordering::Relaxed);
    if seq & 1 == 1
        || SEQ
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    fence(Ordering::Release);
    let len = bytes.len().min(CAUSE_CAP);
    for (i, word) in DATA.iter().enumerate().take(len.div_ceil(8)) {
        let mut w = [0u8; 8];
        for (j, slot) in w.iter_mut().enumerate() {
            *slot = bytes.get(i * 8 + j).copied().unwrap_or(0);
        }
        word.store(u64::from_ne_bytes(w), Ordering::Relaxed);
    }
    LEN.store(len, Ordering::Relaxed);
    SEQ.store(seq + 2, Ordering::Release);
}

/// Copies the current cause into `out`; `None` if there is none or it could not be read whole.
pub fn read(out: &mut [u8; CAUSE_CAP]) -> Option<usize> {
    for _ in 0..16 {
        let before = SEQ.load(Ordering::Acquire);
        if before == 0 {
            return None;
        }
        if before & 1 == 1 {
            core::hint::spin_loop();
            continue;
        }
        let len = LEN.load(Ordering::Relaxed).min(CAUSE_CAP);
        for (i, word) in DATA.iter().enumerate().take(len.div_ceil(8)) {
            let w = word.load(Ordering::Relaxed).to_ne_bytes();
            for (j, b) in w.iter().enumerate() {
                if let Some(slot) = out.get_mut(i * 8 + j) {
                    *slot = *b;
                }
            }
        }
        fence(Ordering::Acquire);
        if SEQ.load(Ordering::Relaxed) == before {
            return Some(len);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_cause() {
        let mut out = [0u8; CAUSE_CAP];
        record(b"first");
        record(b"the second cause, longer than one word");
        let n = read(&mut out).unwrap();
        assert_eq!(&out[..n], b"the second cause, longer than one word");
    }
}
