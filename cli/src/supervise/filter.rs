//! The seccomp filter that `--supervise` installs in COMMAND: a classic BPF program that the
//! kernel runs on every system call of the tree, so it is kept to a handful of instructions.
//!
//! It sends to the supervisor only what can change a watched signal's action:
//!
//! - native `rt_sigaction` whose signal (the low 32 bits of the first argument, which is what
//!   the kernel reads: the parameter is an `int`) is watched and whose new action pointer is not
//!   null. Reading an action, or changing another signal, stays in the kernel (`ALLOW`);
//! - the signal system calls of the other ABIs the CPU can run (i386 `signal`, `sigaction` and
//!   `rt_sigaction`, x32 `rt_sigaction`; on arm64, 32-bit ARM), whatever their arguments: their
//!   numbers and layouts are not the native ones, so the supervisor does not decode them but says
//!   that they were let through unexamined, once per process;
//! - any other architecture value cannot happen on this CPU; should it, the process is killed
//!   rather than have its numbers read as native ones (the classic seccomp mistake).

use libc::sock_filter;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;
const LD_W_ABS: u16 = BPF_LD | BPF_W | BPF_ABS;
const JEQ_K: u16 = BPF_JMP | BPF_JEQ | BPF_K;
const RET_K: u16 = BPF_RET | BPF_K;

// Offsets in `struct seccomp_data` (little-endian: the low half of an argument comes first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;
const OFF_ARG1_LO: u32 = 24;
const OFF_ARG1_HI: u32 = 28;

/// The native ABI and the others this CPU runs, as the kernel names them in `seccomp_data`.
#[cfg(target_arch = "x86_64")]
pub mod abi {
    /// `AUDIT_ARCH_X86_64`.
    pub const NATIVE: u32 = 0xc000_003e;
    pub const RT_SIGACTION: u32 = 13;
    /// Native-arch numbers of another ABI: x32's `rt_sigaction` (`__X32_SYSCALL_BIT | 512`).
    pub const NATIVE_OTHER_ABI: &[u32] = &[0x4000_0000 | 512];
    /// `AUDIT_ARCH_I386`, and its `signal`, `sigaction`, `rt_sigaction`.
    pub const FOREIGN: u32 = 0x4000_0003;
    pub const FOREIGN_SIGNAL_CALLS: &[u32] = &[48, 67, 174];
    pub const FOREIGN_NAME: &str = "32-bit (i386 or x32)";
}

#[cfg(target_arch = "aarch64")]
pub mod abi {
    /// `AUDIT_ARCH_AARCH64`.
    pub const NATIVE: u32 = 0xc000_00b7;
    pub const RT_SIGACTION: u32 = 134;
    pub const NATIVE_OTHER_ABI: &[u32] = &[];
    /// `AUDIT_ARCH_ARM`, and its `sigaction`, `rt_sigaction`.
    pub const FOREIGN: u32 = 0x4000_0028;
    pub const FOREIGN_SIGNAL_CALLS: &[u32] = &[67, 174];
    pub const FOREIGN_NAME: &str = "32-bit ARM";
}

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// Where a jump goes: the next instruction, or a label.
#[derive(Clone, Copy)]
enum To {
    Next,
    Label(Label),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Native,
    Foreign,
    Watched,
    CheckActHigh,
    Notify,
    Allow,
    Kill,
}

/// A tiny assembler: instructions with jumps to labels, resolved at the end.
struct Asm {
    code: Vec<(u16, u32, To, To)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.code.len()));
    }
    fn load(&mut self, offset: u32) {
        self.code.push((LD_W_ABS, offset, To::Next, To::Next));
    }
    fn jeq(&mut self, k: u32, yes: To, no: To) {
        self.code.push((JEQ_K, k, yes, no));
    }
    fn ret(&mut self, k: u32) {
        self.code.push((RET_K, k, To::Next, To::Next));
    }
    fn finish(self) -> Vec<sock_filter> {
        let at = |l: Label| {
            self.labels
                .iter()
                .find(|(x, _)| *x == l)
                .map(|&(_, i)| i)
                .expect("every label used is placed")
        };
        self.code
            .iter()
            .enumerate()
            .map(|(i, &(code, k, yes, no))| {
                let rel = |t: To| -> u8 {
                    match t {
                        To::Next => 0,
                        To::Label(l) => {
                            let d = at(l) - i - 1;
                            u8::try_from(d).expect("the filter is short enough for 8-bit jumps")
                        }
                    }
                };
                sock_filter {
                    code,
                    jt: rel(yes),
                    jf: rel(no),
                    k,
                }
            })
            .collect()
    }
}

/// The program for a set of watched signals (each 1..=64, at most 64 of them).
pub fn build(watched: &[i32]) -> Vec<sock_filter> {
    use To::{Label as L, Next};
    let mut a = Asm {
        code: Vec::new(),
        labels: Vec::new(),
    };
    a.load(OFF_ARCH);
    a.jeq(abi::NATIVE, L(Label::Native), Next);
    a.jeq(abi::FOREIGN, L(Label::Foreign), L(Label::Kill));

    a.label(Label::Native);
    a.load(OFF_NR);
    a.jeq(abi::RT_SIGACTION, L(Label::Watched), Next);
    for &nr in abi::NATIVE_OTHER_ABI {
        a.jeq(nr, L(Label::Notify), Next);
    }
    a.ret(RET_ALLOW);

    a.label(Label::Watched);
    a.load(OFF_ARG0_LO);
    for &sig in watched {
        a.jeq(sig as u32, L(Label::CheckActHigh), Next);
    }
    a.ret(RET_ALLOW);
    // A watched signal: notify unless the new action pointer is null (a read).
    a.label(Label::CheckActHigh);
    a.load(OFF_ARG1_LO);
    a.jeq(0, Next, L(Label::Notify));
    a.load(OFF_ARG1_HI);
    a.jeq(0, L(Label::Allow), L(Label::Notify));

    a.label(Label::Foreign);
    a.load(OFF_NR);
    for &nr in abi::FOREIGN_SIGNAL_CALLS {
        a.jeq(nr, L(Label::Notify), Next);
    }
    a.label(Label::Allow);
    a.ret(RET_ALLOW);
    a.label(Label::Notify);
    a.ret(RET_USER_NOTIF);
    a.label(Label::Kill);
    a.ret(RET_KILL_PROCESS);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` as the kernel would on one system call (only the instructions we emit).
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            match ins.code {
                LD_W_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                JEQ_K => {
                    pc += 1 + if acc == ins.k { ins.jt } else { ins.jf } as usize;
                }
                RET_K => return ins.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const CHLD: u64 = libc::SIGCHLD as u64;

    #[test]
    fn only_a_new_action_for_a_watched_signal_is_sent() {
        let p = build(&[libc::SIGCHLD, libc::SIGPIPE]);
        let nr = abi::RT_SIGACTION;
        let native = abi::NATIVE;
        assert_eq!(
            run(&p, native, nr, [CHLD, 0x7ffd_0000, 0, 8, 0, 0]),
            RET_USER_NOTIF
        );
        assert_eq!(
            run(&p, native, nr, [13, 0x1000, 0, 8, 0, 0]),
            RET_USER_NOTIF
        );
        // A pointer above 4 GiB whose low half is zero is still a new action.
        assert_eq!(
            run(&p, native, nr, [CHLD, 0x7f00_0000_0000, 0, 8, 0, 0]),
            RET_USER_NOTIF
        );
        // Reading the action, another signal, another system call: not sent.
        assert_eq!(run(&p, native, nr, [CHLD, 0, 0x1000, 8, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, native, nr, [10, 0x1000, 0, 8, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, native, 39, [CHLD, 0x1000, 0, 0, 0, 0]), RET_ALLOW);
        // The kernel reads the signal as an int: high bits do not hide it.
        assert_eq!(
            run(&p, native, nr, [(1 << 32) | CHLD, 0x1000, 0, 8, 0, 0]),
            RET_USER_NOTIF
        );
    }

    #[test]
    fn other_abis_are_sent_and_unknown_architectures_killed() {
        let p = build(&[libc::SIGCHLD]);
        for &nr in abi::FOREIGN_SIGNAL_CALLS {
            assert_eq!(run(&p, abi::FOREIGN, nr, [0; 6]), RET_USER_NOTIF);
        }
        assert_eq!(run(&p, abi::FOREIGN, 20, [0; 6]), RET_ALLOW);
        // The native number of rt_sigaction means something else in the other ABI.
        if !abi::FOREIGN_SIGNAL_CALLS.contains(&abi::RT_SIGACTION) {
            assert_eq!(
                run(&p, abi::FOREIGN, abi::RT_SIGACTION, [CHLD, 1, 0, 8, 0, 0]),
                RET_ALLOW
            );
        }
        for &nr in abi::NATIVE_OTHER_ABI {
            assert_eq!(run(&p, abi::NATIVE, nr, [0; 6]), RET_USER_NOTIF);
        }
        assert_eq!(run(&p, 0x1234, 13, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn every_signal_can_be_watched() {
        let all: Vec<i32> = (1..=64).collect();
        let p = build(&all);
        for sig in 1..=64u64 {
            assert_eq!(
                run(&p, abi::NATIVE, abi::RT_SIGACTION, [sig, 1, 0, 8, 0, 0]),
                RET_USER_NOTIF
            );
        }
    }
}
