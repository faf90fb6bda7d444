//! Native stack capture and lock-free naming of the frames, for use inside hooks.
//!
//! Capture: libgcc's `_Unwind_Backtrace` (linked statically, see `build.rs`) walks the DWARF
//! call-frame information into a fixed array of [`MAX_FRAMES`] return addresses; deeper stacks
//! are cut and marked so. The frames of this library itself are skipped. GCC 12's unwinder finds
//! each frame's unwind table with glibc's `_dl_find_object`, which takes no lock, so this is safe
//! in a signal handler or a `fork()` child. (`std::backtrace` is not: its first use costs about
//! 100 ms and 100,000 allocations.)
//!
//! Naming: `_dl_find_object` (glibc 2.35+, async-signal-safe) gives each address's module and
//! load base; the function name comes from that module's dynamic symbol table (`.dynsym`), read
//! in memory. That names exported functions; static ones are named offline by
//! `sigaudit symbolize`, from the `module` and `offset` in the record. Where `_dl_find_object` is
//! missing (glibc < 2.35) frames carry their address only.

use libc::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Frames kept per event.
pub const MAX_FRAMES: usize = 64;

/// Return addresses, innermost first.
pub struct Backtrace {
    pub ips: [usize; MAX_FRAMES],
    pub len: usize,
    /// The stack had more frames than [`MAX_FRAMES`].
    pub truncated: bool,
}

impl Backtrace {
    pub fn frames(&self) -> &[usize] {
        self.ips.get(..self.len).unwrap_or(&[])
    }
}

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;

unsafe extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

/// Our own text, to skip: [start, end).
static SELF_START: AtomicUsize = AtomicUsize::new(0);
static SELF_END: AtomicUsize = AtomicUsize::new(0);
/// glibc's `_dl_find_object`, when it has one.
static DL_FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

type DlFindObjectFn = unsafe extern "C" fn(*mut c_void, *mut DlFindObject) -> c_int;

/// `struct dl_find_object` (glibc 2.35, x86_64 and aarch64 layout).
#[repr(C)]
struct DlFindObject {
    flags: u64,
    map_start: *mut c_void,
    map_end: *mut c_void,
    link_map: *const LinkMap,
    eh_frame: *mut c_void,
    reserved: [u64; 7],
}

/// The public head of glibc's `struct link_map`.
#[repr(C)]
struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
    l_ld: *const Elf64Dyn,
}

#[repr(C)]
struct Elf64Dyn {
    d_tag: i64,
    d_val: u64,
}

#[repr(C)]
struct Elf64Sym {
    st_name: u32,
    st_info: u8,
    st_other: u8,
    st_shndx: u16,
    st_value: u64,
    st_size: u64,
}

/// Prepares capture and naming, once: from the constructor, or from the first hook that runs
/// before it (inside another library's constructor, where the loader's lock is already ours).
pub fn init() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let f = crate::real::lookup_global(b"_dl_find_object\0");
    DL_FIND_OBJECT.store(f as usize, Ordering::Relaxed);
    let here = init as *const () as usize;
    // SAFETY: dl_iterate_phdr calls back with valid dl_phdr_info pointers; the callback only
    // reads them.
    unsafe {
        libc::dl_iterate_phdr(Some(find_self), here as *mut c_void);
    }
}

unsafe extern "C" fn find_self(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    here: *mut c_void,
) -> c_int {
    // SAFETY: glibc passes a valid info for each loaded object.
    let info = unsafe { &*info };
    let here = here as usize;
    let base = info.dlpi_addr as usize;
    let (mut lo, mut hi) = (usize::MAX, 0);
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            lo = lo.min(base + ph.p_vaddr as usize);
            hi = hi.max(base + (ph.p_vaddr + ph.p_memsz) as usize);
        }
    }
    if lo <= here && here < hi {
        SELF_START.store(lo, Ordering::Relaxed);
        SELF_END.store(hi, Ordering::Relaxed);
        return 1;
    }
    0
}

fn is_ours(ip: usize) -> bool {
    let (lo, hi) = (
        SELF_START.load(Ordering::Relaxed),
        SELF_END.load(Ordering::Relaxed),
    );
    lo <= ip && ip < hi
}

struct Walk<'a> {
    bt: &'a mut Backtrace,
    /// Still inside our own frames at the top of the stack.
    skipping: bool,
}

extern "C" fn collect(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` that `capture` passed, alive for the whole walk.
    let walk = unsafe { &mut *(arg as *mut Walk) };
    // SAFETY: ctx is the live unwind context of this callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    if walk.skipping && is_ours(ip) {
        return URC_NO_REASON;
    }
    walk.skipping = false;
    match walk.bt.ips.get_mut(walk.bt.len) {
        Some(slot) => {
            *slot = ip;
            walk.bt.len += 1;
            URC_NO_REASON
        }
        None => {
            walk.bt.truncated = true;
            URC_NORMAL_STOP
        }
    }
}

/// Stack the unwinder needs below its caller: its context and frame-state records take a few
/// KiB (measured: about 3 KiB optimised, 6 KiB in a debug build), with room to spare.
const UNWIND_STACK_NEED: usize = 8 * 1024;

/// Bytes left below us when we run on an alternate signal stack; `None` on any other stack
/// (a thread's or the main stack, which are not near their end in any program that works).
fn alternate_stack_room() -> Option<usize> {
    let mut ss = std::mem::MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: a NULL new stack only reads the current one into `ss`; async-signal-safe.
    if unsafe { libc::sigaltstack(std::ptr::null(), ss.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: zeroed, and filled by the kernel on success.
    let ss = unsafe { ss.assume_init() };
    if ss.ss_flags & libc::SS_ONSTACK == 0 {
        return None;
    }
    let here = &ss as *const libc::stack_t as usize;
    Some(here.saturating_sub(ss.ss_sp as usize))
}

/// Fills `bt` with the caller's stack, our own frames left out. On an alternate signal stack
/// with too little room left (a handler's stack of `SIGSTKSZ`, 8 KiB, is common) nothing is
/// captured and the stack is marked cut: walking it would overflow into whatever lies below and
/// crash the host.
#[inline(never)]
pub fn capture(bt: &mut Backtrace) {
    bt.len = 0;
    bt.truncated = false;
    if alternate_stack_room().is_some_and(|room| room < UNWIND_STACK_NEED) {
        bt.truncated = true;
        return;
    }
    let mut walk = Walk { bt, skipping: true };
    // SAFETY: `collect` matches the callback type and `walk` outlives the call.
    unsafe {
        _Unwind_Backtrace(collect, &mut walk as *mut Walk as *mut c_void);
    }
}

/// Where an address lives: its module's load base and path, and its dynamic symbol if any.
pub struct Location<'m> {
    pub base: usize,
    /// The module's path as the loader has it (empty for the main program).
    pub module: &'m [u8],
    pub symbol: Option<(&'m [u8], usize)>,
}

/// Names `ip` (a return address) without locks or allocation; `None` without `_dl_find_object`
/// or for an address in no module (JIT code, say).
pub fn locate(ip: usize) -> Option<Location<'static>> {
    let f = DL_FIND_OBJECT.load(Ordering::Relaxed);
    if f == 0 {
        return None;
    }
    // SAFETY: stored from dlsym("_dl_find_object"), whose prototype this is.
    let find: DlFindObjectFn = unsafe { std::mem::transmute::<usize, DlFindObjectFn>(f) };
    let mut dlfo = std::mem::MaybeUninit::<DlFindObject>::zeroed();
    // Look up the call instruction, not the one after it.
    let pc = ip.saturating_sub(1);
    // SAFETY: find only writes `dlfo`; it is documented async-signal-safe.
    if unsafe { find(pc as *mut c_void, dlfo.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: filled on success.
    let dlfo = unsafe { dlfo.assume_init() };
    if dlfo.link_map.is_null() {
        return None;
    }
    // SAFETY: a live link_map of a loaded object; the module cannot be unloaded while one of its
    // frames is on our stack.
    let map = unsafe { &*dlfo.link_map };
    // SAFETY: l_name is a NUL-terminated string owned by the loader (maybe empty).
    let module = unsafe { cstr(map.l_name, 4096) };
    // SAFETY: as above, l_ld is the module's mapped dynamic section.
    let symbol = unsafe { dynamic_symbol(map, pc) };
    Some(Location {
        base: map.l_addr,
        module,
        symbol,
    })
}

/// A NUL-terminated string as a slice of at most `max` bytes.
///
/// # Safety
/// `p` is null or points to a readable NUL-terminated string.
pub unsafe fn cstr<'a>(p: *const c_char, max: usize) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    let mut n = 0;
    // SAFETY: the string is readable up to its NUL.
    while n < max && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: the first n bytes were just read.
    unsafe { std::slice::from_raw_parts(p as *const u8, n) }
}

const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_GNU_HASH: i64 = 0x6fff_fef5;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

/// The dynamic symbol of `map` whose range holds `pc`, with the offset into it.
///
/// # Safety
/// `map` is a loaded object's link map.
unsafe fn dynamic_symbol(map: &LinkMap, pc: usize) -> Option<(&'static [u8], usize)> {
    if map.l_ld.is_null() {
        return None;
    }
    let base = map.l_addr;
    // glibc relocates most modules' dynamic entries in place, but not a read-only .dynamic (the
    // vDSO): an entry below the load base is still relative.
    let fix = |v: u64| {
        let v = v as usize;
        if v < base { v + base } else { v }
    };
    let (mut symtab, mut strtab, mut hash, mut gnu_hash) = (0, 0, 0, 0);
    let mut d = map.l_ld;
    for _ in 0..512 {
        // SAFETY: the dynamic section is an array ended by DT_NULL.
        let e = unsafe { &*d };
        match e.d_tag {
            DT_NULL => break,
            DT_SYMTAB => symtab = fix(e.d_val),
            DT_STRTAB => strtab = fix(e.d_val),
            DT_HASH => hash = fix(e.d_val),
            DT_GNU_HASH => gnu_hash = fix(e.d_val),
            _ => {}
        }
        // SAFETY: still within the array (DT_NULL not reached yet).
        d = unsafe { d.add(1) };
    }
    if symtab == 0 || strtab == 0 {
        return None;
    }
    // SAFETY: the hash tables are mapped parts of the module.
    let count = unsafe {
        if gnu_hash != 0 {
            gnu_hash_symbol_count(gnu_hash as *const u32)
        } else if hash != 0 {
            *(hash as *const u32).add(1) as usize
        } else {
            return None;
        }
    };
    let syms = symtab as *const Elf64Sym;
    for i in 0..count.min(1 << 20) {
        // SAFETY: `count` entries exist in the symbol table.
        let s = unsafe { &*syms.add(i) };
        let kind = s.st_info & 0xf;
        if (kind != STT_FUNC && kind != STT_GNU_IFUNC) || s.st_shndx == 0 || s.st_value == 0 {
            continue;
        }
        let start = base.wrapping_add(s.st_value as usize);
        let size = (s.st_size as usize).max(1);
        if start <= pc && pc < start.wrapping_add(size) {
            // SAFETY: st_name indexes the NUL-terminated string table.
            let name = unsafe { cstr((strtab + s.st_name as usize) as *const c_char, 512) };
            return Some((name, pc + 1 - start));
        }
    }
    None
}

/// Number of symbols in a table described by a `DT_GNU_HASH` section.
///
/// # Safety
/// `h` points to a mapped GNU hash section.
unsafe fn gnu_hash_symbol_count(h: *const u32) -> usize {
    // SAFETY: the header is 4 words, then the bloom filter, buckets and chains.
    unsafe {
        let nbuckets = *h as usize;
        let symoffset = *h.add(1) as usize;
        let bloom_words = *h.add(2) as usize;
        let buckets = h.add(4 + bloom_words * 2);
        let chains = buckets.add(nbuckets);
        let mut last = 0;
        for i in 0..nbuckets {
            last = last.max(*buckets.add(i) as usize);
        }
        if last < symoffset {
            return symoffset;
        }
        while last - symoffset < 1 << 20 && *chains.add(last - symoffset) & 1 == 0 {
            last += 1;
        }
        last + 1
    }
}

/// Symbol tables read from the module files themselves (`.symtab`, which names static
/// functions too), for frames that `.dynsym` leaves unnamed. The files are mapped read-only for
/// the length of one event and unmapped when this is dropped; at most [`MAPPED_FILES`] at once.
pub struct FileSymbols {
    maps: [Option<Mapped>; MAPPED_FILES],
}

const MAPPED_FILES: usize = 4;

struct Mapped {
    /// Which module: the loader's name pointer is stable while the module is loaded.
    key: usize,
    addr: *const u8,
    len: usize,
}

impl Drop for FileSymbols {
    fn drop(&mut self) {
        for m in self.maps.iter().flatten() {
            // SAFETY: each mapping was made by `map_file` and is unmapped once.
            unsafe { libc::munmap(m.addr as *mut c_void, m.len) };
        }
    }
}

impl Default for FileSymbols {
    fn default() -> Self {
        Self::new()
    }
}

impl FileSymbols {
    pub const fn new() -> Self {
        FileSymbols {
            maps: [None, None, None, None],
        }
    }

    /// The `.symtab` function holding `vaddr` (an address relative to the module's load base) in
    /// the file at `path`; `key` identifies the module (its loader name pointer).
    pub fn lookup(&mut self, key: usize, path: &[u8], vaddr: usize) -> Option<(&[u8], usize)> {
        let i = match self
            .maps
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.key == key))
        {
            Some(i) => i,
            None => {
                let free = self.maps.iter().position(Option::is_none)?;
                let (addr, len) = map_file(path)?;
                if let Some(slot) = self.maps.get_mut(free) {
                    *slot = Some(Mapped { key, addr, len });
                }
                free
            }
        };
        let m = self.maps.get(i)?.as_ref()?;
        // SAFETY: the mapping covers `len` readable bytes and lives as long as `self`.
        let file = unsafe { std::slice::from_raw_parts(m.addr, m.len) };
        symtab_lookup(file, vaddr)
    }
}

/// Maps a whole file read-only. Path bytes are copied into a NUL-terminated buffer.
fn map_file(path: &[u8]) -> Option<(*const u8, usize)> {
    let mut cpath = [0u8; 4097];
    cpath.get_mut(..path.len())?.copy_from_slice(path);
    // SAFETY: NUL-terminated path; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(
            cpath.as_ptr() as *const c_char,
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let mut st = std::mem::zeroed::<libc::stat>();
        let len = if libc::fstat(fd, &mut st) == 0 {
            st.st_size as usize
        } else {
            0
        };
        let addr = if len >= 64 {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            )
        } else {
            libc::MAP_FAILED
        };
        libc::close(fd);
        (addr != libc::MAP_FAILED).then_some((addr as *const u8, len))
    }
}

/// Little-endian fields at `base + off`, bounds- and overflow-checked.
fn field<const N: usize>(b: &[u8], base: usize, off: usize) -> Option<[u8; N]> {
    let at = base.checked_add(off)?;
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn read_u16(b: &[u8], base: usize, off: usize) -> Option<u16> {
    field(b, base, off).map(u16::from_le_bytes)
}
fn read_u32(b: &[u8], base: usize, off: usize) -> Option<u32> {
    field(b, base, off).map(u32::from_le_bytes)
}
fn read_u64(b: &[u8], base: usize, off: usize) -> Option<u64> {
    field(b, base, off).map(u64::from_le_bytes)
}

/// Finds the function symbol holding `vaddr` in an ELF64 little-endian file's `.symtab`. Every
/// read is bounds-checked: a truncated or hostile file yields `None`, never a fault.
fn symtab_lookup(file: &[u8], vaddr: usize) -> Option<(&[u8], usize)> {
    if file.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = read_u64(file, 0, 0x28)? as usize;
    let shentsize = read_u16(file, 0, 0x3a)? as usize;
    let shnum = read_u16(file, 0, 0x3c)? as usize;
    if shentsize < 64 {
        return None;
    }
    let section = |i: usize| -> Option<(u32, usize, usize, u32)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            read_u32(file, h, 4)?,
            read_u64(file, h, 0x18)? as usize,
            read_u64(file, h, 0x20)? as usize,
            read_u32(file, h, 0x28)?,
        ))
    };
    const SHT_SYMTAB: u32 = 2;
    let (_, symoff, symsize, link) = (0..shnum)
        .filter_map(section)
        .find(|&(kind, ..)| kind == SHT_SYMTAB)?;
    let (_, stroff, strsize, _) = section(link as usize)?;
    let strtab = file.get(stroff..stroff.checked_add(strsize)?)?;
    let syms = file.get(symoff..symoff.checked_add(symsize)?)?;
    for s in syms.chunks_exact(24) {
        let kind = s.get(4).copied()? & 0xf;
        let shndx = read_u16(s, 0, 6)?;
        let value = read_u64(s, 0, 8)? as usize;
        let size = (read_u64(s, 0, 16)? as usize).max(1);
        if (kind != STT_FUNC && kind != STT_GNU_IFUNC) || shndx == 0 || value == 0 {
            continue;
        }
        if value <= vaddr && vaddr < value.saturating_add(size) {
            let name = strtab.get(read_u32(s, 0, 0)? as usize..)?;
            let end = name
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(name.len())
                .min(512);
            return Some((name.get(..end)?, vaddr + 1 - value));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symtab_of_a_real_binary() {
        // The test binary itself is not stripped: find one of our own functions in it.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let here = symtab_of_a_real_binary as *const () as usize;
        let mut base = 0;
        for line in std::fs::read_to_string("/proc/self/maps").unwrap().lines() {
            let (range, rest) = line.split_once(' ').unwrap();
            let (lo, _) = range.split_once('-').unwrap();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() == 5
                && u64::from_str_radix(fields[1], 16) == Ok(0)
                && std::fs::canonicalize(fields[4]).ok()
                    == std::fs::canonicalize("/proc/self/exe").ok()
            {
                base = usize::from_str_radix(lo, 16).unwrap();
                break;
            }
        }
        assert_ne!(base, 0);
        let (name, _) = symtab_lookup(&exe, here - base + 1).unwrap();
        let name = String::from_utf8_lossy(name);
        assert!(name.contains("symtab_of_a_real_binary"), "{name}");
    }

    #[test]
    fn garbage_files_name_nothing() {
        assert!(symtab_lookup(b"", 0).is_none());
        assert!(symtab_lookup(b"\x7fELF\x02\x01\0\0", 0x10).is_none());
        let mut junk = vec![0xffu8; 4096];
        junk[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert!(symtab_lookup(&junk, 0x10).is_none());
    }
}
