//! The conformance cases. Each builds a small guest, runs it and checks what a
//! user of the API would check. Guests stay small and simple: some engines
//! emulate every instruction, and some cannot return from interrupts (IRET),
//! so no case depends on IRET.

use std::thread;
use std::time::Duration;

use iced_x86::code_asm::*;

use super::support::*;
use super::CaseResult;
use crate::x86::*;
use crate::{DescriptorTable, Event, Fpu, GuestDebug, Hypervisor, MemoryRegion, Msi, Regs};

/// Port the guests use to report progress.
const REPORT: u16 = 0x10;
/// Port interrupt handlers write their vector to.
const ISR_PORT: u16 = 0x11;
/// An address no slot backs.
const MMIO: u64 = 0x1000_0000;

pub use super::snapshot::{
    snapshot_hostile_state, snapshot_irqchip_state, snapshot_long_mode_state,
    snapshot_pit_interrupt,
};

/// OUT of 1, 2 and 4 bytes: the exit names the port, the access size and the
/// bytes in little-endian order.
pub fn port_out_sizes(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        a.mov(al, 0x12)?;
        a.out(0x10, al)?;
        a.mov(dx, 0x3f8)?;
        a.mov(ax, 0x3456)?;
        a.out(dx, ax)?;
        a.mov(dx, 0xcfc)?;
        a.mov(eax, 0x789a_bcde)?;
        a.out(dx, eax)?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.expect(0, Exit::out(0x10, 1, &[0x12]), "out 0x10, al")?;
    t.expect(0, Exit::out(0x3f8, 2, &[0x56, 0x34]), "out dx, ax")?;
    t.expect(
        0,
        Exit::out(0xcfc, 4, &[0xde, 0xbc, 0x9a, 0x78]),
        "out dx, eax",
    )?;
    t.expect(0, Exit::Hlt, "hlt")
}

/// IN of 1, 2 and 4 bytes: the data the test fills lands in AL/AX/EAX, the
/// rest of the register is kept (or zeroed for 32-bit writes in 64-bit mode).
pub fn port_in_sizes(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        a.in_(al, 0x60)?;
        a.mov(ebx, eax)?;
        a.mov(dx, 0x1f0)?;
        a.in_(ax, dx)?;
        a.mov(ecx, eax)?;
        a.in_(eax, dx)?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    let mut regs = t.regs()?;
    regs.rax = 0x1122_3344;
    t.vcpu.set_regs(&regs).ctx("set_regs")?;
    t.expect(
        0xab,
        Exit::IoIn {
            port: 0x60,
            size: 1,
            len: 1,
        },
        "in al, 0x60",
    )?;
    t.expect(
        0xbeef,
        Exit::IoIn {
            port: 0x1f0,
            size: 2,
            len: 2,
        },
        "in ax, dx",
    )?;
    t.expect(
        0xcafe_f00d,
        Exit::IoIn {
            port: 0x1f0,
            size: 4,
            len: 4,
        },
        "in eax, dx",
    )?;
    t.expect(0, Exit::Hlt, "hlt")?;
    let r = t.regs()?;
    check_eq(r.rbx, 0x1122_33ab, "EBX (AL from in al)")?;
    check_eq(r.rcx, 0x1122_beef, "ECX (AX from in ax)")?;
    check_eq(r.rax, 0xcafe_f00d, "EAX (in eax)")
}

/// REP OUTSB: with CX=1 exactly one byte leaves in one exit; with CX=3 the
/// three bytes leave in order (in one or several exits), each of size 1; SI and
/// CX advance as the instruction says.
pub fn string_out(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.mem.write(DATA, b"KITE")?;
    t.load_code(16, CODE, |a| {
        a.cld()?;
        a.mov(si, DATA as u32)?;
        a.mov(dx, 0xe9)?;
        a.mov(cx, 1)?;
        a.rep().outsb()?;
        a.mov(cx, 3)?;
        a.rep().outsb()?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.expect(0, Exit::out(0xe9, 1, b"K"), "rep outsb with CX=1")?;
    let mut rest = Vec::new();
    loop {
        match t.run(0)? {
            Exit::IoOut {
                port: 0xe9,
                size: 1,
                data,
            } => rest.extend(data),
            Exit::Hlt => break,
            other => return Err(format!("rep outsb with CX=3: unexpected exit {other:x?}")),
        }
        if rest.len() > 3 {
            return Err(format!("rep outsb with CX=3 wrote too much: {rest:?}"));
        }
    }
    check_eq(
        rest.as_slice(),
        b"ITE".as_slice(),
        "bytes of rep outsb with CX=3",
    )?;
    let r = t.regs()?;
    check_eq(r.rsi & 0xffff, DATA + 4, "SI after the string writes")?;
    check_eq(r.rcx & 0xffff, 0, "CX after rep")
}

/// REP INSB with CX=4: the bytes the test supplies (in one or several exits,
/// each of size 1) land in memory at ES:DI in order; DI and CX advance.
pub fn string_in(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        a.cld()?;
        a.mov(di, DATA as u32)?;
        a.mov(dx, 0x60)?;
        a.mov(cx, 4)?;
        a.rep().insb()?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    let mut supplied = Vec::new();
    loop {
        let value = 0x41 + supplied.len() as u64;
        match t.run(value)? {
            Exit::IoIn {
                port: 0x60,
                size: 1,
                len,
            } => supplied.extend(std::iter::repeat_n(value as u8, len)),
            Exit::Hlt => break,
            other => return Err(format!("rep insb: unexpected exit {other:x?}")),
        }
        if supplied.len() > 4 {
            return Err(format!("rep insb read too much: {supplied:?}"));
        }
    }
    check_eq(supplied.len(), 4, "bytes read by rep insb with CX=4")?;
    check_eq(t.mem.read(DATA, 4)?, supplied, "memory written by rep insb")?;
    let r = t.regs()?;
    check_eq(r.rdi & 0xffff, DATA + 4, "DI after rep insb")?;
    check_eq(r.rcx & 0xffff, 0, "CX after rep insb")
}

/// Writes of 1, 2, 4 and 8 bytes and reads of 8 and 4 bytes to an address no
/// slot backs, in 64-bit mode: exits carry address, size and data; read data
/// lands in the destination register.
pub fn mmio_write_read(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(64, CODE, |a| {
        a.mov(rbx, MMIO)?;
        a.mov(byte_ptr(rbx), 0x11)?;
        a.mov(word_ptr(rbx + 2), 0x2233)?;
        a.mov(dword_ptr(rbx + 4), 0x4455_6677)?;
        a.mov(rax, 0x8899_aabb_ccdd_eeffu64)?;
        a.mov(qword_ptr(rbx + 8), rax)?;
        a.mov(rcx, qword_ptr(rbx + 16))?;
        a.mov(rdx, -1i64)?;
        a.mov(edx, dword_ptr(rbx + 0x24))?;
        a.hlt()
    })?;
    t.long_mode(CODE)?;
    t.expect(
        0,
        Exit::MmioWrite {
            addr: MMIO,
            data: vec![0x11],
        },
        "byte write",
    )?;
    t.expect(
        0,
        Exit::MmioWrite {
            addr: MMIO + 2,
            data: vec![0x33, 0x22],
        },
        "word write",
    )?;
    t.expect(
        0,
        Exit::MmioWrite {
            addr: MMIO + 4,
            data: 0x4455_6677u32.to_le_bytes().to_vec(),
        },
        "dword write",
    )?;
    t.expect(
        0,
        Exit::MmioWrite {
            addr: MMIO + 8,
            data: 0x8899_aabb_ccdd_eeffu64.to_le_bytes().to_vec(),
        },
        "qword write",
    )?;
    t.expect(
        0x0123_4567_89ab_cdef,
        Exit::MmioRead {
            addr: MMIO + 16,
            len: 8,
        },
        "qword read",
    )?;
    t.expect(
        0xfeed_face,
        Exit::MmioRead {
            addr: MMIO + 0x24,
            len: 4,
        },
        "dword read",
    )?;
    t.expect(0, Exit::Hlt, "hlt")?;
    let r = t.regs()?;
    check_eq(r.rcx, 0x0123_4567_89ab_cdef, "RCX (qword read)")?;
    check_eq(r.rdx, 0xfeed_face, "RDX (dword read zero-extends)")
}

/// A read-only slot: reads see its bytes, writes leave as MMIO writes and do
/// not change the memory.
pub fn readonly_memory(hv: &dyn Hypervisor) -> CaseResult {
    const ROM: u64 = 0x50_0000;
    let mut t = TestVm::new(hv, false)?;
    let rom = GuestMemory::new(0x1000)?;
    rom.write(0, &0x1122_3344_5566_7788u64.to_le_bytes())?;
    let region = MemoryRegion {
        slot: 2,
        guest_phys_addr: ROM,
        size: rom.size(),
        host_addr: rom.host_addr(),
        readonly: true,
        log_dirty: false,
    };
    // SAFETY: `rom` outlives the VM's use of it: the slot is deleted below.
    unsafe { t.vm.set_memory_region(region) }.ctx("set_memory_region (read-only)")?;
    t.load_code(32, CODE, |a| {
        a.mov(ebx, ROM as u32)?;
        a.mov(eax, dword_ptr(ebx))?;
        a.mov(dword_ptr(ebx + 4), 0xdead_beefu32)?;
        a.hlt()
    })?;
    t.protected_mode(CODE)?;
    let result = (|| {
        t.expect(
            0,
            Exit::MmioWrite {
                addr: ROM + 4,
                data: 0xdead_beefu32.to_le_bytes().to_vec(),
            },
            "write to ROM",
        )?;
        t.expect(0, Exit::Hlt, "hlt")?;
        check_eq(t.regs()?.rax, 0x5566_7788, "EAX read from ROM")?;
        check_eq(
            rom.read(4, 4)?,
            0x1122_3344u32.to_le_bytes().to_vec(),
            "ROM bytes after the write",
        )
    })();
    // SAFETY: deleting the slot (size 0) touches no memory.
    unsafe { t.vm.set_memory_region(MemoryRegion { size: 0, ..region }) }.ctx("delete ROM slot")?;
    result
}

/// HLT without an irqchip is an exit, with RIP after the HLT.
pub fn hlt_without_irqchip(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        a.nop()?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.expect(0, Exit::Hlt, "hlt")?;
    check_eq(t.regs()?.rip, CODE + 2, "RIP after hlt")
}

/// set_regs then regs returns every field as set.
pub fn regs_round_trip(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    let mut regs = Regs::default();
    let gprs: [u64; 16] = std::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1));
    regs.set_gprs(&gprs);
    regs.rip = 0x1234;
    regs.rflags =
        RFLAGS_FIXED | RFLAGS_CF | RFLAGS_PF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF | RFLAGS_DF;
    t.vcpu.set_regs(&regs).ctx("set_regs")?;
    check_eq(t.regs()?, regs, "regs after set_regs")
}

/// set_sregs (long mode) then sregs returns the segments, tables and control
/// registers as set.
pub fn sregs_round_trip(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.write_page_tables()?;
    let mut want = t.long_mode_sregs()?;
    want.idt = DescriptorTable {
        base: IDT,
        limit: 0xfff,
    };
    want.cr2 = 0xdead_b000;
    t.vcpu.set_sregs(&want).ctx("set_sregs")?;
    let got = t.vcpu.sregs().ctx("sregs")?;
    check_eq(got.cs, want.cs, "CS")?;
    check_eq(got.ds, want.ds, "DS")?;
    check_eq(got.es, want.es, "ES")?;
    check_eq(got.fs, want.fs, "FS")?;
    check_eq(got.gs, want.gs, "GS")?;
    check_eq(got.ss, want.ss, "SS")?;
    check_eq(got.tr, want.tr, "TR")?;
    check_eq(got.gdt, want.gdt, "GDTR")?;
    check_eq(got.idt, want.idt, "IDTR")?;
    check_eq(got.cr0, want.cr0, "CR0")?;
    check_eq(got.cr2, want.cr2, "CR2")?;
    check_eq(got.cr3, want.cr3, "CR3")?;
    check_eq(got.cr4, want.cr4, "CR4")?;
    check_eq(
        got.efer & (EFER_LME | EFER_LMA),
        EFER_LME | EFER_LMA,
        "EFER.LME/LMA",
    )
}

/// set_fpu then fpu returns x87 stack, control/status, tags and SSE state.
pub fn fpu_round_trip(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    let mut want = Fpu {
        fcw: 0x027f,
        fsw: 0x3800,
        ftwx: 0x80,
        mxcsr: 0x1fa0,
        ..Default::default()
    };
    // ST7 physical register 7 holds 1.0 (80-bit: exponent 0x3fff, mantissa 1<<63).
    want.fpr[7][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
    for (i, x) in want.xmm.iter_mut().enumerate() {
        *x = std::array::from_fn(|j| (i * 16 + j) as u8);
    }
    t.vcpu.set_fpu(&want).ctx("set_fpu")?;
    let got = t.vcpu.fpu().ctx("fpu")?;
    let checks = [
        check_eq(got.fcw, want.fcw, "FCW"),
        check_eq(got.fsw, want.fsw, "FSW"),
        check_eq(got.ftwx, want.ftwx, "FTW (abridged)"),
        check_eq(got.mxcsr, want.mxcsr, "MXCSR"),
        check_eq(
            got.fpr[7][..10].to_vec(),
            want.fpr[7][..10].to_vec(),
            "ST register 7",
        ),
        check_eq(got.xmm, want.xmm, "XMM0-15"),
    ];
    let errors: Vec<String> = checks.into_iter().filter_map(|c| c.err()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// set_msrs then msrs returns the values, for the MSRs a kernel sets at boot.
pub fn msrs_round_trip(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    let want = [
        (MSR_IA32_SYSENTER_CS, 0x10),
        (MSR_IA32_SYSENTER_ESP, 0x1234_5000),
        (MSR_IA32_SYSENTER_EIP, 0xffff_8000_1234_5678),
        (MSR_STAR, 0x0023_0010_0000_0000),
        (MSR_LSTAR, 0xffff_ffff_8100_0000),
        (MSR_CSTAR, 0xffff_ffff_8100_1000),
        (MSR_SYSCALL_MASK, 0x4700),
        (MSR_KERNEL_GS_BASE, 0xffff_8880_0000_0000),
        (MSR_IA32_CR_PAT, 0x0007_0406_0007_0406),
    ];
    t.vcpu.set_msrs(&want).ctx("set_msrs")?;
    let indices: Vec<u32> = want.iter().map(|(i, _)| *i).collect();
    let got = t.vcpu.msrs(&indices).ctx("msrs")?;
    check_eq(got, want.to_vec(), "MSR values")
}

/// Reading an MSR no x86 CPU has is an error, not a silent zero.
pub fn unknown_msr_is_an_error(hv: &dyn Hypervisor) -> CaseResult {
    let t = TestVm::new(hv, false)?;
    match t.vcpu.msrs(&[MSR_IA32_TSC, 0x0bad_0bad]) {
        Ok(v) => Err(format!("reading MSR 0x0bad0bad succeeded: {v:x?}")),
        Err(_) => Ok(()),
    }
}

/// The guest's CPUID returns what set_cpuid gave: the vendor string of leaf 0
/// and an APIC id placed in leaf 1 EBX[31:24].
pub fn cpuid_seen_by_guest(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    let mut cpuid = hv.supported_cpuid().ctx("supported_cpuid")?;
    let leaf0 = *cpuid
        .iter()
        .find(|e| e.function == 0)
        .ok_or("supported_cpuid has no leaf 0")?;
    let leaf1 = cpuid
        .iter_mut()
        .find(|e| e.function == 1)
        .ok_or("supported_cpuid has no leaf 1")?;
    leaf1.ebx = (leaf1.ebx & 0x00ff_ffff) | (7 << 24);
    t.vcpu.set_cpuid(&cpuid).ctx("set_cpuid")?;
    t.load_code(16, CODE, |a| {
        a.xor(eax, eax)?;
        a.cpuid()?;
        a.mov(esi, ebx)?;
        a.mov(edi, ecx)?;
        a.mov(ebp, edx)?;
        a.mov(eax, 1)?;
        a.cpuid()?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.expect(0, Exit::Hlt, "hlt")?;
    let r = t.regs()?;
    check_eq(r.rsi as u32, leaf0.ebx, "CPUID.0 EBX")?;
    check_eq(r.rbp as u32, leaf0.edx, "CPUID.0 EDX")?;
    check_eq(r.rdi as u32, leaf0.ecx, "CPUID.0 ECX")?;
    check_eq((r.rbx >> 24) & 0xff, 7, "CPUID.1 EBX[31:24] (APIC id)")
}

/// A loop of 64-bit arithmetic; the results are read from the registers.
pub fn loop_in_long_mode(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(64, CODE, |a| {
        let mut top = a.create_label();
        a.xor(eax, eax)?;
        a.mov(ecx, 1000)?;
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.imul_3(rdx, rax, 3)?;
        a.mov(r8, 0x0123_4567_89ab_cdefu64)?;
        a.ror(r8, 8)?;
        a.mov(r9, 0x1_0000_0000u64)?;
        a.shl(r9, 4)?;
        a.hlt()
    })?;
    t.long_mode(CODE)?;
    t.expect(0, Exit::Hlt, "hlt")?;
    let r = t.regs()?;
    check_eq(r.rax, 500_500, "RAX = sum 1..=1000")?;
    check_eq(r.rcx, 0, "RCX after the loop")?;
    check_eq(r.rdx, 1_501_500, "RDX = RAX * 3")?;
    check_eq(r.r8, 0xef01_2345_6789_abcd, "R8 rotated")?;
    check_eq(r.r9, 0x10_0000_0000, "R9 shifted")
}

/// A subroutine at `CALLS` (64-bit): R8D = the sum of 20 calls of RSI's
/// target (each returns a value in EAX). Every call comes from the same
/// instruction, so an engine that caches where that call went is tested.
const CALLS: u64 = CODE + 0x600;

fn load_calls(t: &TestVm) -> CaseResult {
    t.load_code(64, CALLS, |a| {
        let mut top = a.create_label();
        a.mov(ecx, 20)?;
        a.xor(r8d, r8d)?;
        a.set_label(&mut top)?;
        a.call(rsi)?;
        a.add(r8d, eax)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.ret()
    })?;
    Ok(())
}

/// Code written by the guest runs as written: functions called many times
/// (in the caller's page and in another page) are patched and called again
/// from the same call instruction, and an instruction patches the one right
/// after it.
pub fn self_modifying_code(hv: &dyn Hypervisor) -> CaseResult {
    const NEAR: u64 = CODE + 0x800;
    const FAR: u64 = 0x1_0000;
    const SELF: u64 = 0x1_1000;
    let mut t = TestVm::new(hv, false)?;
    let func = |value: u32| {
        move |a: &mut CodeAssembler| {
            a.mov(eax, value)?;
            a.ret()
        }
    };
    t.load_code(64, NEAR, func(0x1111))?;
    t.load_code(64, FAR, func(0x2222))?;
    // `mov byte [SELF + 9], 0x77` is 8 bytes; `mov al, 0x11` follows it,
    // its immediate at SELF + 9.
    let patcher = t.load_code(64, SELF, |a| {
        a.mov(byte_ptr(SELF as u32 + 9), 0x77)?;
        a.mov(al, 0x11)?;
        a.ret()
    })?;
    check_eq(&patcher[8..10], &[0xb0, 0x11][..], "patcher layout")?;
    load_calls(&t)?;
    t.load_code(64, CODE, |a| {
        // Call, patch the immediate (bytes 1..5 of `mov eax, imm32`), call.
        for (func, patch, before, after) in [(NEAR, 0x3333, ebx, edi), (FAR, 0x4444, r9d, ebp)] {
            a.mov(esi, func as u32)?;
            a.call(CALLS)?;
            a.mov(before, r8d)?;
            a.mov(dword_ptr(func as u32 + 1), patch)?;
            a.call(CALLS)?;
            a.mov(after, r8d)?;
        }
        a.mov(eax, SELF as u32)?;
        a.call(rax)?;
        a.movzx(edx, al)?;
        a.hlt()
    })?;
    t.long_mode(CODE)?;
    t.expect(0, Exit::Hlt, "hlt")?;
    let r = t.regs()?;
    check_eq(r.rbx, 20 * 0x1111, "20 calls of the near function")?;
    check_eq(r.r9, 20 * 0x2222, "20 calls of the far function")?;
    check_eq(r.rdi, 20 * 0x3333, "near function after patching")?;
    check_eq(r.rbp, 20 * 0x4444, "far function after patching")?;
    check_eq(r.rdx, 0x77, "instruction patched by the one before it")
}

/// Code reached through a linear address follows the page tables: after
/// the mapping of a code page changes (INVLPG, then a CR3 reload), the same
/// call instruction runs the code of the new physical page.
pub fn remapped_code_page(hv: &dyn Hypervisor) -> CaseResult {
    const PDPT2: u64 = 0xa000;
    const PD2: u64 = 0xb000;
    const PT2: u64 = 0xc000;
    const PAGES: [u64; 3] = [0x1_2000, 0x1_3000, 0x1_4000];
    let mut t = TestVm::new(hv, false)?;
    t.long_mode(CODE)?;
    t.mem.write_u64(PML4 + 8, PDPT2 | 0x3)?;
    t.mem.write_u64(PDPT2, PD2 | 0x3)?;
    t.mem.write_u64(PD2, PT2 | 0x3)?;
    t.mem.write_u64(PT2, PAGES[0] | 0x3)?;
    for (i, &page) in PAGES.iter().enumerate() {
        let code = assemble(64, HIGH_VA, |a| {
            a.mov(eax, 10 * (i as u32 + 1))?;
            a.ret()
        })?;
        t.mem.write(page, &code)?;
    }
    load_calls(&t)?;
    t.load_code(64, CODE, |a| {
        a.mov(rsi, HIGH_VA)?;
        a.call(CALLS)?;
        a.mov(ebx, r8d)?;
        a.mov(rax, PAGES[1] | 0x3)?;
        a.mov(qword_ptr(PT2 as u32), rax)?;
        a.invlpg(byte_ptr(rsi))?;
        a.call(CALLS)?;
        a.mov(edx, r8d)?;
        a.mov(rax, PAGES[2] | 0x3)?;
        a.mov(qword_ptr(PT2 as u32), rax)?;
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.call(CALLS)?;
        a.mov(edi, r8d)?;
        a.hlt()
    })?;
    t.expect(0, Exit::Hlt, "hlt")?;
    let r = t.regs()?;
    check_eq(r.rbx, 20 * 10, "20 calls through the first mapping")?;
    check_eq(r.rdx, 20 * 20, "20 calls after INVLPG")?;
    check_eq(r.rdi, 20 * 30, "20 calls after a CR3 reload")
}

/// The guest itself goes real -> protected -> long mode (LGDT, CR0.PE, far
/// jump, CR4.PAE, CR3, EFER.LME, CR0.PG, far jump) and reports at each step.
pub fn mode_switch_by_guest(hv: &dyn Hypervisor) -> CaseResult {
    const PM32: u64 = CODE + 0x100;
    const LM64: u64 = CODE + 0x200;
    let mut t = TestVm::new(hv, false)?;
    t.write_gdt()?;
    t.write_page_tables()?;
    t.load_code(16, CODE, |a| {
        a.cli()?;
        a.lgdt(ptr(GDT as u32 + 0x40))?;
        a.mov(al, 1)?;
        a.out(REPORT as u32, al)?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        // jmp far SEL_CODE32:PM32 (ptr16:16)
        let [lo, hi, ..] = (PM32 as u32).to_le_bytes();
        a.db(&[0xea, lo, hi, SEL_CODE32 as u8, 0])
    })?;
    t.load_code(32, PM32, |a| {
        a.mov(ax, SEL_DATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, STACK_TOP as u32)?;
        a.mov(al, 2)?;
        a.out(REPORT as u32, al)?;
        a.mov(eax, cr4)?;
        a.or(eax, CR4_PAE as u32)?;
        a.mov(cr4, eax)?;
        a.mov(eax, PML4 as u32)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, MSR_EFER)?;
        a.rdmsr()?;
        a.or(eax, EFER_LME as u32)?;
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, CR0_PG as u32)?;
        a.mov(cr0, eax)?;
        // jmp far SEL_CODE64:LM64 (ptr16:32)
        let mut far = vec![0xea];
        far.extend_from_slice(&(LM64 as u32).to_le_bytes());
        far.extend_from_slice(&SEL_CODE64.to_le_bytes());
        a.db(&far)
    })?;
    t.load_code(64, LM64, |a| {
        a.mov(al, 3)?;
        a.out(REPORT as u32, al)?;
        a.mov(rax, 0x8000_0000u64)?;
        a.add(rax, rax)?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.expect(0, Exit::out(REPORT, 1, &[1]), "report from real mode")?;
    t.expect(0, Exit::out(REPORT, 1, &[2]), "report from protected mode")?;
    let s = t.vcpu.sregs().ctx("sregs")?;
    check_eq(s.cr0 & CR0_PE, CR0_PE, "CR0.PE in protected mode")?;
    check_eq(
        (s.cs.selector, s.cs.db, s.cs.l),
        (SEL_CODE32, true, false),
        "CS in protected mode",
    )?;
    check_eq(
        s.gdt,
        DescriptorTable {
            base: GDT,
            limit: 31,
        },
        "GDTR loaded by LGDT",
    )?;
    t.expect(0, Exit::out(REPORT, 1, &[3]), "report from long mode")?;
    let s = t.vcpu.sregs().ctx("sregs")?;
    check_eq(s.efer & EFER_LMA, EFER_LMA, "EFER.LMA in long mode")?;
    check_eq(s.cr0 & CR0_PG, CR0_PG, "CR0.PG in long mode")?;
    check_eq(
        (s.cs.selector, s.cs.l),
        (SEL_CODE64, true),
        "CS in long mode",
    )?;
    t.expect(0, Exit::Hlt, "hlt")?;
    check_eq(
        t.regs()?.rax,
        0x1_0000_0000,
        "RAX computed with 64-bit arithmetic",
    )
}

/// Page tables for the translate cases: VA 0x80_0000_0000 (PML4 slot 1) maps
/// 4 KiB pages through fresh tables at 0xa000-0xcfff. Page 5 -> DATA_PAGE
/// read-only supervisor; page 7 -> DATA_PAGE writable user; page 6 absent.
const HIGH_VA: u64 = 0x80_0000_0000;

fn translate_setup(t: &mut TestVm) -> CaseResult {
    const PDPT2: u64 = 0xa000;
    const PD2: u64 = 0xb000;
    const PT2: u64 = 0xc000;
    const PWU: u64 = 0x7;
    t.long_mode(CODE)?;
    t.mem.write_u64(PML4 + 8, PDPT2 | PWU)?;
    t.mem.write_u64(PDPT2, PD2 | PWU)?;
    t.mem.write_u64(PD2, PT2 | PWU)?;
    t.mem.write_u64(PT2 + 8 * 5, DATA_PAGE | 0x1)?;
    t.mem.write_u64(PT2 + 8 * 7, DATA_PAGE | PWU)
}

/// translate() under 4-level paging: identity 4 KiB and 2 MiB pages, a
/// non-identity mapping, and absent entries at the PT and PDPT levels.
pub fn translate_four_level(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    translate_setup(&mut t)?;
    let phys = |t: &TestVm, va: u64| -> Result<Option<u64>, String> {
        Ok(t.vcpu.translate(va).ctx("translate")?.map(|tr| tr.phys))
    };
    check_eq(
        phys(&t, CODE + 0xabc)?,
        Some(CODE + 0xabc),
        "identity 4 KiB page",
    )?;
    check_eq(phys(&t, 0x20_1234)?, Some(0x20_1234), "identity 2 MiB page")?;
    check_eq(
        phys(&t, HIGH_VA + 5 * 4096 + 0x123)?,
        Some(DATA_PAGE + 0x123),
        "high VA page 5",
    )?;
    check_eq(
        phys(&t, HIGH_VA + 7 * 4096 + 0xfff)?,
        Some(DATA_PAGE + 0xfff),
        "high VA page 7",
    )?;
    check_eq(phys(&t, HIGH_VA + 6 * 4096)?, None, "absent PTE")?;
    check_eq(phys(&t, 0x4000_0000)?, None, "absent PDPT entry")
}

/// translate() reports the effective write and user permissions.
pub fn translate_permissions(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    translate_setup(&mut t)?;
    let ro = t
        .vcpu
        .translate(HIGH_VA + 5 * 4096)
        .ctx("translate")?
        .ok_or("page 5 unmapped")?;
    let rw = t
        .vcpu
        .translate(HIGH_VA + 7 * 4096)
        .ctx("translate")?
        .ok_or("page 7 unmapped")?;
    check_eq(
        (ro.writable, ro.user),
        (false, false),
        "read-only supervisor page (writable, user)",
    )?;
    check_eq(
        (rw.writable, rw.user),
        (true, true),
        "writable user page (writable, user)",
    )
}

/// Single-stepping exits after every instruction with RIP at the next one.
pub fn single_step(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    let code = t.load_code(16, CODE, |a| {
        a.nop()?;
        a.inc(ax)?;
        a.mov(bx, 5)?;
        a.add(ax, bx)?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.vcpu
        .set_guest_debug(&GuestDebug {
            single_step: true,
            breakpoints: vec![],
        })
        .ctx("set_guest_debug")?;
    let ips = next_ips(16, CODE, &code);
    for (i, &ip) in ips[..4].iter().enumerate() {
        t.expect(0, Exit::Debug { rip: ip }, &format!("step {}", i + 1))?;
    }
    t.vcpu
        .set_guest_debug(&GuestDebug::default())
        .ctx("set_guest_debug (off)")?;
    t.expect(0, Exit::Hlt, "hlt after stepping")?;
    check_eq(t.regs()?.rax & 0xffff, 6, "AX")
}

/// A hardware breakpoint stops before the instruction at its address; more
/// breakpoints than the engine supports is an error.
pub fn hardware_breakpoint(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        for _ in 0..4 {
            a.inc(ax)?;
        }
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    // Ask for many first: it must be refused, not silently truncated.
    let many = GuestDebug {
        single_step: false,
        breakpoints: (0..64).map(|i| CODE + i).collect(),
    };
    if t.vcpu.set_guest_debug(&many).is_ok() {
        return Err("64 hardware breakpoints were accepted".into());
    }
    t.vcpu
        .set_guest_debug(&GuestDebug {
            single_step: false,
            breakpoints: vec![CODE + 2],
        })
        .ctx("set_guest_debug")?;
    t.expect(
        0,
        Exit::Debug { rip: CODE + 2 },
        "breakpoint at the third inc",
    )?;
    check_eq(t.regs()?.rax & 0xffff, 2, "AX at the breakpoint")?;
    t.vcpu
        .set_guest_debug(&GuestDebug::default())
        .ctx("set_guest_debug (off)")?;
    t.expect(0, Exit::Hlt, "hlt")?;
    check_eq(t.regs()?.rax & 0xffff, 4, "AX at the end")
}

/// An exception with an empty IDT (limit 0) escalates to a triple fault,
/// which is a Shutdown exit.
pub fn triple_fault_shuts_down(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(32, CODE, |a| a.ud2())?;
    t.protected_mode(CODE)?;
    let mut sregs = t.vcpu.sregs().ctx("sregs")?;
    sregs.idt = DescriptorTable { base: 0, limit: 0 };
    t.vcpu.set_sregs(&sregs).ctx("set_sregs")?;
    t.expect(0, Exit::Shutdown, "ud2 with an empty IDT")
}

/// A slot with dirty logging reports exactly the pages the guest wrote, then
/// starts clean again.
pub fn dirty_log(hv: &dyn Hypervisor) -> CaseResult {
    const BASE: u64 = 0x40_0000;
    let mut t = TestVm::new(hv, false)?;
    let logged = GuestMemory::new(0x10000)?;
    let region = MemoryRegion {
        slot: 1,
        guest_phys_addr: BASE,
        size: logged.size(),
        host_addr: logged.host_addr(),
        readonly: false,
        log_dirty: true,
    };
    // SAFETY: `logged` outlives the slot, deleted before returning.
    unsafe { t.vm.set_memory_region(region) }.ctx("set_memory_region (dirty log)")?;
    t.load_code(32, CODE, |a| {
        a.mov(ebx, BASE as u32)?;
        a.mov(dword_ptr(ebx + 0x3010), 0x1234_5678)?;
        a.mov(byte_ptr(ebx + 0x7fff), 0x9a)?;
        a.hlt()
    })?;
    t.protected_mode(CODE)?;
    let result = (|| {
        let before = t.vm.dirty_log(1).ctx("dirty_log before running")?;
        check_eq(
            before.iter().any(|w| *w != 0),
            false,
            "any page dirty before running",
        )?;
        t.expect(0, Exit::Hlt, "hlt")?;
        let after = t.vm.dirty_log(1).ctx("dirty_log")?;
        check_eq(
            after.first().copied(),
            Some((1 << 3) | (1 << 7)),
            "dirty bitmap (pages 3 and 7)",
        )?;
        check_eq(
            after.iter().skip(1).any(|w| *w != 0),
            false,
            "dirty bits beyond page 63",
        )?;
        check_eq(
            logged.read(0x3010, 4)?,
            0x1234_5678u32.to_le_bytes().to_vec(),
            "bytes written",
        )?;
        check_eq(logged.read(0x7fff, 1)?, vec![0x9a], "byte written")?;
        let again = t.vm.dirty_log(1).ctx("dirty_log again")?;
        check_eq(
            again.iter().any(|w| *w != 0),
            false,
            "any page dirty on the second read",
        )?;
        if t.vm.dirty_log(0).is_ok() {
            return Err("dirty_log of a slot without logging succeeded".into());
        }
        Ok(())
    })();
    // SAFETY: deleting the slot touches no memory.
    unsafe { t.vm.set_memory_region(MemoryRegion { size: 0, ..region }) }.ctx("delete slot")?;
    result
}

/// Run until the guest reports readiness on `REPORT`, then call `raise` from
/// another thread after a short delay (while the guest sleeps in HLT) and
/// expect the interrupt handler's report of `vector` on `ISR_PORT`.
fn expect_interrupt(
    t: &mut TestVm,
    vector: u8,
    raise: impl FnOnce(&dyn crate::Vm) -> crate::Result<()> + Send + 'static,
) -> CaseResult {
    t.expect(0, Exit::out(REPORT, 1, &[1]), "guest ready")?;
    let vm = t.vm.clone();
    let raiser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        raise(vm.as_ref())
    });
    let exit = t.run(0);
    raiser
        .join()
        .map_err(|_| "the interrupt-raising thread panicked")?
        .ctx("raising the interrupt")?;
    check_eq(
        exit?,
        Exit::out(ISR_PORT, 1, &[vector]),
        "interrupt handler report",
    )
}

/// Real mode with the 8259 programmed by the guest (vector base 0x20, only
/// IRQ 4 unmasked), STI; HLT; a GSI 4 edge from another thread runs the ISR.
pub fn interrupt_via_pic(hv: &dyn Hypervisor) -> CaseResult {
    const ISR: u64 = CODE + 0x100;
    let mut t = TestVm::new(hv, true)?;
    // IVT entry of vector 0x24 -> 0000:ISR.
    t.mem
        .write(0x24 * 4, &[(ISR & 0xff) as u8, (ISR >> 8) as u8, 0, 0])?;
    let code = t.load_code(16, CODE, |a| {
        let mut idle = a.create_label();
        a.cli()?;
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0x21, 0xef),
        ] {
            a.mov(al, value)?;
            a.out(port, al)?;
        }
        a.mov(al, 1)?;
        a.out(REPORT as u32, al)?;
        a.sti()?;
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })?;
    t.load_code(16, ISR, |a| {
        let mut stop = a.create_label();
        a.mov(al, 0x20)?;
        a.out(0x20, al)?;
        a.mov(al, 0x24)?;
        a.out(ISR_PORT as u32, al)?;
        a.set_label(&mut stop)?;
        a.hlt()?;
        a.jmp(stop)
    })?;
    t.real_mode(CODE)?;
    expect_interrupt(&mut t, 0x24, |vm| {
        vm.set_irq_line(4, true)?;
        vm.set_irq_line(4, false)
    })?;
    // The interrupt frame holds the address after the HLT it woke from.
    let ips = next_ips(16, CODE, &code);
    let after_hlt = ips[ips.len() - 2];
    let stack = t.regs()?.rsp & 0xffff;
    check_eq(stack, STACK_TOP - 6, "SP after the interrupt frame")?;
    check_eq(
        u64::from(t.mem.read_u16(stack)?),
        after_hlt,
        "return IP in the interrupt frame",
    )
}

/// The engine's 8254 PIT, programmed by the guest (channel 0, mode 2, about
/// 1 ms), raises IRQ 0 through the 8259: the handler for vector 0x20 runs.
pub fn pit_timer_interrupt(hv: &dyn Hypervisor) -> CaseResult {
    const ISR: u64 = CODE + 0x100;
    let config = crate::VmConfig {
        irqchip: true,
        pit: true,
        vcpus: 1,
    };
    let mut t = TestVm::with_config(hv, &config)?;
    t.mem
        .write(0x20 * 4, &[(ISR & 0xff) as u8, (ISR >> 8) as u8, 0, 0])?;
    t.load_code(16, CODE, |a| {
        let mut idle = a.create_label();
        a.cli()?;
        let setup = [
            (0x20, 0x11), // 8259: ICW1
            (0x21, 0x20), // ICW2: vectors 0x20-0x27
            (0x21, 0x04), // ICW3
            (0x21, 0x01), // ICW4: 8086 mode
            (0x21, 0xfe), // OCW1: only IRQ 0 unmasked
            (0x43, 0x34), // 8254: channel 0, lobyte/hibyte, mode 2
            (0x40, 0xa9), // count 1193 (0x04a9): about 1 ms
            (0x40, 0x04),
        ];
        for (port, value) in setup {
            a.mov(al, value)?;
            a.out(port, al)?;
        }
        a.sti()?;
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })?;
    t.load_code(16, ISR, |a| {
        let mut stop = a.create_label();
        a.mov(al, 0x20)?;
        a.out(ISR_PORT as u32, al)?;
        a.cli()?;
        a.set_label(&mut stop)?;
        a.hlt()?;
        a.jmp(stop)
    })?;
    t.real_mode(CODE)?;
    t.expect(
        0,
        Exit::out(ISR_PORT, 1, &[0x20]),
        "timer interrupt handler report",
    )
}

/// Guest code that enables its LAPIC, optionally routes IOAPIC pin `pin` to
/// `vector`, reports readiness and idles with interrupts on; the handler for
/// `vector` reports it. Flat protected mode.
fn lapic_guest(t: &mut TestVm, vector: u8, ioapic_pin: Option<u8>) -> CaseResult {
    const ISR: u64 = CODE + 0x200;
    t.load_code(32, CODE, |a| {
        let mut idle = a.create_label();
        a.mov(ebx, 0xfee0_0000u32)?;
        a.mov(dword_ptr(ebx + 0xf0), 0x1ff)?;
        if let Some(pin) = ioapic_pin {
            let index = 0x10 + 2 * u32::from(pin);
            a.mov(ecx, 0xfec0_0000u32)?;
            a.mov(dword_ptr(ecx), index)?;
            a.mov(dword_ptr(ecx + 0x10), u32::from(vector))?;
            a.mov(dword_ptr(ecx), index + 1)?;
            a.mov(dword_ptr(ecx + 0x10), 0)?;
        }
        a.mov(al, 1)?;
        a.out(REPORT as u32, al)?;
        a.sti()?;
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })?;
    t.load_code(32, ISR, |a| {
        let mut stop = a.create_label();
        a.mov(al, vector as u32)?;
        a.out(ISR_PORT as u32, al)?;
        a.cli()?;
        a.set_label(&mut stop)?;
        a.hlt()?;
        a.jmp(stop)
    })?;
    t.protected_mode(CODE)?;
    t.idt32_gate(vector, ISR as u32)
}

/// IOAPIC pin 20 programmed by the guest (fixed, edge, to APIC 0); a GSI 20
/// edge from another thread runs the handler through the LAPIC.
pub fn interrupt_via_ioapic(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, true)?;
    lapic_guest(&mut t, 0x40, Some(20))?;
    expect_interrupt(&mut t, 0x40, |vm| {
        vm.set_irq_line(20, true)?;
        vm.set_irq_line(20, false)
    })
}

/// An MSI to APIC 0 with vector 0x41 from another thread runs the handler.
pub fn interrupt_via_msi(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, true)?;
    lapic_guest(&mut t, 0x41, None)?;
    expect_interrupt(&mut t, 0x41, |vm| {
        vm.signal_msi(Msi {
            address: 0xfee0_0000,
            data: 0x41,
        })
    })
}

/// A guest in protected mode with IF=1 whose handler for `vector` reports it;
/// the body idles in HLT.
fn injection_guest(t: &mut TestVm, vector: u8, pops_error_code: bool) -> CaseResult {
    const ISR: u64 = CODE + 0x100;
    t.load_code(32, CODE, |a| {
        let mut idle = a.create_label();
        a.set_label(&mut idle)?;
        a.hlt()?;
        a.jmp(idle)
    })?;
    t.load_code(32, ISR, |a| {
        if pops_error_code {
            a.pop(eax)?;
            a.out(ISR_PORT as u32 + 1, eax)?;
        }
        a.mov(al, vector as u32)?;
        a.out(ISR_PORT as u32, al)?;
        a.hlt()
    })?;
    t.protected_mode(CODE)?;
    t.idt32_gate(vector, ISR as u32)?;
    let mut regs = t.regs()?;
    regs.rflags |= RFLAGS_IF;
    t.vcpu.set_regs(&regs).ctx("set_regs")
}

/// INT n in protected mode runs the handler, whose IRET returns after the INT
/// with the stack as before.
pub fn software_interrupt_and_iret(hv: &dyn Hypervisor) -> CaseResult {
    const ISR: u64 = CODE + 0x100;
    let mut t = TestVm::new(hv, false)?;
    t.load_code(32, CODE, |a| {
        a.int(0x30)?;
        a.mov(al, 2)?;
        a.out(REPORT as u32, al)?;
        a.hlt()
    })?;
    t.load_code(32, ISR, |a| {
        a.mov(al, 1)?;
        a.out(REPORT as u32, al)?;
        a.iretd()
    })?;
    t.protected_mode(CODE)?;
    t.idt32_gate(0x30, ISR as u32)?;
    t.expect(
        0,
        Exit::out(REPORT, 1, &[1]),
        "report from the INT 0x30 handler",
    )?;
    check_eq(
        t.regs()?.rsp,
        STACK_TOP - 12,
        "ESP inside the handler (EIP, CS, EFLAGS pushed)",
    )?;
    t.expect(0, Exit::out(REPORT, 1, &[2]), "report after IRET")?;
    t.expect(0, Exit::Hlt, "hlt")?;
    check_eq(t.regs()?.rsp, STACK_TOP, "ESP after IRET")
}

/// inject(Interrupt) runs the guest's handler for that vector.
pub fn inject_interrupt(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    injection_guest(&mut t, 0x30, false)?;
    t.vcpu.inject(Event::Interrupt(0x30)).ctx("inject")?;
    t.expect(
        0,
        Exit::out(ISR_PORT, 1, &[0x30]),
        "handler of the injected interrupt",
    )
}

/// inject(Nmi) runs the guest's NMI handler (vector 2).
pub fn inject_nmi(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    injection_guest(&mut t, NMI, false)?;
    t.vcpu.inject(Event::Nmi).ctx("inject")?;
    t.expect(0, Exit::out(ISR_PORT, 1, &[NMI]), "NMI handler")
}

/// inject(Exception) with an error code runs the handler with the error code
/// pushed on its stack.
pub fn inject_exception(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    injection_guest(&mut t, GP, true)?;
    t.vcpu
        .inject(Event::Exception {
            vector: GP,
            error_code: Some(0x1234),
        })
        .ctx("inject")?;
    t.expect(
        0,
        Exit::out(ISR_PORT + 1, 4, &0x1234u32.to_le_bytes()),
        "error code popped by the #GP handler",
    )?;
    t.expect(0, Exit::out(ISR_PORT, 1, &[GP]), "#GP handler")
}

/// A kick from another thread makes a vCPU spinning in guest code leave run
/// with Interrupted; it can run on afterwards.
pub fn kick_running_vcpu(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        let mut spin = a.create_label();
        a.set_label(&mut spin)?;
        a.inc(eax)?;
        a.jmp(spin)
    })?;
    t.real_mode(CODE)?;
    let kick = t.vcpu.kick_handle();
    let kicker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        kick.kick();
    });
    let exit = t.run(0);
    kicker.join().map_err(|_| "the kicking thread panicked")?;
    check_eq(exit?, Exit::Interrupted, "exit after the kick")?;
    let spins = t.regs()?.rax;
    if spins == 0 {
        return Err("the guest did not run before the kick".into());
    }
    // Resume in the same loop; kick again and check it made progress.
    let kick = t.vcpu.kick_handle();
    let kicker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        kick.kick();
    });
    let exit = t.run(0);
    kicker.join().map_err(|_| "the kicking thread panicked")?;
    check_eq(exit?, Exit::Interrupted, "exit after the second kick")?;
    if t.regs()?.rax <= spins {
        return Err("the guest made no progress after the first kick".into());
    }
    Ok(())
}

/// With an irqchip, HLT with interrupts off sleeps inside run; a kick from
/// another thread wakes it with Interrupted.
pub fn kick_halted_vcpu(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, true)?;
    t.load_code(16, CODE, |a| {
        a.cli()?;
        a.mov(al, 1)?;
        a.out(REPORT as u32, al)?;
        a.hlt()?;
        a.mov(al, 2)?;
        a.out(REPORT as u32, al)?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.expect(0, Exit::out(REPORT, 1, &[1]), "report before hlt")?;
    let kick = t.vcpu.kick_handle();
    let kicker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        kick.kick();
    });
    let exit = t.run(0);
    kicker.join().map_err(|_| "the kicking thread panicked")?;
    check_eq(
        exit?,
        Exit::Interrupted,
        "exit of a halted vCPU after a kick",
    )
}

/// Two vCPUs of one VM run at once on their own threads, each its own code;
/// a vCPU id cannot be created twice.
pub fn two_vcpus_on_threads(hv: &dyn Hypervisor) -> CaseResult {
    const CODE1: u64 = CODE + 0x100;
    let mut t = TestVm::new(hv, false)?;
    let mut vcpu1 = t.vm.create_vcpu(1).ctx("create_vcpu(1)")?;
    if t.vm.create_vcpu(1).is_ok() {
        return Err("creating vCPU 1 a second time succeeded".into());
    }
    vcpu1
        .set_cpuid(&hv.supported_cpuid().ctx("supported_cpuid")?)
        .ctx("set_cpuid")?;
    check_eq(vcpu1.id(), 1, "id of vCPU 1")?;
    for (at, value) in [(CODE, 0xa0), (CODE1, 0xa1)] {
        t.load_code(16, at, |a| {
            a.mov(al, value)?;
            a.out(REPORT as u32, al)?;
            a.hlt()
        })?;
    }
    t.real_mode(CODE)?;
    real_mode_state(vcpu1.as_mut(), CODE1)?;
    let other = thread::spawn(move || -> Result<Vec<Exit>, String> {
        Ok(vec![
            run_with_watchdog(vcpu1.as_mut(), 0)?,
            run_with_watchdog(vcpu1.as_mut(), 0)?,
        ])
    });
    let mine = vec![t.run(0)?, t.run(0)?];
    let theirs = other.join().map_err(|_| "vCPU 1's thread panicked")??;
    check_eq(
        mine,
        vec![Exit::out(REPORT, 1, &[0xa0]), Exit::Hlt],
        "vCPU 0 exits",
    )?;
    check_eq(
        theirs,
        vec![Exit::out(REPORT, 1, &[0xa1]), Exit::Hlt],
        "vCPU 1 exits",
    )
}

/// Interrupt lines and MSIs need the irqchip; GSIs stop at 23.
pub fn interrupt_lines_checked(hv: &dyn Hypervisor) -> CaseResult {
    let plain = hv
        .create_vm(&crate::VmConfig {
            irqchip: false,
            pit: false,
            vcpus: 1,
        })
        .ctx("create_vm")?;
    if plain.set_irq_line(4, true).is_ok() {
        return Err("set_irq_line without an irqchip succeeded".into());
    }
    if plain
        .signal_msi(Msi {
            address: 0xfee0_0000,
            data: 0x30,
        })
        .is_ok()
    {
        return Err("signal_msi without an irqchip succeeded".into());
    }
    let chip = hv.create_vm(&crate::VmConfig::default()).ctx("create_vm")?;
    chip.set_irq_line(23, true).ctx("set_irq_line(23)")?;
    chip.set_irq_line(23, false).ctx("set_irq_line(23)")?;
    if chip.set_irq_line(24, true).is_ok() {
        return Err("set_irq_line(24) succeeded".into());
    }
    Ok(())
}

/// A kick before run makes the next run return Interrupted at once, and only
/// that one: the run after it executes the guest.
pub fn kick_before_run(hv: &dyn Hypervisor) -> CaseResult {
    let mut t = TestVm::new(hv, false)?;
    t.load_code(16, CODE, |a| {
        a.mov(al, 7)?;
        a.out(REPORT as u32, al)?;
        a.hlt()
    })?;
    t.real_mode(CODE)?;
    t.vcpu.kick_handle().kick();
    t.expect(0, Exit::Interrupted, "run after a kick")?;
    check_eq(t.regs()?.rip, CODE, "RIP (nothing executed)")?;
    t.expect(0, Exit::out(REPORT, 1, &[7]), "the run after that")?;
    t.expect(0, Exit::Hlt, "hlt")
}
