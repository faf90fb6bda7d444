//! The system calls the library makes for itself, made directly (x86_64 `syscall`, arm64
//! `svc 0`) instead of through libc's wrappers.
//!
//! Why: every function a library imports is looked up by the loader on every exec (about 800
//! instructions each, with `BIND_NOW`), and these are a dozen and a half of them. The direct
//! call is also what a hook needs: it leaves `errno` alone (an error comes back as a value),
//! it is never a thread-cancellation point (a `pthread_cancel` cannot stop a thread in the
//! middle of writing a record), and it runs no code of libc's that could take a lock.
//!
//! Each call is the one glibc's wrapper makes on both architectures (`openat`, `newfstatat`,
//! `ppoll`, `readlinkat`: arm64 has no `open`, `fstat`, `poll` or `readlink`), so a seccomp
//! filter that lets the program's own calls through lets ours through too.

use libc::{c_int, c_long, c_void};

/// A raw system call with up to six arguments; the kernel's return value (`-errno` on error).
///
/// # Safety
/// The arguments are what system call `n` takes; pointers among them are valid for it.
#[inline]
unsafe fn call(n: c_long, args: [usize; 6]) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the x86_64 system call convention: number in rax, arguments in rdi, rsi, rdx, r10,
    // r8, r9; the kernel clobbers rcx and r11 and returns in rax.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the arm64 system call convention: number in x8, arguments in x0 to x5, result in x0.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") args[0] => ret,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x5") args[5],
            options(nostack),
        );
    }
    ret
}

/// The result of a call: its value, or the `errno` it failed with.
fn result(ret: isize) -> Result<usize, c_int> {
    if (-4095..0).contains(&ret) {
        Err(-ret as c_int)
    } else {
        Ok(ret as usize)
    }
}

macro_rules! args {
    ($($a:expr),*) => {{
        let mut a = [0usize; 6];
        let given = [$($a as usize),*];
        a[..given.len()].copy_from_slice(&given);
        a
    }};
}

pub fn getpid() -> c_int {
    // SAFETY: no arguments, cannot fail.
    unsafe { call(libc::SYS_getpid, args!()) as c_int }
}

pub fn getppid() -> c_int {
    // SAFETY: as above.
    unsafe { call(libc::SYS_getppid, args!()) as c_int }
}

pub fn gettid() -> c_int {
    // SAFETY: as above.
    unsafe { call(libc::SYS_gettid, args!()) as c_int }
}

/// `write(2)`: how much was written.
pub fn write(fd: c_int, bytes: &[u8]) -> Result<usize, c_int> {
    // SAFETY: `bytes` is readable for its length.
    result(unsafe { call(libc::SYS_write, args!(fd, bytes.as_ptr(), bytes.len())) })
}

/// `read(2)`: how much was read.
pub fn read(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: `buf` is writable for its length.
    result(unsafe { call(libc::SYS_read, args!(fd, buf.as_mut_ptr(), buf.len())) })
}

/// `open(2)` of a NUL-terminated path (relative to the working directory).
pub fn open(path: &core::ffi::CStr, flags: c_int, mode: libc::mode_t) -> Result<c_int, c_int> {
    // SAFETY: a NUL-terminated path.
    let r = unsafe {
        call(
            libc::SYS_openat,
            args!(libc::AT_FDCWD, path.as_ptr(), flags, mode),
        )
    };
    result(r).map(|fd| fd as c_int)
}

pub fn close(fd: c_int) {
    // SAFETY: closing a descriptor has no memory effects; its errors change nothing for us.
    unsafe { call(libc::SYS_close, args!(fd)) };
}

/// `fstat(2)`.
pub fn fstat(fd: c_int) -> Result<libc::stat, c_int> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: an empty path with AT_EMPTY_PATH is the descriptor itself; glibc's `struct stat`
    // is the kernel's on both architectures.
    let r = unsafe {
        call(
            libc::SYS_newfstatat,
            args!(fd, c"".as_ptr(), st.as_mut_ptr(), libc::AT_EMPTY_PATH),
        )
    };
    // SAFETY: zeroed, and filled by the kernel on success.
    result(r).map(|_| unsafe { st.assume_init() })
}

/// `fcntl(fd, F_GETFL)`.
pub fn status_flags(fd: c_int) -> Result<c_int, c_int> {
    // SAFETY: F_GETFL takes no argument.
    result(unsafe { call(libc::SYS_fcntl, args!(fd, libc::F_GETFL)) }).map(|f| f as c_int)
}

/// Waits up to `ms` milliseconds for `fd` to take output.
pub fn wait_writable(fd: c_int, ms: i64) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let t = libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: ms % 1000 * 1_000_000,
    };
    // SAFETY: one valid pollfd and a valid time-out; no signal mask.
    unsafe {
        call(
            libc::SYS_ppoll,
            args!(
                &mut p as *mut libc::pollfd,
                1,
                &t as *const libc::timespec,
                0,
                0
            ),
        )
    };
}

/// An anonymous private read-write mapping of `len` bytes, zero-filled.
pub fn map_anonymous(len: usize) -> Option<*mut c_void> {
    map(len, 0).ok()
}

/// An anonymous private read-write mapping of `len` bytes with these `MAP_*` flags added.
fn map(len: usize, flags: c_int) -> Result<*mut c_void, c_int> {
    // SAFETY: a new mapping where the kernel chooses.
    let r = unsafe {
        call(
            libc::SYS_mmap,
            args!(
                0,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1i64,
                0
            ),
        )
    };
    result(r).map(|a| a as *mut c_void)
}

/// A read-only private mapping of the first `len` bytes of `fd`.
pub fn map_file(fd: c_int, len: usize) -> Option<*const u8> {
    // SAFETY: a new mapping where the kernel chooses.
    let r = unsafe {
        call(
            libc::SYS_mmap,
            args!(0, len, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0),
        )
    };
    result(r).ok().map(|a| a as *const u8)
}

/// # Safety
/// `[addr, addr + len)` is a mapping of ours that nothing uses any more.
pub unsafe fn unmap(addr: *mut c_void, len: usize) {
    // SAFETY: per the contract.
    unsafe { call(libc::SYS_munmap, args!(addr, len)) };
}

/// `readlink(2)` of a NUL-terminated path: the length of its target in `buf` (cut to fit).
pub fn readlink(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: a NUL-terminated path; `buf` is writable for its length.
    result(unsafe {
        call(
            libc::SYS_readlinkat,
            args!(libc::AT_FDCWD, path.as_ptr(), buf.as_mut_ptr(), buf.len()),
        )
    })
}

/// A socket (`socket(2)`).
pub fn socket(domain: c_int, kind: c_int, protocol: c_int) -> Result<c_int, c_int> {
    // SAFETY: no memory is passed.
    result(unsafe { call(libc::SYS_socket, args!(domain, kind, protocol)) }).map(|fd| fd as c_int)
}

/// `connect(2)` to the address of `len` bytes at `addr`.
///
/// # Safety
/// `addr` is readable for `len` bytes.
pub unsafe fn connect(
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Result<(), c_int> {
    // SAFETY: per the contract.
    result(unsafe { call(libc::SYS_connect, args!(fd, addr, len)) }).map(|_| ())
}

/// `sendmsg(2)`: how much was sent.
///
/// # Safety
/// `msg` and the buffers and control data it points at are valid.
pub unsafe fn sendmsg(fd: c_int, msg: &libc::msghdr, flags: c_int) -> Result<usize, c_int> {
    // SAFETY: per the contract.
    result(unsafe {
        call(
            libc::SYS_sendmsg,
            args!(fd, msg as *const libc::msghdr, flags),
        )
    })
}

/// An anonymous file (`memfd_create(2)`).
pub fn memfd_create(name: &core::ffi::CStr, flags: libc::c_uint) -> Result<c_int, c_int> {
    // SAFETY: a NUL-terminated name.
    result(unsafe { call(libc::SYS_memfd_create, args!(name.as_ptr(), flags)) })
        .map(|fd| fd as c_int)
}

/// `fcntl(2)` with an integer argument.
pub fn fcntl_int(fd: c_int, cmd: c_int, arg: c_int) -> Result<c_int, c_int> {
    // SAFETY: a command that takes an int (not a pointer).
    result(unsafe { call(libc::SYS_fcntl, args!(fd, cmd, arg)) }).map(|r| r as c_int)
}

/// `CLOCK_MONOTONIC` in milliseconds.
pub fn monotonic_ms() -> i64 {
    let (secs, nanos) = clock(libc::CLOCK_MONOTONIC);
    secs * 1000 + nanos / 1_000_000
}

/// `uname(2)` into `uts`.
pub fn uname(uts: &mut libc::utsname) -> Result<(), c_int> {
    // SAFETY: a valid out-pointer of the kernel's `struct new_utsname` layout (glibc's).
    result(unsafe { call(libc::SYS_uname, args!(uts as *mut libc::utsname)) }).map(|_| ())
}

/// `CLOCK_REALTIME`: seconds and nanoseconds since the epoch.
pub fn realtime() -> (i64, i64) {
    clock(libc::CLOCK_REALTIME)
}

/// `clock_gettime(2)`: seconds and nanoseconds.
fn clock(id: libc::clockid_t) -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe {
        call(
            libc::SYS_clock_gettime,
            args!(id, &mut ts as *mut libc::timespec),
        )
    };
    (ts.tv_sec, ts.tv_nsec)
}

/// Copies `len` bytes at `from` in our own memory to `to`, failing (EFAULT) instead of faulting
/// where `from` is not readable: how many bytes were copied.
///
/// # Safety
/// `to` is writable for `len` bytes.
pub unsafe fn read_own_memory(
    from: *const c_void,
    to: *mut c_void,
    len: usize,
) -> Result<usize, c_int> {
    let local = libc::iovec {
        iov_base: to,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: from as *mut c_void,
        iov_len: len,
    };
    // SAFETY: `local` is writable per the contract.
    unsafe { read_memory_vectored(getpid(), &[local], &[remote]) }
}

/// `process_vm_readv(2)`: the `remote` ranges of process `pid` (ours, for us), as one stream,
/// into the `local` buffers, as one stream, stopping at the first byte that cannot be read (the
/// kernel checks, nothing faults): how many bytes were copied.
///
/// # Safety
/// The `local` buffers are writable for their lengths.
pub unsafe fn read_memory_vectored(
    pid: c_int,
    local: &[libc::iovec],
    remote: &[libc::iovec],
) -> Result<usize, c_int> {
    // SAFETY: per the contract; the kernel checks `remote`.
    result(unsafe {
        call(
            libc::SYS_process_vm_readv,
            args!(
                pid,
                local.as_ptr(),
                local.len(),
                remote.as_ptr(),
                remote.len(),
                0
            ),
        )
    })
}

/// Unblocks the signals of `set` (glibc's `sigset_t`, of which the kernel reads the first 64
/// bits) for this thread; returns the mask it had.
pub fn unblock(set: &libc::sigset_t) -> Result<libc::sigset_t, c_int> {
    let mut was = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: valid sets of at least the kernel's size (8 bytes).
    let r = unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            args!(
                libc::SIG_UNBLOCK,
                set as *const libc::sigset_t,
                was.as_mut_ptr(),
                8
            ),
        )
    };
    // SAFETY: zeroed, and its first word filled by the kernel on success.
    result(r).map(|_| unsafe { was.assume_init() })
}

// ---- for the event path (issue 9) ------------------------------------------------------------

/// The working directory, without its NUL, written into `buf`; the `errno` when it cannot be
/// had (`ERANGE`: its path is longer than `buf`; `ENOENT`: it was removed or is unreachable).
pub fn getcwd(buf: &mut [u8]) -> Result<&[u8], c_int> {
    // SAFETY: `buf` is writable for its length.
    let n = result(unsafe { call(libc::SYS_getcwd, args!(buf.as_mut_ptr(), buf.len())) })?;
    // The kernel returns the length with the NUL; an unreachable directory starts with '('.
    let path = buf
        .get(..n.checked_sub(1).ok_or(libc::ENOENT)?)
        .ok_or(libc::ENOENT)?;
    if path.starts_with(b"/") {
        Ok(path)
    } else {
        Err(libc::ENOENT)
    }
}

/// An anonymous private read-write mapping of `len` bytes, zero-filled, its pages allocated
/// now (`MAP_POPULATE`): for memory that will be written whole at once, where the kernel filling
/// it in one call costs a fraction of a page fault per page.
pub fn map_populated(len: usize) -> Option<*mut c_void> {
    map(len, libc::MAP_POPULATE).ok()
}

/// An anonymous private mapping of `len` bytes with no swap reserved for it (a stack, of which
/// only the pages touched are ever memory); the `errno` when it cannot be had.
pub fn map_noreserve(len: usize) -> Result<*mut c_void, c_int> {
    map(len, libc::MAP_NORESERVE)
}

/// `mprotect(2)`.
///
/// # Safety
/// `[addr, addr + len)` is a mapping of ours.
pub unsafe fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> Result<(), c_int> {
    // SAFETY: per the contract.
    result(unsafe { call(libc::SYS_mprotect, args!(addr, len, prot)) }).map(|_| ())
}

/// Whether the page at `addr` (page-aligned, ours) is resident (`mincore(2)`).
pub fn resident(addr: *mut c_void, page: usize) -> bool {
    let mut vec = 0u8;
    // SAFETY: one page, one byte of result.
    let r = unsafe { call(libc::SYS_mincore, args!(addr, page, &mut vec as *mut u8)) };
    result(r).is_ok() && vec & 1 == 1
}

/// `prctl(PR_GET_SECCOMP)`: 0 none, 2 a filter. (In strict mode it would kill the process, but
/// there the program could not have made the call that brought us here either.)
pub fn seccomp_mode() -> c_int {
    // SAFETY: a query with no pointer argument.
    result(unsafe { call(libc::SYS_prctl, args!(libc::PR_GET_SECCOMP, 0, 0, 0, 0)) })
        .map_or(0, |m| m as c_int)
}

/// A signal set of every signal but glibc's two internal ones (32, 33: thread cancellation and
/// `setxid`, which glibc never lets a program block).
pub fn all_signals() -> libc::sigset_t {
    // SAFETY: all-zero bytes are a valid set.
    let mut set = unsafe { core::mem::zeroed::<libc::sigset_t>() };
    // SAFETY: the first 8 bytes of glibc's sigset_t are the kernel's 64-bit set.
    unsafe { *(&mut set as *mut libc::sigset_t as *mut u64) = !((1u64 << 31) | (1u64 << 32)) };
    set
}

/// Blocks the signals of `set` for this thread; returns the mask it had.
pub fn block(set: &libc::sigset_t) -> Result<libc::sigset_t, c_int> {
    mask(libc::SIG_BLOCK, set)
}

/// Sets this thread's signal mask to `set`.
pub fn set_mask(set: &libc::sigset_t) {
    let _ = mask(libc::SIG_SETMASK, set);
}

fn mask(how: c_int, set: &libc::sigset_t) -> Result<libc::sigset_t, c_int> {
    let mut was = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: valid sets of at least the kernel's size (8 bytes).
    let r = unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            args!(how, set as *const libc::sigset_t, was.as_mut_ptr(), 8),
        )
    };
    // SAFETY: zeroed, and its first word filled by the kernel on success.
    result(r).map(|_| unsafe { was.assume_init() })
}

/// Whether signal `signo` (1-64) is in `set`.
pub fn has_signal(set: &libc::sigset_t, signo: c_int) -> bool {
    // SAFETY: the first 8 bytes of glibc's sigset_t are the kernel's 64-bit set.
    let bits = unsafe { *(set as *const libc::sigset_t as *const u64) };
    (1..=64).contains(&signo) && bits & (1u64 << (signo - 1)) != 0
}

/// The signals pending for this thread or the process.
pub fn pending() -> libc::sigset_t {
    // SAFETY: all-zero bytes are a valid set.
    let mut set = unsafe { core::mem::zeroed::<libc::sigset_t>() };
    // SAFETY: the kernel writes 8 bytes into `set`, which is larger.
    unsafe {
        call(
            libc::SYS_rt_sigpending,
            args!(&mut set as *mut libc::sigset_t, 8),
        )
    };
    set
}

/// Takes signal `signo` if it is pending, without waiting (a zero time-out).
pub fn take_pending(signo: c_int) {
    // SAFETY: all-zero bytes are a valid set.
    let mut set = unsafe { core::mem::zeroed::<libc::sigset_t>() };
    if !(1..=64).contains(&signo) {
        return;
    }
    // SAFETY: the first 8 bytes of glibc's sigset_t are the kernel's 64-bit set.
    unsafe { *(&mut set as *mut libc::sigset_t as *mut u64) = 1u64 << (signo - 1) };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid set and time-out; no siginfo is asked for.
    unsafe {
        call(
            libc::SYS_rt_sigtimedwait,
            args!(
                &set as *const libc::sigset_t,
                0,
                &zero as *const libc::timespec,
                8
            ),
        )
    };
}

/// `ioctl(2)` with a pointer argument.
///
/// # Safety
/// `arg` is what `request` wants.
pub unsafe fn ioctl(fd: c_int, request: libc::Ioctl, arg: *mut c_void) -> Result<c_int, c_int> {
    // SAFETY: per the contract.
    result(unsafe { call(libc::SYS_ioctl, args!(fd, request, arg)) }).map(|r| r as c_int)
}

/// Whether `fd` is a terminal (`TCGETS` succeeds on it).
pub fn isatty(fd: c_int) -> bool {
    let mut termios = [0u8; 64];
    // SAFETY: TCGETS writes a `struct termios` (60 bytes) into the buffer.
    unsafe { ioctl(fd, libc::TCGETS, termios.as_mut_ptr() as *mut c_void).is_ok() }
}

/// The bytes queued in pipe `fd` (`FIONREAD`).
pub fn queued(fd: c_int) -> Result<usize, c_int> {
    let mut n: c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { ioctl(fd, libc::FIONREAD, &mut n as *mut c_int as *mut c_void) }
        .map(|_| n.max(0) as usize)
}

/// The soft limit of `resource`, `RLIM64_INFINITY` when there is none (or it cannot be read).
pub fn soft_limit(resource: libc::__rlimit_resource_t) -> u64 {
    // SAFETY: a zeroed rlimit is valid; prlimit64 writes into it.
    let mut lim = unsafe { core::mem::zeroed::<libc::rlimit64>() };
    // SAFETY: this process (0), no new limit, a valid out-pointer.
    let r = unsafe {
        call(
            libc::SYS_prlimit64,
            args!(0, resource, 0, &mut lim as *mut libc::rlimit64),
        )
    };
    if result(r).is_ok() {
        lim.rlim_cur
    } else {
        libc::RLIM64_INFINITY
    }
}

/// `lseek(fd, offset, whence)`: the new position.
pub fn lseek(fd: c_int, offset: i64, whence: c_int) -> Result<i64, c_int> {
    // SAFETY: no memory is passed.
    result(unsafe { call(libc::SYS_lseek, args!(fd, offset, whence)) }).map(|p| p as i64)
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: c_int, len: i64) -> Result<(), c_int> {
    // SAFETY: no memory is passed.
    result(unsafe { call(libc::SYS_ftruncate, args!(fd, len)) }).map(|_| ())
}

/// `pwritev2(fd, [bytes], -1, flags)`: a write at the current position with `RWF_*` flags; how
/// much was written.
pub fn pwritev2(fd: c_int, bytes: &[u8], flags: c_int) -> Result<usize, c_int> {
    let iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: one iovec over `bytes`; offset -1 (low half -1, high half 0) is the current
    // position, the only one a pipe has.
    result(unsafe {
        call(
            libc::SYS_pwritev2,
            args!(fd, &iov as *const libc::iovec, 1, -1i64, 0, flags),
        )
    })
}

/// `send(fd, bytes, flags)`: how much was sent.
pub fn send(fd: c_int, bytes: &[u8], flags: c_int) -> Result<usize, c_int> {
    // SAFETY: `bytes` is readable for its length; no address.
    result(unsafe {
        call(
            libc::SYS_sendto,
            args!(fd, bytes.as_ptr(), bytes.len(), flags, 0, 0),
        )
    })
}

/// `kcmp(2)`: 0 when `pid1`'s resource of `kind` (`idx1`) is `pid2`'s (`idx2`), 1 to 3 when
/// not; an `errno` when it cannot be asked.
pub fn kcmp(
    pid1: c_int,
    pid2: c_int,
    kind: c_int,
    idx1: usize,
    idx2: usize,
) -> Result<usize, c_int> {
    // SAFETY: no memory is passed.
    result(unsafe { call(libc::SYS_kcmp, args!(pid1, pid2, kind, idx1, idx2)) })
}

/// Whether `fd` takes output now (`ppoll` with a zero time-out says `POLLOUT`).
pub fn writable_now(fd: c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one valid pollfd and a zero time-out (never waits); no signal mask.
    let r = unsafe {
        call(
            libc::SYS_ppoll,
            args!(
                &mut p as *mut libc::pollfd,
                1,
                &zero as *const libc::timespec,
                0,
                0
            ),
        )
    };
    result(r) == Ok(1) && p.revents & libc::POLLOUT != 0
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let (secs, nanos) = clock(libc::CLOCK_MONOTONIC);
    secs as u64 * 1_000_000_000 + nanos as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_give_what_libc_gives() {
        // SAFETY: no preconditions.
        unsafe {
            assert_eq!(getpid(), libc::getpid());
            assert_eq!(getppid(), libc::getppid());
            assert_eq!(gettid(), libc::gettid());
        }
        assert_eq!(write(-1, b"x"), Err(libc::EBADF));
        assert_eq!(open(c"/no/such/file", libc::O_RDONLY, 0), Err(libc::ENOENT));
        let fd = open(c"/proc/self/cmdline", libc::O_RDONLY | libc::O_CLOEXEC, 0).unwrap();
        let mut buf = [0u8; 4096];
        let n = read(fd, &mut buf).unwrap();
        let want = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(&buf[..n], &want[..n.min(want.len())]);
        let st = fstat(fd).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
        assert!(status_flags(fd).unwrap() & libc::O_ACCMODE == libc::O_RDONLY);
        close(fd);
        assert_eq!(fstat(fd).err(), Some(libc::EBADF));
        let cwd = std::env::current_dir().unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(
            getcwd(&mut buf).unwrap(),
            cwd.as_os_str().as_encoded_bytes()
        );
        let n = readlink(c"/proc/self/exe", &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            std::fs::read_link("/proc/self/exe")
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((realtime().0 - now).abs() < 5);
    }

    #[test]
    fn memory_reads_fail_instead_of_faulting() {
        let from = [7u8; 16];
        let mut to = [0u8; 16];
        // SAFETY: `to` is writable for 16 bytes.
        let n = unsafe { read_own_memory(from.as_ptr().cast(), to.as_mut_ptr().cast(), 16) };
        assert_eq!(n, Ok(16));
        assert_eq!(to, from);
        // SAFETY: as above.
        let bad = unsafe { read_own_memory(16 as *const c_void, to.as_mut_ptr().cast(), 16) };
        assert_eq!(bad, Err(libc::EFAULT));
        let page = map_anonymous(4096).unwrap();
        // SAFETY: freshly mapped, zero-filled, ours.
        unsafe {
            assert_eq!(*(page as *const u8), 0);
            unmap(page, 4096);
        }
    }
}
