//! The loaded objects (the program, its libraries, the vDSO, the loader) as the dynamic loader
//! describes them, and lock-free lookups of their symbols through their GNU hash tables.
//!
//! A leaf: `real.rs` (finding libc's functions), `symbols.rs` (naming frames), `unwind.rs` (the
//! module of an address) and `python.rs` build on it, and it uses none of them.
//!
//! # Finding symbols without `dlsym`
//!
//! `dlsym` costs about 900 instructions a call and takes the loader's lock. [`lookup`] does what
//! it does for the common case by reading the loader's own tables: it walks the link maps (the
//! loader's list of objects, in load order) from the object after ours (`RTLD_NEXT`) or from the
//! first (`RTLD_DEFAULT`), and in each object looks the name up in its GNU hash table
//! (`DT_GNU_HASH`), checks the candidate as the loader would (defined, a function or data,
//! global or weak), and honours symbol versions: with a version asked for (`dlvsym`), the
//! symbol's index in `.gnu.version` must name that version in `.gnu.version_d`, hidden or not
//! (how `sigvec@GLIBC_2.2.5`, which has no default version, is found); without one (`dlsym`),
//! an unversioned symbol or the one default (not hidden) version is taken.
//!
//! Where this cannot answer for certain it says so ([`Found::Unknown`]) and the caller asks
//! `dlsym`/`dlvsym`: an object with only the older `DT_HASH` table, an indirect function
//! (`STT_GNU_IFUNC`, whose address is its resolver's answer), a thread-local variable, or our
//! own link map not found. The walk follows link-map order, which is the loader's search order
//! for the objects loaded at start-up; an object opened later with `RTLD_LOCAL` is not in the
//! loader's global scope but is in the list, so it can answer here for a name that no object
//! before it defines.
//!
//! Everything here reads the loader's descriptions and the tables it mapped: nothing allocates
//! and nothing locks. The list is read without the loader's lock: from the constructor, where
//! the loader is this thread, or from a hook that runs before it, inside another library's
//! constructor (the same). Every loop is bounded, so a damaged table ends a lookup, not the host.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use libc::{c_char, c_int, c_void};

/// The public head of glibc's `struct link_map` (`<link.h>`): the load bias, the path (empty
/// for the main program), the dynamic section, and the list links in load order.
#[repr(C)]
pub struct LinkMap {
    pub l_addr: usize,
    pub l_name: *const c_char,
    pub l_ld: *const c_void,
    pub l_next: *const LinkMap,
    pub l_prev: *const LinkMap,
}

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

unsafe extern "C" {
    /// glibc 2.35: the object holding an address, without a lock (async-signal-safe). GCC's
    /// unwinder links it too, so it costs no import of its own.
    fn _dl_find_object(pc: *mut c_void, result: *mut DlFindObject) -> c_int;
}

/// The object holding an address: its link map and its whole mapping, `[start, end)`.
pub struct Holding {
    pub map: &'static LinkMap,
    pub start: usize,
    pub end: usize,
}

/// The object holding `addr`, or `None` for an address in no object (JIT code, say).
/// Lock-free: safe in a hook.
pub fn holding(addr: usize) -> Option<Holding> {
    let mut dlfo = core::mem::MaybeUninit::<DlFindObject>::zeroed();
    // SAFETY: `_dl_find_object` only writes `dlfo`.
    if unsafe { _dl_find_object(addr as *mut c_void, dlfo.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: filled on success.
    let dlfo = unsafe { dlfo.assume_init() };
    Some(Holding {
        // SAFETY: a live link map; an object is not unloaded while an address in it is in use.
        map: unsafe { dlfo.link_map.as_ref() }?,
        start: dlfo.map_start as usize,
        end: dlfo.map_end as usize,
    })
}

unsafe extern "C" {
    /// Linker-defined: the ELF header at the start of our object, and the end of its code.
    static __ehdr_start: u8;
    static etext: u8;
}

/// Our own object's code, `[start, end)`, as the linker laid it out: from its ELF header (which
/// is also its handle for the loader) to the end of its text, GCC's unwinder included. No lookup.
pub fn own_code() -> (usize, usize) {
    (&raw const __ehdr_start as usize, &raw const etext as usize)
}

/// Our own link map, found once (it never changes).
fn ours() -> Option<&'static LinkMap> {
    #[unsafe(link_section = ".data.sigaudit_load")]
    static OURS: AtomicPtr<LinkMap> = AtomicPtr::new(core::ptr::null_mut());
    let known = OURS.load(Ordering::Relaxed);
    if !known.is_null() {
        // SAFETY: stored below from our own live link map.
        return unsafe { known.as_ref() };
    }
    let map = holding(own_code().0)?.map;
    OURS.store(map as *const LinkMap as *mut LinkMap, Ordering::Relaxed);
    Some(map)
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
    unsafe { core::slice::from_raw_parts(p as *const u8, n) }
}

// ---- the walk of loaded objects -------------------------------------------------------------

/// Objects in a list, at most.
const MAX_OBJECTS: usize = 4096;

/// Where a lookup starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// The objects after ours in load order, as `dlsym(RTLD_NEXT)` from our code.
    Next,
    /// Every object, as `dlsym(RTLD_DEFAULT)`.
    All,
}

/// The loaded objects of `scope` (relative to `ours`, our own link map), in load order.
fn objects(ours: &'static LinkMap, scope: Scope) -> impl Iterator<Item = &'static LinkMap> {
    let first = match scope {
        Scope::Next => ours.l_next,
        Scope::All => {
            let mut head: *const LinkMap = ours;
            for _ in 0..MAX_OBJECTS {
                // SAFETY: a live link map; the list is not changing (see the module docs).
                match unsafe { (*head).l_prev } {
                    p if p.is_null() => break,
                    p => head = p,
                }
            }
            head
        }
    };
    let mut next = first;
    core::iter::from_fn(move || {
        // SAFETY: as above.
        let map = unsafe { next.as_ref() }?;
        next = map.l_next;
        Some(map)
    })
    .take(MAX_OBJECTS)
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
const DT_VERSYM: i64 = 0x6fff_fff0;
const DT_VERDEF: i64 = 0x6fff_fffc;
const DT_VERDEFNUM: i64 = 0x6fff_fffd;

/// The addresses a module's dynamic section gives (0 when absent).
#[derive(Default, Clone, Copy)]
pub struct Dynamic {
    pub symtab: usize,
    pub strtab: usize,
    pub strsz: usize,
    pub hash: usize,
    pub gnu_hash: usize,
    versym: usize,
    verdef: usize,
    verdefnum: usize,
}

impl Dynamic {
    const EMPTY: Dynamic = Dynamic {
        symtab: 0,
        strtab: 0,
        strsz: 0,
        hash: 0,
        gnu_hash: 0,
        versym: 0,
        verdef: 0,
        verdefnum: 0,
    };

    /// Reads the dynamic section at `ld` of a module loaded at `base`.
    ///
    /// # Safety
    /// `ld` is null or a loaded module's dynamic section.
    pub unsafe fn read(ld: *const c_void, base: usize) -> Dynamic {
        let mut dynamic = Dynamic::default();
        if ld.is_null() {
            return dynamic;
        }
        // glibc relocates some entries of a module's dynamic section in place (the tables it
        // uses itself), but not all (`DT_VERDEF`), nor any of a read-only .dynamic (the vDSO's):
        // an entry below the load base is still relative.
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
                DT_VERSYM => dynamic.versym = fix(e.d_val),
                DT_VERDEF => dynamic.verdef = fix(e.d_val),
                DT_VERDEFNUM => dynamic.verdefnum = e.d_val as usize,
                _ => {}
            }
            // SAFETY: DT_NULL not reached yet, so the array goes on.
            d = unsafe { d.add(1) };
        }
        dynamic
    }

    /// The GNU hash table of a module, reading its dynamic section only as far as that entry
    /// (it comes early): enough for [`Dynamic::may_define`]. A module without one gets `hash`
    /// set instead, or nothing.
    ///
    /// # Safety
    /// `map` is a loaded module's link map.
    unsafe fn hash_tables_of(map: &LinkMap) -> Dynamic {
        let mut dynamic = Dynamic::default();
        let (ld, base) = (map.l_ld as *const Elf64Dyn, map.l_addr);
        if ld.is_null() {
            return dynamic;
        }
        let fix = |v: u64| {
            let v = v as usize;
            if v < base { v + base } else { v }
        };
        for i in 0..1024 {
            // SAFETY: the dynamic section is an array ended by DT_NULL.
            let e = unsafe { &*ld.add(i) };
            match e.d_tag {
                DT_NULL => break,
                DT_HASH => dynamic.hash = fix(e.d_val),
                DT_GNU_HASH => {
                    dynamic.gnu_hash = fix(e.d_val);
                    break;
                }
                _ => {}
            }
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

    /// Looks `name` up in this module as the loader would (see the module docs); `version`
    /// is a `dlvsym` version, or `None` for `dlsym`'s choice. `base` is the module's load bias.
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    unsafe fn find(&self, name: &Name, version: Option<&[u8]>, base: usize) -> Found {
        if self.symtab == 0 || self.strtab == 0 {
            return Found::Missing;
        }
        if self.gnu_hash == 0 {
            // Only the SysV table (or none, and then the loader finds nothing here either).
            return if self.hash != 0 {
                Found::Unknown
            } else {
                Found::Missing
            };
        }
        // The default version of a versioned symbol, taken when no unversioned one is found.
        let mut default = Found::Missing;
        let mut taken = None;
        // SAFETY: per the contract.
        unsafe {
            self.each_named(name, |i| match self.check(i, version, base) {
                Candidate::Take(found) => {
                    taken = Some(found);
                    true
                }
                Candidate::Default(found) => {
                    default = found;
                    false
                }
                Candidate::Skip => false,
            })
        };
        taken.unwrap_or(default)
    }

    /// The first entry of the module's GNU hash table called `name`.
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    unsafe fn first_named(&self, name: &Name) -> Option<usize> {
        let mut first = None;
        // SAFETY: per the contract.
        unsafe {
            self.each_named(name, |i| {
                first = Some(i);
                true
            })
        };
        first
    }

    /// Calls `f` with each entry of the module's GNU hash table called `name`, in the table's
    /// order, until it returns `true`.
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    unsafe fn each_named(&self, name: &Name, mut f: impl FnMut(usize) -> bool) {
        if self.gnu_hash == 0 || self.symtab == 0 || self.strtab == 0 {
            return;
        }
        let h = name.hash;
        // SAFETY: the header, bloom words, buckets and chains of the table, in that order; the
        // symbol and string tables it indexes.
        unsafe {
            if !self.may_define(name) {
                return;
            }
            let t = self.gnu_hash as *const u32;
            let (nbuckets, symoffset) = (*t as usize, *t.add(1) as usize);
            let bloom_words = *t.add(2) as usize;
            if nbuckets == 0 {
                return;
            }
            let buckets = t.add(4 + bloom_words * 2);
            let chains = buckets.add(nbuckets);
            let first = *buckets.add(h as usize % nbuckets) as usize;
            if first < symoffset {
                return;
            }
            for i in (first..).take(MAX_SYMBOLS) {
                let chain = *chains.add(i - symoffset);
                if chain | 1 == h | 1 && self.named(i, name.bytes) && f(i) {
                    return;
                }
                if chain & 1 == 1 {
                    return;
                }
            }
        }
    }

    /// Symbol `i`'s info byte, section index, value and size.
    ///
    /// # Safety
    /// `i` is an entry of the symbol table.
    unsafe fn symbol(&self, i: usize) -> (u8, u16, usize, usize) {
        // SAFETY: per the contract: `Elf64_Sym` is name (4), info (1), other (1), shndx (2),
        // value (8), size (8).
        unsafe {
            let sym = (self.symtab + i * SYM_SIZE) as *const u8;
            (
                *sym.add(4),
                (sym.add(6) as *const u16).read_unaligned(),
                (sym.add(8) as *const u64).read_unaligned() as usize,
                (sym.add(16) as *const u64).read_unaligned() as usize,
            )
        }
    }

    /// Whether the module may define `name`, by its GNU hash table's bloom filter alone (a few
    /// instructions): `false` means it does not; a module without that table may define anything
    /// (but one with no hash table at all defines nothing the loader would find).
    ///
    /// # Safety
    /// The addresses in `self` are a loaded module's mapped tables.
    unsafe fn may_define(&self, name: &Name) -> bool {
        if self.gnu_hash == 0 {
            return self.hash != 0;
        }
        let h = name.hash;
        // SAFETY: the header and bloom words of the table.
        unsafe {
            let t = self.gnu_hash as *const u32;
            let (bloom_words, shift) = (*t.add(2) as usize, *t.add(3));
            if bloom_words == 0 {
                return false;
            }
            let word = *(t.add(4) as *const u64).add((h as usize / 64) % bloom_words);
            let mask = (1u64 << (h % 64)) | (1u64 << ((h >> (shift % 32)) % 64));
            word & mask == mask
        }
    }

    /// Whether symbol `i` is called `name`, compared byte by byte up to its NUL, never past it.
    ///
    /// # Safety
    /// `i` is an entry of the symbol table; its name is in the string table.
    unsafe fn named(&self, i: usize, name: &[u8]) -> bool {
        // SAFETY: per the contract.
        unsafe {
            let st_name = ((self.symtab + i * SYM_SIZE) as *const u32).read_unaligned() as usize;
            let candidate = (self.strtab + st_name) as *const u8;
            name.iter()
                .enumerate()
                .all(|(k, &c)| *candidate.add(k) == c)
                && *candidate.add(name.len()) == 0
        }
    }

    /// Whether symbol `i`, whose name matched, is the one the loader would take.
    ///
    /// # Safety
    /// `i` is an entry of the symbol table, and of the version table when there is one.
    unsafe fn check(&self, i: usize, version: Option<&[u8]>, base: usize) -> Candidate {
        // SAFETY: per the contract.
        let (info, shndx, value, _) = unsafe { self.symbol(i) };
        let (kind, bind) = (info & 0xf, info >> 4);
        const STT_TLS: u8 = 6;
        const STT_GNU_IFUNC: u8 = 10;
        const SHN_ABS: u16 = 0xfff1;
        // Defined, global, weak or unique, and a kind the loader binds to (no section, object,
        // function, common, TLS, indirect function).
        if shndx == 0
            || (value == 0 && kind != STT_TLS)
            || !matches!(bind, 1 | 2 | 10)
            || !matches!(kind, 0 | 1 | 2 | 5 | STT_TLS | STT_GNU_IFUNC)
        {
            return Candidate::Skip;
        }
        let found = match kind {
            STT_TLS | STT_GNU_IFUNC => Found::Unknown,
            _ if shndx == SHN_ABS => Found::At(value),
            _ => Found::At(base.wrapping_add(value)),
        };
        if self.versym == 0 {
            return Candidate::Take(found);
        }
        // SAFETY: `.gnu.version` has one entry per symbol.
        let v = unsafe { *(self.versym as *const u16).add(i) };
        let (index, hidden) = (v & 0x7fff, v & 0x8000 != 0);
        match version {
            // dlvsym: exactly that version, hidden (a compat symbol) or not.
            // SAFETY: the version definitions of this module.
            Some(want) if unsafe { self.version_name(index) } == Some(want) => {
                Candidate::Take(found)
            }
            Some(_) => Candidate::Skip,
            // dlsym: an unversioned symbol at once, else the default version.
            None if index < 2 => Candidate::Take(found),
            None if !hidden => Candidate::Default(found),
            None => Candidate::Skip,
        }
    }

    /// The name of version `index` in `.gnu.version_d`.
    ///
    /// # Safety
    /// The version definitions are the module's mapped table.
    unsafe fn version_name(&self, index: u16) -> Option<&'static [u8]> {
        if self.verdef == 0 {
            return None;
        }
        let mut at = self.verdef;
        for _ in 0..self.verdefnum.min(4096) {
            // SAFETY: `Elf64_Verdef`: version (2), flags (2), ndx (2), cnt (2), hash (4), aux (4),
            // next (4); its first `Elf64_Verdaux` (name (4), next (4)) at `aux`.
            unsafe {
                let d = at as *const u8;
                let ndx = (d.add(4) as *const u16).read_unaligned();
                let aux = (d.add(12) as *const u32).read_unaligned() as usize;
                let next = (d.add(16) as *const u32).read_unaligned() as usize;
                if ndx == index {
                    let name = ((at + aux) as *const u32).read_unaligned() as usize;
                    return Some(cstr((self.strtab + name) as *const c_char, 256));
                }
                if next == 0 {
                    return None;
                }
                at += next;
            }
        }
        None
    }
}

/// What a module says of a symbol it defines under a name.
enum Candidate {
    /// The one to take.
    Take(Found),
    /// The default version: taken if nothing better is found in this module.
    Default(Found),
    Skip,
}

/// The answer of a lookup.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Found {
    At(usize),
    /// No object in the scope defines it.
    Missing,
    /// Not answerable from the hash tables: ask the loader.
    Unknown,
}

/// A symbol name (no NUL) with its GNU hash (djb2), which [`Name::new`] computes at compile
/// time for a constant.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    bytes: &'a [u8],
    hash: u32,
}

impl<'a> Name<'a> {
    pub const fn new(bytes: &'a [u8]) -> Self {
        let mut hash = 5381u32;
        let mut i = 0;
        while i < bytes.len() {
            hash = hash.wrapping_mul(33).wrapping_add(bytes[i] as u32);
            i += 1;
        }
        Name { bytes, hash }
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
        while last - symoffset < MAX_SYMBOLS && *chains.add(last - symoffset) & 1 == 0 {
            last += 1;
        }
        last + 1
    }
}

/// The objects of a scope, their dynamic sections read once for many lookups (reading one is
/// most of what a lookup costs).
pub struct Objects {
    /// The scope's first object; null when it is empty or our own object was not found.
    first: *const LinkMap,
    /// Our own object was found (else every lookup is [`Found::Unknown`]).
    known: bool,
    /// The first objects of the scope and their tables, filled as lookups reach them: at first
    /// only as far as the hash table (most objects do not define a given name, and their bloom
    /// filter says so), the rest when a lookup needs it.
    seen: [MaybeUninit<Seen>; SEEN],
    seen_len: usize,
}

#[derive(Clone, Copy)]
struct Seen {
    map: *const LinkMap,
    tables: Dynamic,
    /// All of `tables` is read (else only the hash tables).
    full: bool,
}

impl Seen {
    /// Makes sure all the tables are read.
    ///
    /// # Safety
    /// `map` is a loaded module's link map.
    unsafe fn read_all(&mut self) {
        if !self.full {
            // SAFETY: per the contract.
            self.tables = unsafe { Dynamic::of(&*self.map) };
            self.full = true;
        }
    }
}

/// Objects whose tables [`Objects`] keeps.
const SEEN: usize = 8;

impl Objects {
    pub fn new(scope: Scope) -> Self {
        let ours = ours();
        let first = ours
            .and_then(|m| objects(m, scope).next())
            .map_or(core::ptr::null(), |m| m as *const _);
        Objects {
            first,
            known: ours.is_some(),
            seen: [const { MaybeUninit::uninit() }; SEEN],
            seen_len: 0,
        }
    }

    /// Looks `name` (no NUL) up, with a `dlvsym` `version` (no NUL) or `dlsym`'s choice: the
    /// first object that defines it answers.
    pub fn lookup(&mut self, name: &Name, version: Option<&[u8]>) -> Found {
        self.lookup_where(name, version).0
    }

    /// [`Objects::lookup`], and the position in the scope of the object that answered.
    pub fn lookup_where(&mut self, name: &Name, version: Option<&[u8]>) -> (Found, usize) {
        if !self.known {
            return (Found::Unknown, 0);
        }
        let mut next = self.first;
        for i in 0..MAX_OBJECTS {
            // SAFETY: a live link map; the list is not changing (see the module docs).
            let Some(map) = (unsafe { next.as_ref() }) else {
                break;
            };
            next = map.l_next;
            let mut uncached = MaybeUninit::uninit();
            let seen = match self.seen.get_mut(i) {
                // SAFETY: the first `seen_len` are initialised.
                Some(seen) if i < self.seen_len => unsafe { seen.assume_init_mut() },
                slot => {
                    let slot = match slot {
                        Some(slot) if i == self.seen_len => {
                            self.seen_len += 1;
                            slot
                        }
                        _ => &mut uncached,
                    };
                    slot.write(Seen {
                        map,
                        // SAFETY: a loaded module's link map.
                        tables: unsafe { Dynamic::hash_tables_of(map) },
                        full: false,
                    })
                }
            };
            // SAFETY: the tables of a loaded module.
            if !unsafe { seen.tables.may_define(name) } {
                continue;
            }
            // SAFETY: as above.
            let found = unsafe {
                seen.read_all();
                seen.tables.find(name, version, map.l_addr)
            };
            if found != Found::Missing {
                return (found, i);
            }
        }
        (Found::Missing, 0)
    }

    /// Keeps the tables of the first `n` objects of the scope (those a lookup has reached) for
    /// [`lookup_kept`], for the life of the process; nothing if it has not reached that many.
    /// Constructor only, once; only for objects that cannot be unloaded: the ones loaded at
    /// start-up, which are all those in the list before libc.
    pub fn keep(&mut self, n: usize) {
        if n > self.seen_len || KEPT_LEN.load(Ordering::Acquire) != 0 {
            return;
        }
        // SAFETY: written once, before KEPT_LEN publishes it, by the constructor alone.
        let kept = unsafe { &mut *KEPT.0.get() };
        for (slot, seen) in kept.iter_mut().zip(self.seen.iter_mut()).take(n) {
            // SAFETY: `n` is at most `seen_len`, the number initialised.
            let seen = unsafe { seen.assume_init_mut() };
            // SAFETY: the link map of a module a lookup has reached.
            unsafe { seen.read_all() };
            // SAFETY: as above.
            *slot = (unsafe { (*seen.map).l_addr }, seen.tables);
        }
        KEPT_LEN.store(n, Ordering::Release);
    }
}

/// The tables [`Objects::keep`] kept: written once, then published by `KEPT_LEN` (release),
/// read after it (acquire), never written again.
struct Kept(UnsafeCell<[(usize, Dynamic); SEEN]>);
// SAFETY: see above: a single write that happens-before every read.
unsafe impl Sync for Kept {}
#[unsafe(link_section = ".data.sigaudit_load")]
static KEPT: Kept = Kept(UnsafeCell::new([(0, Dynamic::EMPTY); SEEN]));
#[unsafe(link_section = ".data.sigaudit_load")]
static KEPT_LEN: AtomicUsize = AtomicUsize::new(0);

fn kept() -> Option<&'static [(usize, Dynamic)]> {
    match KEPT_LEN.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: published (see `Kept`).
        n => unsafe { (&*KEPT.0.get()).get(..n) },
    }
}

/// Looks `name` up in the kept objects only, as [`Objects::lookup`] would in them: lock-free and
/// without walking the loader's list, so safe in a hook. `None` before they are kept.
pub fn lookup_kept(name: &Name, version: Option<&[u8]>) -> Option<Found> {
    let kept = kept()?;
    for (base, d) in kept {
        // SAFETY: the tables of an object that stays loaded.
        match unsafe { d.find(name, version, *base) } {
            Found::Missing => {}
            found => return Some(found),
        }
    }
    Some(Found::Missing)
}

/// Whether a kept object may define `name`, by the bloom filters alone; `None` before they are
/// kept.
pub fn kept_may_define(name: &Name) -> Option<bool> {
    // SAFETY: the tables of objects that stay loaded.
    Some(kept()?.iter().any(|(_, d)| unsafe { d.may_define(name) }))
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
    // SAFETY: per the contract.
    let map = unsafe { map.as_ref() }?;
    // SAFETY: the module's dynamic section and tables are mapped.
    let (d, i) = unsafe {
        let d = Dynamic::of(map);
        let i = d.first_named(&Name::new(name))?;
        (d, i)
    };
    // SAFETY: `i` is an entry of the symbol table.
    let (_, shndx, value, size) = unsafe { d.symbol(i) };
    // An undefined or absolute symbol is not the module's own.
    if shndx == 0 || shndx == 0xfff1 || value == 0 {
        return None;
    }
    Some((map.l_addr.checked_add(value)?, size))
}

/// Looks `name` (no NUL) up in the objects of `scope`, with a `dlvsym` `version` (no NUL) or
/// `dlsym`'s choice: the first object that defines it answers.
pub fn lookup(name: &[u8], version: Option<&[u8]>, scope: Scope) -> Found {
    Objects::new(scope).lookup(&Name::new(name), version)
}

/// Looks a symbol up in the whole process, as `dlsym(RTLD_DEFAULT)` (for optional runtime
/// features such as CPython's); null when no object defines it. `cname` ends with its NUL.
/// Ordinary contexts only (it walks the loader's list); inside [`shared_lookups`], the objects'
/// tables are read once for all the names.
#[inline(never)] // a name of its own in profiles (scripts/bench)
pub fn lookup_global(cname: &[u8]) -> *mut c_void {
    let Some((&0, name)) = cname.split_last() else {
        return core::ptr::null_mut();
    };
    let name = Name::new(name);
    let found = match SHARED_ACTIVE.load(Ordering::Relaxed) {
        // SAFETY: set up by `shared_lookups`, on this thread (see there).
        true => unsafe { (*SHARED.0.get()).assume_init_mut() }.lookup(&name, None),
        false => Objects::new(Scope::All).lookup(&name, None),
    };
    match found {
        Found::At(addr) => addr as *mut c_void,
        Found::Missing => core::ptr::null_mut(),
        Found::Unknown => ask_loader(libc::RTLD_DEFAULT, cname, None) as *mut c_void,
    }
}

/// Runs `f`, in which [`lookup_global`] reads each object's tables once for all the names it is
/// asked (a constructor looking for an interpreter asks for several: about 900 instructions a
/// name alone, 150 together). Constructor only: no other thread looks up symbols meanwhile
/// (only constructors do, and the loader runs them one at a time).
pub fn shared_lookups<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: no lookup uses the slot while it is written (the flag is clear, see above).
    unsafe { (*SHARED.0.get()).write(Objects::new(Scope::All)) };
    SHARED_ACTIVE.store(true, Ordering::Relaxed);
    let r = f();
    SHARED_ACTIVE.store(false, Ordering::Relaxed);
    r
}

/// The objects [`shared_lookups`] shares, and whether it is running.
struct Shared(UnsafeCell<MaybeUninit<Objects>>);
// SAFETY: used by the constructor's thread alone (see `shared_lookups`).
unsafe impl Sync for Shared {}
#[unsafe(link_section = ".data.sigaudit_load")]
static SHARED: Shared = Shared(UnsafeCell::new(MaybeUninit::uninit()));
#[unsafe(link_section = ".data.sigaudit_load")]
static SHARED_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Asks the loader: `dlsym(handle, cname)`, or `dlvsym` with a `version`; both strings end with
/// their NUL. Takes the loader's lock: ordinary contexts only. `dlsym` and `dlvsym` themselves
/// are found like any symbol, as an import of them would bind them (the first object that
/// defines them), and only when needed: an import would cost every exec a loader lookup each.
/// Called from our own code, so `RTLD_NEXT` means the objects after ours.
pub fn ask_loader(handle: *mut c_void, cname: &[u8], version: Option<&[u8]>) -> usize {
    type Dlsym = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
    type Dlvsym = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> *mut c_void;
    let (Some((&0, _)), true) = (
        cname.split_last(),
        version.is_none_or(|v| v.ends_with(&[0])),
    ) else {
        return 0;
    };
    let name = cname.as_ptr() as *const c_char;
    let find = |what: &[u8]| match lookup(what, None, Scope::All) {
        Found::At(addr) => Some(addr),
        Found::Missing | Found::Unknown => None,
    };
    // SAFETY: glibc's dlsym and dlvsym, whose prototypes these are; NUL-terminated strings.
    let addr = unsafe {
        match version {
            None => find(b"dlsym").map(|f| core::mem::transmute::<usize, Dlsym>(f)(handle, name)),
            Some(v) => find(b"dlvsym").map(|f| {
                core::mem::transmute::<usize, Dlvsym>(f)(handle, name, v.as_ptr() as *const c_char)
            }),
        }
    };
    addr.map_or(0, |a| a as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn dlsym(name: &str) -> usize {
        let c = CString::new(name).unwrap();
        // SAFETY: a NUL-terminated name.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) as usize }
    }

    fn dlvsym(name: &str, version: &str) -> usize {
        let (c, v) = (CString::new(name).unwrap(), CString::new(version).unwrap());
        // SAFETY: NUL-terminated strings.
        unsafe { libc::dlvsym(libc::RTLD_DEFAULT, c.as_ptr(), v.as_ptr()) as usize }
    }

    #[test]
    fn finds_what_dlsym_finds() {
        for name in [
            "sigaction",
            "signal",
            "waitpid",
            "syscall",
            "environ",
            "_dl_find_object",
        ] {
            assert_eq!(
                lookup(name.as_bytes(), None, Scope::All),
                Found::At(dlsym(name)),
                "{name}"
            );
        }
        assert_eq!(
            lookup(b"no_such_symbol_anywhere", None, Scope::All),
            Found::Missing
        );
        assert_eq!(lookup(b"sigactio", None, Scope::All), Found::Missing);
        // memcpy is an indirect function: its address is what its resolver picks.
        assert_eq!(lookup(b"memcpy", None, Scope::All), Found::Unknown);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn honours_symbol_versions() {
        // sigvec exists only as the compat symbol sigvec@GLIBC_2.2.5, which dlsym never picks.
        let want = dlvsym("sigvec", "GLIBC_2.2.5");
        assert_ne!(want, 0);
        assert_eq!(dlsym("sigvec"), 0);
        assert_eq!(
            lookup(b"sigvec", Some(b"GLIBC_2.2.5"), Scope::All),
            Found::At(want)
        );
        assert_eq!(lookup(b"sigvec", None, Scope::All), Found::Missing);
        assert_eq!(
            lookup(b"sigaction", Some(b"GLIBC_2.2.5"), Scope::All),
            Found::At(dlvsym("sigaction", "GLIBC_2.2.5"))
        );
        assert_eq!(
            lookup(b"sigaction", Some(b"GLIBC_9.9"), Scope::All),
            Found::Missing
        );
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
    fn finds_the_object_of_an_address() {
        let here = finds_the_object_of_an_address as *const () as usize;
        let map = holding(here).unwrap().map;
        // The test program is the main program: the loader names it with an empty string.
        // SAFETY: the loader's string.
        assert!(unsafe { cstr(map.l_name, 4096) }.is_empty());
        let libc_fn = holding(dlsym("sigaction")).unwrap().map;
        // SAFETY: as above.
        let name = unsafe { cstr(libc_fn.l_name, 4096) };
        assert!(name.windows(7).any(|w| w == b"libc.so"), "{name:?}");
        assert!(holding(0x10).is_none());
    }

    #[test]
    fn the_kept_objects_answer_as_the_walk_does() {
        let mut next = Objects::new(Scope::Next);
        let (found, at) = next.lookup_where(&Name::new(b"sigaction"), None);
        assert_eq!(found, Found::At(dlsym("sigaction")));
        next.keep(at + 1);
        for name in [
            "sigaction",
            "signal",
            "waitpid",
            "wait4",
            "syscall",
            "sigset",
        ] {
            let walked = lookup(name.as_bytes(), None, Scope::Next);
            assert_eq!(
                lookup_kept(&Name::new(name.as_bytes()), None),
                Some(walked),
                "{name}"
            );
            assert_eq!(
                kept_may_define(&Name::new(name.as_bytes())),
                Some(true),
                "{name}"
            );
        }
        assert_eq!(
            lookup_kept(&Name::new(b"no_such_symbol_anywhere"), None),
            Some(Found::Missing)
        );
    }

    #[test]
    fn shared_lookups_answer_as_lone_ones() {
        let names: [&[u8]; 5] = [
            b"sigaction\0",
            b"environ\0",
            b"Py_Version\0",
            b"malloc\0",
            b"getpid\0",
        ];
        let alone = names.map(lookup_global);
        let shared = shared_lookups(|| names.map(lookup_global));
        assert_eq!(alone, shared);
        assert_eq!(alone[0] as usize, dlsym("sigaction"));
    }

    #[test]
    fn the_next_objects_follow_ours() {
        // The test program is first: every libc function is in an object after it.
        assert_eq!(
            lookup(b"sigaction", None, Scope::Next),
            Found::At(dlsym("sigaction"))
        );
    }
}
