//! What a module file (a program or shared library) holds for unwinding and naming, read once
//! from the file in this process and kept: its call-frame information (`.eh_frame` with
//! `.eh_frame_hdr`, or `.debug_frame`, decompressed if need be: Go binaries have only that), its
//! function symbols (`.symtab`, else `.dynsym`), and its loadable segments (to find where a
//! mapping puts it).

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};
use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Section bytes shared between the cache and the unwinders built from it.
pub type Bytes = Arc<[u8]>;

/// One section: where the file says it is, and its bytes.
#[derive(Clone)]
pub struct Section {
    pub svma: Range<u64>,
    pub data: Bytes,
}

pub struct Module {
    /// The GNU build ID, in hex, as the library's records give it.
    pub build_id: Option<Arc<str>>,
    pub eh_frame: Option<Section>,
    pub eh_frame_hdr: Option<Section>,
    pub debug_frame: Option<Bytes>,
    pub text: Option<Range<u64>>,
    pub got: Option<Range<u64>>,
    /// `(file offset, address)` of each loadable segment.
    segments: Vec<(u64, u64)>,
    /// Functions by address: start, size (0 when unknown), name.
    symbols: Vec<(u64, u64, String)>,
    /// The address ranges that call-frame information covers, sorted.
    cfi: Vec<(u64, u64)>,
}

impl Module {
    fn load(path: &str) -> Option<Module> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            let bytes = s.uncompressed_data().ok()?;
            Some(Section {
                svma: s.address()..s.address() + s.size(),
                data: Arc::from(&*bytes),
            })
        };
        let range = |name: &str| {
            file.section_by_name(name)
                .map(|s| s.address()..s.address() + s.size())
        };
        let mut symbols: Vec<(u64, u64, String)> = {
            let table: Vec<_> = if file.symbols().next().is_some() {
                file.symbols().collect()
            } else {
                file.dynamic_symbols().collect()
            };
            table
                .into_iter()
                .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
                .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
                .filter(|(_, _, n)| !n.is_empty())
                .collect()
        };
        symbols.sort_by_key(|s| s.0);
        symbols.dedup_by_key(|s| s.0);
        let eh_frame = section(".eh_frame");
        let debug_frame = section(".debug_frame").map(|s| s.data);
        let text = range(".text");
        let got = range(".got");
        let mut cfi = cfi_ranges(eh_frame.as_ref(), debug_frame.as_deref(), &text, &got);
        cfi.sort_unstable();
        let build_id = file.build_id().ok().flatten().map(|id| {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            Arc::from(hex)
        });
        Some(Module {
            build_id,
            eh_frame,
            eh_frame_hdr: section(".eh_frame_hdr"),
            debug_frame,
            text,
            got,
            cfi,
            segments: file
                .segments()
                .map(|s| (s.file_range().0, s.address()))
                .collect(),
            symbols,
        })
    }

    /// The load bias of a mapping of this file: the mapped address minus the address the file
    /// gives, for the segment that the mapping's file `offset` starts.
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let page = page_size();
        self.segments
            .iter()
            .find(|&&(foff, _)| foff & !(page - 1) == offset)
            .map(|&(foff, vaddr)| start.wrapping_sub(vaddr - (foff - offset)))
    }

    /// Whether the module's call-frame information covers `addr` (a file address).
    pub fn has_cfi(&self, addr: u64) -> bool {
        let i = self.cfi.partition_point(|r| r.0 <= addr);
        i > 0 && addr < self.cfi[i - 1].1
    }

    /// The function holding `addr` (a file address) and the distance into it.
    pub fn symbol(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self
            .symbols
            .partition_point(|s| s.0 <= addr)
            .checked_sub(1)?;
        let (start, size, name) = &self.symbols[i];
        // A sized symbol must contain the address; an unsized one (hand-written assembly) is
        // taken up to the next symbol.
        if *size != 0 && addr >= start + size {
            return None;
        }
        Some((name, addr - start))
    }
}

/// The ranges that the FDEs of `.eh_frame` (else `.debug_frame`) describe.
fn cfi_ranges(
    eh_frame: Option<&Section>,
    debug_frame: Option<&[u8]>,
    text: &Option<Range<u64>>,
    got: &Option<Range<u64>>,
) -> Vec<(u64, u64)> {
    use addr2line::gimli::{
        BaseAddresses, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, UnwindSection,
    };
    fn collect<'a, S: UnwindSection<EndianSlice<'a, LittleEndian>>>(
        section: &S,
        bases: &BaseAddresses,
    ) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut entries = section.entries(bases);
        while let Ok(Some(entry)) = entries.next() {
            if let CieOrFde::Fde(partial) = entry
                && let Ok(fde) = partial.parse(S::cie_from_offset)
            {
                out.push((fde.initial_address(), fde.end_address()));
            }
        }
        out
    }
    let mut bases = BaseAddresses::default();
    if let Some(t) = text {
        bases = bases.set_text(t.start);
    }
    if let Some(g) = got {
        bases = bases.set_got(g.start);
    }
    match (eh_frame, debug_frame) {
        (Some(eh), _) => collect(
            &EhFrame::new(&eh.data, LittleEndian),
            &bases.set_eh_frame(eh.svma.start),
        ),
        (None, Some(debug)) => {
            let mut section = DebugFrame::new(debug, LittleEndian);
            section.set_address_size(8);
            collect(&section, &bases)
        }
        (None, None) => Vec::new(),
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Module files read so far, by path, each checked against the file's identity (device, inode,
/// modification time) before reuse.
#[derive(Default)]
pub struct Modules {
    files: HashMap<String, (Identity, Option<Arc<Module>>)>,
}

type Identity = (u64, u64, i64, i64);

fn identity(path: &str) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

impl Modules {
    /// The module file at `path` (as `/proc/PID/maps` names it), or `None` when it cannot be
    /// read or parsed (a deleted file, a pseudo-file such as `[vdso]`).
    pub fn get(&mut self, path: &str) -> Option<Arc<Module>> {
        if !path.starts_with('/') {
            return None;
        }
        let id = identity(path)?;
        if let Some((known, m)) = self.files.get(path)
            && *known == id
        {
            return m.clone();
        }
        let m = Module::load(path).map(Arc::new);
        self.files.insert(path.to_string(), (id, m.clone()));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_program_can_be_read_and_named() {
        let exe = std::env::current_exe().unwrap();
        let mut mods = Modules::default();
        let m = mods
            .get(exe.to_str().unwrap())
            .expect("the test binary is an ELF file");
        assert!(m.eh_frame.is_some() && m.eh_frame_hdr.is_some());
        // Our own function, at its own address: found by name in the symbol table.
        let maps = super::super::tracee::maps(std::process::id()).unwrap();
        let here = this_program_can_be_read_and_named as *const () as u64;
        let map = maps
            .iter()
            .find(|m| m.executable && (m.start..m.end).contains(&here))
            .unwrap();
        let bias = m.bias(map.start, map.offset).unwrap();
        let (name, off) = m.symbol(here - bias).unwrap();
        assert!(
            name.contains("this_program_can_be_read_and_named"),
            "{name}"
        );
        assert_eq!(off, 0);
    }
}
