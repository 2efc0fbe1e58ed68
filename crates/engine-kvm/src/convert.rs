//! Field-by-field translation between the API's register structs and KVM's.

use kite_hypervisor::{CpuidEntry, DescriptorTable, Fpu, Regs, Segment, Sregs};
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs,
    KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
};

pub(crate) fn regs_from_kvm(r: &kvm_regs) -> Regs {
    Regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

pub(crate) fn regs_to_kvm(r: &Regs) -> kvm_regs {
    kvm_regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn segment_from_kvm(s: &kvm_segment) -> Segment {
    Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present != 0,
        dpl: s.dpl,
        db: s.db != 0,
        s: s.s != 0,
        l: s.l != 0,
        g: s.g != 0,
        avl: s.avl != 0,
        unusable: s.unusable != 0,
    }
}

fn segment_to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: u8::from(s.present),
        dpl: s.dpl,
        db: u8::from(s.db),
        s: u8::from(s.s),
        l: u8::from(s.l),
        g: u8::from(s.g),
        avl: u8::from(s.avl),
        unusable: u8::from(s.unusable),
        padding: 0,
    }
}

fn dtable_from_kvm(d: &kvm_dtable) -> DescriptorTable {
    DescriptorTable {
        base: d.base,
        limit: d.limit,
    }
}

fn dtable_to_kvm(d: &DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        padding: [0; 3],
    }
}

pub(crate) fn sregs_from_kvm(s: &kvm_sregs) -> Sregs {
    Sregs {
        cs: segment_from_kvm(&s.cs),
        ds: segment_from_kvm(&s.ds),
        es: segment_from_kvm(&s.es),
        fs: segment_from_kvm(&s.fs),
        gs: segment_from_kvm(&s.gs),
        ss: segment_from_kvm(&s.ss),
        tr: segment_from_kvm(&s.tr),
        ldt: segment_from_kvm(&s.ldt),
        gdt: dtable_from_kvm(&s.gdt),
        idt: dtable_from_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
    }
}

/// `base` supplies the fields the API does not model (the pending-interrupt
/// bitmap), read from the vCPU just before.
pub(crate) fn sregs_to_kvm(s: &Sregs, base: &kvm_sregs) -> kvm_sregs {
    kvm_sregs {
        cs: segment_to_kvm(&s.cs),
        ds: segment_to_kvm(&s.ds),
        es: segment_to_kvm(&s.es),
        fs: segment_to_kvm(&s.fs),
        gs: segment_to_kvm(&s.gs),
        ss: segment_to_kvm(&s.ss),
        tr: segment_to_kvm(&s.tr),
        ldt: segment_to_kvm(&s.ldt),
        gdt: dtable_to_kvm(&s.gdt),
        idt: dtable_to_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap: base.interrupt_bitmap,
    }
}

pub(crate) fn fpu_from_kvm(f: &kvm_fpu) -> Fpu {
    Fpu {
        fpr: f.fpr,
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftwx,
        last_opcode: f.last_opcode,
        last_ip: f.last_ip,
        last_dp: f.last_dp,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
    }
}

pub(crate) fn fpu_to_kvm(f: &Fpu) -> kvm_fpu {
    kvm_fpu {
        fpr: f.fpr,
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftwx,
        pad1: 0,
        last_opcode: f.last_opcode,
        last_ip: f.last_ip,
        last_dp: f.last_dp,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
        pad2: 0,
    }
}

pub(crate) fn cpuid_from_kvm(e: &kvm_cpuid_entry2) -> CpuidEntry {
    CpuidEntry {
        function: e.function,
        index: e.index,
        significant_index: e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0,
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
    }
}

pub(crate) fn cpuid_to_kvm(e: &CpuidEntry) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function: e.function,
        index: e.index,
        flags: if e.significant_index {
            KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        } else {
            0
        },
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
        padding: [0; 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regs_round_trip_every_field() {
        let mut r = Regs::default();
        let vals: [u64; 16] =
            std::array::from_fn(|i| 0x0111_0000_0000_0000 * (i as u64 + 1) + i as u64);
        r.set_gprs(&vals);
        r.rip = 0xdead_beef;
        r.rflags = 0x246;
        assert_eq!(regs_from_kvm(&regs_to_kvm(&r)), r);
    }

    #[test]
    fn sregs_round_trip_keeps_interrupt_bitmap() {
        let mut s = Sregs {
            cr0: 0x8000_0011,
            cr3: 0x1000,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        };
        s.cs = Segment::flat(0x18, kite_hypervisor::FlatKind::Code64);
        s.tr.unusable = true;
        s.gdt = DescriptorTable {
            base: 0x800,
            limit: 0x1f,
        };
        let base = kvm_sregs {
            interrupt_bitmap: [1, 2, 3, 4],
            ..Default::default()
        };
        let k = sregs_to_kvm(&s, &base);
        assert_eq!(k.interrupt_bitmap, [1, 2, 3, 4]);
        assert_eq!(k.cs.l, 1);
        assert_eq!(sregs_from_kvm(&k), s);
    }

    #[test]
    fn cpuid_significant_index_maps_to_flag() {
        let e = CpuidEntry {
            function: 7,
            index: 1,
            significant_index: true,
            eax: 1,
            ebx: 2,
            ecx: 3,
            edx: 4,
        };
        let k = cpuid_to_kvm(&e);
        assert_eq!(k.flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        assert_eq!(cpuid_from_kvm(&k), e);
    }

    #[test]
    fn fpu_round_trip() {
        let mut f = Fpu::default();
        f.xmm[3] = [7; 16];
        f.fpr[1][..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        f.ftwx = 0x2;
        assert_eq!(fpu_from_kvm(&fpu_to_kvm(&f)), f);
    }
}
