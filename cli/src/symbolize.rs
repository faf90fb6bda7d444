//! Offline symbolization: function, source file and line for a native frame, from the DWARF debug
//! information of its module file, read here in the sigaudit process and never in the audited
//! one. Also the `sigaudit symbolize` subcommand.
//!
//! A frame's `offset` is a return address relative to its module's load base, which for an ELF
//! file is the address the linker gave it; the call itself is the instruction before it, so the
//! lookup is for `offset - 1`.
//!
//! A module without DWARF of its own may have it in a separate file, as distributions ship it
//! (`-dbgsym`/`-debuginfo` packages) and `objcopy --only-keep-debug` makes it: found by build ID
//! under `/usr/lib/debug/.build-id/`, or by the `.gnu_debuglink` name (checked against its CRC)
//! next to the module, in `.debug/` there, or under `/usr/lib/debug/`, as GDB looks.

use crate::args::SymbolizeOptions;
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

/// Loaded modules, kept for the life of the symbolizer. A module that cannot be read or has no
/// debug information is remembered as such.
#[derive(Default)]
pub struct Symbolizer {
    modules: HashMap<String, Option<addr2line::Loader>>,
}

impl Symbolizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The source levels for return address `offset` in `module`, innermost first; empty when
    /// the module has no line information for it.
    pub fn lookup(&mut self, module: &str, offset: u64) -> Vec<Source> {
        let loader = self
            .modules
            .entry(module.to_string())
            .or_insert_with(|| load(Path::new(module)));
        let Some(loader) = loader else {
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
        let sources = self.lookup(&module, offset);
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
}

/// The DWARF for `module`: its own, else a separate debug file's, else just its symbol table.
fn load(module: &Path) -> Option<addr2line::Loader> {
    let loader = addr2line::Loader::new(module).ok()?;
    let has_dwarf = [&b".debug_info"[..], b".debug_line", b".zdebug_info"]
        .iter()
        .any(|name| loader.get_section_range(name).is_some());
    if has_dwarf {
        return Some(loader);
    }
    separate_debug_file(module)
        .and_then(|p| addr2line::Loader::new(p).ok())
        .or(Some(loader))
}

/// Where GDB would find the separate debug file of `module`, if there is one.
pub fn separate_debug_file(module: &Path) -> Option<PathBuf> {
    use object::Object;
    use std::os::unix::ffi::OsStrExt;
    let module = std::fs::canonicalize(module).ok()?;
    let data = std::fs::read(&module).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let root = Path::new("/usr/lib/debug");
    if let Ok(Some(id)) = file.build_id()
        && id.len() > 1
    {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let p = root
            .join(".build-id")
            .join(&hex[..2])
            .join(format!("{}.debug", &hex[2..]));
        if p.is_file() {
            return Some(p);
        }
    }
    let (name, crc) = file.gnu_debuglink().ok()??;
    let name = std::ffi::OsStr::from_bytes(name);
    let dir = module.parent()?;
    let candidates = [
        dir.join(name),
        dir.join(".debug").join(name),
        root.join(dir.strip_prefix("/").unwrap_or(dir)).join(name),
    ];
    candidates.into_iter().find(|p| {
        *p != module && std::fs::read(p).is_ok_and(|bytes| crc32fast::hash(&bytes) == crc)
    })
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
    for line in input.split(b'\n') {
        let line = line?;
        match parse_record(&line) {
            Some(mut record) => {
                sym.annotate_record(&mut record);
                if text {
                    out.write_all(text::render(&record).as_bytes())?;
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
