//! Script frames: which interpreter a process runs (Python, Perl, a shell), the frames read from
//! it (`python.rs`, `perl/`, `shell.rs`), and, when there are none, why ([`Missing`]).
//!
//! The Python reader finds its interpreter at the first event whose native stack runs it; the
//! Perl and shell readers find theirs once, in the constructor. Each reads it in a hook without
//! locks or allocation. A process runs at most one of them (an interpreter embedding another is
//! read as the outer one), so [`capture`] asks each in turn and the first that knows this
//! thread answers.

use crate::python::PyStack;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Language {
    /// No interpreter known in this process. Zero, so that a zeroed [`Missing`] is "nothing".
    None = 0,
    Python,
    Perl,
    Shell,
}

impl Language {
    /// The `language` field of the JSON records.
    pub fn name(self) -> &'static str {
        match self {
            Language::None => "",
            Language::Python => "python",
            Language::Perl => "perl",
            Language::Shell => "shell",
        }
    }

    /// For people: `Python stack`, `Perl stack`, `shell stack`.
    pub fn title(self) -> &'static str {
        match self {
            Language::None => "",
            Language::Python => "Python",
            Language::Perl => "Perl",
            Language::Shell => "shell",
        }
    }
}

/// Bytes kept of a version and of the sentence that says why frames are missing.
pub const VERSION_CAP: usize = 24;
pub const TEXT_CAP: usize = 240;

/// Why a process that runs an interpreter has no frames from it for one event: the JSON
/// `script_missing` object. All-zero bytes are "nothing missing" (it lives in a zeroed scratch
/// area).
pub struct Missing {
    pub language: Language,
    /// `5.36.0`; empty when unknown.
    pub version: [u8; VERSION_CAP],
    pub version_len: usize,
    /// A short code: `unsupported-version`, `unknown-layout`, `no-interpreter`, ...
    pub reason: Option<&'static str>,
    /// One line for people.
    pub text: [u8; TEXT_CAP],
    pub text_len: usize,
}

impl Missing {
    pub fn is_some(&self) -> bool {
        self.reason.is_some()
    }

    pub fn version(&self) -> &[u8] {
        self.version.get(..self.version_len).unwrap_or(&[])
    }

    pub fn text(&self) -> &[u8] {
        self.text.get(..self.text_len).unwrap_or(&[])
    }

    /// Says that `language` (at `version`) gave no frames, for `reason`, in words: `text` is a
    /// list of pieces written one after the other.
    pub fn set(
        &mut self,
        language: Language,
        version: &[u8],
        reason: &'static str,
        text: &[&[u8]],
    ) {
        self.language = language;
        self.reason = Some(reason);
        self.version_len = put(&mut self.version, &[version]);
        self.text_len = put(&mut self.text, text);
    }

    pub fn clear(&mut self) {
        self.language = Language::None;
        self.reason = None;
        self.version_len = 0;
        self.text_len = 0;
    }
}

/// Writes `pieces` into `out`, as much as fits; returns the length.
pub fn put(out: &mut [u8], pieces: &[&[u8]]) -> usize {
    let mut n = 0;
    for &b in pieces.iter().flat_map(|p| p.iter()) {
        match out.get_mut(n) {
            Some(slot) => *slot = b,
            None => break,
        }
        n += 1;
    }
    n
}

/// A version `major.minor.patch` as text, into `out`; returns the length.
pub fn write_version(out: &mut [u8; VERSION_CAP], parts: &[u32]) -> usize {
    let mut b = crate::buf::Buf::new(out);
    for (i, &p) in parts.iter().enumerate() {
        if i > 0 {
            b.byte(b'.');
        }
        b.dec(u64::from(p));
    }
    b.len()
}

/// Finds the calling thread's script frames: fills `stack` (innermost first) and returns the
/// language, or fills `missing` when the process runs an interpreter whose frames could not be
/// read. `native` is the event's native stack (return addresses), which tells whether this
/// thread runs Python. Python first: its reader also knows when the thread is not running it.
pub fn capture(stack: &mut PyStack, missing: &mut Missing, native: &[usize]) -> Language {
    missing.clear();
    // Empties `stack` whatever it finds.
    if crate::python::capture(stack, missing, native) {
        return Language::Python;
    }
    if crate::perl::runs() {
        crate::perl::capture(stack, missing);
        return Language::Perl;
    }
    if crate::shell::runs() {
        crate::shell::capture(stack, missing);
        return Language::Shell;
    }
    Language::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_said_in_pieces() {
        // SAFETY: all-zero bytes are a valid Missing (that is how the scratch area holds it).
        let mut m: Missing = unsafe { core::mem::zeroed() };
        assert!(!m.is_some());
        m.set(
            Language::Perl,
            b"5.40.0",
            "unsupported-version",
            &[b"Perl ", b"5.40.0", b": no Perl frames"],
        );
        assert!(m.is_some());
        assert_eq!(m.version(), b"5.40.0");
        assert_eq!(m.text(), b"Perl 5.40.0: no Perl frames");
        let mut v = [0u8; VERSION_CAP];
        let n = write_version(&mut v, &[5, 36, 0]);
        assert_eq!(&v[..n], b"5.36.0");
    }
}
