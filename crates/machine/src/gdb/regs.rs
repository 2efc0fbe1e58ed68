//! The vCPU's registers in gdb's x86-64 layout (`X86_64CoreRegs`) and
//! back: general registers, RIP, EFLAGS, segment selectors, x87 and SSE.
//!
//! It must not know how the registers reach gdb (the protocol) nor how an
//! engine holds them.

use gdbstub_arch::x86::reg::X86_64CoreRegs;
use kite_hypervisor::{Fpu, Regs, Sregs};

/// gdb's order of the 16 general registers: rax rbx rcx rdx rsi rdi rbp rsp r8..r15.
fn gdb_order(r: &Regs) -> [u64; 16] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}

/// The full x87 tag word from FXSAVE's abridged one: valid registers as
/// "valid" (00), the others "empty" (11).
fn full_tag_word(abridged: u8) -> u32 {
    (0..8)
        .map(|i| {
            if abridged & (1 << i) != 0 {
                0
            } else {
                3 << (2 * i)
            }
        })
        .sum()
}

/// The abridged tag word from a full one: anything not "empty" is valid.
fn abridged_tag_word(full: u32) -> u8 {
    (0..8)
        .filter(|i| (full >> (2 * i)) & 3 != 3)
        .fold(0, |acc, i| acc | (1 << i))
}

pub fn to_gdb(regs: &Regs, sregs: &Sregs, fpu: &Fpu) -> X86_64CoreRegs {
    let mut g = X86_64CoreRegs {
        regs: gdb_order(regs),
        rip: regs.rip,
        eflags: regs.rflags as u32,
        ..Default::default()
    };
    g.segments.cs = sregs.cs.selector.into();
    g.segments.ss = sregs.ss.selector.into();
    g.segments.ds = sregs.ds.selector.into();
    g.segments.es = sregs.es.selector.into();
    g.segments.fs = sregs.fs.selector.into();
    g.segments.gs = sregs.gs.selector.into();
    for (st, fpr) in g.st.iter_mut().zip(fpu.fpr.iter()) {
        st.copy_from_slice(&fpr[..10]);
    }
    g.fpu.fctrl = fpu.fcw.into();
    g.fpu.fstat = fpu.fsw.into();
    g.fpu.ftag = full_tag_word(fpu.ftwx);
    g.fpu.fioff = fpu.last_ip as u32;
    g.fpu.fooff = fpu.last_dp as u32;
    g.fpu.fop = fpu.last_opcode.into();
    for (x, xmm) in g.xmm.iter_mut().zip(fpu.xmm.iter()) {
        *x = u128::from_le_bytes(*xmm);
    }
    g.mxcsr = fpu.mxcsr;
    g
}

/// Apply what gdb wrote: general registers, RIP, EFLAGS, x87 and SSE.
/// Segment selectors are left alone: a selector without its descriptor
/// would change nothing the CPU uses.
pub fn from_gdb(g: &X86_64CoreRegs, regs: &mut Regs, fpu: &mut Fpu) {
    let r = &g.regs;
    regs.rax = r[0];
    regs.rbx = r[1];
    regs.rcx = r[2];
    regs.rdx = r[3];
    regs.rsi = r[4];
    regs.rdi = r[5];
    regs.rbp = r[6];
    regs.rsp = r[7];
    regs.r8 = r[8];
    regs.r9 = r[9];
    regs.r10 = r[10];
    regs.r11 = r[11];
    regs.r12 = r[12];
    regs.r13 = r[13];
    regs.r14 = r[14];
    regs.r15 = r[15];
    regs.rip = g.rip;
    // Bit 1 of EFLAGS always reads as one.
    regs.rflags = u64::from(g.eflags) | kite_hypervisor::x86::RFLAGS_FIXED;
    for (fpr, st) in fpu.fpr.iter_mut().zip(g.st.iter()) {
        fpr[..10].copy_from_slice(st);
    }
    fpu.fcw = g.fpu.fctrl as u16;
    fpu.fsw = g.fpu.fstat as u16;
    fpu.ftwx = abridged_tag_word(g.fpu.ftag);
    fpu.last_opcode = g.fpu.fop as u16;
    for (xmm, x) in fpu.xmm.iter_mut().zip(g.xmm.iter()) {
        *xmm = x.to_le_bytes();
    }
    fpu.mxcsr = g.mxcsr;
}

/// The x86-64 layout's system registers (`arch::SYSTEM_REGS` order).
pub fn system_to_gdb(s: &Sregs) -> [u64; 8] {
    [
        s.fs.base, s.gs.base, s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer,
    ]
}

/// What gdb wrote to the system registers.
pub fn system_from_gdb(g: &[u64; 8], s: &mut Sregs) {
    s.fs.base = g[0];
    s.gs.base = g[1];
    s.cr0 = g[2];
    s.cr2 = g[3];
    s.cr3 = g[4];
    s.cr4 = g[5];
    s.cr8 = g[6];
    s.efer = g[7];
}

/// After a write in gdb's i386 layout: the upper halves of the eight
/// registers it has, and R8-R15, as they were.
pub fn keep_high_halves(before: &Regs, after: &mut Regs) {
    let high = |old: u64, new: u64| (old & !0xffff_ffff) | (new & 0xffff_ffff);
    after.rax = high(before.rax, after.rax);
    after.rbx = high(before.rbx, after.rbx);
    after.rcx = high(before.rcx, after.rcx);
    after.rdx = high(before.rdx, after.rdx);
    after.rsi = high(before.rsi, after.rsi);
    after.rdi = high(before.rdi, after.rdi);
    after.rbp = high(before.rbp, after.rbp);
    after.rsp = high(before.rsp, after.rsp);
    after.rip = high(before.rip, after.rip);
    after.rflags = high(before.rflags, after.rflags);
    after.r8 = before.r8;
    after.r9 = before.r9;
    after.r10 = before.r10;
    after.r11 = before.r11;
    after.r12 = before.r12;
    after.r13 = before.r13;
    after.r14 = before.r14;
    after.r15 = before.r15;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_go_to_gdb_in_its_order_and_come_back() {
        let regs = Regs {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rsp: 7,
            rbp: 8,
            r15: 0xf00d,
            rip: 0x10_0000,
            rflags: 0x246,
            ..Regs::default()
        };
        let mut sregs = Sregs::default();
        sregs.cs.selector = 0x10;
        sregs.ss.selector = 0x18;
        let mut fpu = Fpu::default();
        fpu.xmm[3] = [0xab; 16];
        fpu.ftwx = 0b1000_0001;
        let g = to_gdb(&regs, &sregs, &fpu);
        assert_eq!(&g.regs[..8], &[1, 2, 3, 4, 5, 6, 8, 7], "rbp before rsp");
        assert_eq!(g.regs[15], 0xf00d);
        assert_eq!((g.rip, g.eflags), (0x10_0000, 0x246));
        assert_eq!((g.segments.cs, g.segments.ss), (0x10, 0x18));
        assert_eq!(g.xmm[3], u128::from_le_bytes([0xab; 16]));
        assert_eq!(g.fpu.ftag, 0x3ffc, "ST0 and ST7 valid, the rest empty");

        let (mut back, mut back_fpu) = (Regs::default(), Fpu::default());
        from_gdb(&g, &mut back, &mut back_fpu);
        assert_eq!(back, regs);
        assert_eq!(back_fpu.xmm, fpu.xmm);
        assert_eq!(back_fpu.ftwx, fpu.ftwx);
        assert_eq!(back_fpu.mxcsr, fpu.mxcsr);
    }
}
