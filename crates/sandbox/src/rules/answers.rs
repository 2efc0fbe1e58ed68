//! Calls a filter answers with an error instead of allowing or trapping
//! them, put in front of the role's allow-list in the same BPF program (one
//! filter per role: every filter on a thread runs on each of its calls).
//! It knows the BPF encoding, not which role gets which answer.

use seccompiler::{sock_filter, BpfProgram};

// linux/bpf_common.h and linux/seccomp.h.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// `program` preceded by: on x86_64, each `(nr, action)` returns `action`
/// for system call `nr`; every other call (and any other architecture,
/// which `program` itself rejects) goes on to `program`.
pub(crate) fn prepend(answers: &[(libc::c_long, u32)], program: BpfProgram) -> BpfProgram {
    // At most a handful: the jump over them fits a u8.
    let skip = u8::try_from(1 + 2 * answers.len()).unwrap_or(u8::MAX);
    let mut out = vec![
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        jeq(AUDIT_ARCH_X86_64, 0, skip),
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR),
    ];
    for &(nr, action) in answers {
        out.push(jeq(nr as u32, 0, 1));
        out.push(stmt(BPF_RET_K, action));
    }
    out.extend(program);
    out
}

#[cfg(test)]
pub(crate) use tests::verdict;

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BPF interpreter for the instructions used here and by
    /// seccompiler (loads, JEQ/JGE/JGT/JSET with K, ALU AND, RET).
    fn run(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                8 | 12 => 0,
                o if (16..64).contains(&o) => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                _ => panic!("load at {off}"),
            }
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                0x20 => acc = word(i.k),
                0x06 => return i.k,
                0x15 | 0x35 | 0x25 | 0x45 => {
                    let t = match i.code {
                        0x15 => acc == i.k,
                        0x35 => acc >= i.k,
                        0x25 => acc > i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if t { i.jt } else { i.jf });
                }
                0x54 => acc &= i.k,
                0x05 => pc += i.k as usize,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    pub(crate) fn verdict(prog: &[sock_filter], nr: libc::c_long, args: [u64; 6]) -> u32 {
        run(prog, nr as u32, AUDIT_ARCH_X86_64, args)
    }

    #[test]
    fn answers_come_first_and_the_rest_falls_through() {
        let inner = vec![stmt(BPF_RET_K, 0x7fff_0000)]; // allow
        let prog = prepend(
            &[
                (libc::SYS_clone3, SECCOMP_RET_ERRNO | 38),
                (libc::SYS_openat, SECCOMP_RET_ERRNO | 13),
            ],
            inner,
        );
        assert_eq!(
            verdict(&prog, libc::SYS_clone3, [0; 6]),
            SECCOMP_RET_ERRNO | 38
        );
        assert_eq!(
            verdict(&prog, libc::SYS_openat, [0; 6]),
            SECCOMP_RET_ERRNO | 13
        );
        assert_eq!(verdict(&prog, libc::SYS_read, [0; 6]), 0x7fff_0000);
        // Another architecture skips the answers (the inner program decides).
        assert_eq!(
            run(&prog, libc::SYS_clone3 as u32, 0x4000_0003, [0; 6]),
            0x7fff_0000
        );
    }
}
