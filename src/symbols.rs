//! Function names for native frames, found inside hooks without locks or heap allocation.
//!
//! The first time a module is asked about, its function symbols are gathered into a sorted
//! index: from the module file's `.symtab` when it has one (which names static functions too),
//! else from its `.dynsym` in memory (exported functions only, all a stripped library has). The
//! file stays mapped read-only and the index lives in an anonymous mapping, both for the life of
//! the process, so each later lookup is a binary search: a few hundred nanoseconds however large
//! the module. Reading and sorting a large table (libpython has about 20,000 functions) costs a
//! few hundred microseconds once per module.
//!
//! The cache is a fixed table of [`SLOTS`] modules. A slot is claimed with a compare-and-swap,
//! filled, then published with release ordering; readers only use published slots. A thread that
//! finds its module being filled by another (or the table full) goes without names for that
//! event rather than wait. Mappings are `mmap(2)` calls, which are safe in a signal handler; in
//! a `vfork()` child they land in the address space it shares with its parent, which is where
//! the published slot is seen too.
//!
//! Every read of a file goes through bounds-checked slices: a truncated or hostile file yields no
//! name, never a fault.

use crate::unwind::LinkMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Modules whose names are cached.
pub const SLOTS: usize = 32;
/// Functions indexed per module at most.
const MAX_FUNCTIONS: usize = 1 << 20;

const EMPTY: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

/// One function: where it starts (an address relative to the module's load base), how long it
/// is, and where its name is in the string table.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Function {
    start: u64,
    len: u32,
    name: u32,
}

struct Slot {
    state: AtomicU8,
    /// The module's link map: unique among the loaded modules.
    key: AtomicUsize,
    index: AtomicUsize,
    count: AtomicUsize,
    strtab: AtomicUsize,
    strtab_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    state: AtomicU8::new(EMPTY),
    key: AtomicUsize::new(0),
    index: AtomicUsize::new(0),
    count: AtomicUsize::new(0),
    strtab: AtomicUsize::new(0),
    strtab_len: AtomicUsize::new(0),
};
static CACHE: [Slot; SLOTS] = [SLOT; SLOTS];

/// A published index.
struct Index {
    functions: &'static [Function],
    strtab: &'static [u8],
}

impl Index {
    fn find(&self, vaddr: usize) -> Option<(&'static [u8], usize)> {
        find(self.functions, self.strtab, vaddr)
    }
}

/// The function holding `pc` (an address relative to the module's load base) in the module
/// `map`, whose file is at `path`, with the offset of `pc + 1` into it (return addresses are one
/// past the call).
pub fn name(map: *const LinkMap, path: &[u8], pc: usize) -> Option<(&'static [u8], usize)> {
    let key = map as usize;
    if let Some(index) = published(key) {
        return index.find(pc);
    }
    let slot = CACHE.iter().find(|s| {
        s.state
            .compare_exchange(EMPTY, FILLING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })?;
    slot.key.store(key, Ordering::Relaxed);
    // SAFETY: `map` is the live link map of the module holding `pc`.
    let (index, count, strtab, strtab_len) = unsafe { build(map, path) }.unwrap_or_default();
    slot.index.store(index, Ordering::Relaxed);
    slot.count.store(count, Ordering::Relaxed);
    slot.strtab.store(strtab, Ordering::Relaxed);
    slot.strtab_len.store(strtab_len, Ordering::Relaxed);
    slot.state.store(READY, Ordering::Release);
    published(key)?.find(pc)
}

fn published(key: usize) -> Option<Index> {
    let slot = CACHE.iter().find(|s| {
        s.state.load(Ordering::Acquire) == READY && s.key.load(Ordering::Relaxed) == key
    })?;
    let (index, count) = (
        slot.index.load(Ordering::Relaxed),
        slot.count.load(Ordering::Relaxed),
    );
    let (strtab, strtab_len) = (
        slot.strtab.load(Ordering::Relaxed),
        slot.strtab_len.load(Ordering::Relaxed),
    );
    if index == 0 || strtab == 0 {
        return Some(Index {
            functions: &[],
            strtab: &[],
        });
    }
    // SAFETY: published by `name` after `build` filled them; the mappings are never unmapped.
    unsafe {
        Some(Index {
            functions: std::slice::from_raw_parts(index as *const Function, count),
            strtab: std::slice::from_raw_parts(strtab as *const u8, strtab_len),
        })
    }
}

/// Gathers and sorts `map`'s functions: `(index address, count, string table address, its length)`.
///
/// # Safety
/// `map` is a loaded module's link map.
unsafe fn build(map: *const LinkMap, path: &[u8]) -> Option<(usize, usize, usize, usize)> {
    // SAFETY: per the contract.
    let dynamic = unsafe { dynamic_tables(&*map) };
    let file = map_file(path);
    let from_file = file.and_then(symtab_sections);
    let (syms, strtab) = match (from_file, dynamic) {
        (Some(t), _) => t,
        (None, Some(t)) => t,
        (None, None) => return None,
    };
    let count = syms
        .chunks_exact(SYM_SIZE)
        .filter(|s| is_function(s))
        .count()
        .min(MAX_FUNCTIONS);
    if count == 0 {
        return None;
    }
    let bytes = count * std::mem::size_of::<Function>();
    // SAFETY: an anonymous private mapping, checked for failure; kept for the process's life.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is zeroed, aligned and `count` entries long; ours alone until published.
    let index = unsafe { std::slice::from_raw_parts_mut(mem as *mut Function, count) };
    let n = fill(syms, index);
    let index = index.get_mut(..n)?;
    index.sort_unstable_by_key(|f| f.start);
    Some((mem as usize, n, strtab.as_ptr() as usize, strtab.len()))
}

const SYM_SIZE: usize = 24;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

fn is_function(s: &[u8]) -> bool {
    let kind = s.get(4).map_or(0, |i| i & 0xf);
    (kind == STT_FUNC || kind == STT_GNU_IFUNC)
        && read_u16(s, 0, 6).is_some_and(|shndx| shndx != 0)
        && read_u64(s, 0, 8).is_some_and(|value| value != 0)
}

/// Writes the function symbols of an ELF64 symbol table into `out`; returns how many.
pub fn fill(syms: &[u8], out: &mut [Function]) -> usize {
    let mut n = 0;
    for s in syms.chunks_exact(SYM_SIZE).filter(|s| is_function(s)) {
        let Some(slot) = out.get_mut(n) else { break };
        *slot = Function {
            start: read_u64(s, 0, 8).unwrap_or(0),
            len: read_u64(s, 0, 16).map_or(0, |l| l.min(u32::MAX as u64) as u32),
            name: read_u32(s, 0, 0).unwrap_or(0),
        };
        n += 1;
    }
    n
}

/// The function holding `vaddr` in an index sorted by start, and the offset of `vaddr + 1`.
pub fn find(
    functions: &[Function],
    strtab: &'static [u8],
    vaddr: usize,
) -> Option<(&'static [u8], usize)> {
    let vaddr = vaddr as u64;
    let after = functions.partition_point(|f| f.start <= vaddr);
    // Nested or aliased symbols: look back a little for one whose range holds the address.
    for f in functions.get(after.saturating_sub(8)..after)?.iter().rev() {
        if vaddr < f.start + u64::from(f.len.max(1)) {
            let name = strtab.get(f.name as usize..)?;
            let end = name
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(name.len())
                .min(512);
            return Some((name.get(..end)?, (vaddr + 1 - f.start) as usize));
        }
    }
    None
}

// ---- ELF ------------------------------------------------------------------------------------

#[repr(C)]
struct Elf64Dyn {
    d_tag: i64,
    d_val: u64,
}

const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_STRSZ: i64 = 10;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

/// The addresses a module's dynamic section gives (0 when absent).
#[derive(Default)]
struct Dynamic {
    symtab: usize,
    strtab: usize,
    strsz: usize,
    hash: usize,
    gnu_hash: usize,
}

/// Reads the dynamic section at `ld` of a module loaded at `base`.
///
/// # Safety
/// `ld` is null or a loaded module's dynamic section.
unsafe fn read_dynamic(ld: *const Elf64Dyn, base: usize) -> Dynamic {
    let mut dynamic = Dynamic::default();
    if ld.is_null() {
        return dynamic;
    }
    // glibc relocates most modules' dynamic entries in place, but not a read-only .dynamic (the
    // vDSO's): an entry below the load base is still relative.
    let fix = |v: u64| {
        let v = v as usize;
        if v < base { v + base } else { v }
    };
    let mut d = ld;
    for _ in 0..1024 {
        // SAFETY: the dynamic section is an array ended by DT_NULL.
        let e = unsafe { &*d };
        match e.d_tag {
            DT_NULL => break,
            DT_SYMTAB => dynamic.symtab = fix(e.d_val),
            DT_STRTAB => dynamic.strtab = fix(e.d_val),
            DT_STRSZ => dynamic.strsz = e.d_val as usize,
            DT_HASH => dynamic.hash = fix(e.d_val),
            DT_GNU_HASH => dynamic.gnu_hash = fix(e.d_val),
            _ => {}
        }
        // SAFETY: DT_NULL not reached yet, so the array goes on.
        d = unsafe { d.add(1) };
    }
    dynamic
}

/// A module's `.dynsym` and `.dynstr` as they are mapped in memory.
///
/// # Safety
/// `map` is a loaded module's link map.
unsafe fn dynamic_tables(map: &LinkMap) -> Option<(&'static [u8], &'static [u8])> {
    // SAFETY: per the contract.
    let d = unsafe { read_dynamic(map.l_ld as *const Elf64Dyn, map.l_addr) };
    if d.symtab == 0 || d.strtab == 0 {
        return None;
    }
    // SAFETY: the hash tables are mapped parts of the module.
    let count = unsafe {
        if d.gnu_hash != 0 {
            gnu_hash_symbol_count(d.gnu_hash as *const u32)
        } else if d.hash != 0 {
            *(d.hash as *const u32).add(1) as usize
        } else {
            return None;
        }
    };
    // SAFETY: the symbol and string tables are mapped parts of the module, of these sizes.
    unsafe {
        Some((
            std::slice::from_raw_parts(d.symtab as *const u8, count.min(MAX_FUNCTIONS) * SYM_SIZE),
            std::slice::from_raw_parts(d.strtab as *const u8, d.strsz),
        ))
    }
}

/// Whether some loaded module may define the symbol `name` (no NUL): `false` only when every
/// module's GNU hash table says it does not. For the constructor, before a `dlsym` that would
/// fail: glibc's first failed lookup allocates its error message, which sets up malloc in a
/// process that may never have used it (about 7 µs added to every exec of such a program).
pub fn maybe_defined(name: &[u8]) -> bool {
    let mut found = Search { name, maybe: false };
    // SAFETY: the callback only reads the loader's module descriptions and their tables.
    unsafe {
        libc::dl_iterate_phdr(
            Some(search_module),
            &mut found as *mut Search as *mut libc::c_void,
        );
    }
    found.maybe
}

struct Search<'a> {
    name: &'a [u8],
    maybe: bool,
}

unsafe extern "C" fn search_module(
    info: *mut libc::dl_phdr_info,
    _: usize,
    arg: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: glibc passes a valid description, and `arg` is the `Search` of `maybe_defined`.
    let (info, search) = unsafe { (&*info, &mut *(arg as *mut Search)) };
    let base = info.dlpi_addr as usize;
    let phdrs = (0..info.dlpi_phnum as usize)
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        .map(|i| unsafe { &*info.dlpi_phdr.add(i) });
    let Some(dynamic) = phdrs.clone().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        return 0;
    };
    // SAFETY: the module's dynamic section is mapped where its header says.
    let d = unsafe { read_dynamic((base + dynamic.p_vaddr as usize) as *const Elf64Dyn, base) };
    // SAFETY: the tables named by a loaded module's dynamic section are mapped.
    search.maybe = unsafe { gnu_hash_may_define(&d, search.name) };
    i32::from(search.maybe)
}

/// Looks `name` up in a module's GNU hash table; a module without one may define anything.
///
/// # Safety
/// The addresses in `d` are a loaded module's mapped tables.
unsafe fn gnu_hash_may_define(d: &Dynamic, name: &[u8]) -> bool {
    if d.gnu_hash == 0 || d.symtab == 0 || d.strtab == 0 {
        return d.hash != 0;
    }
    let h = name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    });
    // SAFETY: the header, bloom words, buckets and chains of the table, in that order.
    unsafe {
        let t = d.gnu_hash as *const u32;
        let (nbuckets, symoffset) = (*t as usize, *t.add(1) as usize);
        let (bloom_words, shift) = (*t.add(2) as usize, *t.add(3));
        if nbuckets == 0 || bloom_words == 0 {
            return false;
        }
        let bloom = t.add(4) as *const u64;
        let word = *bloom.add((h as usize / 64) % bloom_words);
        let mask = (1u64 << (h % 64)) | (1u64 << ((h >> (shift % 32)) % 64));
        if word & mask != mask {
            return false;
        }
        let buckets = t.add(4 + bloom_words * 2);
        let chains = buckets.add(nbuckets);
        let first = *buckets.add(h as usize % nbuckets) as usize;
        if first < symoffset {
            return false;
        }
        for i in (first..).take(MAX_FUNCTIONS) {
            let chain = *chains.add(i - symoffset);
            if chain | 1 == h | 1 {
                let sym = (d.symtab + i * SYM_SIZE) as *const u8;
                let st_name = (sym as *const u32).read_unaligned() as usize;
                // Compared byte by byte up to the candidate's NUL, never read past it.
                let candidate = (d.strtab + st_name) as *const u8;
                let same = name
                    .iter()
                    .enumerate()
                    .all(|(k, &c)| *candidate.add(k) == c);
                if same && *candidate.add(name.len()) == 0 {
                    return true;
                }
            }
            if chain & 1 == 1 {
                return false;
            }
        }
        false
    }
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
        while last - symoffset < MAX_FUNCTIONS && *chains.add(last - symoffset) & 1 == 0 {
            last += 1;
        }
        last + 1
    }
}

/// Maps a whole file read-only, for good.
fn map_file(path: &[u8]) -> Option<&'static [u8]> {
    let mut cpath = [0u8; 4097];
    cpath.get_mut(..path.len())?.copy_from_slice(path);
    // SAFETY: NUL-terminated path; the descriptor is closed before returning; the mapping is
    // checked for failure and never unmapped.
    unsafe {
        let fd = libc::open(
            cpath.as_ptr() as *const libc::c_char,
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let mut st = std::mem::zeroed::<libc::stat>();
        let len = if libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG {
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
        (addr != libc::MAP_FAILED).then(|| std::slice::from_raw_parts(addr as *const u8, len))
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

/// The `.symtab` section of an ELF64 little-endian file and the string table it links to.
pub fn symtab_sections(file: &'static [u8]) -> Option<(&'static [u8], &'static [u8])> {
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
    Some((
        file.get(symoff..symoff.checked_add(symsize)?)?,
        file.get(stroff..stroff.checked_add(strsize)?)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks `vaddr` up the way a hook does, in an index built from `file`'s `.symtab`.
    fn lookup(file: &'static [u8], vaddr: usize) -> Option<String> {
        let (syms, strtab) = symtab_sections(file)?;
        let mut index = vec![Function::default(); syms.len() / SYM_SIZE];
        let n = fill(syms, &mut index);
        index.truncate(n);
        index.sort_unstable_by_key(|f| f.start);
        find(&index, strtab, vaddr).map(|(name, _)| String::from_utf8_lossy(name).into_owned())
    }

    #[test]
    fn names_a_function_of_this_very_binary() {
        // The test binary is not stripped: find one of our own functions in it.
        let exe: &'static [u8] = std::fs::read("/proc/self/exe").unwrap().leak();
        let here = names_a_function_of_this_very_binary as *const () as usize;
        let exe_path = std::fs::canonicalize("/proc/self/exe").unwrap();
        let base = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (lo, _) = fields.first()?.split_once('-')?;
                let offset_zero = u64::from_str_radix(fields.get(2)?, 16) == Ok(0);
                let ours = std::fs::canonicalize(fields.get(5)?).ok()? == exe_path;
                (offset_zero && ours).then(|| usize::from_str_radix(lo, 16).unwrap())
            })
            .unwrap();
        let name = lookup(exe, here - base + 1).unwrap();
        assert!(
            name.contains("names_a_function_of_this_very_binary"),
            "{name}"
        );
    }

    #[test]
    fn knows_which_symbols_the_process_defines() {
        assert!(maybe_defined(b"malloc"));
        assert!(maybe_defined(b"sigaction"));
        assert!(!maybe_defined(b"Py_Version_of_no_such_python"));
        assert!(!maybe_defined(b"sigactio"));
    }

    #[test]
    fn garbage_files_name_nothing() {
        assert!(lookup(b"", 0).is_none());
        assert!(lookup(b"\x7fELF\x02\x01\0\0", 0x10).is_none());
        let mut junk = vec![0xffu8; 4096];
        junk[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert!(lookup(junk.leak(), 0x10).is_none());
    }

    #[test]
    fn finds_the_function_holding_an_address() {
        let strtab: &'static [u8] = b"\0alpha\0beta\0gamma\0";
        let index = [
            Function {
                start: 0x100,
                len: 0x10,
                name: 1,
            },
            Function {
                start: 0x200,
                len: 0x100,
                name: 7,
            },
            Function {
                start: 0x220,
                len: 0x10,
                name: 12,
            },
        ];
        let name =
            |v| find(&index, strtab, v).map(|(n, off)| (std::str::from_utf8(n).unwrap(), off));
        assert_eq!(name(0x100), Some(("alpha", 1)));
        assert_eq!(name(0x10f), Some(("alpha", 0x10)));
        assert_eq!(name(0x110), None);
        assert_eq!(name(0x225), Some(("gamma", 6)));
        assert_eq!(name(0x240), Some(("beta", 0x41)));
        assert_eq!(name(0x50), None);
    }
}
