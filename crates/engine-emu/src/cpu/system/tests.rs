//! Whole-CPU tests of the system group, driven through the hypervisor API:
//! guest code (assembled with iced-x86) switches modes, takes exceptions
//! through the IDT, changes privilege level and reports what it saw on
//! port 0xE9.

use std::sync::Arc;

use iced_x86::code_asm::*;
use kite_hypervisor::{
    x86, DescriptorTable, Event, FlatKind, Hypervisor, MemoryRegion, Segment, Vcpu, VcpuExit, Vm,
    VmConfig,
};

use crate::EmuHypervisor;

const MEM_SIZE: usize = 4 << 20;
const REPORT_PORT: u16 = 0xe9;

// Guest-physical layout shared by the tests.
const GDTR: u64 = 0x7f0;
const GDT: u64 = 0x800;
const IDT: u64 = 0x1000;
const TSS: u64 = 0x2800;
const PML4: u64 = 0x20000;
const PD32: u64 = 0x23000;

// GDT selectors (Linux-like order: SYSCALL/SYSRET need it).
const KCODE32: u16 = 0x08;
const KCODE64: u16 = 0x10;
const KDATA: u16 = 0x18;
const UCODE32: u16 = 0x20;
const UDATA: u16 = 0x28;
const UCODE64: u16 = 0x30;
const TSS_SEL: u16 = 0x38;
const CALL_GATE: u16 = 0x48;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Hlt,
    Shutdown,
}

struct Guest {
    vcpu: Box<dyn Vcpu>,
    _vm: Arc<dyn Vm>,
    mem: Vec<u8>,
}

fn seg(selector: u16, kind: FlatKind, dpl: u8) -> Segment {
    Segment {
        dpl,
        ..Segment::flat(selector, kind)
    }
}

impl Guest {
    fn new() -> Guest {
        let vm = EmuHypervisor::new()
            .create_vm(&VmConfig {
                irqchip: false,
                pit: false,
                vcpus: 1,
            })
            .unwrap();
        let mut mem = vec![0u8; MEM_SIZE];
        // SAFETY: `mem` lives as long as the VM (same struct, dropped after
        // the vCPU and VM fields) and its heap buffer never moves.
        unsafe {
            vm.set_memory_region(MemoryRegion {
                slot: 0,
                guest_phys_addr: 0,
                size: MEM_SIZE as u64,
                host_addr: mem.as_mut_ptr() as u64,
                readonly: false,
                log_dirty: false,
            })
            .unwrap();
        }
        let vcpu = vm.create_vcpu(0).unwrap();
        let mut g = Guest { vcpu, _vm: vm, mem };
        g.write_gdt();
        g
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        let a = addr as usize;
        self.mem[a..a + bytes.len()].copy_from_slice(bytes);
    }
    fn put16(&mut self, addr: u64, v: u16) {
        self.put(addr, &v.to_le_bytes());
    }
    fn put32(&mut self, addr: u64, v: u32) {
        self.put(addr, &v.to_le_bytes());
    }
    fn put64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }
    fn get64(&self, addr: u64) -> u64 {
        let a = addr as usize;
        u64::from_le_bytes(self.mem[a..a + 8].try_into().unwrap())
    }

    /// Assemble `f` for `bits` at `addr` and place it there.
    fn asm(&mut self, bits: u32, addr: u64, f: impl FnOnce(&mut CodeAssembler)) {
        let mut a = CodeAssembler::new(bits).unwrap();
        f(&mut a);
        let code = a.assemble(addr).unwrap();
        self.put(addr, &code);
    }

    fn write_gdt(&mut self) {
        let descs = [
            (KCODE32, seg(KCODE32, FlatKind::Code32, 0)),
            (KCODE64, seg(KCODE64, FlatKind::Code64, 0)),
            (KDATA, seg(KDATA, FlatKind::Data, 0)),
            (UCODE32, seg(UCODE32, FlatKind::Code32, 3)),
            (UDATA, seg(UDATA, FlatKind::Data, 3)),
            (UCODE64, seg(UCODE64, FlatKind::Code64, 3)),
        ];
        for (sel, s) in descs {
            self.put64(GDT + u64::from(sel), s.to_descriptor());
        }
        self.put16(GDTR, 0x7f);
        self.put32(GDTR + 2, GDT as u32);
    }

    /// An available TSS descriptor (8 bytes; the 16-byte form's upper half is 0 here).
    fn write_tss_desc(&mut self, type_: u8) {
        let tss = Segment {
            base: TSS,
            limit: 0x67 + 0x2000 / 8 + 1,
            selector: TSS_SEL,
            type_,
            present: true,
            ..Default::default()
        };
        self.put64(GDT + u64::from(TSS_SEL), tss.to_descriptor());
        self.put64(GDT + u64::from(TSS_SEL) + 8, 0);
    }

    /// A 32-bit IDT gate (type 0xe interrupt, 0xf trap).
    fn gate32(&mut self, vector: u8, handler: u32, type_: u8, dpl: u8, present: bool) {
        let v = u64::from(handler & 0xffff)
            | (u64::from(KCODE32) << 16)
            | (u64::from(type_ | (dpl << 5) | if present { 0x80 } else { 0 }) << 40)
            | (u64::from(handler >> 16) << 48);
        self.put64(IDT + u64::from(vector) * 8, v);
    }

    /// A 64-bit IDT gate.
    fn gate64(&mut self, vector: u8, handler: u64, dpl: u8, ist: u8) {
        let lo = (handler & 0xffff)
            | (u64::from(KCODE64) << 16)
            | (u64::from(ist) << 32)
            | (u64::from(0x8e | (dpl << 5)) << 40)
            | (((handler >> 16) & 0xffff) << 48);
        self.put64(IDT + u64::from(vector) * 16, lo);
        self.put64(IDT + u64::from(vector) * 16 + 8, handler >> 32);
    }

    /// Identity map of the first 4 MiB with 2 MiB user pages (4-level).
    fn write_page_tables_64(&mut self) {
        self.put64(PML4, (PML4 + 0x1000) | 7);
        self.put64(PML4 + 0x1000, (PML4 + 0x2000) | 7);
        self.put64(PML4 + 0x2000, 0x87);
        self.put64(PML4 + 0x2008, 0x20_0000 | 0x87);
    }

    /// Start in 32-bit protected mode (flat ring 0) at `rip` with IDT at IDT.
    fn start_protected32(&mut self, entry: u64, stack: u64) {
        let mut s = self.vcpu.sregs().unwrap();
        s.cs = seg(KCODE32, FlatKind::Code32, 0);
        for d in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
            *d = seg(KDATA, FlatKind::Data, 0);
        }
        s.gdt = DescriptorTable {
            base: GDT,
            limit: 0x7f,
        };
        s.idt = DescriptorTable {
            base: IDT,
            limit: 0x7ff,
        };
        s.cr0 = x86::CR0_PE | x86::CR0_ET | x86::CR0_NE;
        self.vcpu.set_sregs(&s).unwrap();
        self.set_rip_rsp(entry, stack);
    }

    /// Start in 64-bit mode (paging on, identity mapped) at `rip`.
    fn start_long64(&mut self, entry: u64, stack: u64) {
        self.write_page_tables_64();
        let mut s = self.vcpu.sregs().unwrap();
        s.cs = seg(KCODE64, FlatKind::Code64, 0);
        for d in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
            *d = seg(KDATA, FlatKind::Data, 0);
        }
        s.gdt = DescriptorTable {
            base: GDT,
            limit: 0x7f,
        };
        s.idt = DescriptorTable {
            base: IDT,
            limit: 0xfff,
        };
        s.cr0 = x86::CR0_PE | x86::CR0_ET | x86::CR0_NE | x86::CR0_PG;
        s.cr3 = PML4;
        s.cr4 = x86::CR4_PAE;
        s.efer = x86::EFER_LME | x86::EFER_LMA | x86::EFER_SCE;
        self.vcpu.set_sregs(&s).unwrap();
        self.set_rip_rsp(entry, stack);
    }

    fn set_rip_rsp(&mut self, entry: u64, stack: u64) {
        let mut r = self.vcpu.regs().unwrap();
        r.rip = entry;
        r.rsp = stack;
        r.rflags = 2;
        self.vcpu.set_regs(&r).unwrap();
    }

    /// Run until HLT or shutdown, collecting the values written to port 0xE9.
    fn run(&mut self) -> (Vec<u64>, End) {
        let mut out = Vec::new();
        for _ in 0..1000 {
            match self.vcpu.run().unwrap() {
                VcpuExit::IoOut { port, data, .. } if port == REPORT_PORT => {
                    let mut b = [0u8; 8];
                    b[..data.len()].copy_from_slice(data);
                    out.push(u64::from_le_bytes(b));
                }
                VcpuExit::Hlt => return (out, End::Hlt),
                VcpuExit::Shutdown => return (out, End::Shutdown),
                e => panic!("unexpected exit {e:?} after reports {out:x?}"),
            }
        }
        panic!("guest did not stop; reports {out:x?}");
    }
}

/// Report EAX on port 0xE9.
fn report(a: &mut CodeAssembler) {
    a.out(REPORT_PORT as u32, eax).unwrap();
}

#[test]
fn real_to_protected_to_long_mode_by_guest_code() {
    let mut g = Guest::new();
    g.write_page_tables_64();
    g.write_tss_desc(0x9);
    // 64-bit #PF handler: report CR2 and the error code, skip the 8-byte
    // faulting MOV, IRETQ.
    g.gate64(14, 0x3800, 0, 0);
    g.asm(64, 0x3800, |a| {
        a.mov(rax, cr2).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp)).unwrap();
        report(a);
        a.add(rsp, 8).unwrap();
        a.add(qword_ptr(rsp), 8).unwrap();
        a.iretq().unwrap();
    });
    // Real mode at 0x1000 (CS = 0).
    g.asm(16, 0x1000, |a| {
        a.mov(eax, 16u32).unwrap();
        report(a);
        a.lgdt(ptr(GDTR as u32)).unwrap();
        a.mov(eax, cr0).unwrap();
        a.add(eax, 1u32).unwrap();
        a.mov(cr0, eax).unwrap();
        a.jmp_far(KCODE32, 0x2000).unwrap();
    });
    // 32-bit protected mode: data segments, PAE, EFER.LME, paging.
    g.asm(32, 0x2000, |a| {
        a.mov(ax, KDATA as u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(ss, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(esp, 0x9000u32).unwrap();
        a.mov(eax, cs).unwrap();
        report(a);
        a.mov(eax, cr4).unwrap();
        a.add(eax, x86::CR4_PAE as u32).unwrap();
        a.mov(cr4, eax).unwrap();
        a.mov(eax, PML4 as u32).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(ecx, x86::MSR_EFER).unwrap();
        a.rdmsr().unwrap();
        a.add(eax, x86::EFER_LME as u32).unwrap();
        a.wrmsr().unwrap();
        a.mov(eax, cr0).unwrap();
        a.add(eax, x86::CR0_PG as u32).unwrap();
        a.mov(cr0, eax).unwrap();
        // Compatibility mode now: EFER.LMA is set.
        a.mov(ecx, x86::MSR_EFER).unwrap();
        a.rdmsr().unwrap();
        report(a);
        a.jmp_far(KCODE64, 0x3000).unwrap();
    });
    // 64-bit mode: IDT, TSS, a page fault above the mapped 4 MiB.
    g.asm(64, 0x3000, |a| {
        a.mov(eax, 64u32).unwrap();
        report(a);
        a.lidt(ptr(0x3f00)).unwrap();
        a.mov(ax, TSS_SEL as u32).unwrap();
        a.ltr(ax).unwrap();
        a.mov(rbx, 0x4000_0000u64).unwrap();
        // C7 43 10 imm32: 7 bytes... plus none: the handler skips 8, so pad with a NOP.
        a.mov(dword_ptr(rbx + 0x10), 0x1234i32).unwrap();
        a.nop().unwrap();
        a.mov(eax, 0x99u32).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.put16(0x3f00, 0xfff);
    g.put64(0x3f02, IDT);
    g.set_rip_rsp(0x1000, 0x8000);
    let mut s = g.vcpu.sregs().unwrap();
    s.cs = Segment::real_mode(0, true);
    g.vcpu.set_sregs(&s).unwrap();

    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    let lma_efer = x86::EFER_LME | x86::EFER_LMA;
    assert_eq!(
        out,
        vec![16, u64::from(KCODE32), lma_efer, 64, 0x4000_0010, 0x2, 0x99]
    );
    let s = g.vcpu.sregs().unwrap();
    assert!(s.cs.l && s.efer & x86::EFER_LMA != 0);
    assert_eq!(s.cr2, 0x4000_0010);
    assert_eq!(s.tr.selector, TSS_SEL);
    assert_eq!(s.tr.type_, 0xb, "LTR marks the TSS busy");
    assert_eq!((g.get64(GDT + u64::from(TSS_SEL)) >> 40) & 0xf, 0xb);
    // The accessed bit was set in the data descriptor MOV DS loaded.
    assert_ne!(g.get64(GDT + u64::from(KDATA)) & (1 << 40), 0);
}

#[test]
fn exceptions_through_a_32bit_idt_with_error_codes_and_cr2() {
    let mut g = Guest::new();
    // #UD: report vector and faulting EIP, skip the 2-byte UD2.
    g.gate32(6, 0x5000, 0xe, 0, true);
    g.asm(32, 0x5000, |a| {
        a.mov(eax, 6u32).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.add(dword_ptr(esp), 2).unwrap();
        a.iretd().unwrap();
    });
    // #GP: report the error code, skip the 2-byte MOV DS, AX.
    g.gate32(13, 0x5100, 0xe, 0, true);
    g.asm(32, 0x5100, |a| {
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.add(esp, 4).unwrap();
        a.add(dword_ptr(esp), 2).unwrap();
        a.iretd().unwrap();
    });
    // #PF: report CR2 and the error code, skip the 10-byte store.
    g.gate32(14, 0x5200, 0xe, 0, true);
    g.asm(32, 0x5200, |a| {
        a.mov(eax, cr2).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.add(esp, 4).unwrap();
        a.add(dword_ptr(esp), 10).unwrap();
        a.iretd().unwrap();
    });
    // #DE (injected through the API): report the return EIP, halt.
    g.gate32(0, 0x5300, 0xe, 0, true);
    g.asm(32, 0x5300, |a| {
        a.mov(eax, 0xdeu32).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    // 32-bit paging: one 4 MiB page at 0, nothing above.
    g.put32(PD32, 0x83);
    g.asm(32, 0x4000, |a| {
        a.ud2().unwrap();
        a.mov(eax, 0x11u32).unwrap();
        report(a);
        a.mov(eax, 0x63u32).unwrap();
        a.mov(ds, eax).unwrap();
        a.mov(eax, 0x22u32).unwrap();
        report(a);
        a.mov(eax, cr4).unwrap();
        a.add(eax, x86::CR4_PSE as u32).unwrap();
        a.mov(cr4, eax).unwrap();
        a.mov(eax, PD32 as u32).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(eax, cr0).unwrap();
        a.add(eax, x86::CR0_PG as u32).unwrap();
        a.mov(cr0, eax).unwrap();
        a.mov(dword_ptr(0x40_0010), 5).unwrap();
        a.mov(eax, 0x33u32).unwrap();
        report(a);
        a.hlt().unwrap();
        a.nop().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(out, vec![6, 0x4000, 0x11, 0x60, 0x22, 0x40_0010, 0x2, 0x33]);
    let rip = g.vcpu.regs().unwrap().rip;
    g.vcpu
        .inject(Event::Exception {
            vector: 0,
            error_code: None,
        })
        .unwrap();
    let (out, end) = g.run();
    assert_eq!((out, end), (vec![0xde, rip], End::Hlt));
    let r = g.vcpu.regs().unwrap();
    assert_eq!(
        r.rsp,
        0x9000 - 12,
        "a same-privilege frame is EIP, CS, EFLAGS"
    );
}

/// A 32-bit TSS with the ring-0 stack at 0x9000.
fn tss32(g: &mut Guest) {
    g.write_tss_desc(0x9);
    g.put32(TSS + 4, 0x9000);
    g.put32(TSS + 8, u32::from(KDATA));
    // An I/O bitmap right after the TSS, all zero: ring 3 and VM86 code may
    // use the low ports (the tests report with OUT).
    g.put16(TSS + 0x66, 0x68);
}

#[test]
fn ring3_enters_the_kernel_by_int_0x80_and_call_gate_and_returns() {
    let mut g = Guest::new();
    tss32(&mut g);
    // INT 0x80: trap gate with DPL 3.
    g.gate32(0x80, 0x5400, 0xf, 3, true);
    g.asm(32, 0x5400, |a| {
        a.mov(eax, esp).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 4)).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 16)).unwrap();
        report(a);
        a.iretd().unwrap();
    });
    // INT 0x81 from ring 3 hits a DPL 0 gate: #GP(0x81 * 8 + 2).
    g.gate32(0x81, 0x5400, 0xe, 0, true);
    g.gate32(13, 0x5100, 0xe, 0, true);
    g.asm(32, 0x5100, |a| {
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 8)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    // 32-bit call gate, DPL 3, one parameter, to ring 0 at 0x5500.
    // Offset 0x5500 (its high half is 0).
    let gate = 0x5500u64 | (u64::from(KCODE32) << 16) | (1 << 32) | (0xecu64 << 40);
    g.put64(GDT + u64::from(CALL_GATE), gate);
    g.asm(32, 0x5500, |a| {
        a.mov(eax, esp).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 8)).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 4)).unwrap();
        report(a);
        a.retf_1(4).unwrap();
    });
    // Ring 3.
    g.asm(32, 0x6000, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.int(0x80).unwrap();
        a.mov(eax, 0x77u32).unwrap();
        report(a);
        a.call_far(CALL_GATE | 3, 0).unwrap();
        a.mov(eax, esp).unwrap();
        report(a);
        a.int(0x81).unwrap();
    });
    g.put32(0x7000, 0xabcd); // the call-gate parameter on the ring-3 stack
                             // Kernel: load TR, IRET to ring 3 with a frame prepared at 0x8000.
    let frame = [
        0x6000,
        u32::from(UCODE32 | 3),
        2,
        0x7000,
        u32::from(UDATA | 3),
    ];
    for (i, v) in frame.iter().enumerate() {
        g.put32(0x8000 + 4 * i as u64, *v);
    }
    g.asm(32, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(esp, 0x8000u32).unwrap();
        a.iretd().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    let ucs = u64::from(UCODE32 | 3);
    assert_eq!(
        out,
        vec![
            ucs,
            0x9000 - 20,
            ucs,
            u64::from(UDATA | 3),
            0x77,
            0x9000 - 20,
            0xabcd,
            ucs,
            0x7004,
            0x81 * 8 + 2,
            ucs,
        ]
    );
}

#[test]
fn long_mode_syscall_int_and_ist() {
    let mut g = Guest::new();
    g.write_tss_desc(0x9);
    g.put64(TSS + 4, 0xa000); // RSP0
    g.put64(TSS + 0x24, 0xc000); // IST1
    g.gate64(0x80, 0x5400, 3, 0);
    g.asm(64, 0x5400, |a| {
        a.mov(rax, rsp).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 32)).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 24)).unwrap();
        report(a);
        a.iretq().unwrap();
    });
    g.gate64(13, 0x5100, 0, 1);
    g.asm(64, 0x5100, |a| {
        a.mov(rax, rsp).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp)).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 16)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    // SYSCALL entry: report RCX, R11 and CS, then SYSRETQ.
    g.asm(64, 0x5600, |a| {
        a.mov(rax, rcx).unwrap();
        report(a);
        a.mov(rax, r11).unwrap();
        report(a);
        a.mov(eax, cs).unwrap();
        report(a);
        a.sysretq().unwrap();
    });
    // MOV EAX, CS (2 bytes), OUT (2), SYSCALL (2).
    let syscall_ret = 0x6006;
    g.asm(64, 0x6000, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.syscall().unwrap();
        a.mov(eax, ss).unwrap();
        report(a);
        a.int(0x80).unwrap();
        a.mov(eax, 0x77u32).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    let frame = [
        0x6000,
        u64::from(UCODE64 | 3),
        0x202,
        0x7000,
        u64::from(UDATA | 3),
    ];
    for (i, v) in frame.iter().enumerate() {
        g.put64(0x8000 + 8 * i as u64, *v);
    }
    g.asm(64, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(ecx, x86::MSR_STAR).unwrap();
        a.mov(edx, (u32::from(UCODE32) << 16) | u32::from(KCODE64))
            .unwrap();
        a.mov(eax, 0u32).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, x86::MSR_LSTAR).unwrap();
        a.mov(eax, 0x5600u32).unwrap();
        a.mov(edx, 0u32).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, x86::MSR_SYSCALL_MASK).unwrap();
        a.mov(eax, x86::RFLAGS_IF as u32).unwrap();
        a.wrmsr().unwrap();
        a.mov(rsp, 0x8000u64).unwrap();
        a.iretq().unwrap();
    });
    g.start_long64(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    let (ucs, uss) = (u64::from(UCODE64 | 3), u64::from(UDATA | 3));
    assert_eq!(
        out,
        vec![
            ucs,
            syscall_ret,
            0x202,
            u64::from(KCODE64),
            uss,
            0xa000 - 40,
            uss,
            0x7000,
            0x77,
            0xc000 - 48,
            0,
            ucs,
        ]
    );
    let s = g.vcpu.sregs().unwrap();
    assert_eq!(s.cs.selector, KCODE64);
    assert_eq!(
        s.ss.selector, 0,
        "a privilege change in long mode loads a null SS"
    );
}

#[test]
fn double_fault_then_triple_fault() {
    let mut g = Guest::new();
    g.gate32(13, 0x5100, 0xe, 0, false); // #GP gate not present -> #NP -> #DF
    g.gate32(8, 0x5800, 0xe, 0, true);
    g.asm(32, 0x5800, |a| {
        a.mov(eax, 8u32).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 4)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x4000, |a| {
        a.mov(eax, 0x63u32).unwrap();
        a.mov(ds, eax).unwrap();
        a.hlt().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!((out, end), (vec![8, 0, 0x4005], End::Hlt));

    // Without a #DF handler the same fault shuts the machine down.
    g.gate32(8, 0x5800, 0xe, 0, false);
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!((out, end), (vec![], End::Shutdown));
}

#[test]
fn triple_fault_without_an_idt() {
    let mut g = Guest::new();
    g.asm(32, 0x4000, |a| {
        a.ud2().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let mut s = g.vcpu.sregs().unwrap();
    s.idt.limit = 0;
    g.vcpu.set_sregs(&s).unwrap();
    assert_eq!(g.run(), (vec![], End::Shutdown));
}

#[test]
fn real_mode_int_and_iret() {
    let mut g = Guest::new();
    g.put32(0x10 * 4, 0x5000); // IVT[0x10] = 0000:5000
    g.asm(16, 0x5000, |a| {
        a.mov(eax, 0u32).unwrap();
        a.mov(ax, word_ptr(esp)).unwrap();
        report(a);
        a.mov(ax, word_ptr(esp + 2)).unwrap();
        report(a);
        a.iret().unwrap();
    });
    g.asm(16, 0x1000, |a| {
        a.int(0x10).unwrap();
        a.mov(eax, 0x55u32).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    let mut s = g.vcpu.sregs().unwrap();
    s.cs = Segment::real_mode(0, true);
    g.vcpu.set_sregs(&s).unwrap();
    g.set_rip_rsp(0x1000, 0x8000);
    let (out, end) = g.run();
    assert_eq!((out, end), (vec![0x1002, 0, 0x55], End::Hlt));
    assert_eq!(g.vcpu.regs().unwrap().rsp, 0x8000);
}

#[test]
fn vm86_entered_by_iret_and_left_by_a_fault() {
    let mut g = Guest::new();
    tss32(&mut g);
    g.gate32(13, 0x5100, 0xe, 0, true);
    g.asm(32, 0x5100, |a| {
        for off in [0, 4, 8, 12, 16, 24] {
            a.mov(eax, dword_ptr(esp + off)).unwrap();
            report(a);
        }
        a.mov(eax, ds).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    // VM86 code at 0600:0100.
    g.asm(16, 0x6100, |a| {
        a.mov(eax, 0u32).unwrap();
        a.mov(ax, cs).unwrap();
        report(a);
        a.int(0x10).unwrap(); // IOPL 0: #GP(0)
    });
    let frame = [0x100, 0x600, 0x2_0002, 0xff0, 0x700, 0x1234, 0x800, 0, 0];
    for (i, v) in frame.iter().enumerate() {
        g.put32(0x8000 + 4 * i as u64, *v);
    }
    g.asm(32, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(esp, 0x8000u32).unwrap();
        a.iretd().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(
        out,
        vec![0x600, 0, 0x10b, 0x600, 0x2_0002, 0xff0, 0x1234, 0]
    );
}

#[test]
fn double_fault_through_a_task_gate_and_iret_back() {
    const DF_TSS: u64 = 0x2c80;
    const DF_SEL: u16 = 0x50;
    let mut g = Guest::new();
    tss32(&mut g);
    let df = Segment {
        base: DF_TSS,
        limit: 0x67,
        selector: DF_SEL,
        type_: 0x9,
        present: true,
        ..Default::default()
    };
    g.put64(GDT + u64::from(DF_SEL), df.to_descriptor());
    g.put32(DF_TSS + 0x20, 0x5900); // EIP
    g.put32(DF_TSS + 0x24, 2); // EFLAGS
    g.put32(DF_TSS + 0x38, 0xb000); // ESP
    for (off, sel) in [(0x48, KDATA), (0x4c, KCODE32), (0x50, KDATA), (0x54, KDATA)] {
        g.put32(DF_TSS + off, u32::from(sel));
    }
    // IDT[8]: task gate; IDT[13] not present, so a #GP becomes #NP, then #DF.
    g.put64(IDT + 8 * 8, (u64::from(DF_SEL) << 16) | (0x85u64 << 40));
    g.gate32(13, 0x5100, 0xe, 0, false);
    g.asm(32, 0x5900, |a| {
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.mov(eax, esp).unwrap();
        report(a);
        a.mov(eax, dword_ptr(DF_TSS as u32)).unwrap(); // back link
        report(a);
        a.str(eax).unwrap();
        report(a);
        a.mov(eax, dword_ptr((TSS + 0x20) as u32)).unwrap(); // saved EIP
        report(a);
        a.add(dword_ptr((TSS + 0x20) as u32), 2).unwrap();
        a.iretd().unwrap();
    });
    g.asm(32, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(ebx, 0x1234u32).unwrap();
        a.mov(eax, 0x63u32).unwrap();
        a.mov(ds, eax).unwrap(); // at 0x4013
        a.mov(eax, ebx).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(
        out,
        vec![
            0,
            0xb000 - 4,
            u64::from(TSS_SEL),
            u64::from(DF_SEL),
            0x4013,
            0x1234
        ]
    );
    let s = g.vcpu.sregs().unwrap();
    assert_eq!(s.tr.selector, TSS_SEL);
    assert_ne!(s.cr0 & x86::CR0_TS, 0, "a task switch sets CR0.TS");
    // IRET cleared the double-fault TSS's busy bit; the original stays busy.
    assert_eq!((g.get64(GDT + u64::from(DF_SEL)) >> 40) & 0xf, 0x9);
    assert_eq!((g.get64(GDT + u64::from(TSS_SEL)) >> 40) & 0xf, 0xb);
}

#[test]
fn sysenter_sysexit_and_cli_at_ring3() {
    let mut g = Guest::new();
    tss32(&mut g);
    g.gate32(13, 0x5100, 0xe, 0, true);
    g.asm(32, 0x5100, |a| {
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp + 4)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x5a00, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.mov(eax, esp).unwrap();
        report(a);
        a.mov(eax, ss).unwrap();
        report(a);
        a.sysexit().unwrap();
    });
    g.asm(32, 0x6000, |a| {
        a.mov(edx, 0x6100u32).unwrap();
        a.mov(ecx, 0x7100u32).unwrap();
        a.sysenter().unwrap();
    });
    g.asm(32, 0x6100, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.mov(eax, esp).unwrap();
        report(a);
        a.mov(eax, ss).unwrap();
        report(a);
        a.cli().unwrap(); // at 0x610c: CPL 3 > IOPL 0
    });
    let frame = [
        0x6000,
        u32::from(UCODE32 | 3),
        2,
        0x7000,
        u32::from(UDATA | 3),
    ];
    for (i, v) in frame.iter().enumerate() {
        g.put32(0x8000 + 4 * i as u64, *v);
    }
    g.asm(32, 0x4000, |a| {
        for (msr, v) in [
            (x86::MSR_IA32_SYSENTER_CS, u32::from(KCODE32)),
            (x86::MSR_IA32_SYSENTER_ESP, 0xa000),
            (x86::MSR_IA32_SYSENTER_EIP, 0x5a00),
        ] {
            a.mov(ecx, msr).unwrap();
            a.mov(eax, v).unwrap();
            a.mov(edx, 0u32).unwrap();
            a.wrmsr().unwrap();
        }
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(esp, 0x8000u32).unwrap();
        a.iretd().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(
        out,
        vec![
            u64::from(KCODE32),
            0xa000,
            u64::from(KCODE32 + 8),
            u64::from(KCODE32 + 16) | 3,
            0x7100,
            u64::from(KCODE32 + 24) | 3,
            0,
            0x610c,
        ]
    );
}

#[test]
fn compatibility_mode_user_code_under_a_64bit_kernel() {
    let mut g = Guest::new();
    g.write_tss_desc(0x9);
    g.put64(TSS + 4, 0xa000);
    g.gate64(0x80, 0x5400, 3, 0);
    g.asm(64, 0x5400, |a| {
        a.mov(rax, qword_ptr(rsp + 8)).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 32)).unwrap();
        report(a);
        a.mov(rax, rsp).unwrap();
        report(a);
        a.iretq().unwrap();
    });
    g.gate64(6, 0x5000, 0, 0);
    g.asm(64, 0x5000, |a| {
        a.mov(eax, 6u32).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x6000, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.int(0x80).unwrap();
        a.mov(eax, 0x32u32).unwrap();
        report(a);
        a.syscall().unwrap(); // at 0x600d: #UD outside 64-bit mode (Intel)
    });
    let frame = [
        0x6000,
        u64::from(UCODE32 | 3),
        2,
        0x7000,
        u64::from(UDATA | 3),
    ];
    for (i, v) in frame.iter().enumerate() {
        g.put64(0x8000 + 8 * i as u64, *v);
    }
    g.asm(64, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(rsp, 0x8000u64).unwrap();
        a.iretq().unwrap();
    });
    g.start_long64(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    let ucs = u64::from(UCODE32 | 3);
    assert_eq!(
        out,
        vec![ucs, ucs, u64::from(UDATA | 3), 0xa000 - 40, 0x32, 6, 0x600d]
    );
}

#[test]
fn nmi_is_blocked_until_iret_and_external_events_set_ext() {
    let mut g = Guest::new();
    g.gate32(2, 0x5200, 0xe, 0, true);
    g.asm(32, 0x5200, |a| {
        a.mov(eax, 2u32).unwrap();
        report(a);
        a.hlt().unwrap();
        a.iretd().unwrap();
    });
    // #NP handler: report the error code.
    g.gate32(11, 0x5300, 0xe, 0, true);
    g.asm(32, 0x5300, |a| {
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x4000, |a| {
        a.hlt().unwrap();
        a.mov(eax, 0x77u32).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    assert_eq!(g.run(), (vec![], End::Hlt));
    g.vcpu.inject(Event::Nmi).unwrap();
    assert_eq!(g.run(), (vec![2], End::Hlt));
    // A second NMI waits for the handler's IRET.
    g.vcpu.inject(Event::Nmi).unwrap();
    assert_eq!(g.run(), (vec![0x77, 2], End::Hlt));
    // An external interrupt through a not-present gate: #NP(vector * 8 + 2 + EXT).
    g.gate32(0x40, 0x5200, 0xe, 0, false);
    let mut r = g.vcpu.regs().unwrap();
    r.rflags |= x86::RFLAGS_IF;
    g.vcpu.set_regs(&r).unwrap();
    g.vcpu.inject(Event::Interrupt(0x40)).unwrap();
    assert_eq!(g.run(), (vec![0x40 * 8 + 3], End::Hlt));
}

#[test]
fn descriptor_table_instructions_and_probes() {
    let mut g = Guest::new();
    tss32(&mut g);
    g.asm(32, 0x4000, |a| {
        a.sgdt(ptr(0x3f00)).unwrap();
        a.sidt(ptr(0x3f10)).unwrap();
        a.mov(eax, dword_ptr(0x3f02)).unwrap();
        report(a);
        a.mov(eax, dword_ptr(0x3f12)).unwrap();
        report(a);
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.str(eax).unwrap();
        report(a);
        a.smsw(eax).unwrap();
        report(a);
        a.mov(eax, u32::from(KCODE32)).unwrap();
        a.mov(ecx, 0xdeadu32).unwrap();
        a.lar(ecx, eax).unwrap();
        a.mov(eax, ecx).unwrap();
        report(a);
        a.mov(eax, u32::from(KCODE32)).unwrap();
        a.lsl(ecx, eax).unwrap();
        a.mov(eax, ecx).unwrap();
        report(a);
        a.mov(eax, 0x63u32).unwrap(); // beyond the GDT limit
        a.mov(ecx, 0xdeadu32).unwrap();
        a.lar(ecx, eax).unwrap();
        a.mov(eax, ecx).unwrap();
        report(a);
        a.hlt().unwrap(); // ZF clear
        a.mov(eax, u32::from(UDATA | 3)).unwrap();
        a.verw(ax).unwrap();
        a.hlt().unwrap(); // ZF set
        a.mov(eax, u32::from(KCODE32)).unwrap();
        a.verw(ax).unwrap();
        a.hlt().unwrap(); // ZF clear: code is never writable
        a.mov(eax, u32::from(KDATA)).unwrap();
        a.mov(ecx, 3u32).unwrap();
        a.arpl(ax, cx).unwrap();
        report(a);
        a.hlt().unwrap(); // ZF set
    });
    g.start_protected32(0x4000, 0x9000);
    let zf = |g: &Guest| g.vcpu.regs().unwrap().rflags & x86::RFLAGS_ZF != 0;
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    let want_cr0 = x86::CR0_PE | x86::CR0_ET | x86::CR0_NE;
    assert_eq!(
        out,
        vec![
            GDT,
            IDT,
            u64::from(TSS_SEL),
            want_cr0,
            0x00c0_9b00,
            0xffff_ffff,
            0xdead
        ]
    );
    assert!(!zf(&g));
    g.run();
    assert!(zf(&g), "VERW of a ring-3 data segment");
    g.run();
    assert!(!zf(&g), "VERW of a code segment");
    let (out, _) = g.run();
    assert_eq!(out, vec![u64::from(KDATA | 3)]);
    assert!(zf(&g), "ARPL raised the RPL");
}

#[test]
fn int3_and_into() {
    let mut g = Guest::new();
    for v in [3u8, 4] {
        g.gate32(v, 0x5000 + 0x100 * u32::from(v), 0xe, 3, true);
        g.asm(32, 0x5000 + 0x100 * u64::from(v), |a| {
            a.mov(eax, u32::from(v)).unwrap();
            report(a);
            a.mov(eax, dword_ptr(esp)).unwrap();
            report(a);
            a.iretd().unwrap();
        });
    }
    g.asm(32, 0x4000, |a| {
        a.int3().unwrap();
        a.into().unwrap(); // OF clear: nothing
        a.hlt().unwrap();
        a.into().unwrap(); // at 0x4003, OF set by the test
        a.hlt().unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    assert_eq!(g.run(), (vec![3, 0x4001], End::Hlt));
    let mut r = g.vcpu.regs().unwrap();
    r.rflags |= x86::RFLAGS_OF;
    g.vcpu.set_regs(&r).unwrap();
    assert_eq!(g.run(), (vec![4, 0x4004], End::Hlt));
}

#[test]
fn long_mode_call_gate_and_far_return_to_ring3() {
    let mut g = Guest::new();
    g.write_tss_desc(0x9);
    g.put64(TSS + 4, 0xa000);
    // 64-bit call gate (16 bytes), DPL 3, to ring 0 at 0x5500.
    let lo = 0x5500u64 | (u64::from(KCODE64) << 16) | (0xecu64 << 40);
    g.put64(GDT + u64::from(CALL_GATE), lo);
    g.put64(GDT + u64::from(CALL_GATE) + 8, 0);
    g.asm(64, 0x5500, |a| {
        a.mov(rax, rsp).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 8)).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 24)).unwrap();
        report(a);
        a.db(&[0x48, 0xcb]).unwrap(); // RETFQ
    });
    g.gate64(13, 0x5100, 0, 0);
    g.asm(64, 0x5100, |a| {
        a.mov(rax, qword_ptr(rsp + 8)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.put32(0x3f00, 0);
    g.put16(0x3f04, CALL_GATE | 3);
    g.asm(64, 0x6000, |a| {
        a.call(fword_ptr(0x3f00)).unwrap();
        a.mov(rax, rsp).unwrap();
        report(a);
        a.mov(eax, cs).unwrap();
        report(a);
        a.hlt().unwrap(); // at 0x6010: #GP at ring 3
    });
    let frame = [
        0x6000,
        u64::from(UCODE64 | 3),
        2,
        0x7000,
        u64::from(UDATA | 3),
    ];
    for (i, v) in frame.iter().enumerate() {
        g.put64(0x8000 + 8 * i as u64, *v);
    }
    g.asm(64, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(rsp, 0x8000u64).unwrap();
        a.iretq().unwrap();
    });
    g.start_long64(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    let ucs = u64::from(UCODE64 | 3);
    assert_eq!(
        out,
        vec![0xa000 - 32, ucs, u64::from(UDATA | 3), 0x7000, ucs, 0x6010]
    );
}

#[test]
fn far_call_to_a_task_gate_and_iret_back() {
    const T2: u64 = 0x2c80;
    const T2_SEL: u16 = 0x50;
    const GATE: u16 = 0x58;
    let mut g = Guest::new();
    tss32(&mut g);
    let t2 = Segment {
        base: T2,
        limit: 0x67,
        selector: T2_SEL,
        type_: 0x9,
        present: true,
        ..Default::default()
    };
    g.put64(GDT + u64::from(T2_SEL), t2.to_descriptor());
    g.put64(
        GDT + u64::from(GATE),
        (u64::from(T2_SEL) << 16) | (0x85u64 << 40),
    );
    g.put32(T2 + 0x20, 0x5900); // EIP
    g.put32(T2 + 0x24, 2); // EFLAGS
    g.put32(T2 + 0x28, 0x4242); // EAX
    g.put32(T2 + 0x38, 0xb000); // ESP
    for (off, sel) in [(0x48, KDATA), (0x4c, KCODE32), (0x50, KDATA), (0x54, KDATA)] {
        g.put32(T2 + off, u32::from(sel));
    }
    g.asm(32, 0x5900, |a| {
        report(a); // EAX from the TSS
        a.mov(eax, dword_ptr(T2 as u32)).unwrap(); // back link
        report(a);
        a.iretd().unwrap();
        a.mov(eax, 0x2222u32).unwrap(); // resumes here on the next switch
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(eax, 0x1111u32).unwrap();
        a.call_far(GATE, 0).unwrap();
        report(a);
        a.jmp_far(T2_SEL, 0).unwrap();
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(out, vec![0x4242, u64::from(TSS_SEL), 0x1111, 0x2222]);
    let s = g.vcpu.sregs().unwrap();
    assert_eq!(s.tr.selector, T2_SEL);
    // JMP leaves the old task not busy and the new one busy, without NT.
    assert_eq!((g.get64(GDT + u64::from(TSS_SEL)) >> 40) & 0xf, 0x9);
    assert_eq!((g.get64(GDT + u64::from(T2_SEL)) >> 40) & 0xf, 0xb);
    assert_eq!(g.vcpu.regs().unwrap().rflags & x86::RFLAGS_NT, 0);
}

#[test]
fn real_mode_far_call_retf_and_jmp() {
    let mut g = Guest::new();
    // 0200:0010 = 0x2010: report CS, return popping 2 bytes of arguments.
    g.asm(16, 0x2010, |a| {
        a.mov(eax, 0u32).unwrap();
        a.mov(ax, cs).unwrap();
        report(a);
        a.mov(ax, word_ptr(esp)).unwrap();
        report(a);
        a.retf_1(2).unwrap();
    });
    g.asm(16, 0x1000, |a| {
        a.call_far(0x200, 0x10).unwrap();
        a.mov(eax, esp).unwrap();
        report(a);
        a.jmp_far(0x300, 0).unwrap();
    });
    g.asm(16, 0x3000, |a| {
        a.mov(eax, 0u32).unwrap();
        a.mov(ax, cs).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    let mut s = g.vcpu.sregs().unwrap();
    s.cs = Segment::real_mode(0, true);
    g.vcpu.set_sregs(&s).unwrap();
    g.set_rip_rsp(0x1000, 0x8000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(out, vec![0x200, 0x1005, 0x8002, 0x300]);
}

#[test]
fn swapgs_and_64bit_sysenter_sysexit() {
    let mut g = Guest::new();
    g.write_tss_desc(0x9);
    g.put64(TSS + 4, 0xb000);
    g.put64(0x3000, 0x1111);
    g.put64(0x3100, 0x2222);
    g.gate64(13, 0x5100, 0, 0);
    g.asm(64, 0x5100, |a| {
        a.mov(rax, qword_ptr(rsp)).unwrap();
        report(a);
        a.mov(rax, qword_ptr(rsp + 8)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.asm(64, 0x5a00, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.mov(rax, rsp).unwrap();
        report(a);
        a.sysexitq().unwrap();
    });
    g.asm(64, 0x6000, |a| {
        a.mov(rdx, 0x6100u64).unwrap();
        a.mov(rcx, 0x7100u64).unwrap();
        a.sysenter().unwrap();
    });
    g.asm(64, 0x6100, |a| {
        a.mov(eax, cs).unwrap();
        report(a);
        a.mov(rax, rsp).unwrap();
        report(a);
        a.swapgs().unwrap(); // at 0x6109: ring 3
    });
    let frame = [
        0x6000,
        u64::from(UCODE64 | 3),
        2,
        0x7000,
        u64::from(UDATA | 3),
    ];
    for (i, v) in frame.iter().enumerate() {
        g.put64(0x8000 + 8 * i as u64, *v);
    }
    g.asm(64, 0x4000, |a| {
        for (msr, v) in [
            (x86::MSR_GS_BASE, 0x3000u32),
            (x86::MSR_KERNEL_GS_BASE, 0x3100),
            (x86::MSR_IA32_SYSENTER_CS, u32::from(KCODE64)),
            (x86::MSR_IA32_SYSENTER_ESP, 0xa000),
            (x86::MSR_IA32_SYSENTER_EIP, 0x5a00),
        ] {
            a.mov(ecx, msr).unwrap();
            a.mov(eax, v).unwrap();
            a.mov(edx, 0u32).unwrap();
            a.wrmsr().unwrap();
        }
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(rax, qword_ptr(0).gs()).unwrap();
        report(a);
        a.swapgs().unwrap();
        a.mov(rax, qword_ptr(0).gs()).unwrap();
        report(a);
        a.mov(ecx, x86::MSR_KERNEL_GS_BASE).unwrap();
        a.rdmsr().unwrap();
        report(a);
        a.mov(rsp, 0x8000u64).unwrap();
        a.iretq().unwrap();
    });
    g.start_long64(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(
        out,
        vec![
            0x1111,
            0x2222,
            0x3000,
            u64::from(KCODE64),
            0xa000,
            u64::from(KCODE64 + 32) | 3,
            0x7100,
            0,
            0x6109,
        ]
    );
}

#[test]
fn debug_registers_and_general_detect() {
    let mut g = Guest::new();
    g.gate32(1, 0x5000, 0xe, 0, true);
    g.asm(32, 0x5000, |a| {
        a.mov(eax, dr6).unwrap();
        report(a);
        a.mov(eax, dword_ptr(esp)).unwrap();
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x4000, |a| {
        a.mov(eax, 0x1234u32).unwrap();
        a.mov(dr0, eax).unwrap();
        a.mov(eax, dr0).unwrap();
        report(a);
        a.mov(eax, dr5).unwrap(); // DR7 while CR4.DE is clear
        report(a);
        a.mov(eax, 0x2000u32).unwrap();
        a.mov(dr7, eax).unwrap();
        a.mov(eax, dr0).unwrap(); // at 0x401a: #DB
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(out, vec![0x1234, 0x400, 0xffff_2ff0, 0x401a]);
}

#[test]
fn far_jmp_to_a_16bit_tss() {
    const T2: u64 = 0x2c80;
    const T2_SEL: u16 = 0x50;
    let mut g = Guest::new();
    tss32(&mut g);
    let t2 = Segment {
        base: T2,
        limit: 0x2b,
        selector: T2_SEL,
        type_: 0x1,
        present: true,
        ..Default::default()
    };
    g.put64(GDT + u64::from(T2_SEL), t2.to_descriptor());
    g.put16(T2 + 0x0e, 0x5900); // IP
    g.put16(T2 + 0x10, 2); // FLAGS
    g.put16(T2 + 0x12, 0x4242); // AX
    g.put16(T2 + 0x1a, 0xb000); // SP
    for (off, sel) in [(0x22, KDATA), (0x24, KCODE32), (0x26, KDATA), (0x28, KDATA)] {
        g.put16(T2 + off, sel);
    }
    g.asm(32, 0x5900, |a| {
        report(a);
        a.mov(eax, esp).unwrap();
        report(a);
        a.mov(eax, dword_ptr((TSS + 0x20) as u32)).unwrap(); // saved EIP
        report(a);
        a.mov(eax, dword_ptr((TSS + 0x2c) as u32)).unwrap(); // saved ECX
        report(a);
        a.hlt().unwrap();
    });
    g.asm(32, 0x4000, |a| {
        a.mov(eax, u32::from(TSS_SEL)).unwrap();
        a.ltr(ax).unwrap();
        a.mov(ecx, 0x7777u32).unwrap();
        a.jmp_far(T2_SEL, 0).unwrap(); // at 0x400e
    });
    g.start_protected32(0x4000, 0x9000);
    let (out, end) = g.run();
    assert_eq!(end, End::Hlt);
    assert_eq!(out, vec![0x4242, 0xb000, 0x4015, 0x7777]);
    assert_eq!((g.get64(GDT + u64::from(TSS_SEL)) >> 40) & 0xf, 0x9);
    assert_eq!((g.get64(GDT + u64::from(T2_SEL)) >> 40) & 0xf, 0x3);
    assert_eq!(g.vcpu.sregs().unwrap().tr.type_, 0x3);
}
