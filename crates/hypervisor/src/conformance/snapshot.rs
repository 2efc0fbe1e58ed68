//! Snapshot cases: a guest sets up state, stops at a checkpoint, its vCPU and
//! VM state are saved, a NEW VM gets the same memory and the saved state,
//! and both run on: the restored guest must end as the uninterrupted one
//! does. Each case is written for two engines (`*_between(from, to)`); the
//! conformance suite runs it with the same engine twice, the cross-engine
//! tests with two. Also: hostile state bytes are refused, state unchanged.

use iced_x86::code_asm::*;

use super::support::*;
use super::CaseResult;
use crate::x86::*;
use crate::{Hypervisor, VmConfig};

/// Port the guests report on.
const REPORT: u16 = 0x10;
/// Port interrupt handlers report on.
const ISR_PORT: u16 = 0x11;
/// Port of the checkpoint OUT: the test saves there.
const CHECKPOINT: u16 = 0x12;
/// Port of the checkpoint IN (answered with `IN_ANSWER`), for a save right
/// after an input exit.
const CHECKPOINT_IN: u16 = 0x13;
const IN_ANSWER: u64 = 0x5a;

fn config(irqchip: bool, pit: bool) -> VmConfig {
    VmConfig {
        irqchip,
        pit,
        vcpus: 1,
    }
}

/// Complete the last exit (kick, run: `Interrupted`), save the VM and the
/// vCPU, and build a VM on `to` with the same memory and the saved state.
pub fn save_and_restore(
    a: &mut TestVm,
    to: &dyn Hypervisor,
    config: &VmConfig,
) -> Result<TestVm, String> {
    a.vcpu.kick_handle().kick();
    let e = a.run(0)?;
    check_eq(
        e,
        Exit::Interrupted,
        "run after a kick (completes the exit)",
    )?;
    let vm_state = a.vm.save_state().ctx("Vm::save_state")?;
    let vcpu_state = a.vcpu.save_state().ctx("Vcpu::save_state")?;
    let mut b = TestVm::with_config(to, config)?;
    let ram = a.mem.read(0, RAM_SIZE as usize)?;
    b.mem.write(0, &ram)?;
    b.vm.restore_state(&vm_state).ctx("Vm::restore_state")?;
    b.vcpu
        .restore_state(&vcpu_state)
        .ctx("Vcpu::restore_state")?;
    Ok(b)
}

/// Values the long-mode guest puts in MSRs before the checkpoint.
const MSRS: [(u32, u64); 6] = [
    (MSR_STAR, 0x0023_0010_0000_0000),
    (MSR_LSTAR, 0xffff_ffff_8100_0000),
    (MSR_SYSCALL_MASK, 0x4700),
    (MSR_KERNEL_GS_BASE, 0xffff_8880_1234_0000),
    (MSR_IA32_SYSENTER_ESP, 0x1234_5000),
    (MSR_TSC_AUX, 0x7),
];

/// Long mode, all GPRs, XMM0-15, a three-deep x87 stack, MXCSR, syscall
/// MSRs and RFLAGS are set before the checkpoint (an IN, so the save comes
/// right after an input exit); after it the guest stores them to memory and
/// computes on: the restored run ends with the same registers and memory.
pub fn snapshot_long_mode_state(hv: &dyn Hypervisor) -> CaseResult {
    snapshot_long_mode_state_between(hv, hv)
}

pub fn snapshot_long_mode_state_between(from: &dyn Hypervisor, to: &dyn Hypervisor) -> CaseResult {
    let cfg = config(false, false);
    let mut a = TestVm::with_config(from, &cfg)?;
    a.load_code(64, CODE, |a| {
        for (index, value) in MSRS {
            a.mov(ecx, index)?;
            a.mov(eax, value as u32)?;
            a.mov(edx, (value >> 32) as u32)?;
            a.wrmsr()?;
        }
        // x87: 1, pi, log2(e) on the stack; SSE: XMMn from distinct GPR values.
        a.fninit()?;
        a.fld1()?;
        a.fldpi()?;
        a.fldl2e()?;
        a.mov(dword_ptr(DATA + 0xf00), 0x1fa0)?; // MXCSR: a non-default rounding
        a.ldmxcsr(dword_ptr(DATA + 0xf00))?;
        let regs = [
            rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15,
        ];
        for (i, r) in regs.iter().enumerate() {
            a.mov(
                *r,
                0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1) ^ 0xdead_0000,
            )?;
        }
        let xmms = [
            xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
            xmm14, xmm15,
        ];
        for (i, x) in xmms.iter().enumerate() {
            a.movq(*x, regs[i % regs.len()])?;
            a.pshufd(*x, *x, (0x1b ^ i) as u32)?;
        }
        a.cmp(rax, rbx)?; // RFLAGS: CF/SF from a compare
        a.mov(dx, CHECKPOINT_IN as u32)?;
        a.push(rax)?;
        a.in_(al, dx)?;
        // After the checkpoint: everything to memory, then compute on.
        a.mov(byte_ptr(DATA + 0xf08), al)?;
        a.pop(rax)?;
        a.pushfq()?;
        a.pop(qword_ptr(DATA + 0xf10))?;
        for (i, x) in xmms.iter().enumerate() {
            a.movdqu(xmmword_ptr(DATA + 16 * i as u64), *x)?;
        }
        a.fstp(qword_ptr(DATA + 0x100))?;
        a.fstp(qword_ptr(DATA + 0x108))?;
        a.fstp(qword_ptr(DATA + 0x110))?;
        a.stmxcsr(dword_ptr(DATA + 0x118))?;
        a.mov(qword_ptr(DATA + 0x200), rax)?;
        a.mov(qword_ptr(DATA + 0x208), rcx)?;
        a.mov(qword_ptr(DATA + 0x210), rdx)?;
        for (i, (index, _)) in MSRS.iter().enumerate() {
            a.mov(ecx, *index)?;
            a.rdmsr()?;
            a.mov(dword_ptr(DATA + 0x300 + 8 * i as u64), eax)?;
            a.mov(dword_ptr(DATA + 0x304 + 8 * i as u64), edx)?;
        }
        a.mov(rcx, qword_ptr(DATA + 0x208))?;
        a.mov(rdx, qword_ptr(DATA + 0x210))?;
        a.imul_2(rax, rbx)?;
        a.add(r15, r14)?;
        a.xor(r8, rsi)?;
        a.hlt()
    })?;
    a.long_mode(CODE)?;
    let mut sregs = a.vcpu.sregs().ctx("sregs")?;
    sregs.cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 |= CR0_MP;
    a.vcpu.set_sregs(&sregs).ctx("set_sregs (SSE on)")?;
    check_eq(
        a.run(IN_ANSWER)?,
        Exit::IoIn {
            port: CHECKPOINT_IN,
            size: 1,
            len: 1,
        },
        "checkpoint",
    )?;
    let mut b = save_and_restore(&mut a, to, &cfg)?;
    a.expect(0, Exit::Hlt, "end of the uninterrupted run")?;
    b.expect(0, Exit::Hlt, "end of the restored run")?;
    check_eq(b.regs()?, a.regs()?, "registers at the end")?;
    let (ma, mb) = (a.mem.read(DATA, 0x1000)?, b.mem.read(DATA, 0x1000)?);
    for (i, (x, y)) in ma.iter().zip(mb.iter()).enumerate() {
        if x != y {
            return Err(format!(
                "data byte {i:#x} differs: uninterrupted {x:#x}, restored {y:#x}"
            ));
        }
    }
    // And they are what the guest set before the checkpoint.
    check_eq(mb[0xf08], IN_ANSWER as u8, "the checkpoint IN's answer")?;
    for (i, (index, value)) in MSRS.iter().enumerate() {
        let at = 0x300 + 8 * i;
        let got = u64::from_le_bytes(mb[at..at + 8].try_into().map_err(|_| "slice")?);
        check_eq(got, *value, &format!("MSR {index:#x} read after restore"))?;
    }
    let pi = f64::from_le_bytes(mb[0x108..0x110].try_into().map_err(|_| "slice")?);
    check_eq(pi, std::f64::consts::PI, "ST(1) after restore")?;
    check_eq(
        u32::from_le_bytes(mb[0x118..0x11c].try_into().map_err(|_| "slice")?),
        0x1fa0,
        "MXCSR after restore",
    )
}

/// Protected mode with the irqchip: the guest programs the 8259 masks, its
/// LAPIC (TPR, SVR) and a one-shot LAPIC timer, and the PIT's channel 2,
/// then stops at the checkpoint with interrupts off. After the restore it
/// reads the masks, TPR and PIT status back, enables interrupts and waits:
/// the timer armed before the save fires in the restored VM.
pub fn snapshot_irqchip_state(hv: &dyn Hypervisor) -> CaseResult {
    snapshot_irqchip_state_between(hv, hv)
}

pub fn snapshot_irqchip_state_between(from: &dyn Hypervisor, to: &dyn Hypervisor) -> CaseResult {
    const ISR: u64 = CODE + 0x400;
    const VECTOR: u8 = 0x41;
    let cfg = config(true, true);
    let mut a = TestVm::with_config(from, &cfg)?;
    a.load_code(32, CODE, |a| {
        let mut idle = a.create_label();
        a.cli()?;
        for (port, value) in [
            (0x20, 0x11), // master ICW1-4, vectors 0x20-0x27
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11), // slave ICW1-4, vectors 0x28-0x2f
            (0xa1, 0x28),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xe5), // masks the guest will read back
            (0xa1, 0x7d),
            (0x61, 0x01), // PIT channel 2 gate on
        ] {
            a.mov(al, value)?;
            a.out(port, al)?;
        }
        // PIT channel 2: lobyte/hibyte, mode 2, count 0xffff.
        a.mov(al, 0xb4)?;
        a.out(0x43, al)?;
        a.mov(al, 0xff)?;
        a.out(0x42, al)?;
        a.out(0x42, al)?;
        // LAPIC: software enable, TPR 0x10, one-shot timer, divide by 1.
        a.mov(ebx, 0xfee0_0000u32)?;
        a.mov(dword_ptr(ebx + 0xf0), 0x1ff)?;
        a.mov(dword_ptr(ebx + 0x80), 0x10)?;
        a.mov(dword_ptr(ebx + 0x3e0), 0xb)?;
        a.mov(dword_ptr(ebx + 0x320), u32::from(VECTOR))?;
        a.mov(dword_ptr(ebx + 0x380), 5_000_000)?;
        a.mov(al, 1)?;
        a.out(CHECKPOINT as u32, al)?;
        // After the checkpoint: read back, then wait for the timer.
        a.in_(al, 0x21)?;
        a.out(REPORT as u32, al)?;
        a.in_(al, 0xa1)?;
        a.out(REPORT as u32, al)?;
        a.mov(eax, dword_ptr(ebx + 0x80))?;
        a.out(REPORT as u32, al)?;
        a.mov(eax, dword_ptr(ebx + 0x320))?;
        a.out(REPORT as u32, al)?;
        a.mov(al, 0xe8)?; // read-back: status of channel 2
        a.out(0x43, al)?;
        a.in_(al, 0x42)?;
        a.and(al, 0x3f)?;
        a.out(REPORT as u32, al)?;
        a.in_(al, 0x61)?;
        a.and(al, 0x0f)?;
        a.out(REPORT as u32, al)?;
        a.sti()?;
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })?;
    a.load_code(32, ISR, |a| {
        let mut stop = a.create_label();
        a.mov(al, u32::from(VECTOR))?;
        a.out(ISR_PORT as u32, al)?;
        a.cli()?;
        a.set_label(&mut stop)?;
        a.hlt()?;
        a.jmp(stop)
    })?;
    a.protected_mode(CODE)?;
    a.idt32_gate(VECTOR, ISR as u32)?;
    a.expect(0, Exit::out(CHECKPOINT, 1, &[1]), "checkpoint")?;
    let mut b = save_and_restore(&mut a, to, &cfg)?;
    let want = [
        Exit::out(REPORT, 1, &[0xe5]),
        Exit::out(REPORT, 1, &[0x7d]),
        Exit::out(REPORT, 1, &[0x10]),
        Exit::out(REPORT, 1, &[VECTOR]),
        Exit::out(REPORT, 1, &[0x34]),
        Exit::out(REPORT, 1, &[0x01]),
        Exit::out(ISR_PORT, 1, &[VECTOR]),
    ];
    for (t, who) in [(&mut a, "uninterrupted"), (&mut b, "restored")] {
        for (i, w) in want.iter().enumerate() {
            t.expect(0, w.clone(), &format!("{who} run, report {i}"))?;
        }
    }
    Ok(())
}

/// The PIT's channel 0 counting (mode 2, about 1 ms) and the 8259 set up
/// before the checkpoint, interrupts off; after the restore the guest
/// enables interrupts and the PIT's IRQ 0 reaches its handler.
pub fn snapshot_pit_interrupt(hv: &dyn Hypervisor) -> CaseResult {
    snapshot_pit_interrupt_between(hv, hv)
}

pub fn snapshot_pit_interrupt_between(from: &dyn Hypervisor, to: &dyn Hypervisor) -> CaseResult {
    const ISR: u64 = CODE + 0x100;
    let cfg = config(true, true);
    let mut a = TestVm::with_config(from, &cfg)?;
    a.mem
        .write(0x20 * 4, &[(ISR & 0xff) as u8, (ISR >> 8) as u8, 0, 0])?;
    a.load_code(16, CODE, |a| {
        let mut idle = a.create_label();
        a.cli()?;
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0x21, 0xfe),
            (0x43, 0x34),
            (0x40, 0xa9),
            (0x40, 0x04),
        ] {
            a.mov(al, value)?;
            a.out(port, al)?;
        }
        a.mov(al, 2)?;
        a.out(CHECKPOINT as u32, al)?;
        a.sti()?;
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })?;
    a.load_code(16, ISR, |a| {
        let mut stop = a.create_label();
        a.mov(al, 0x20)?;
        a.out(ISR_PORT as u32, al)?;
        a.cli()?;
        a.set_label(&mut stop)?;
        a.hlt()?;
        a.jmp(stop)
    })?;
    a.real_mode(CODE)?;
    a.expect(0, Exit::out(CHECKPOINT, 1, &[2]), "checkpoint")?;
    let mut b = save_and_restore(&mut a, to, &cfg)?;
    a.expect(
        0,
        Exit::out(ISR_PORT, 1, &[0x20]),
        "uninterrupted run: IRQ 0",
    )?;
    b.expect(0, Exit::out(ISR_PORT, 1, &[0x20]), "restored run: IRQ 0")
}

/// Truncated, wrong-magic, wrong-version and absurd-length states, and a
/// state that does not fit the VM (a local APIC for a VM without irqchip),
/// are refused with an error and leave the vCPU and VM as they were.
pub fn snapshot_hostile_state(hv: &dyn Hypervisor) -> CaseResult {
    let mut with_chip = TestVm::with_config(hv, &config(true, false))?;
    with_chip.long_mode(CODE)?;
    let good_vcpu = with_chip.vcpu.save_state().ctx("Vcpu::save_state")?;
    let good_vm = with_chip.vm.save_state().ctx("Vm::save_state")?;

    let mut t = TestVm::with_config(hv, &config(false, false))?;
    t.real_mode(CODE)?;
    let regs = t.regs()?;
    let sregs = t.vcpu.sregs().ctx("sregs")?;
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for n in [0, 4, 9, 10, good_vcpu.len() / 2, good_vcpu.len() - 1] {
        bad.push((format!("first {n} bytes"), good_vcpu[..n].to_vec()));
    }
    let mut magic = good_vcpu.clone();
    magic[0] ^= 0xff;
    bad.push(("wrong magic".into(), magic));
    let mut version = good_vcpu.clone();
    version[8] = version[8].wrapping_add(1);
    bad.push(("wrong version".into(), version));
    let mut trailing = good_vcpu.clone();
    trailing.extend_from_slice(&[0; 3]);
    bad.push(("trailing bytes".into(), trailing));
    bad.push(("a VM state".into(), good_vm.clone()));
    bad.push(("all ones".into(), vec![0xff; good_vcpu.len()]));
    // An absurd MSR count where the list begins.
    let mut absurd = Vec::new();
    let s = crate::state::VcpuState::from_bytes(&good_vcpu).ctx("decode")?;
    let mut none = s.clone();
    none.msrs.clear();
    let mut one = s.clone();
    one.msrs = vec![(MSR_STAR, 1)];
    let (b0, b1) = (none.to_bytes(), one.to_bytes());
    if let Some(at) = b0.iter().zip(b1.iter()).position(|(x, y)| x != y) {
        absurd = b0.clone();
        absurd[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    bad.push(("an MSR count of 2^32-1".into(), absurd));
    bad.push(("a LAPIC for a VM without irqchip".into(), good_vcpu.clone()));
    for (what, bytes) in &bad {
        if t.vcpu.restore_state(bytes).is_ok() {
            return Err(format!("Vcpu::restore_state accepted {what}"));
        }
        check_eq(t.regs()?, regs, &format!("registers after refusing {what}"))?;
        check_eq(
            t.vcpu.sregs().ctx("sregs")?,
            sregs,
            &format!("sregs after refusing {what}"),
        )?;
    }
    if t.vm.restore_state(&good_vm).is_ok() {
        return Err("Vm::restore_state accepted an irqchip state for a VM without one".into());
    }
    for n in [0, 8, good_vm.len() - 1] {
        if with_chip.vm.restore_state(&good_vm[..n]).is_ok() {
            return Err(format!("Vm::restore_state accepted the first {n} bytes"));
        }
    }
    check_eq(
        with_chip.vm.save_state().ctx("Vm::save_state")?.len(),
        good_vm.len(),
        "VM state after refusals",
    )?;
    // The good states still restore.
    with_chip
        .vcpu
        .restore_state(&good_vcpu)
        .ctx("Vcpu::restore_state of a good state")?;
    with_chip
        .vm
        .restore_state(&good_vm)
        .ctx("Vm::restore_state of a good state")
}
