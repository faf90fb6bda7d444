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

use crate::objects::{Dynamic, LinkMap, SYM_SIZE};
use crate::sys;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

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
/// past the call). With `files` false the module file is not opened (see
/// `guard::files_allowed`): an index built then has the `.dynsym` names only, for good.
pub fn name(
    map: *const LinkMap,
    path: &[u8],
    pc: usize,
    files: bool,
) -> Option<(&'static [u8], usize)> {
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
    let (index, count, strtab, strtab_len) = unsafe { build(map, path, files) }.unwrap_or_default();
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
            functions: core::slice::from_raw_parts(index as *const Function, count),
            strtab: core::slice::from_raw_parts(strtab as *const u8, strtab_len),
        })
    }
}

/// Gathers and sorts `map`'s functions: `(index address, count, string table address, its length)`.
///
/// # Safety
/// `map` is a loaded module's link map.
unsafe fn build(
    map: *const LinkMap,
    path: &[u8],
    files: bool,
) -> Option<(usize, usize, usize, usize)> {
    // SAFETY: per the contract.
    let dynamic = unsafe { dynamic_tables(&*map) };
    let file = if files { map_file(path) } else { None };
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
    let bytes = count * core::mem::size_of::<Function>();
    // Kept for the process's life.
    let mem = sys::map_anonymous(bytes)?;
    // SAFETY: the mapping is zeroed, aligned and `count` entries long; ours alone until published.
    let index = unsafe { core::slice::from_raw_parts_mut(mem as *mut Function, count) };
    let n = fill(syms, index);
    let index = index.get_mut(..n)?;
    sort_index(index);
    Some((mem as usize, n, strtab.as_ptr() as usize, strtab.len()))
}

/// Sorts a module's index by start address, without recursion: a radix sort through a scratch
/// mapping (linear: libpython's 20,000 functions take about 0.1 ms, a third of what the
/// standard library's pattern-defeating quicksort took, which recurses), or, without memory for
/// the scratch, a heapsort in place. The scratch is written whole at once, so its pages are
/// allocated with the mapping (`MAP_POPULATE`): a page fault for each cost about 16 µs more on a
/// first Python event here.
fn sort_index(functions: &mut [Function]) {
    let bytes = core::mem::size_of_val(functions);
    let Some(mem) = sys::map_populated(bytes.max(1)) else {
        sort_by_start(functions);
        return;
    };
    // SAFETY: the mapping holds `functions.len()` zeroed entries, ours alone until unmapped.
    let scratch = unsafe { core::slice::from_raw_parts_mut(mem as *mut Function, functions.len()) };
    radix_sort_by_start(functions, scratch);
    // SAFETY: unmaps exactly what was mapped.
    unsafe { sys::unmap(mem, bytes.max(1)) };
}

/// Sorts by start address, least significant byte first, through `scratch` (as long as
/// `functions`); a byte that is the same in every entry (the high bytes of addresses within one
/// module) costs one counting pass and no move. Stable.
pub fn radix_sort_by_start(functions: &mut [Function], scratch: &mut [Function]) {
    let Some(scratch) = scratch.get_mut(..functions.len()) else {
        sort_by_start(functions);
        return;
    };
    for shift in (0..64).step_by(8) {
        let digit = |f: &Function| ((f.start >> shift) & 0xff) as usize;
        let mut next = [0usize; 256];
        for f in functions.iter() {
            next[digit(f)] += 1;
        }
        if next.contains(&functions.len()) {
            continue;
        }
        let mut at = 0;
        for slot in next.iter_mut() {
            let count = *slot;
            *slot = at;
            at += count;
        }
        for f in functions.iter() {
            let d = digit(f);
            if let Some(dst) = scratch.get_mut(next[d]) {
                *dst = *f;
            }
            next[d] += 1;
        }
        functions.copy_from_slice(scratch);
    }
}

/// Sorts `functions` by start address in place: a heapsort, so no recursion and no memory
/// beyond the slice, and O(n log n) whatever the order of the table.
pub fn sort_by_start(functions: &mut [Function]) {
    fn sift_down(v: &mut [Function], mut root: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= v.len() {
                return;
            }
            if child + 1 < v.len() && v[child].start < v[child + 1].start {
                child += 1;
            }
            if v[root].start >= v[child].start {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = functions.len();
    for root in (0..n / 2).rev() {
        sift_down(functions, root);
    }
    for end in (1..n).rev() {
        functions.swap(0, end);
        if let Some(heap) = functions.get_mut(..end) {
            sift_down(heap, 0);
        }
    }
}

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

/// A module's `.dynsym` and `.dynstr` as they are mapped in memory.
///
/// # Safety
/// `map` is a loaded module's link map.
unsafe fn dynamic_tables(map: &LinkMap) -> Option<(&'static [u8], &'static [u8])> {
    // SAFETY: per the contract.
    let d = unsafe { Dynamic::of(map) };
    if d.symtab == 0 || d.strtab == 0 {
        return None;
    }
    // SAFETY: the hash table is a mapped part of the module.
    let count = unsafe { d.symbol_count() }?;
    // SAFETY: the symbol and string tables are mapped parts of the module, of these sizes.
    unsafe {
        Some((
            core::slice::from_raw_parts(d.symtab as *const u8, count * SYM_SIZE),
            core::slice::from_raw_parts(d.strtab as *const u8, d.strsz),
        ))
    }
}

/// Maps a whole file read-only, for good.
fn map_file(path: &[u8]) -> Option<&'static [u8]> {
    let mut cpath = [0u8; 4097];
    cpath.get_mut(..path.len())?.copy_from_slice(path);
    let cpath = core::ffi::CStr::from_bytes_until_nul(&cpath).ok()?;
    let fd = sys::open(cpath, libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()?;
    let len = match sys::fstat(fd) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => st.st_size as usize,
        _ => 0,
    };
    let addr = if len >= 64 {
        sys::map_file(fd, len)
    } else {
        None
    };
    sys::close(fd);
    // SAFETY: a mapping of `len` bytes, never unmapped.
    addr.map(|a| unsafe { core::slice::from_raw_parts(a, len) })
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
        sort_by_start(&mut index);
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
    fn the_sort_orders_any_table() {
        use crate::buf::fuzz::Rng;
        let mut rng = Rng::new(0x5eed_0301);
        for len in [0, 1, 2, 3, 7, 64, 1000, 5000] {
            let mut v: Vec<Function> = (0..len)
                .map(|i| Function {
                    start: match rng.below(3) {
                        0 => rng.next() % 16,
                        1 => i as u64,
                        _ => rng.next(),
                    },
                    len: 0,
                    name: i as u32,
                })
                .collect();
            let mut want: Vec<u64> = v.iter().map(|f| f.start).collect();
            want.sort_unstable();
            let mut by_radix = v.clone();
            let mut scratch = vec![Function::default(); v.len()];
            radix_sort_by_start(&mut by_radix, &mut scratch);
            sort_by_start(&mut v);
            assert_eq!(v.iter().map(|f| f.start).collect::<Vec<_>>(), want);
            assert_eq!(by_radix.iter().map(|f| f.start).collect::<Vec<_>>(), want);
        }
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
            |v| find(&index, strtab, v).map(|(n, off)| (core::str::from_utf8(n).unwrap(), off));
        assert_eq!(name(0x100), Some(("alpha", 1)));
        assert_eq!(name(0x10f), Some(("alpha", 0x10)));
        assert_eq!(name(0x110), None);
        assert_eq!(name(0x225), Some(("gamma", 6)));
        assert_eq!(name(0x240), Some(("beta", 0x41)));
        assert_eq!(name(0x50), None);
    }
}
