//! Python frames for events raised from CPython code. (Placeholder until the frame walker lands.)

/// Python frames kept per event.
pub const MAX_PY_FRAMES: usize = 32;
/// Bytes kept of a frame's file name and function name.
pub const FILE_CAP: usize = 256;
pub const FUNC_CAP: usize = 96;

#[derive(Clone, Copy)]
pub struct PyFrame {
    pub file: [u8; FILE_CAP],
    pub file_len: usize,
    pub function: [u8; FUNC_CAP],
    pub function_len: usize,
    pub line: i32,
}

impl PyFrame {
    pub fn file(&self) -> &[u8] {
        self.file.get(..self.file_len).unwrap_or(&[])
    }
    pub fn function(&self) -> &[u8] {
        self.function.get(..self.function_len).unwrap_or(&[])
    }
}

/// Python frames, innermost first.
pub struct PyStack {
    pub frames: [PyFrame; MAX_PY_FRAMES],
    pub len: usize,
    pub truncated: bool,
}

impl PyStack {
    pub fn frames(&self) -> &[PyFrame] {
        self.frames.get(..self.len).unwrap_or(&[])
    }
}

/// Finds the interpreter, if this process runs one. Constructor only.
pub fn init() {}

/// Fills `stack` with the calling thread's Python frames, or leaves it empty.
pub fn capture(stack: &mut PyStack) {
    stack.len = 0;
    stack.truncated = false;
}
