//! The loaded objects (the program, its libraries, the vDSO) as the dynamic loader describes
//! them, and lock-free lookups of their symbols through their GNU hash tables.
//!
//! A leaf: `real.rs` (finding libc's functions), `symbols.rs` (naming frames) and `unwind.rs`
//! (our own code bounds, the module of an address) build on it, and it uses none of them.
//!
//! Everything here reads the loader's descriptions and the tables it mapped: nothing allocates.

use libc::{c_char, c_int, c_void};

/// The public head of glibc's `struct link_map` (`<link.h>`).
#[repr(C)]
pub struct LinkMap {
    pub l_addr: usize,
    pub l_name: *const c_char,
    pub l_ld: *const c_void,
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

// ---- the walk of loaded objects -------------------------------------------------------------

/// Calls `f` with each loaded object's description, in load order, until it returns `true`.
/// Takes the loader's lock for objects (`dl_iterate_phdr`): ordinary contexts, or a hook running
/// inside another library's constructor, where the loader already holds it for this thread.
pub fn each_object<F: FnMut(&libc::dl_phdr_info) -> bool>(mut f: F) {
    unsafe extern "C" fn visit<G: FnMut(&libc::dl_phdr_info) -> bool>(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        arg: *mut c_void,
    ) -> c_int {
        // SAFETY: glibc passes a valid description; `arg` is the closure `each_object` passed.
        let (info, f) = unsafe { (&*info, &mut *(arg as *mut G)) };
        c_int::from(f(info))
    }
    // SAFETY: `visit::<F>` matches the callback type and is given `f`, alive for the whole call.
    unsafe { libc::dl_iterate_phdr(Some(visit::<F>), &mut f as *mut F as *mut c_void) };
}

/// The program headers of an object's description.
fn headers(info: &libc::dl_phdr_info) -> impl Iterator<Item = &libc::Elf64_Phdr> + Clone {
    (0..info.dlpi_phnum as usize)
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        .map(move |i| unsafe { &*info.dlpi_phdr.add(i) })
}

/// The bounds `[start, end)` of the executable segments of the object holding `addr`.
pub fn text_bounds(addr: usize) -> Option<(usize, usize)> {
    let mut found = None;
    each_object(|info| {
        let base = info.dlpi_addr as usize;
        let (mut lo, mut hi) = (usize::MAX, 0);
        for ph in headers(info) {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                lo = lo.min(base + ph.p_vaddr as usize);
                hi = hi.max(base + (ph.p_vaddr + ph.p_memsz) as usize);
            }
        }
        let here = lo <= addr && addr < hi;
        if here {
            found = Some((lo, hi));
        }
        here
    });
    found
}

// ---- dynamic sections and hash tables -------------------------------------------------------

/// Size of an `Elf64_Sym`.
pub const SYM_SIZE: usize = 24;
/// Symbols looked at per table at most: a bound for damaged tables.
const MAX_SYMBOLS: usize = 1 << 20;

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
pub struct Dynamic {
    pub symtab: usize,
    pub strtab: usize,
    pub strsz: usize,
    pub hash: usize,
    pub gnu_hash: usize,
}

impl Dynamic {
    /// Reads the dynamic section at `ld` of a module loaded at `base`.
    ///
    /// # Safety
    /// `ld` is null or a loaded module's dynamic section.
    pub unsafe fn read(ld: *const c_void, base: usize) -> Dynamic {
        let mut dynamic = Dynamic::default();
        if ld.is_null() {
            return dynamic;
        }
        // glibc relocates most modules' dynamic entries in place, but not a read-only .dynamic
        // (the vDSO's): an entry below the load base is still relative.
        let fix = |v: u64| {
            let v = v as usize;
            if v < base { v + base } else { v }
        };
        let mut d = ld as *const Elf64Dyn;
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

    /// The dynamic section of a loaded module, from its link map.
    ///
    /// # Safety
    /// `map` is a loaded module's link map.
    pub unsafe fn of(map: &LinkMap) -> Dynamic {
        // SAFETY: per the contract.
        unsafe { Dynamic::read(map.l_ld, map.l_addr) }
    }

    /// The number of entries of the module's `.dynsym`, from its hash table (`None` without
    /// one), at most [`MAX_SYMBOLS`].
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    pub unsafe fn symbol_count(&self) -> Option<usize> {
        // SAFETY: the hash tables are mapped parts of the module.
        let n = unsafe {
            if self.gnu_hash != 0 {
                gnu_hash_symbol_count(self.gnu_hash as *const u32)
            } else if self.hash != 0 {
                *(self.hash as *const u32).add(1) as usize
            } else {
                return None;
            }
        };
        Some(n.min(MAX_SYMBOLS))
    }

    /// Looks `name` up in the module's GNU hash table; a module without one may define anything.
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    unsafe fn may_define(&self, name: &[u8]) -> bool {
        if self.gnu_hash == 0 || self.symtab == 0 || self.strtab == 0 {
            return self.hash != 0;
        }
        // SAFETY: per the contract.
        unsafe { self.find(name) }.is_some()
    }

    /// The `.dynsym` entry of `name` in the module's GNU hash table (which holds only the
    /// symbols the module defines), if it has one.
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    unsafe fn find(&self, name: &[u8]) -> Option<*const u8> {
        if self.gnu_hash == 0 || self.symtab == 0 || self.strtab == 0 {
            return None;
        }
        let h = name.iter().fold(5381u32, |h, &c| {
            h.wrapping_mul(33).wrapping_add(u32::from(c))
        });
        // SAFETY: the header, bloom words, buckets and chains of the table, in that order.
        unsafe {
            let t = self.gnu_hash as *const u32;
            let (nbuckets, symoffset) = (*t as usize, *t.add(1) as usize);
            let (bloom_words, shift) = (*t.add(2) as usize, *t.add(3));
            if nbuckets == 0 || bloom_words == 0 {
                return None;
            }
            let bloom = t.add(4) as *const u64;
            let word = *bloom.add((h as usize / 64) % bloom_words);
            let mask = (1u64 << (h % 64)) | (1u64 << ((h >> (shift % 32)) % 64));
            if word & mask != mask {
                return None;
            }
            let buckets = t.add(4 + bloom_words * 2);
            let chains = buckets.add(nbuckets);
            let first = *buckets.add(h as usize % nbuckets) as usize;
            if first < symoffset {
                return None;
            }
            for i in (first..).take(MAX_SYMBOLS) {
                let chain = *chains.add(i - symoffset);
                if chain | 1 == h | 1 {
                    let sym = (self.symtab + i * SYM_SIZE) as *const u8;
                    let st_name = (sym as *const u32).read_unaligned() as usize;
                    // Compared byte by byte up to the candidate's NUL, never read past it.
                    let candidate = (self.strtab + st_name) as *const u8;
                    let same = name
                        .iter()
                        .enumerate()
                        .all(|(k, &c)| *candidate.add(k) == c);
                    if same && *candidate.add(name.len()) == 0 {
                        return Some(sym);
                    }
                }
                if chain & 1 == 1 {
                    return None;
                }
            }
            None
        }
    }
}

/// Where the module `map` has the symbol `name` (no NUL) that it defines, and the symbol's size,
/// from the module's GNU hash table: no lock and no allocation, so a hook may ask (`dlsym` takes
/// the loader's lock). `None` for a symbol the module does not define, and for a module without
/// a GNU hash table.
///
/// # Safety
/// `map` is null or the link map of a module that stays loaded while this runs (one with a frame
/// on the caller's stack, say).
pub unsafe fn lookup_in(map: *const LinkMap, name: &[u8]) -> Option<(usize, usize)> {
    if map.is_null() {
        return None;
    }
    // SAFETY: per the contract: the module's link map, dynamic section and tables are mapped.
    let sym = unsafe {
        let map = &*map;
        Dynamic::of(map).find(name)?
    };
    // SAFETY: a symbol table entry is SYM_SIZE bytes, mapped with the table.
    let entry = unsafe { core::slice::from_raw_parts(sym, SYM_SIZE) };
    let field = |at: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(entry.get(at..at + 8)?.try_into().ok()?))
    };
    let shndx = u16::from_ne_bytes(entry.get(6..8)?.try_into().ok()?);
    let (value, size) = (field(8)? as usize, field(16)? as usize);
    // An undefined or absolute symbol is not the module's own.
    if shndx == 0 || shndx == 0xfff1 || value == 0 {
        return None;
    }
    // SAFETY: per the contract.
    Some((unsafe { (*map).l_addr }.checked_add(value)?, size))
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
        while last - symoffset < MAX_SYMBOLS && *chains.add(last - symoffset) & 1 == 0 {
            last += 1;
        }
        last + 1
    }
}

/// Whether some loaded module may define the symbol `name` (no NUL): `false` only when every
/// module's GNU hash table says it does not. For the constructor, before a `dlsym` that would
/// fail: glibc's first failed lookup allocates its error message, which sets up malloc in a
/// process that may never have used it (about 7 µs added to every exec of such a program).
pub fn maybe_defined(name: &[u8]) -> bool {
    let mut maybe = false;
    each_object(|info| {
        let base = info.dlpi_addr as usize;
        let Some(dynamic) = headers(info).find(|p| p.p_type == libc::PT_DYNAMIC) else {
            return false;
        };
        // SAFETY: the module's dynamic section is mapped where its header says, and the tables
        // it names are mapped.
        maybe = unsafe {
            Dynamic::read((base + dynamic.p_vaddr as usize) as *const c_void, base).may_define(name)
        };
        maybe
    });
    maybe
}

/// Looks a symbol up in the whole process (for optional runtime features such as
/// `_dl_find_object` or CPython's). Ordinary contexts only.
pub fn lookup_global(cname: &[u8]) -> *mut c_void {
    let Some((&0, name)) = cname.split_last() else {
        return std::ptr::null_mut();
    };
    if !maybe_defined(name) {
        return std::ptr::null_mut();
    }
    // SAFETY: `cname` is NUL-terminated (checked above).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr() as *const c_char) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_which_symbols_the_process_defines() {
        assert!(maybe_defined(b"malloc"));
        assert!(maybe_defined(b"sigaction"));
        assert!(!maybe_defined(b"Py_Version_of_no_such_python"));
        assert!(!maybe_defined(b"sigactio"));
    }

    #[test]
    fn looks_symbols_up_in_one_module() {
        // glibc's handle for a loaded object is its link map.
        // SAFETY: a NUL-terminated name; RTLD_NOLOAD only looks.
        let libc_map =
            unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) }
                as *const LinkMap;
        assert!(!libc_map.is_null());
        // SAFETY: as above.
        let real = unsafe { libc::dlsym(libc_map as *mut c_void, c"sigaction".as_ptr()) };
        // SAFETY: libc stays loaded.
        unsafe {
            let (addr, size) = lookup_in(libc_map, b"sigaction").expect("libc's sigaction");
            assert_eq!(addr, real as usize);
            assert!(size > 0);
            assert!(lookup_in(libc_map, b"sigactio").is_none());
            // One that libc only imports (from the dynamic loader).
            assert!(lookup_in(libc_map, b"__tls_get_addr").is_none());
            assert!(lookup_in(std::ptr::null(), b"sigaction").is_none());
        }
    }

    #[test]
    fn finds_the_code_bounds_of_this_binary() {
        let here = finds_the_code_bounds_of_this_binary as *const () as usize;
        let (lo, hi) = text_bounds(here).unwrap();
        assert!(lo <= here && here < hi);
        let heap = Box::new(0u8);
        assert!(!(lo..hi).contains(&(&*heap as *const u8 as usize)));
    }
}
