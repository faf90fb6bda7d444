//! GNU build IDs of loaded modules, read from memory inside hooks.
//!
//! A record names each frame's module by path, which says nothing about which build of it ran:
//! the file may be rebuilt, upgraded or absent where the record is read. The GNU build ID (the
//! `NT_GNU_BUILD_ID` note the linker writes, 20 bytes with GNU ld's default) identifies the exact
//! build, and it is what `/usr/lib/debug/.build-id/`, debuginfod servers, gdb and perf look debug
//! information up by. `sigaudit symbolize` uses it so.
//!
//! Where it is: the module's `PT_NOTE` segments, found from its program headers, found from its
//! ELF header, which is the first bytes of its first `PT_LOAD` segment, mapped at the start of
//! the module's mapping. `_dl_find_object` (no lock, async-signal-safe, see `unwind.rs`) gives
//! that start, the mapping's end and the load bias. `dl_iterate_phdr` would give the program
//! headers directly, but it takes the loader's lock, which a hook in a signal handler or a
//! `fork()` child of a multithreaded parent must never wait for.
//!
//! Every read is checked before it is made: the ELF header and the program headers must lie in
//! the first page of the mapping (every mapping has at least one page, and the first segment of
//! every module is readable, since it holds the headers in every linker's layout), the header
//! must describe a first `PT_LOAD` segment that starts at file offset 0 exactly where the mapping
//! starts (so it is the header mapped there, not bytes that look like one), and a note segment is
//! read only where it lies inside the file-backed part of a readable `PT_LOAD` segment within the
//! mapping. Anything else means no build ID, never a fault.
//!
//! Each module is read once: the result (an ID, or that there is none) is kept in a fixed table
//! of [`SLOTS`] entries, claimed with a compare-and-swap, filled, then published with release
//! ordering, the same scheme as the name cache in `symbols.rs`. No lock, no allocation, no
//! waiting: a thread that finds no published entry reads the module itself (a few hundred
//! nanoseconds), and with the table full every lookup is such a read.

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use libc::{PF_R, PT_LOAD, PT_NOTE};

/// Longest build ID kept. GNU ld writes 20 bytes (SHA-1) by default, 16 with `md5` or `uuid`, 8
/// with lld's `fast`; a longer `0x...` ID given by hand is cut here.
pub const MAX_LEN: usize = 64;

/// Modules whose build IDs are cached.
pub const SLOTS: usize = 64;

/// The bytes of the first page of a mapping that may be read for the headers.
const FIRST_PAGE: usize = 4096;

/// A note segment larger than this is not read (a build-ID note takes 36 bytes; linkers put a
/// few small notes together).
const MAX_NOTES: usize = 64 * 1024;

/// A module's GNU build ID.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BuildId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl BuildId {
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }

    /// Writes the ID in lowercase hexadecimal, as debuginfod and `/usr/lib/debug/.build-id/`
    /// spell it, into `out` (room for `2 * MAX_LEN` bytes is always enough); returns its length.
    pub fn write_hex(&self, out: &mut [u8]) -> usize {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut n = 0;
        for (&b, pair) in self.as_bytes().iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = DIGITS[(b >> 4) as usize];
            pair[1] = DIGITS[(b & 15) as usize];
            n += 2;
        }
        n
    }

    fn new(id: &[u8]) -> Option<BuildId> {
        let id = id.get(..id.len().min(MAX_LEN))?;
        if id.is_empty() {
            return None;
        }
        let mut bytes = [0u8; MAX_LEN];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(BuildId {
            len: id.len() as u8,
            bytes,
        })
    }
}

/// A loaded module as `_dl_find_object` describes it.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Its link map's address: unique among the modules loaded at one time.
    pub map: usize,
    /// The load bias (`l_addr`): what is added to an address in the file to get one in memory.
    pub base: usize,
    /// Where its mapping starts and ends.
    pub start: usize,
    pub end: usize,
}

const EMPTY: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

struct Slot {
    state: AtomicU8,
    map: AtomicUsize,
    start: AtomicUsize,
    /// 0: the module has no build ID.
    len: AtomicU8,
    words: [AtomicU64; MAX_LEN / 8],
}

#[allow(clippy::declare_interior_mutable_const)]
const WORD: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    state: AtomicU8::new(EMPTY),
    map: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    len: AtomicU8::new(0),
    words: [WORD; MAX_LEN / 8],
};
static CACHE: [Slot; SLOTS] = [SLOT; SLOTS];

/// The build ID of `module`, read on the first call for it and remembered.
pub fn of(module: &Module) -> Option<BuildId> {
    if let Some(known) = published(module) {
        return known;
    }
    // SAFETY: `module` is what `_dl_find_object` said of a loaded module holding a frame on our
    // stack, so it stays loaded while we read it.
    let id = unsafe { read(module.base, module.start, module.end) };
    if let Some(slot) = CACHE.iter().find(|s| {
        s.state
            .compare_exchange(EMPTY, FILLING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }) {
        slot.map.store(module.map, Ordering::Relaxed);
        slot.start.store(module.start, Ordering::Relaxed);
        let bytes = id.map(|id| id.bytes).unwrap_or([0; MAX_LEN]);
        for (word, chunk) in slot.words.iter().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        slot.len.store(id.map_or(0, |id| id.len), Ordering::Relaxed);
        slot.state.store(READY, Ordering::Release);
    }
    id
}

/// What the table holds for `module`: `None` if nothing yet, `Some(None)` if it has no ID.
fn published(module: &Module) -> Option<Option<BuildId>> {
    let slot = CACHE.iter().find(|s| {
        s.state.load(Ordering::Acquire) == READY
            && s.map.load(Ordering::Relaxed) == module.map
            && s.start.load(Ordering::Relaxed) == module.start
    })?;
    let len = slot.len.load(Ordering::Relaxed);
    if len == 0 {
        return Some(None);
    }
    let mut id = BuildId {
        len,
        bytes: [0; MAX_LEN],
    };
    for (chunk, word) in id.bytes.chunks_exact_mut(8).zip(&slot.words) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    Some(Some(id))
}

/// Reads the build ID of the module mapped at `[start, end)` with load bias `base`.
///
/// # Safety
/// `[start, end)` is the whole mapping of a module the loader mapped (its first page is then
/// mapped), and it stays mapped during the call.
pub unsafe fn read(base: usize, start: usize, end: usize) -> Option<BuildId> {
    let first = end.checked_sub(start)?.min(FIRST_PAGE);
    if start == 0 || first < EHDR_SIZE {
        return None;
    }
    // SAFETY: the first page of the mapping (or all of it, if shorter) is mapped, per the
    // contract, and readable: it is the start of the module's first segment, which holds the ELF
    // header; `headers` checks that it does before anything beyond it is trusted.
    let page = unsafe { core::slice::from_raw_parts(start as *const u8, first) };
    let loads = headers(page, base, start)?;
    for ph in loads.phdrs() {
        if ph.kind != PT_NOTE {
            continue;
        }
        let Some(addr) = base.checked_add(ph.vaddr as usize) else {
            continue;
        };
        let size = (ph.filesz as usize).min(MAX_NOTES);
        if !loads.readable(ph.vaddr, size as u64)
            || addr < start
            || addr.checked_add(size).is_none_or(|e| e > end)
        {
            continue;
        }
        // SAFETY: inside the file-backed part of a readable loaded segment, inside the mapping,
        // as just checked.
        let notes = unsafe { core::slice::from_raw_parts(addr as *const u8, size) };
        if let Some(id) = gnu_build_id(notes, if ph.align == 8 { 8 } else { 4 }) {
            return Some(id);
        }
    }
    None
}

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// `NT_GNU_BUILD_ID` in `<elf.h>`.
const NT_GNU_BUILD_ID: u32 = 3;

/// The fields of a program header used here.
#[derive(Clone, Copy)]
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    align: u64,
}

/// The program headers of a module, checked to be the ones mapped where they are read.
struct Headers<'a> {
    table: &'a [u8],
}

impl<'a> Headers<'a> {
    fn phdrs(&self) -> impl Iterator<Item = Phdr> + 'a {
        self.table.chunks_exact(PHDR_SIZE).filter_map(|p| {
            Some(Phdr {
                kind: u32_at(p, 0)?,
                flags: u32_at(p, 4)?,
                offset: u64_at(p, 8)?,
                vaddr: u64_at(p, 16)?,
                filesz: u64_at(p, 32)?,
                align: u64_at(p, 48)?,
            })
        })
    }

    /// Whether `[vaddr, vaddr + len)` lies in the file-backed part of a readable `PT_LOAD`.
    fn readable(&self, vaddr: u64, len: u64) -> bool {
        let Some(last) = vaddr.checked_add(len) else {
            return false;
        };
        self.phdrs().any(|p| {
            p.kind == PT_LOAD
                && p.flags & PF_R != 0
                && p.vaddr <= vaddr
                && p.vaddr.checked_add(p.filesz).is_some_and(|e| last <= e)
        })
    }
}

/// The program headers from the ELF header at the start of `page` (the first bytes of a
/// module's mapping, which starts at `start`, with load bias `base`), if it is a 64-bit ELF
/// header of this machine's byte order whose table lies in `page` and whose first loaded
/// segment is mapped from file offset 0 at `start`, readable.
fn headers(page: &[u8], base: usize, start: usize) -> Option<Headers<'_>> {
    let native = if cfg!(target_endian = "little") { 1 } else { 2 };
    if page.get(..6)? != [0x7f, b'E', b'L', b'F', 2, native] {
        return None;
    }
    let phoff = usize::try_from(u64_at(page, 0x20)?).ok()?;
    let phentsize = u16_at(page, 0x36)? as usize;
    let phnum = u16_at(page, 0x38)? as usize;
    if phentsize != PHDR_SIZE || phnum == 0 {
        return None;
    }
    let table = page.get(phoff..phoff.checked_add(phnum * PHDR_SIZE)?)?;
    let headers = Headers { table };
    let first = headers
        .phdrs()
        .filter(|p| p.kind == PT_LOAD)
        .min_by_key(|p| p.vaddr)?;
    let mapped_here = base.wrapping_add(first.vaddr as usize) == start;
    let holds_table = (phoff + table.len()) as u64 <= first.filesz;
    (first.offset == 0 && first.flags & PF_R != 0 && mapped_here && holds_table).then_some(headers)
}

/// The GNU build ID among the notes in `notes`, whose entries are padded to `align` bytes.
fn gnu_build_id(notes: &[u8], align: usize) -> Option<BuildId> {
    let up = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    let mut at = 0;
    while let (Some(namesz), Some(descsz), Some(kind)) = (
        u32_at(notes, at),
        u32_at(notes, at + 4),
        u32_at(notes, at + 8),
    ) {
        let (namesz, descsz) = (namesz as usize, descsz as usize);
        let name_at = at + 12;
        let desc_at = up(name_at.checked_add(namesz)?)?;
        let next = up(desc_at.checked_add(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
            return BuildId::new(notes.get(desc_at..desc_at.checked_add(descsz)?)?);
        }
        at = next;
    }
    None
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module image: ELF header, program headers, then a note segment, laid out as a linker
    /// would put them in the first loaded segment (file offset = virtual address).
    struct Image {
        bytes: Vec<u8>,
    }

    fn phdr(kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, align: u64) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(kind.to_ne_bytes());
        p.extend(flags.to_ne_bytes());
        p.extend(offset.to_ne_bytes());
        p.extend(vaddr.to_ne_bytes());
        p.extend(vaddr.to_ne_bytes()); // p_paddr
        p.extend(filesz.to_ne_bytes());
        p.extend(filesz.to_ne_bytes()); // p_memsz
        p.extend(align.to_ne_bytes());
        p
    }

    fn note(name: &[u8], kind: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_ne_bytes());
        n.extend((desc.len() as u32).to_ne_bytes());
        n.extend(kind.to_ne_bytes());
        n.extend(name);
        while n.len() % align != 0 {
            n.push(0);
        }
        n.extend(desc);
        while n.len() % align != 0 {
            n.push(0);
        }
        n
    }

    impl Image {
        /// `notes` at offset 0x200, in a loaded segment of `load_size` bytes from offset 0.
        fn new(notes: &[u8], note_align: u64, load_size: u64) -> Image {
            let mut bytes = vec![0u8; 0x200];
            bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
            bytes[0x20..0x28].copy_from_slice(&64u64.to_ne_bytes());
            bytes[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_ne_bytes());
            bytes[0x38..0x3a].copy_from_slice(&2u16.to_ne_bytes());
            let load = phdr(PT_LOAD, PF_R | 1, 0, 0, load_size, 0x1000);
            let n = phdr(PT_NOTE, PF_R, 0x200, 0x200, notes.len() as u64, note_align);
            bytes[64..64 + PHDR_SIZE].copy_from_slice(&load);
            bytes[64 + PHDR_SIZE..64 + 2 * PHDR_SIZE].copy_from_slice(&n);
            bytes.extend(notes);
            Image { bytes }
        }

        fn read(&self) -> Option<Vec<u8>> {
            let start = self.bytes.as_ptr() as usize;
            // SAFETY: the image is all readable; base = start puts vaddr 0 at its first byte.
            unsafe { read(start, start, start + self.bytes.len()) }.map(|id| id.as_bytes().to_vec())
        }
    }

    const ID: &[u8] =
        b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb";

    #[test]
    fn finds_the_gnu_note_among_others() {
        let mut notes = note(b"GNU\0", 5, &[0; 16], 4); // a property note first
        notes.extend(note(b"Go\0\0", 4, b"go build id", 4));
        notes.extend(note(b"GNU\0", NT_GNU_BUILD_ID, ID, 4));
        let image = Image::new(&notes, 4, 0x200 + notes.len() as u64);
        assert_eq!(image.read().as_deref(), Some(ID));
        let notes8 = note(b"GNU\0", NT_GNU_BUILD_ID, &ID[..12], 8);
        let image = Image::new(&notes8, 8, 0x200 + notes8.len() as u64);
        assert_eq!(image.read().as_deref(), Some(&ID[..12]));
    }

    #[test]
    fn bad_or_unmapped_headers_and_notes_give_nothing() {
        let good = note(b"GNU\0", NT_GNU_BUILD_ID, ID, 4);
        // The note lies beyond the file-backed part of the loaded segment.
        assert_eq!(Image::new(&good, 4, 0x210).read(), None);
        // No note of the right name or type.
        assert_eq!(Image::new(&note(b"GNV\0", 3, ID, 4), 4, 0x300).read(), None);
        assert_eq!(Image::new(&note(b"GNU\0", 1, ID, 4), 4, 0x300).read(), None);
        // Sizes that point past the segment, or overflow.
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(Image::new(&huge, 4, 0x300).read(), None);
        huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(Image::new(&huge, 4, 0x300).read(), None);
        // Broken ELF headers.
        for (at, value) in [
            (0, 0u8),
            (4, 1),
            (0x36, 55),
            (0x38, 0),
            (0x20, 0xf0),
            (0x21, 0x10),
        ] {
            let mut image = Image::new(&good, 4, 0x300);
            image.bytes[at] = value;
            assert_eq!(image.read(), None, "byte {at:#x} = {value}");
        }
        // A mapping too short for a header, or none.
        let image = Image::new(&good, 4, 0x300);
        let start = image.bytes.as_ptr() as usize;
        // SAFETY: reads at most the image.
        unsafe {
            assert_eq!(read(start, start, start + 10), None);
            assert_eq!(read(start, start, start), None);
            assert_eq!(read(0, 0, 100), None);
        }
        // The header is not the one mapped at the start (another load bias).
        // SAFETY: as above.
        assert_eq!(unsafe { read(start + 0x1000, start, start + 0x300) }, None);
    }

    #[test]
    fn garbage_never_faults() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let good = note(b"GNU\0", NT_GNU_BUILD_ID, ID, 4);
        for _ in 0..20_000 {
            let mut image = Image::new(&good, 4, 0x300);
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = (rng as usize >> 8) % image.bytes.len();
                image.bytes[at] = rng as u8;
            }
            let _ = image.read();
        }
    }

    #[test]
    fn reads_loaded_modules_as_readelf_does() {
        let mut checked = 0;
        // SAFETY: a NUL-terminated name.
        let getpid = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) } as usize;
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        for ip in [
            getpid,
            reads_loaded_modules_as_readelf_does as *const () as usize,
        ] {
            let loc = crate::unwind::locate(ip + 1).expect("the module of a loaded function");
            let path = match std::str::from_utf8(loc.module).unwrap() {
                "" => exe.to_str().unwrap(),
                p => p,
            };
            let out = std::process::Command::new("readelf")
                .args(["-n", path])
                .output()
                .expect("readelf (binutils)");
            let text = String::from_utf8_lossy(&out.stdout);
            let module = loc.buildid_module();
            match of(&module) {
                Some(id) => {
                    let mut hex = [0u8; 2 * MAX_LEN];
                    let n = id.write_hex(&mut hex);
                    let hex = std::str::from_utf8(&hex[..n]).unwrap();
                    assert!(
                        text.contains(&format!("Build ID: {hex}\n")),
                        "{hex} of {path} not in\n{text}"
                    );
                    checked += 1;
                }
                None => assert!(!text.contains("Build ID"), "{path} has one:\n{text}"),
            }
            // The second time comes from the table, the same.
            assert!(published(&module).is_some());
            assert_eq!(published(&module).unwrap(), of(&module));
        }
        assert!(checked > 0, "libc has a build ID");
    }
}
