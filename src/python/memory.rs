//! Reading the interpreter's memory, two ways.
//!
//! [`Direct`] reads with plain loads: a few nanoseconds, but a read of unmapped memory would
//! fault the host. It is used only for memory that cannot go away while we read it: the frames,
//! code objects and strings of a thread that holds the GIL (or, free-threaded, is attached), as
//! the module docs argue.
//!
//! [`Checked`] asks the kernel to copy (`process_vm_readv` on our own process): an address that
//! is not mapped makes the call fail with `EFAULT` instead of faulting, so any address is safe to
//! try. It costs a system call (about 0.7 µs here), so it is used for what another thread may
//! free while we read: everything before we know that this thread holds the GIL, and the whole
//! walk of a thread that does not (an `echild` event: the waiting thread released the GIL, and
//! interpreter shutdown by another thread may free its thread state meanwhile). Where the kernel
//! refuses the call (a seccomp filter), nothing is read that way and the event says so.
//!
//! Both read exactly what they are asked for; [`Memory::read_some`] lets the checked reader fetch
//! a header and what follows in one call where reading past an object's end is harmless.

pub use crate::peek::plausible;
use core::sync::atomic::{AtomicU8, Ordering};

/// A source of the interpreter's bytes.
pub trait Memory {
    /// Copies exactly `buf.len()` bytes from `addr`; false if they could not all be read.
    fn read(&self, addr: usize, buf: &mut [u8]) -> bool;

    /// Copies at least `need` bytes from `addr` into `buf`, and more, up to `buf.len()`, where
    /// reading past the object is harmless; returns how many were copied.
    fn read_some(&self, addr: usize, buf: &mut [u8], need: usize) -> Option<usize> {
        let need = need.min(buf.len());
        self.read(addr, buf.get_mut(..need)?).then_some(need)
    }

    /// Does what [`Memory::read_some`] does for each request; the checked reader makes one
    /// system call of them all.
    fn read_batch(&self, reqs: &mut [Req]) {
        for r in reqs {
            r.got = self.read_some(r.addr, r.buf, r.need);
        }
    }

    /// A pointer-sized word.
    fn word(&self, addr: usize) -> Option<usize> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| usize::from_ne_bytes(b))
    }

    /// A 32-bit word.
    fn u32(&self, addr: usize) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).then(|| u32::from_ne_bytes(b))
    }
}

/// One read of a batch: at least `need` bytes of `buf` from `addr`; `got` says how many came.
pub struct Req<'a> {
    pub addr: usize,
    pub buf: &'a mut [u8],
    pub need: usize,
    pub got: Option<usize>,
}

impl Req<'_> {
    /// What was read, if at least `need` bytes were.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.buf.get(..self.got?)
    }
}

/// Fields read out of a window of bytes copied from an object.
pub struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.0.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    pub fn word(&self, at: usize) -> Option<usize> {
        self.array::<8>(at).map(usize::from_ne_bytes)
    }
    pub fn i64(&self, at: usize) -> Option<i64> {
        self.array::<8>(at).map(i64::from_ne_bytes)
    }
    pub fn i32(&self, at: usize) -> Option<i32> {
        self.array::<4>(at).map(i32::from_ne_bytes)
    }
    pub fn u32(&self, at: usize) -> Option<u32> {
        self.array::<4>(at).map(u32::from_ne_bytes)
    }
    pub fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
}

/// Plain loads, for memory that stays put while we read it.
pub struct Direct(());

impl Direct {
    /// # Safety
    /// Every address the walk asks this reader for, and that passes [`plausible`], must be
    /// mapped and readable for as long as the reader is used: the caller has established that
    /// the memory it walks belongs to this thread, which holds the GIL (or is attached), so no
    /// other thread frees it (see the module docs).
    pub unsafe fn new() -> Self {
        Direct(())
    }
}

impl Memory for Direct {
    fn read(&self, addr: usize, buf: &mut [u8]) -> bool {
        if !plausible(addr, 1) || addr.checked_add(buf.len()).is_none_or(|end| end > 1 << 48) {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: the constructor's contract: the interpreter's memory at a plausible address
            // the walk reads is mapped. Volatile: another thread may write it meanwhile.
            *b = unsafe { core::ptr::read_volatile((addr + i) as *const u8) };
        }
        true
    }
}

/// Copies through the kernel: a bad address fails instead of faulting.
pub struct Checked {
    pid: libc::pid_t,
}

/// Whether `process_vm_readv` works here: 0 not known yet, 1 yes, 2 refused (seccomp, an old
/// kernel).
static CHECKED_WORKS: AtomicU8 = AtomicU8::new(0);

impl Checked {
    /// A checked reader, or `None` where the kernel refuses `process_vm_readv`.
    pub fn new() -> Option<Self> {
        let reader = Checked {
            pid: crate::sys::getpid(),
        };
        match CHECKED_WORKS.load(Ordering::Relaxed) {
            1 => Some(reader),
            2 => None,
            _ => {
                // Try it on something of our own that is surely mapped.
                let probe = 0x5eed_u64;
                let mut out = [0u8; 8];
                let ok = reader.copy(&probe as *const u64 as usize, &mut out) == Some(8)
                    && u64::from_ne_bytes(out) == probe;
                CHECKED_WORKS.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                ok.then_some(reader)
            }
        }
    }

    /// Copies up to `buf.len()` bytes, stopping at the first unreadable one.
    fn copy(&self, addr: usize, buf: &mut [u8]) -> Option<usize> {
        if buf.is_empty() {
            return Some(0);
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: the local iovec is our own buffer; the remote one is only read by the kernel,
        // which checks it.
        unsafe { crate::sys::read_memory_vectored(self.pid, &[local], &[remote]) }.ok()
    }
}

impl Memory for Checked {
    fn read(&self, addr: usize, buf: &mut [u8]) -> bool {
        plausible(addr, 1) && self.copy(addr, buf) == Some(buf.len())
    }

    fn read_some(&self, addr: usize, buf: &mut [u8], need: usize) -> Option<usize> {
        if !plausible(addr, 1) {
            return None;
        }
        self.copy(addr, buf).filter(|&n| n >= need.min(buf.len()))
    }

    /// One `process_vm_readv` for all the requests. The kernel stops at the first byte it cannot
    /// read, so a request cut short (an object near the end of a mapping, read past its end)
    /// leaves the later ones unread: those are read again one by one.
    fn read_batch(&self, reqs: &mut [Req]) {
        const MAX: usize = 4;
        let empty = libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        };
        let (mut local, mut remote) = ([empty; MAX], [empty; MAX]);
        let n = reqs.len().min(MAX);
        // The kernel fills the local buffers as one stream from the remote ranges as one
        // stream: each pair has the same length (none for an address that cannot be ours).
        for (i, r) in reqs.iter_mut().take(n).enumerate() {
            let len = if plausible(r.addr, 1) { r.buf.len() } else { 0 };
            local[i] = libc::iovec {
                iov_base: r.buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: len,
            };
            remote[i] = libc::iovec {
                iov_base: r.addr as *mut libc::c_void,
                iov_len: len,
            };
        }
        // SAFETY: the local iovecs are the requests' own buffers; the remote ones are only read
        // by the kernel, which checks them.
        let copied = unsafe {
            crate::sys::read_memory_vectored(
                self.pid,
                local.get(..n).unwrap_or(&[]),
                remote.get(..n).unwrap_or(&[]),
            )
        };
        let mut left = copied.unwrap_or(0);
        for (i, r) in reqs.iter_mut().enumerate() {
            let whole = i < n && remote[i].iov_len == r.buf.len() && left >= r.buf.len();
            if whole {
                left -= r.buf.len();
                r.got = Some(r.buf.len());
            } else {
                // Cut short, or after one that was: on its own.
                left = 0;
                r.got = self.read_some(r.addr, r.buf, r.need);
            }
        }
    }
}

#[cfg(test)]
pub mod image {
    //! A synthetic memory image for tests: bytes placed at made-up addresses.
    use super::Memory;

    pub struct Image {
        pub base: usize,
        pub bytes: Vec<u8>,
    }

    impl Image {
        pub fn new(base: usize, size: usize) -> Self {
            Image {
                base,
                bytes: vec![0; size],
            }
        }
        pub fn put(&mut self, addr: usize, data: &[u8]) {
            let at = addr - self.base;
            self.bytes[at..at + data.len()].copy_from_slice(data);
        }
        pub fn put_word(&mut self, addr: usize, v: u64) {
            self.put(addr, &v.to_ne_bytes());
        }
        pub fn put_u32(&mut self, addr: usize, v: u32) {
            self.put(addr, &v.to_ne_bytes());
        }
    }

    impl Memory for Image {
        fn read(&self, addr: usize, buf: &mut [u8]) -> bool {
            let Some(at) = addr.checked_sub(self.base) else {
                return false;
            };
            match self.bytes.get(at..at + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_reads_fail_instead_of_faulting() {
        let reader = Checked::new().expect("process_vm_readv on ourselves");
        let data = *b"sigaudit";
        let mut out = [0u8; 8];
        assert!(reader.read(data.as_ptr() as usize, &mut out));
        assert_eq!(&out, b"sigaudit");
        // Two pages, the second unmapped: a read that runs into it gets what could be read,
        // one that starts there gets nothing; nothing faults.
        // SAFETY: an anonymous mapping of our own, half unmapped before it is read.
        let page = unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::munmap((p as usize + 4096) as *mut libc::c_void, 4096);
            p as usize
        };
        let mut long = [0u8; 64];
        assert_eq!(reader.read_some(page + 4096 - 8, &mut long, 8), Some(8));
        assert_eq!(reader.read_some(page + 4096 - 8, &mut long, 9), None);
        assert!(!reader.read(page + 4096, &mut out));
        assert_eq!(reader.read_some(page + 4096, &mut out, 1), None);
        // A batch whose first read runs into the unmapped page: the others are still read.
        let (mut a, mut b, mut c) = ([0u8; 64], [0u8; 8], [0u8; 8]);
        let mut reqs = [
            Req {
                addr: page + 4096 - 8,
                buf: &mut a,
                need: 8,
                got: None,
            },
            Req {
                addr: data.as_ptr() as usize,
                buf: &mut b,
                need: 8,
                got: None,
            },
            Req {
                addr: page + 4096,
                buf: &mut c,
                need: 1,
                got: None,
            },
        ];
        reader.read_batch(&mut reqs);
        assert_eq!(reqs[0].got, Some(8));
        assert_eq!(reqs[1].bytes(), Some(&b"sigaudit"[..]));
        assert_eq!(reqs[2].got, None);
        // SAFETY: the first page is ours.
        unsafe { libc::munmap(page as *mut libc::c_void, 4096) };
    }
}
