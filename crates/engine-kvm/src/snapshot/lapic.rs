//! kvm_lapic_state (the 1 KiB xAPIC register page) to and from `LapicState`.
//! KVM keeps IA32_APIC_BASE and IA32_TSC_DEADLINE outside the page; the
//! caller moves them by KVM_SET_SREGS and KVM_SET_MSRS.

use kite_hypervisor::state::lapic::{LVT_CMCI, LVT_ENTRIES};
use kite_hypervisor::state::LapicState;
use kvm_bindings::kvm_lapic_state;

const APIC_BASE_EXTD: u64 = 1 << 10;

const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_LDR: usize = 0xd0;
const REG_DFR: usize = 0xe0;
const REG_SVR: usize = 0xf0;
const REG_ISR: usize = 0x100;
const REG_TMR: usize = 0x180;
const REG_IRR: usize = 0x200;
const REG_ESR: usize = 0x280;
const REG_LVT_CMCI: usize = 0x2f0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

fn get(page: &kvm_lapic_state, off: usize) -> u32 {
    let b = |i: usize| page.regs[off + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set(page: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().iter().enumerate() {
        page.regs[off + i] = *byte as std::os::raw::c_char;
    }
}

/// The LVT register of neutral entry `i` (timer..error at 0x320.., CMCI at 0x2f0).
fn lvt_offset(i: usize) -> usize {
    if i == LVT_CMCI {
        REG_LVT_CMCI
    } else {
        REG_LVT_TIMER + 0x10 * i
    }
}

/// The neutral state of a register page; `apic_base` tells xAPIC from
/// x2APIC (where the ID register holds the whole id), `tsc_deadline` is
/// IA32_TSC_DEADLINE as read by KVM_GET_MSRS.
pub fn lapic_from_kvm(page: &kvm_lapic_state, apic_base: u64, tsc_deadline: u64) -> LapicState {
    let x2 = apic_base & APIC_BASE_EXTD != 0;
    let id = get(page, REG_ID);
    let mut s = LapicState {
        id: if x2 { id } else { id >> 24 },
        tpr: get(page, REG_TPR),
        ldr: get(page, REG_LDR),
        dfr: get(page, REG_DFR),
        svr: get(page, REG_SVR),
        esr: get(page, REG_ESR),
        esr_pending: 0,
        icr_low: get(page, REG_ICR_LOW),
        icr_high: get(page, REG_ICR_HIGH),
        timer_initial: get(page, REG_TIMER_INITIAL),
        timer_current: get(page, REG_TIMER_CURRENT),
        timer_divide: get(page, REG_TIMER_DIVIDE),
        tsc_deadline,
        ..Default::default()
    };
    for w in 0..8 {
        s.isr[w] = get(page, REG_ISR + 0x10 * w);
        s.tmr[w] = get(page, REG_TMR + 0x10 * w);
        s.irr[w] = get(page, REG_IRR + 0x10 * w);
    }
    for (i, v) in s.lvt.iter_mut().enumerate() {
        *v = get(page, lvt_offset(i));
    }
    s
}

/// The register page for `s`, over `base` (the page KVM_GET_LAPIC gave, so
/// registers the neutral state does not carry keep KVM's values).
pub fn lapic_to_kvm(s: &LapicState, apic_base: u64, base: &kvm_lapic_state) -> kvm_lapic_state {
    let x2 = apic_base & APIC_BASE_EXTD != 0;
    let mut page = *base;
    set(&mut page, REG_ID, if x2 { s.id } else { s.id << 24 });
    set(&mut page, REG_TPR, s.tpr & 0xff);
    set(&mut page, REG_LDR, s.ldr);
    set(&mut page, REG_DFR, s.dfr);
    set(&mut page, REG_SVR, s.svr);
    set(&mut page, REG_ESR, s.esr | s.esr_pending);
    set(&mut page, REG_ICR_LOW, s.icr_low & !(1 << 12));
    set(&mut page, REG_ICR_HIGH, s.icr_high);
    set(&mut page, REG_TIMER_INITIAL, s.timer_initial);
    set(
        &mut page,
        REG_TIMER_CURRENT,
        s.timer_current.min(s.timer_initial),
    );
    set(&mut page, REG_TIMER_DIVIDE, s.timer_divide);
    for w in 0..8 {
        set(&mut page, REG_ISR + 0x10 * w, s.isr[w]);
        set(&mut page, REG_TMR + 0x10 * w, s.tmr[w]);
        set(&mut page, REG_IRR + 0x10 * w, s.irr[w]);
    }
    for i in 0..LVT_ENTRIES {
        set(&mut page, lvt_offset(i), s.lvt[i]);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_page_round_trips() {
        let mut s = LapicState {
            id: 3,
            tpr: 0x20,
            ldr: 0x0800_0000,
            dfr: 0xffff_ffff,
            svr: 0x1ff,
            esr: 0x40,
            icr_low: 0x4_0030,
            icr_high: 0x0300_0000,
            timer_initial: 1000,
            timer_current: 400,
            timer_divide: 0xb,
            tsc_deadline: 0,
            ..Default::default()
        };
        s.isr[1] = 1 << 2;
        s.tmr[1] = 1 << 2;
        s.irr[7] = 1 << 31;
        s.lvt = [0x2_00ec, 0x1_0000, 0x400, 0x700, 0x1_0400, 0xfe, 0x1_0000];
        let base = kvm_lapic_state { regs: [0; 1024] };
        let page = lapic_to_kvm(&s, 0xfee0_0800, &base);
        assert_eq!(get(&page, REG_ID), 3 << 24, "xAPIC id in bits 31:24");
        assert_eq!(get(&page, 0x350), 0x700, "LINT0 at 0x350");
        assert_eq!(lapic_from_kvm(&page, 0xfee0_0800, 0), s);
        // x2APIC: the whole id in the register.
        let x2 = LapicState { id: 0x1234, ..s };
        let page = lapic_to_kvm(&x2, 0xfee0_0c00, &base);
        assert_eq!(get(&page, REG_ID), 0x1234);
        assert_eq!(lapic_from_kvm(&page, 0xfee0_0c00, 0), x2);
    }
}
