//! Offline symbolization: function, source file and line for a native frame, from the DWARF debug
//! information of its module, read here in the sigaudit process and never in the audited one.
//! Also the `sigaudit symbolize` subcommand.
//!
//! A frame's `offset` is a return address relative to its module's load base, which for an ELF
//! file is the address the linker gave it; the call itself is the instruction before it, so the
//! lookup is for `offset - 1`.
//!
//! Which debug information: a frame names its module's path and, from records of this version
//! on, its GNU build ID, which identifies the exact build that ran. The module file is used only
//! if its build ID is that one (a rebuilt or upgraded file at the same path would give wrong
//! names); then, for a module without DWARF of its own, a separate debug file, as distributions
//! ship them (`-dbgsym`/`-dbg`/`-debuginfo` packages) and `objcopy --only-keep-debug` makes them:
//! by build ID under `/usr/lib/debug/.build-id/`, or by the module's `.gnu_debuglink` name
//! (checked against its CRC) next to it, in `.debug/` there, or under `/usr/lib/debug/`, as GDB
//! looks; then, when `DEBUGINFOD_URLS` is set, the debuginfod servers (`debuginfod.rs`). Every
//! debug file is checked to carry the build ID asked for. A record without build IDs (from an
//! older library) uses the module file as it is.

use crate::args::SymbolizeOptions;
use crate::debuginfod;
use crate::text;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// One level of source for an address: the function and where in it. More than one for an
/// address means inlining, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Loaded modules, kept for the life of the symbolizer, by path and build ID. A module whose
/// debug information cannot be found is remembered as such.
#[derive(Default)]
pub struct Symbolizer {
    modules: HashMap<(String, Option<String>), Option<addr2line::Loader>>,
    /// The debuginfod client, made when first needed (`None` inside: no `DEBUGINFOD_URLS`).
    debuginfod: Option<Option<debuginfod::Client>>,
}

impl Symbolizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The source levels for return address `offset` in `module` (of build `build_id`, when the
    /// record says), innermost first; empty when nothing has line information for it.
    pub fn lookup(&mut self, module: &str, build_id: Option<&str>, offset: u64) -> Vec<Source> {
        let key = (module.to_string(), build_id.map(str::to_string));
        if !self.modules.contains_key(&key) {
            let loader = self.load(Path::new(module), build_id);
            self.modules.insert(key.clone(), loader);
        }
        let Some(Some(loader)) = self.modules.get(&key) else {
            return Vec::new();
        };
        let probe = offset.saturating_sub(1);
        let mut out = Vec::new();
        if let Ok(mut frames) = loader.find_frames(probe) {
            while let Ok(Some(f)) = frames.next() {
                let function = f
                    .function
                    .as_ref()
                    .and_then(|n| n.demangle().ok())
                    .map(|n| n.into_owned());
                let (file, line) = match &f.location {
                    Some(l) => (l.file.map(str::to_string), l.line),
                    None => (None, None),
                };
                out.push(Source {
                    function,
                    file,
                    line,
                });
            }
        }
        // Without line information a DWARF-less module still resolves nothing here: the
        // record's own `symbol` (from the symbol table) is then all there is.
        if out.iter().all(|s| s.file.is_none()) {
            out.clear();
        }
        out
    }

    /// Adds `function`, `file`, `line` (and `inlined_into`, outwards, when the address is in
    /// inlined code) to one frame object that has `module` and `offset`.
    pub fn annotate_frame(&mut self, frame: &mut Value) {
        let Some(obj) = frame.as_object_mut() else {
            return;
        };
        let (Some(module), Some(offset)) = (
            obj.get("module").and_then(Value::as_str),
            obj.get("offset")
                .and_then(Value::as_str)
                .and_then(parse_hex),
        ) else {
            return;
        };
        let module = module.to_string();
        let build_id = obj
            .get("build_id")
            .and_then(Value::as_str)
            .filter(|id| is_build_id(id))
            .map(str::to_string);
        let sources = self.lookup(&module, build_id.as_deref(), offset);
        let Some((first, outer)) = sources.split_first() else {
            return;
        };
        put_source(obj, first);
        if !outer.is_empty() {
            let outer: Vec<Value> = outer
                .iter()
                .map(|s| {
                    let mut m = Map::new();
                    put_source(&mut m, s);
                    Value::Object(m)
                })
                .collect();
            obj.insert("inlined_into".into(), Value::Array(outer));
        }
    }

    /// Annotates every native frame of a record: its `backtrace` and its cause's `native`.
    pub fn annotate_record(&mut self, record: &mut Value) {
        if let Some(frames) = record.get_mut("backtrace").and_then(Value::as_array_mut) {
            for f in frames {
                self.annotate_frame(f);
            }
        }
        if let Some(native) = record.get_mut("cause").and_then(|c| c.get_mut("native")) {
            self.annotate_frame(native);
        }
    }

    /// The DWARF for `module` of build `build_id`: see the module's documentation for the order.
    fn load(&mut self, module: &Path, build_id: Option<&str>) -> Option<addr2line::Loader> {
        let file = ElfFacts::read(module);
        // The module file itself, if it is the build that ran.
        let same = file
            .as_ref()
            .is_some_and(|f| build_id.is_none() || f.build_id.as_deref() == build_id);
        if same && file.as_ref().is_some_and(|f| f.has_dwarf) {
            return addr2line::Loader::new(module).ok();
        }
        let id = build_id.or_else(|| file.as_ref().and_then(|f| f.build_id.as_deref()));
        let local = id
            .and_then(|id| by_build_id(Path::new(DEBUG_ROOT), id))
            .or_else(|| if same { by_debuglink(module) } else { None });
        let remote = || -> Option<PathBuf> {
            let id = id?;
            let client = self
                .debuginfod
                .get_or_insert_with(debuginfod::Client::from_env)
                .as_mut()?;
            let path = client.debuginfo(id, &module.to_string_lossy()).ok()?;
            let served = ElfFacts::read(&path);
            if served.as_ref().and_then(|f| f.build_id.as_deref()) == Some(id) {
                Some(path)
            } else {
                eprintln!(
                    "sigaudit: the debuginfod server's file for build ID {id} is not that build: \
                     not used ({})",
                    path.display()
                );
                None
            }
        };
        if let Some(debug) = local.or_else(remote) {
            return addr2line::Loader::new(debug).ok();
        }
        // Its symbol table at least, when it is the right build.
        if same {
            addr2line::Loader::new(module).ok()
        } else {
            None
        }
    }
}

/// Where distributions put separate debug files.
const DEBUG_ROOT: &str = "/usr/lib/debug";

/// Whether `s` looks like a build ID: an even number of hex digits, at least two bytes.
fn is_build_id(s: &str) -> bool {
    s.len() >= 4 && s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// What an ELF file says about itself.
struct ElfFacts {
    /// Its GNU build ID, lowercase hex.
    build_id: Option<String>,
    /// It has DWARF line information of its own.
    has_dwarf: bool,
    /// Its `.gnu_debuglink`: file name and CRC.
    debuglink: Option<(Vec<u8>, u32)>,
}

impl ElfFacts {
    /// Only a regular file is read (so only one is ever given to the loader): a record names
    /// any path it likes, and a FIFO would block the open for good, a device never end.
    fn read(path: &Path) -> Option<ElfFacts> {
        use object::{Object, ObjectSection};
        let data = read_regular(path)?;
        let file = object::File::parse(&*data).ok()?;
        let build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        let has_dwarf = [".debug_info", ".debug_line", ".zdebug_info"]
            .iter()
            .any(|name| {
                file.section_by_name(name).is_some_and(|s| {
                    s.kind() != object::SectionKind::UninitializedData && s.size() > 0
                })
            });
        let debuglink = file
            .gnu_debuglink()
            .ok()
            .flatten()
            .map(|(name, crc)| (name.to_vec(), crc));
        Some(ElfFacts {
            build_id,
            has_dwarf,
            debuglink,
        })
    }
}

/// `ROOT/.build-id/xx/rest.debug` for build ID `id` (hex), if it is there and is that build.
fn by_build_id(root: &Path, id: &str) -> Option<PathBuf> {
    let (head, rest) = (id.get(..2)?, id.get(2..)?);
    let p = root
        .join(".build-id")
        .join(head)
        .join(format!("{rest}.debug"));
    let facts = ElfFacts::read(&p)?;
    (facts.build_id.as_deref() == Some(id)).then_some(p)
}

/// The file `module`'s `.gnu_debuglink` names, where GDB would look, if its CRC matches.
fn by_debuglink(module: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let module = std::fs::canonicalize(module).ok()?;
    let (name, crc) = ElfFacts::read(&module)?.debuglink?;
    let name = std::ffi::OsStr::from_bytes(&name);
    let dir = module.parent()?;
    let root = Path::new(DEBUG_ROOT);
    let candidates = [
        dir.join(name),
        dir.join(".debug").join(name),
        root.join(dir.strip_prefix("/").unwrap_or(dir)).join(name),
    ];
    candidates.into_iter().find(|p| {
        *p != module && read_regular(p).is_some_and(|bytes| crc32fast::hash(&bytes) == crc)
    })
}

/// A regular file's bytes, up to its size when opened; `None` for anything else. Opened
/// `O_NONBLOCK`, so that a FIFO does not wait for a writer.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.take(meta.len()).read_to_end(&mut data).ok()?;
    Some(data)
}

fn put_source(obj: &mut Map<String, Value>, s: &Source) {
    if let Some(f) = &s.function {
        obj.insert("function".into(), json!(f));
    }
    if let Some(f) = &s.file {
        obj.insert("file".into(), json!(f));
    }
    if let Some(l) = s.line {
        obj.insert("line".into(), json!(l));
    }
}

/// `"0x1a2b"` to a number.
pub fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// `sigaudit symbolize`: returns the exit status.
pub fn main(opts: &SymbolizeOptions) -> i32 {
    let mut sym = Symbolizer::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let inputs: Vec<std::path::PathBuf> = if opts.files.is_empty() {
        vec!["-".into()]
    } else {
        opts.files.clone()
    };
    let mut status = 0;
    for path in &inputs {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            match std::fs::File::open(path) {
                Ok(f) => Box::new(std::io::BufReader::new(f)),
                Err(e) => {
                    eprintln!("sigaudit symbolize: {}: {e}", path.display());
                    status = 1;
                    continue;
                }
            }
        };
        match convert(reader, &mut out, &mut sym, opts.text) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return status,
            Err(e) => {
                eprintln!("sigaudit symbolize: {}: {e}", path.display());
                status = 1;
            }
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("sigaudit symbolize: writing: {e}");
        }
        status = 1;
    }
    status
}

/// Copies lines from `input` to `out`, symbolizing each JSON record on the way.
fn convert(
    input: impl BufRead,
    out: &mut impl Write,
    sym: &mut Symbolizer,
    text: bool,
) -> std::io::Result<()> {
    let mut stream = text::Stream::default();
    for line in input.split(b'\n') {
        let line = line?;
        match parse_record(&line) {
            Some(mut record) => {
                sym.annotate_record(&mut record);
                if text {
                    out.write_all(stream.render(&record).as_bytes())?;
                } else {
                    serde_json::to_writer(&mut *out, &record)?;
                    out.write_all(b"\n")?;
                }
            }
            None => {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

/// A line that holds one JSON event record (an object with an `event`).
pub fn parse_record(line: &[u8]) -> Option<Value> {
    let trimmed = line.trim_ascii();
    if !trimmed.starts_with(b"{") {
        return None;
    }
    let v: Value = serde_json::from_slice(trimmed).ok()?;
    v.get("event")?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_offsets() {
        assert_eq!(parse_hex("0x1a2b"), Some(0x1a2b));
        assert_eq!(parse_hex("ff"), Some(0xff));
        assert_eq!(parse_hex("0xzz"), None);
    }

    #[test]
    fn build_ids_are_hex() {
        assert!(is_build_id("2b3ac2f356eef24ac92e6ee3183980e9153d5fcd"));
        assert!(!is_build_id("2b3"));
        assert!(!is_build_id("../../etc/passwd"));
        assert!(!is_build_id(""));
    }

    #[test]
    fn frames_without_a_module_file_keep_what_they_had() {
        let mut sym = Symbolizer::new();
        let mut f = json!({"addr": "0x10", "module": "/nonexistent/libx.so", "offset": "0x10", "symbol": "f+0x1"});
        let before = f.clone();
        sym.annotate_frame(&mut f);
        assert_eq!(f, before);
        let mut bare = json!({"addr": "0x10"});
        sym.annotate_frame(&mut bare);
        assert_eq!(bare, json!({"addr": "0x10"}));
    }

    #[test]
    fn lines_that_are_not_records_pass_through() {
        let input = b"hello\n{\"not\":\"an event\"}\n{broken\n" as &[u8];
        let mut out = Vec::new();
        convert(input, &mut out, &mut Symbolizer::new(), false).unwrap();
        assert_eq!(out, b"hello\n{\"not\":\"an event\"}\n{broken\n");
    }
}
