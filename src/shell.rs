//! Shell frames: the script and line of the command that ignored a signal (`trap '' CHLD`), and
//! of the commands that led to it, read from bash's own variables; for a shell that exports
//! nothing (dash), the script's name from its command line.
//!
//! # bash
//!
//! bash exports its global variables from its executable, so the constructor ([`init`]) finds
//! them by name: `line_number` (the line of the command being run, as `$LINENO` gives it),
//! `global_variables` (the table of global shell variables), `dist_version` and `patch_level`.
//! In a hook, [`capture`] reads the line, then looks up three arrays in that table, the ones
//! bash keeps for its `caller` builtin: `BASH_SOURCE` (the file of each frame, innermost
//! first), `BASH_LINENO` (the line each frame was called from) and `FUNCNAME` (the function of
//! each frame: `source` for a sourced file, `main` for the script). Frame 0 is
//! `BASH_SOURCE[0]` at `line_number`; frame `i` is `BASH_SOURCE[i]` at `BASH_LINENO[i-1]`.
//! Outside any script (`bash -c`), the one frame is `-c` at `line_number`.
//!
//! bash runs one thread, and the hook is called from its own code (the `trap` builtin, the
//! child it forked resetting its signals before `exec`), so its tables are consistent. Every
//! pointer is still checked before it is read, every walk (buckets, chains, array elements) is
//! bounded, and a failed check means no frames. Nothing of bash's is called: no allocation, no
//! lock. A `vfork()` child is refused (bash does not use `vfork`, but its memory would be its
//! parent's).
//!
//! Versions: bash 5.2 (the structure offsets in [`BASH_5_2`] are checked against the headers
//! Debian ships in `bash-builtins`); bash 5.1 and before lay out their arrays differently and
//! are treated as a shell that exports nothing.
//!
//! # Other shells
//!
//! dash (Debian's `/bin/sh`), ksh, mksh, zsh and busybox export no state we could read. For them
//! an event says so in `script_missing`, with the script's name (`$0`) from the command line.

use crate::peek::{Cut, copy_bytes, plausible, read, strnlen};
use crate::python::{PyFrame, PyStack};
use crate::real;
use crate::script::{Language, Missing, VERSION_CAP, put};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// bash 5.2's structures on LP64 (`variables.h`, `hashlib.h`, `array.h`).
pub struct Layout {
    /// `SHELL_VAR`: `value` (for an array, its `ARRAY *`), `attributes`
    var_value: usize,
    var_attributes: usize,
    /// `VAR_CONTEXT.table`
    context_table: usize,
    /// `HASH_TABLE`: `bucket_array`, `nbuckets`
    table_buckets: usize,
    table_nbuckets: usize,
    /// `BUCKET_CONTENTS`: `next`, `key`, `data`
    bucket_next: usize,
    bucket_key: usize,
    bucket_data: usize,
    /// `ARRAY`: `num_elements`, `head` (a circular list with a dummy head element)
    array_count: usize,
    array_head: usize,
    /// `ARRAY_ELEMENT`: `ind`, `value`, `next`
    element_index: usize,
    element_value: usize,
    element_next: usize,
    /// `att_array`
    att_array: i32,
}

pub const BASH_5_2: Layout = Layout {
    var_value: 8,
    var_attributes: 40,
    context_table: 32,
    table_buckets: 0,
    table_nbuckets: 8,
    bucket_next: 0,
    bucket_key: 8,
    bucket_data: 16,
    array_count: 8,
    array_head: 16,
    element_index: 0,
    element_value: 8,
    element_next: 16,
    att_array: 4,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum State {
    Absent = 0,
    /// bash 5.2: frames are read.
    Bash,
    /// A shell whose state we cannot read (dash, an older bash, ...).
    Opaque,
    /// Not bash: a shell or not by the executable's name, which the first event looks at
    /// (reading `/proc/self/exe` at load cost every exec about 14 µs).
    ByName,
}

#[unsafe(link_section = ".data.sigaudit_load")]
static STATE: AtomicU8 = AtomicU8::new(State::Absent as u8);
static LINE_NUMBER: AtomicUsize = AtomicUsize::new(0);
static GLOBAL_VARIABLES: AtomicUsize = AtomicUsize::new(0);
/// The shell's name (`dash`, `bash 5.1.16`), for the reason given when there are no frames.
#[unsafe(link_section = ".data.sigaudit_load")]
static NAME: [AtomicU8; 32] = [const { AtomicU8::new(0) }; 32];
#[unsafe(link_section = ".data.sigaudit_load")]
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);

/// Buckets and entries looked at per lookup, array elements per array, at most.
const MAX_BUCKETS: i32 = 1 << 16;
const MAX_ENTRIES: usize = 1 << 16;
const MAX_ELEMENTS: usize = 4096;
const MAX_NAME: usize = 1 << 12;

/// Shells known to export no state we can read, by executable name.
const OPAQUE_SHELLS: &[&[u8]] = &[
    b"dash", b"sh", b"ash", b"ksh", b"ksh93", b"mksh", b"lksh", b"pdksh", b"posh", b"yash", b"zsh",
    b"bash",
];

/// Finds out whether this process is bash, and which. Constructor only.
pub fn init() {
    let version = real::lookup_global(b"dist_version\0") as usize;
    let patch = real::lookup_global(b"patch_level\0") as usize;
    let line = real::lookup_global(b"line_number\0") as usize;
    let globals = real::lookup_global(b"global_variables\0") as usize;
    if version == 0 || patch == 0 || line == 0 || globals == 0 {
        STATE.store(State::ByName as u8, Ordering::Release);
        return;
    }
    // SAFETY: bash's `const char * const dist_version` and `const int patch_level`.
    let (dist, patch) = unsafe { (read::<usize>(version), read::<i32>(patch)) };
    let mut v = [0u8; VERSION_CAP];
    // SAFETY: `dist_version` points to a short NUL-terminated string in bash's data.
    let vlen = if plausible(dist, 1) {
        unsafe { copy_bytes(dist, strnlen(dist, 8), &mut v, Cut::KeepStart) }
    } else {
        0
    };
    let mut label = [0u8; 32];
    let mut b = crate::buf::Buf::new(&mut label);
    b.str("bash ").bytes(v.get(..vlen).unwrap_or(&[]));
    b.byte(b'.').int(i64::from(patch));
    let len = b.len();
    let state = if v.get(..vlen) == Some(b"5.2") {
        LINE_NUMBER.store(line, Ordering::Relaxed);
        GLOBAL_VARIABLES.store(globals, Ordering::Relaxed);
        State::Bash
    } else {
        State::Opaque
    };
    set(state, label.get(..len).unwrap_or(&[]));
}

/// Publishes the state and the shell's name.
fn set(state: State, label: &[u8]) {
    for (slot, &b) in NAME.iter().zip(label) {
        slot.store(b, Ordering::Relaxed);
    }
    NAME_LEN.store(label.len().min(NAME.len()), Ordering::Relaxed);
    STATE.store(state as u8, Ordering::Release);
}

fn state() -> State {
    match STATE.load(Ordering::Acquire) {
        1 => State::Bash,
        2 => State::Opaque,
        3 => by_name(),
        _ => State::Absent,
    }
}

/// Decides, once, from the executable's name whether a process that is not bash is a shell.
/// In any context a hook runs in (a `readlink(2)`); racing threads store the same answer.
fn by_name() -> State {
    let mut exe = [0u8; 256];
    let n = crate::sys::readlink(c"/proc/self/exe", &mut exe).unwrap_or(0);
    let name = crate::report::basename(exe.get(..n).unwrap_or(&[]));
    let state = match OPAQUE_SHELLS.contains(&name) {
        true => State::Opaque,
        false => State::Absent,
    };
    set(state, name.get(..NAME.len()).unwrap_or(name));
    state
}

/// Whether this process is a shell.
pub fn runs() -> bool {
    state() != State::Absent
}

/// Fills `stack` with the shell's frames, innermost first, or says in `missing` why there are
/// none. `stack` comes empty
/// (from [`crate::script::capture`]). Safe in any context a hook runs in.
pub fn capture(stack: &mut PyStack, missing: &mut Missing) {
    let state = state();
    let mut read = Read::Bad;
    if state == State::Bash && !crate::guard::in_shared_memory_child() {
        // SAFETY: bash 5.2's globals, found by `init`.
        read = unsafe { read_bash(&BASH_5_2, stack) };
        if stack.len > 0 {
            return;
        }
    }
    if state == State::Absent {
        return;
    }
    let mut name = [0u8; 32];
    let n = NAME_LEN.load(Ordering::Relaxed).min(name.len());
    for (slot, b) in name.iter_mut().zip(NAME.iter()).take(n) {
        *slot = b.load(Ordering::Relaxed);
    }
    let name = name.get(..n).unwrap_or(&[]);
    // The frame slot is free (there are no frames): the command line is read into it.
    let scratch = &mut stack.frames[0].file;
    // From memory: an event must open nothing a sandboxed program may have forbidden.
    let len = crate::report::arguments(scratch)
        .unwrap_or_else(|| crate::report::read_file(b"/proc/self/cmdline\0", scratch));
    let (command_string, zero) = shell_args(scratch.get(..len).unwrap_or(&[]));
    let (reason, why): (&str, &[u8]) = match (state, read) {
        (State::Bash, Read::NoSource(line)) if command_string => {
            // Commands given with -c: no file.
            let slot = &mut stack.frames[0];
            slot.file_len = put(&mut slot.file, &[b"-c"]);
            slot.function_len = put(&mut slot.function, &[b"main"]);
            slot.line = line;
            stack.len = 1;
            return;
        }
        (State::Bash, Read::NoSource(_)) => ("not-started", b"bash has not started running it"),
        (State::Bash, _) => ("unreadable", b"its variables did not pass the checks"),
        _ => ("no-state", b"the shell exports no line numbers"),
    };
    let version = name.strip_prefix(b"bash ").unwrap_or(&[]);
    match zero {
        Some(script) => missing.set(
            Language::Shell,
            version,
            reason,
            &[
                name,
                b" runs shell script ",
                script,
                b"; its line is unknown (",
                why,
                b")",
            ],
        ),
        None => missing.set(
            Language::Shell,
            version,
            reason,
            &[name, b": no shell frames (", why, b")"],
        ),
    }
}

/// Whether a shell's command line (NUL-separated) gives it commands with `-c`, and its `$0`
/// when it runs a script: the first operand, or the name given after `-c STRING`; `None` for a
/// shell reading commands from its input.
fn shell_args(cmdline: &[u8]) -> (bool, Option<&[u8]>) {
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    let mut command_string = false;
    let operand = loop {
        let Some(arg) = args.next() else {
            return (command_string, None);
        };
        if arg == b"--" {
            match args.next() {
                Some(a) => break a,
                None => return (command_string, None),
            }
        }
        match arg {
            [b'-' | b'+', flags @ ..] if !flags.is_empty() => {
                if arg[0] == b'-' && flags.contains(&b's') {
                    return (false, None);
                }
                command_string |= arg[0] == b'-' && flags.contains(&b'c');
                // `-o NAME` (or `-eo NAME`) takes an option name.
                if flags.ends_with(b"o") {
                    args.next();
                }
            }
            _ => break arg,
        }
    };
    // With -c the first operand is the command string, and `$0` the one after it.
    let zero = if command_string {
        args.next()
    } else {
        Some(operand)
    };
    (command_string, zero.filter(|z| !z.is_empty()))
}

/// What reading bash's variables gave.
#[derive(Clone, Copy)]
enum Read {
    /// Frames (in the stack).
    Frames,
    /// No `BASH_SOURCE` entry (commands given with `-c`, or a script not started yet): the
    /// current line.
    NoSource(i32),
    /// A check failed.
    Bad,
}

/// One bash array's elements, by index.
struct Array {
    head: usize,
    count: usize,
}

/// Reads bash's frames into `stack`.
///
/// # Safety
/// [`init`] found bash 5.2's globals, of this `l`.
unsafe fn read_bash(l: &Layout, stack: &mut PyStack) -> Read {
    let line_at = LINE_NUMBER.load(Ordering::Relaxed);
    let globals_at = GLOBAL_VARIABLES.load(Ordering::Relaxed);
    // SAFETY: bash's `int line_number` and `VAR_CONTEXT *global_variables`.
    let (line, globals) = unsafe { (read::<i32>(line_at), read::<usize>(globals_at)) };
    if globals == 0 {
        // Its variables are not set up yet: bash is starting.
        return Read::NoSource(line);
    }
    if !plausible(globals, 8) || line < 0 {
        return Read::Bad;
    }
    // SAFETY: the global variable context, checked.
    let table = unsafe { read::<usize>(globals + l.context_table) };
    let mut found = [None, None, None];
    // SAFETY: the globals' table, checked in `find`.
    unsafe {
        find(
            l,
            table,
            &[b"BASH_SOURCE", b"BASH_LINENO", b"FUNCNAME"],
            &mut found,
        )
    };
    let [sources, lines, functions] = found;
    let depth = sources.as_ref().map_or(0, |s| s.count.min(MAX_ELEMENTS));
    let Some(sources) = sources.filter(|_| depth > 0) else {
        return Read::NoSource(line);
    };
    for i in 0..depth {
        let Some(slot) = stack.frames.get_mut(stack.len) else {
            stack.truncated = true;
            return Read::Frames;
        };
        // SAFETY: arrays found in bash's table, walked with checks in `element`.
        let file = unsafe { element(l, &sources, i) };
        let Some((file, file_len)) = file else {
            return Read::Bad;
        };
        // SAFETY: as above.
        let at = match i {
            0 => Some(line),
            _ => lines
                .as_ref()
                .and_then(|a| unsafe { element(l, a, i - 1) })
                .and_then(|(p, n)| parse_int(p, n)),
        };
        // SAFETY: as above.
        let function = functions.as_ref().and_then(|a| unsafe { element(l, a, i) });
        fill(
            slot,
            file,
            file_len,
            at.unwrap_or(0),
            function,
            i + 1 == depth,
        );
        stack.len += 1;
    }
    Read::Frames
}

/// Writes one frame. Without a `FUNCNAME` entry (bash shows none outside functions), the
/// outermost frame is `main` and the others are sourced files.
fn fill(
    slot: &mut PyFrame,
    file: usize,
    file_len: usize,
    line: i32,
    function: Option<(usize, usize)>,
    outermost: bool,
) {
    // SAFETY: `element` checked the string's pointer and measured it.
    slot.file_len = unsafe { copy_bytes(file, file_len, &mut slot.file, Cut::KeepEnd) };
    slot.line = line;
    slot.function_len = match function {
        // SAFETY: as above.
        Some((p, n)) => unsafe { copy_bytes(p, n, &mut slot.function, Cut::KeepStart) },
        None if outermost => put(&mut slot.function, &[b"main"]),
        None => put(&mut slot.function, &[b"source"]),
    };
}

/// A decimal line number as bash keeps it in `BASH_LINENO`.
fn parse_int(at: usize, len: usize) -> Option<i32> {
    let mut v: i32 = 0;
    for i in 0..len.min(10) {
        // SAFETY: `element` checked the string and measured it.
        let d = unsafe { read::<u8>(at + i) };
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i32::from(d - b'0'))?;
    }
    Some(v)
}

/// Looks `names` up in a bash hash table of variables; each array variable found goes in
/// `found` at the same position.
///
/// # Safety
/// `table` is null or a `HASH_TABLE *` of bash's variables.
unsafe fn find(l: &Layout, table: usize, names: &[&[u8]; 3], found: &mut [Option<Array>; 3]) {
    if !plausible(table, 8) {
        return;
    }
    // SAFETY: a plausible hash table.
    let (buckets, n) = unsafe {
        (
            read::<usize>(table + l.table_buckets),
            read::<i32>(table + l.table_nbuckets),
        )
    };
    if !plausible(buckets, 8) || !(1..=MAX_BUCKETS).contains(&n) {
        return;
    }
    let mut seen = 0;
    for b in 0..n as usize {
        // SAFETY: the bucket array has `n` entries.
        let mut entry = unsafe { read::<usize>(buckets + b * 8) };
        while entry != 0 {
            seen += 1;
            if seen > MAX_ENTRIES || !plausible(entry, 8) {
                return;
            }
            // SAFETY: a plausible bucket entry.
            let (key, data, next) = unsafe {
                (
                    read::<usize>(entry + l.bucket_key),
                    read::<usize>(entry + l.bucket_data),
                    read::<usize>(entry + l.bucket_next),
                )
            };
            for (name, slot) in names.iter().zip(found.iter_mut()) {
                // SAFETY: a key string of a live entry, compared up to its NUL.
                if slot.is_none() && unsafe { key_is(key, name) } {
                    // SAFETY: the variable the entry holds.
                    *slot = unsafe { array_of(l, data) };
                }
            }
            if found.iter().all(Option::is_some) {
                return;
            }
            entry = next;
        }
    }
}

/// Whether the NUL-terminated `key` is `name`.
///
/// # Safety
/// `key` is null or a NUL-terminated string.
unsafe fn key_is(key: usize, name: &[u8]) -> bool {
    if !plausible(key, 1) {
        return false;
    }
    // SAFETY: compared byte by byte, never past the key's NUL.
    name.iter()
        .enumerate()
        .all(|(i, &c)| unsafe { read::<u8>(key + i) } == c)
        && unsafe { read::<u8>(key + name.len()) } == 0
}

/// The array a variable holds, if it is an indexed array.
///
/// # Safety
/// `var` is null or a `SHELL_VAR *`.
unsafe fn array_of(l: &Layout, var: usize) -> Option<Array> {
    if !plausible(var, 8) {
        return None;
    }
    // SAFETY: a plausible variable.
    let (value, attributes) = unsafe {
        (
            read::<usize>(var + l.var_value),
            read::<i32>(var + l.var_attributes),
        )
    };
    if attributes & l.att_array == 0 || !plausible(value, 8) {
        return None;
    }
    // SAFETY: an indexed array's `ARRAY`.
    let (count, head) = unsafe {
        (
            read::<i64>(value + l.array_count),
            read::<usize>(value + l.array_head),
        )
    };
    (plausible(head, 8) && count >= 0).then_some(Array {
        head,
        count: count as usize,
    })
}

/// The string at index `index` of `array`: where and how long.
///
/// # Safety
/// `array` was found by [`array_of`].
unsafe fn element(l: &Layout, array: &Array, index: usize) -> Option<(usize, usize)> {
    // SAFETY: the dummy head's successor, checked below.
    let mut e = unsafe { read::<usize>(array.head + l.element_next) };
    for _ in 0..MAX_ELEMENTS.min(array.count) {
        if !plausible(e, 8) || e == array.head {
            return None;
        }
        // SAFETY: a plausible element of the list.
        let (ind, value, next) = unsafe {
            (
                read::<i64>(e + l.element_index),
                read::<usize>(e + l.element_value),
                read::<usize>(e + l.element_next),
            )
        };
        if ind == index as i64 {
            if !plausible(value, 1) {
                return None;
            }
            // SAFETY: an element's NUL-terminated value.
            return Some((value, unsafe { strnlen(value, MAX_NAME) }));
        }
        e = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero(args: &[&str]) -> Option<String> {
        let mut line = Vec::new();
        for a in args {
            line.extend_from_slice(a.as_bytes());
            line.push(0);
        }
        shell_args(&line)
            .1
            .map(|z| String::from_utf8_lossy(z).into_owned())
    }

    #[test]
    fn the_script_is_the_first_operand() {
        assert_eq!(
            zero(&["/bin/sh", "./deploy.sh", "x"]).as_deref(),
            Some("./deploy.sh")
        );
        assert_eq!(
            zero(&["sh", "-e", "-x", "deploy.sh"]).as_deref(),
            Some("deploy.sh")
        );
        assert_eq!(
            zero(&["sh", "-o", "errexit", "deploy.sh"]).as_deref(),
            Some("deploy.sh")
        );
        assert_eq!(
            zero(&["sh", "--", "deploy.sh"]).as_deref(),
            Some("deploy.sh")
        );
        assert_eq!(
            zero(&["sh", "-c", "trap '' CHLD", "job"]).as_deref(),
            Some("job")
        );
        assert_eq!(zero(&["sh", "-ec", "true"]), None);
        assert_eq!(zero(&["sh", "-s", "x"]), None);
        assert_eq!(zero(&["sh"]), None);
    }

    /// Every offset of [`BASH_5_2`], checked against bash's own headers (Debian's
    /// `bash-builtins`) when this machine's bash is 5.2.
    #[test]
    fn offsets_match_bashs_own_headers() {
        let include = std::path::Path::new("/usr/include/bash");
        if !crate::layout_check::have(&include.join("variables.h"), "bash-builtins") {
            return;
        }
        let version = std::fs::read_to_string(include.join("version.h")).unwrap_or_default();
        if !version.contains("DISTVERSION \"5.2\"") {
            eprintln!("note: these headers are not bash 5.2's: skipped");
            return;
        }
        let l = &BASH_5_2;
        let checks = [
            ("offsetof(SHELL_VAR, value)", l.var_value),
            ("offsetof(SHELL_VAR, attributes)", l.var_attributes),
            ("offsetof(VAR_CONTEXT, table)", l.context_table),
            ("offsetof(HASH_TABLE, bucket_array)", l.table_buckets),
            ("offsetof(HASH_TABLE, nbuckets)", l.table_nbuckets),
            ("offsetof(BUCKET_CONTENTS, next)", l.bucket_next),
            ("offsetof(BUCKET_CONTENTS, key)", l.bucket_key),
            ("offsetof(BUCKET_CONTENTS, data)", l.bucket_data),
            ("offsetof(ARRAY, num_elements)", l.array_count),
            ("offsetof(ARRAY, head)", l.array_head),
            ("offsetof(ARRAY_ELEMENT, ind)", l.element_index),
            ("offsetof(ARRAY_ELEMENT, value)", l.element_value),
            ("offsetof(ARRAY_ELEMENT, next)", l.element_next),
            ("att_array", l.att_array as usize),
            ("sizeof(arrayind_t)", 8),
            ("sizeof(((HASH_TABLE *)0)->nbuckets)", 4),
            ("sizeof(((SHELL_VAR *)0)->attributes)", 4),
        ];
        let cflags: Vec<String> = ["", "/include", "/builtins"]
            .iter()
            .map(|sub| format!("-I{}{sub}", include.display()))
            .collect();
        let checks: Vec<(&str, u64)> = checks.iter().map(|&(e, v)| (e, v as u64)).collect();
        let wrong = crate::layout_check::mismatches(
            "#include <config.h>\n#include <sys/types.h>\n#include <unistd.h>\n#include <stdint.h>\n\
             #include \"shell.h\"\n#include \"variables.h\"\n#include \"hashlib.h\"\n#include \"array.h\"",
            &cflags,
            &checks,
        );
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
