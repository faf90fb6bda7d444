//! A native backtrace of a thread stopped at a system call, taken from outside: the stack and
//! program counters from `/proc/TID/syscall`, memory through `/proc/TID/mem`, frames unwound by
//! `framehop` with each module's call-frame information (DWARF CFI from `.eh_frame` or
//! `.debug_frame`), and by frame pointers where a module has none. Frames are named from the
//! modules' symbol tables, as the library names them.
//!
//! Only the stack and program counters are known (`/proc` shows no other register), so the
//! frame pointer starts unknown. CFI needs it only once a function that uses it as its frame
//! base is reached with no callee having saved it; then the first frame record above the stack
//! pointer (a saved frame pointer that points further up the stack, followed by a return address
//! into code) is taken as that function's, and unwinding goes on from there.

use super::modules::{Module, Modules};
use super::tracee::{Mapping, Memory};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Unwinder};
use serde_json::{Value, json};
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
use framehop::x86_64::{CacheX86_64 as Cache, UnwindRegsX86_64 as Regs, UnwinderX86_64 as Walker};

#[cfg(target_arch = "aarch64")]
use framehop::aarch64::{
    CacheAarch64 as Cache, UnwindRegsAarch64 as Regs, UnwinderAarch64 as Walker,
};

/// The most frames kept, as in the library.
pub const MAX_FRAMES: usize = 64;
/// The frame pointer when it is not known: an address no stack has (a zero would read as the
/// outermost frame's, and end the walk as if it were complete).
const UNKNOWN_FP: u64 = u64::MAX - 7;
/// How much of the stack is read in one go, from the stack pointer up.
const STACK_WINDOW: u64 = 512 * 1024;

/// One native frame: the address, and where known its module file, offset and symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub addr: u64,
    pub module: Option<(Arc<str>, u64)>,
    pub build_id: Option<Arc<str>>,
    pub symbol: Option<(String, u64)>,
}

impl Frame {
    /// The record's shape: `addr`, and `module`, `build_id`, `offset`, `symbol` (`name+0xoff`)
    /// when known.
    pub fn to_json(&self) -> Value {
        let mut f = json!({"addr": format!("{:#x}", self.addr)});
        if let Some((module, offset)) = &self.module {
            f["module"] = json!(module.as_ref());
            if let Some(id) = &self.build_id {
                f["build_id"] = json!(id.as_ref());
            }
            f["offset"] = json!(format!("{offset:#x}"));
        }
        if let Some((name, off)) = &self.symbol {
            f["symbol"] = json!(format!("{name}+{off:#x}"));
        }
        f
    }
}

/// A process's executable mappings, each with its module file and load bias.
pub struct Layout {
    maps: Vec<Mapping>,
    mapped: Vec<(Mapping, Arc<str>, Arc<Module>, u64)>,
    walker: Walker<super::modules::Bytes>,
}

impl Layout {
    /// The layout of `maps`, with module files from `modules`.
    pub fn new(maps: Vec<Mapping>, modules: &mut Modules) -> Layout {
        let mut walker = Walker::new();
        let mut mapped = Vec::new();
        for m in maps.iter().filter(|m| m.executable) {
            let Some(module) = modules.get(&m.path) else {
                continue;
            };
            let Some(bias) = module.bias(m.start, m.offset) else {
                continue;
            };
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: module.text.clone(),
                got_svma: module.got.clone(),
                eh_frame_svma: module.eh_frame.as_ref().map(|s| s.svma.clone()),
                eh_frame: module.eh_frame.as_ref().map(|s| s.data.clone()),
                eh_frame_hdr_svma: module.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
                eh_frame_hdr: module.eh_frame_hdr.as_ref().map(|s| s.data.clone()),
                debug_frame: module.debug_frame.clone(),
                ..Default::default()
            };
            walker.add_module(framehop::Module::new(
                m.path.clone(),
                m.start..m.end,
                bias,
                info,
            ));
            mapped.push((m.clone(), Arc::from(m.path.as_str()), module, bias));
        }
        Layout {
            maps,
            mapped,
            walker,
        }
    }

    /// Names `addr` (a return address, or for the first frame the program counter, which at a
    /// system call is just past the instruction; either way the call is the byte before).
    pub fn frame(&self, addr: u64) -> Frame {
        let hit = self
            .mapped
            .iter()
            .find(|(m, ..)| (m.start..m.end).contains(&addr));
        let Some((_, path, module, bias)) = hit else {
            return Frame {
                addr,
                module: None,
                build_id: None,
                symbol: None,
            };
        };
        let offset = addr.wrapping_sub(*bias);
        let symbol = module
            .symbol(offset.saturating_sub(1))
            .map(|(name, off)| (name.to_string(), off + 1));
        Frame {
            addr,
            module: Some((path.clone(), offset)),
            build_id: module.build_id.clone(),
            symbol,
        }
    }

    /// Whether unwind information covers `addr`.
    fn has_cfi(&self, addr: u64) -> bool {
        self.mapped
            .iter()
            .find(|(m, ..)| (m.start..m.end).contains(&addr))
            .is_some_and(|(_, _, module, bias)| module.has_cfi(addr.wrapping_sub(*bias)))
    }

    fn in_code(&self, addr: u64) -> bool {
        self.maps
            .iter()
            .any(|m| m.executable && (m.start..m.end).contains(&addr))
    }

    /// The mapping holding `addr`.
    fn mapping(&self, addr: u64) -> Option<&Mapping> {
        self.maps.iter().find(|m| (m.start..m.end).contains(&addr))
    }

    /// The stack of a thread whose stack pointer is `sp` and program counter `pc`: the frames,
    /// innermost first, and whether more were cut.
    pub fn backtrace(&self, mem: &Memory, sp: u64, pc: u64) -> (Vec<Frame>, bool) {
        let stack = Window::read(mem, sp, self.mapping(sp).map_or(sp, |m| m.end));
        let start = FrameAddress::from_instruction_pointer(pc);
        let (mut addrs, mut ended) = self.walk(&stack, mem, start, sp, UNKNOWN_FP);
        // The walk failed before the outermost frame (each way on makes progress up the stack).
        while !ended && addrs.len() < MAX_FRAMES {
            let Some(&(last_pc, last_sp)) = addrs.last() else {
                break;
            };
            let last = match addrs.len() {
                1 => start,
                _ => FrameAddress::from_return_address(last_pc).unwrap_or(start),
            };
            // A frame with unwind information failed for want of the frame pointer: the frame
            // record above it is its own. A frame without (musl's libc is built so) has its
            // return address somewhere above it: the first word that points just past a call
            // instruction.
            let lookup = if addrs.len() == 1 {
                last_pc
            } else {
                last_pc - 1
            };
            let scanned = match self.has_cfi(lookup) {
                true => None,
                false => self.return_address_above(&stack, mem, last_sp),
            };
            if let Some(fp) = self.frame_record_above(&stack, last_sp)
                && scanned.is_none()
            {
                let (more, e) = self.walk(&stack, mem, last, last_sp, fp);
                if more.len() > 1 {
                    addrs.pop();
                    addrs.extend(more);
                    ended = e;
                    continue;
                }
            }
            let Some((at, ra)) = scanned else {
                break;
            };
            let (more, e) = self.walk(
                &stack,
                mem,
                FrameAddress::from_return_address(ra).unwrap_or(start),
                at + 8,
                UNKNOWN_FP,
            );
            addrs.extend(more);
            ended = e;
        }
        let truncated = addrs.len() > MAX_FRAMES;
        let frames = addrs
            .iter()
            .take(MAX_FRAMES)
            .map(|&(a, _)| self.frame(a))
            .collect();
        (frames, truncated)
    }

    /// The lowest stack slot at or above `sp` holding a return address: a word pointing into
    /// code just past a call instruction. Returns the slot and the address.
    fn return_address_above(&self, stack: &Window, mem: &Memory, sp: u64) -> Option<(u64, u64)> {
        let mut a = sp;
        while a + 8 <= stack.end() {
            let w = stack.word(a)?;
            if self.in_code(w) && follows_call(mem, w) {
                return Some((a, w));
            }
            a += 8;
        }
        None
    }

    /// Unwinds from `address` (the program counter, or a return address) and `sp` with frame
    /// pointer `fp`: each frame's address and the stack
    /// pointer in it, up to one frame more than [`MAX_FRAMES`]; and whether the walk reached
    /// the outermost frame (rather than failing, or being cut).
    fn walk(
        &self,
        stack: &Window,
        mem: &Memory,
        mut address: FrameAddress,
        sp: u64,
        fp: u64,
    ) -> (Vec<(u64, u64)>, bool) {
        let mut cache = Cache::new();
        let mut read = |addr: u64| stack.word(addr).or_else(|| read_word(mem, addr)).ok_or(());
        let pc = address.address();
        let mut regs = initial_regs(pc, sp, fp);
        let mut out = vec![(pc, sp)];
        while out.len() <= MAX_FRAMES {
            match self
                .walker
                .unwind_frame(address, &mut regs, &mut cache, &mut read)
            {
                Ok(Some(ra)) if self.in_code(ra) => {
                    out.push((ra, regs.sp()));
                    match FrameAddress::from_return_address(ra) {
                        Some(a) => address = a,
                        None => return (out, true),
                    }
                }
                Ok(None) | Ok(Some(0)) => return (out, true),
                _ => return (out, false),
            }
        }
        (out, false)
    }

    /// The lowest address at or above `sp` that holds a frame record: a saved frame pointer
    /// that points further up the same stack, followed by a return address into code.
    fn frame_record_above(&self, stack: &Window, sp: u64) -> Option<u64> {
        let mut a = sp;
        while a + 16 <= stack.end() {
            let saved = stack.word(a)?;
            let ret = stack.word(a + 8)?;
            if saved > a && saved < stack.end() && self.in_code(ret) {
                return Some(a);
            }
            a += 8;
        }
        None
    }
}

#[cfg(target_arch = "x86_64")]
fn initial_regs(pc: u64, sp: u64, fp: u64) -> Regs {
    Regs::new(pc, sp, fp)
}

#[cfg(target_arch = "aarch64")]
fn initial_regs(_pc: u64, sp: u64, fp: u64) -> Regs {
    // The link register is not known either (so a leaf function's caller is found only by the
    // scan for return addresses); the program counter is the frame address itself.
    Regs::new(0, sp, fp)
}

/// Whether the instruction before `ra` is a call: `call rel32`, or `call` through a register or
/// memory (opcode 0xff with /2), in its 2, 3, 6 and 7-byte forms.
#[cfg(target_arch = "x86_64")]
fn follows_call(mem: &Memory, ra: u64) -> bool {
    let mut b = [0u8; 7];
    if ra < 7 || !mem.read(ra - 7, &mut b) {
        return false;
    }
    let indirect = |at: usize| b[at] == 0xff && b[at + 1] & 0x38 == 0x10;
    b[2] == 0xe8 || indirect(5) || indirect(4) || indirect(1) || indirect(0)
}

/// Whether the instruction before `ra` is `bl` or `blr`.
#[cfg(target_arch = "aarch64")]
fn follows_call(mem: &Memory, ra: u64) -> bool {
    let mut b = [0u8; 4];
    if ra < 4 || !mem.read(ra - 4, &mut b) {
        return false;
    }
    let insn = u32::from_le_bytes(b);
    insn & 0xfc00_0000 == 0x9400_0000 || insn & 0xffff_fc1f == 0xd63f_0000
}

fn read_word(mem: &Memory, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    mem.read(addr, &mut b).then(|| u64::from_ne_bytes(b))
}

/// The part of the stack from the stack pointer up, read as far as it is used, in chunks
/// that double (most stacks are a few KiB deep; the mapping may be megabytes).
struct Window<'m> {
    mem: &'m Memory,
    start: u64,
    /// Where the stack's mapping ends, or how far we may read.
    limit: u64,
    bytes: std::cell::RefCell<Vec<u8>>,
}

impl<'m> Window<'m> {
    fn read(mem: &'m Memory, sp: u64, end: u64) -> Window<'m> {
        let limit = sp.saturating_add(end.saturating_sub(sp).min(STACK_WINDOW));
        Window {
            mem,
            start: sp,
            limit,
            bytes: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn end(&self) -> u64 {
        self.limit
    }

    fn word(&self, addr: u64) -> Option<u64> {
        let at = addr.checked_sub(self.start)? as usize;
        if addr.checked_add(8)? > self.limit {
            return None;
        }
        let mut bytes = self.bytes.borrow_mut();
        if bytes.len() < at + 8 {
            let want = (at + 8).max(bytes.len() * 2).max(4096);
            let want = want.min((self.limit - self.start) as usize);
            let have = bytes.len();
            bytes.resize(want, 0);
            let n = self
                .mem
                .read_some(self.start + have as u64, &mut bytes[have..]);
            bytes.truncate(have + n);
        }
        let b = bytes.get(at..at + 8)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }
}
