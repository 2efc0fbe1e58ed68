//! Whole-chip tests: routing between the controllers, IPIs between vCPUs,
//! and the halt/wake machinery across threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

const LAPIC: u64 = 0xfee0_0000;

fn lapic_write(v: &VcpuIrq, reg: u64, val: u32) {
    assert!(v.lapic_mmio_write(LAPIC + reg, &val.to_le_bytes()));
}

fn lapic_read(v: &VcpuIrq, reg: u64) -> u32 {
    let mut d = [0u8; 4];
    assert!(v.lapic_mmio_read(LAPIC + reg, &mut d));
    u32::from_le_bytes(d)
}

fn ioapic_write(chip: &IrqChip, reg: u32, val: u32) {
    assert!(chip.ioapic_mmio_write(IOAPIC_BASE, &reg.to_le_bytes()));
    assert!(chip.ioapic_mmio_write(IOAPIC_BASE + 0x10, &val.to_le_bytes()));
}

fn ioapic_read(chip: &IrqChip, reg: u32) -> u32 {
    assert!(chip.ioapic_mmio_write(IOAPIC_BASE, &reg.to_le_bytes()));
    let mut d = [0u8; 4];
    assert!(chip.ioapic_mmio_read(IOAPIC_BASE + 0x10, &mut d));
    u32::from_le_bytes(d)
}

fn out(chip: &IrqChip, port: u16, val: u8) {
    assert!(chip.pio_write(port, &[val]));
}

fn inb(chip: &IrqChip, port: u16) -> u8 {
    let mut d = [0u8];
    assert!(chip.pio_read(port, &mut d));
    d[0]
}

/// Linux's init_8259A: vectors 0x30 / 0x38, everything masked but the cascade.
fn init_pic(chip: &IrqChip) {
    for (p, v) in [
        (0x21, 0xff),
        (0xa1, 0xff),
        (0x20, 0x11),
        (0x21, 0x30),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x38),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0xfb),
        (0xa1, 0xff),
    ] {
        out(chip, p, v);
    }
}

/// Software-enable a LAPIC the way Linux does (SVR = 0x1ff).
fn enable_lapic(v: &VcpuIrq) {
    lapic_write(v, 0xf0, 0x1ff);
}

/// `halt_wait_if(interrupts_enabled)` on another thread; fails the test if
/// it does not return within 10 s instead of hanging the suite.
fn halt(v: &Arc<VcpuIrq>, interrupts_enabled: bool) {
    let (tx, rx) = std::sync::mpsc::channel();
    let v = Arc::clone(v);
    thread::spawn(move || {
        if interrupts_enabled {
            v.halt_wait();
        } else {
            v.halt_wait_if(false);
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("halt_wait did not return");
}

fn events(v: &VcpuIrq) -> u32 {
    v.events().load(Ordering::Relaxed)
}

#[test]
fn pic_interrupt_reaches_bsp_through_virtual_wire() {
    let chip = IrqChip::new(false);
    let bsp = chip.add_vcpu(0);
    let ap = chip.add_vcpu(1);
    init_pic(&chip);
    out(&chip, 0x21, 0xeb); // unmask IRQ4
    assert!(!bsp.poll(Instant::now()));
    chip.set_irq_line(4, true);
    chip.set_irq_line(4, false);
    assert_ne!(events(&bsp), 0);
    assert_eq!(events(&ap), 0, "the AP's LINT0 is masked");
    assert!(bsp.poll(Instant::now()));
    assert!(!ap.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x34));
    assert!(!bsp.poll(Instant::now()));
    // ISR shows IRQ4 until the EOI.
    out(&chip, 0x20, 0x0b);
    assert_eq!(inb(&chip, 0x20), 0x10);
    out(&chip, 0x20, 0x20);
    assert_eq!(inb(&chip, 0x20), 0);
    // Slave IRQ through the cascade.
    out(&chip, 0xa1, 0xef); // unmask IRQ12
    chip.set_irq_line(12, true);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x3c));
}

#[test]
fn masking_lint0_cuts_the_pic_off() {
    let chip = IrqChip::new(false);
    let bsp = chip.add_vcpu(0);
    init_pic(&chip);
    out(&chip, 0x21, 0xfa);
    enable_lapic(&bsp);
    lapic_write(&bsp, 0x350, 0x1_0700);
    chip.set_irq_line(0, true);
    assert!(!bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), None);
    // Unmasking LINT0 makes the pending 8259 request visible.
    lapic_write(&bsp, 0x350, 0x700);
    assert_ne!(events(&bsp), 0);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x30));
}

#[test]
fn globally_disabled_apic_takes_pic_directly() {
    let chip = IrqChip::new(false);
    let _bsp = chip.add_vcpu(0);
    let ap = chip.add_vcpu(1);
    init_pic(&chip);
    out(&chip, 0x21, 0xf7);
    assert!(ap.wrmsr(0x1b, 0xfee0_0000));
    let mut d = [0u8; 4];
    assert!(!ap.lapic_mmio_read(LAPIC + 0x30, &mut d), "MMIO window off");
    chip.set_irq_line(3, true);
    assert!(ap.poll(Instant::now()));
    assert_eq!(ap.acknowledge(), Some(0x33));
}

#[test]
fn ioapic_level_interrupt_eoi_roundtrip() {
    let chip = IrqChip::new(false);
    let bsp = chip.add_vcpu(0);
    enable_lapic(&bsp);
    // Pin 10: level, vector 0x41, physical destination APIC 0.
    ioapic_write(&chip, 0x10 + 20, 0x0000_8041);
    ioapic_write(&chip, 0x11 + 20, 0);
    chip.set_irq_line(10, true);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x41));
    assert_ne!(ioapic_read(&chip, 0x10 + 20) & (1 << 14), 0, "remote IRR");
    // EOI with the line still high: remote IRR cleared and delivered again.
    lapic_write(&bsp, 0xb0, 0);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x41));
    // Device deasserts before EOI: nothing more.
    chip.set_irq_line(10, false);
    lapic_write(&bsp, 0xb0, 0);
    assert_eq!(ioapic_read(&chip, 0x10 + 20) & (1 << 14), 0);
    assert!(!bsp.poll(Instant::now()));
}

#[test]
fn gsi0_enters_ioapic_pin2_and_gsi_16_23_ioapic_only() {
    let chip = IrqChip::new(false);
    let bsp = chip.add_vcpu(0);
    enable_lapic(&bsp);
    lapic_write(&bsp, 0x350, 0x1_0700); // PIC off
    ioapic_write(&chip, 0x10 + 4, 0x0000_0030); // pin 2, edge, vector 0x30
    ioapic_write(&chip, 0x10, 0x0000_0050); // pin 0 would be 0x50
    ioapic_write(&chip, 0x10 + 2 * 19, 0x0000_a061); // pin 19 level, low active stored
    chip.set_irq_line(0, true);
    chip.set_irq_line(0, false);
    assert_eq!(bsp.acknowledge(), Some(0x30));
    lapic_write(&bsp, 0xb0, 0);
    chip.set_irq_line(19, true);
    assert_eq!(bsp.acknowledge(), Some(0x61));
    // Out-of-range GSIs are ignored.
    chip.set_irq_line(24, true);
    chip.set_irq_line(u32::MAX, true);
    lapic_write(&bsp, 0xb0, 0);
}

#[test]
fn msi_fixed_and_lowest_priority() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    let v1 = chip.add_vcpu(1);
    enable_lapic(&v0);
    enable_lapic(&v1);
    chip.signal_msi(0xfee0_1000, 0x0045);
    assert!(!v0.poll(Instant::now()));
    assert!(v1.poll(Instant::now()));
    assert_eq!(v1.acknowledge(), Some(0x45));
    lapic_write(&v1, 0xb0, 0);
    // Logical flat destination, both CPUs in the set; v0 busy (TPR high).
    lapic_write(&v0, 0xd0, 0x0100_0000);
    lapic_write(&v1, 0xd0, 0x0200_0000);
    v0.set_cr8(0xe);
    assert_eq!(v0.cr8(), 0xe);
    chip.signal_msi(0xfee0_300c, 0x0146);
    assert!(
        v1.poll(Instant::now()),
        "lowest priority goes to the idle CPU"
    );
    assert_eq!(v1.acknowledge(), Some(0x46));
    // NMI by MSI.
    chip.signal_msi(0xfee0_0000, 0x0400);
    assert!(v0.take_nmi());
    assert!(!v0.take_nmi());
    assert!(!v1.take_nmi());
    // Not an MSI address: dropped.
    chip.signal_msi(0xfed0_0000, 0x0047);
    assert!(!v0.poll(Instant::now()));
}

#[test]
fn ipis_between_vcpus() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    let v1 = chip.add_vcpu(1);
    enable_lapic(&v0);
    enable_lapic(&v1);
    // Fixed IPI 0xf0 to APIC 1.
    lapic_write(&v0, 0x310, 0x0100_0000);
    lapic_write(&v0, 0x300, 0x0000_40f0);
    assert_eq!(lapic_read(&v0, 0x300) & (1 << 12), 0, "idle");
    assert!(v1.poll(Instant::now()));
    assert!(!v0.poll(Instant::now()));
    assert_eq!(v1.acknowledge(), Some(0xf0));
    // Same priority class as the one in service: held until EOI.
    lapic_write(&v1, 0x300, 0x0008_40f1);
    assert_eq!(v1.acknowledge(), None);
    lapic_write(&v1, 0xb0, 0);
    assert_eq!(v1.acknowledge(), Some(0xf1));
    assert_eq!(v0.acknowledge(), Some(0xf1));
    lapic_write(&v0, 0xb0, 0);
    lapic_write(&v1, 0xb0, 0);
    // All-including-self.
    lapic_write(&v1, 0x300, 0x0008_40f2);
    assert_eq!(v0.acknowledge(), Some(0xf2));
    assert_eq!(v1.acknowledge(), Some(0xf2));
    // NMI to all-but-self.
    lapic_write(&v0, 0x300, 0x000c_4400);
    assert!(v1.take_nmi());
    assert!(!v0.take_nmi());
    // INIT then SIPI (vector 0x9a) as Linux's wakeup_secondary_cpu_via_init.
    lapic_write(&v0, 0x310, 0x0100_0000);
    lapic_write(&v0, 0x300, 0x0000_c500);
    lapic_write(&v0, 0x300, 0x0000_8500);
    assert!(v1.take_init());
    assert!(!v1.take_init());
    assert_eq!(lapic_read(&v1, 0xf0), 0xff, "INIT reset the APIC");
    lapic_write(&v0, 0x300, 0x0000_069a);
    assert_eq!(v1.take_sipi(), Some(0x9a));
    assert_eq!(v1.take_sipi(), None);
    assert_eq!(v0.take_sipi(), None);
}

#[test]
fn x2apic_ipi_by_msr() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    let v1 = chip.add_vcpu(1);
    // xAPIC -> x2APIC (EN | EXTD, BSP bit on CPU 0 only).
    assert!(v0.wrmsr(0x1b, 0xfee0_0d00));
    assert!(v1.wrmsr(0x1b, 0xfee0_0c00));
    for v in [&v0, &v1] {
        assert!(v.wrmsr(0x80f, 0x1ff));
    }
    assert_eq!(v1.rdmsr(0x802), Some(1));
    assert!(v0.wrmsr(0x830, (1u64 << 32) | 0x4077));
    assert_eq!(v1.acknowledge(), Some(0x77));
    assert!(v1.wrmsr(0x80b, 0));
    assert!(!v1.wrmsr(0x80b, 1), "non-zero EOI write is #GP");
    assert_eq!(v0.rdmsr(0x801), None);
}

#[test]
fn tpr_blocks_and_cr8_unblocks() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    v0.set_cr8(5);
    assert_eq!(lapic_read(&v0, 0x80), 0x50);
    chip.signal_msi(0xfee0_0000, 0x0052);
    assert!(!v0.poll(Instant::now()));
    assert_eq!(v0.acknowledge(), None);
    v0.set_cr8(4);
    assert_ne!(events(&v0), 0);
    assert!(v0.poll(Instant::now()));
    assert_eq!(v0.acknowledge(), Some(0x52));
}

#[test]
fn tsc_msr_and_shared_clock() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    let a = v0.rdmsr(MSR_TSC).unwrap();
    let b = v0.rdmsr(MSR_TSC).unwrap();
    assert!(b >= a);
    assert!(v0.wrmsr(MSR_TSC, 1 << 40));
    let now = Instant::now();
    let t = v0.guest_tsc(now);
    assert!((1 << 40..(1 << 40) + 10_000_000_000).contains(&t));
    // The offset TSC still runs at TSC_HZ with the VM clock.
    let later = now + Duration::from_millis(1);
    assert_eq!(v0.guest_tsc(later) - t, TSC_HZ / 1000);
    assert_eq!(
        chip.tsc_clock().tsc(later) - chip.tsc_clock().tsc(now),
        TSC_HZ / 1000
    );
}

#[test]
fn halt_wait_wakes_on_irq_from_another_thread() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    ioapic_write(&chip, 0x10 + 2 * 17, 0x0000_0063);
    let raised = Arc::new(AtomicBool::new(false));
    let t = {
        let chip = Arc::clone(&chip);
        let raised = Arc::clone(&raised);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            raised.store(true, Ordering::SeqCst);
            chip.set_irq_line(17, true);
        })
    };
    halt(&v0, true);
    assert!(
        raised.load(Ordering::SeqCst),
        "returned before the interrupt"
    );
    assert_eq!(v0.acknowledge(), Some(0x63));
    t.join().unwrap();
}

#[test]
fn halt_wait_wakes_on_kick_and_ipi() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    let v1 = chip.add_vcpu(1);
    enable_lapic(&v0);
    enable_lapic(&v1);
    let kicked = Arc::new(AtomicBool::new(false));
    let t = {
        let v0 = Arc::clone(&v0);
        let kicked = Arc::clone(&kicked);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            kicked.store(true, Ordering::SeqCst);
            v0.kick();
        })
    };
    halt(&v0, true);
    assert!(kicked.load(Ordering::SeqCst));
    assert!(v0.kicked_take());
    assert!(!v0.kicked_take());
    t.join().unwrap();

    let sent = Arc::new(AtomicBool::new(false));
    let t = {
        let v1 = Arc::clone(&v1);
        let sent = Arc::clone(&sent);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            sent.store(true, Ordering::SeqCst);
            lapic_write(&v1, 0x310, 0);
            lapic_write(&v1, 0x300, 0x0000_40e5);
        })
    };
    halt(&v0, true);
    assert!(sent.load(Ordering::SeqCst));
    assert_eq!(v0.acknowledge(), Some(0xe5));
    assert!(!v0.kicked_take(), "deliveries are not kicks");
    t.join().unwrap();
}

#[test]
fn halt_wait_returns_at_once_when_interrupt_pending() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    chip.signal_msi(0xfee0_0000, 0x0071);
    halt(&v0, true);
    assert_eq!(v0.acknowledge(), Some(0x71));
}

#[test]
fn halt_wait_wakes_at_lapic_timer_deadline() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    lapic_write(&v0, 0x3e0, 0xb); // divide by 1
    lapic_write(&v0, 0x320, 0xef); // one-shot, vector 0xef
    let start = Instant::now();
    lapic_write(&v0, 0x380, (APIC_BUS_HZ / 1000 * 40) as u32); // 40 ms
    halt(&v0, true);
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "woke before the deadline"
    );
    assert_eq!(v0.acknowledge(), Some(0xef));
    assert_eq!(lapic_read(&v0, 0x390), 0);
}

#[test]
fn timer_thread_sets_events_while_vcpu_runs() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    lapic_write(&v0, 0x320, 0x4_00e1); // TSC-deadline mode
    let now = Instant::now();
    let deadline = v0.guest_tsc(now) + 20_000_000; // 20 ms at 1 GHz
    assert!(v0.wrmsr(0x6e0, deadline));
    // The "vCPU" spins on its event word only, as the CPU loop does.
    let give_up = Instant::now() + Duration::from_secs(10);
    while events(&v0) == 0 {
        assert!(Instant::now() < give_up, "timer never fired");
        thread::sleep(Duration::from_millis(1));
    }
    assert!(v0.guest_tsc(Instant::now()) >= deadline);
    assert!(v0.poll(Instant::now()));
    assert_eq!(v0.acknowledge(), Some(0xe1));
}

#[test]
fn pit_periodic_irq0_wakes_halted_vcpu_via_ioapic() {
    let chip = IrqChip::new(true);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    lapic_write(&v0, 0x350, 0x1_0700);
    ioapic_write(&chip, 0x10 + 4, 0x0000_0030);
    // Mode 2, 10 ms period.
    let start = Instant::now();
    out(&chip, 0x43, 0x34);
    out(&chip, 0x40, (11932u16 & 0xff) as u8);
    out(&chip, 0x40, (11932u16 >> 8) as u8);
    halt(&v0, true);
    assert!(start.elapsed() >= Duration::from_millis(10));
    assert_eq!(v0.acknowledge(), Some(0x30));
    lapic_write(&v0, 0xb0, 0);
    halt(&v0, true);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(v0.acknowledge(), Some(0x30));
    // Stop it: one-shot mode 0 never started.
    out(&chip, 0x43, 0x30);
}

#[test]
fn pit_through_pic_with_linux_init() {
    let chip = IrqChip::new(true);
    let v0 = chip.add_vcpu(0);
    init_pic(&chip);
    out(&chip, 0x21, 0xfa);
    out(&chip, 0x43, 0x30); // mode 0, 5 ms
    out(&chip, 0x40, (5966u16 & 0xff) as u8);
    out(&chip, 0x40, (5966u16 >> 8) as u8);
    halt(&v0, true);
    assert_eq!(v0.acknowledge(), Some(0x30));
}

#[test]
fn port_and_window_ownership() {
    let chip = IrqChip::new(false);
    let mut d = [0u8; 1];
    assert!(!chip.pio_read(0x40, &mut d), "no PIT");
    assert!(!chip.pio_read(0x61, &mut d));
    assert!(!chip.pio_write(0x60, &[0]));
    assert!(chip.pio_read(0x4d0, &mut d));
    let with_pit = IrqChip::new(true);
    assert!(with_pit.pio_read(0x61, &mut d));
    assert!(with_pit.pio_write(0x43, &[0x34]));
    // Word access to 0x20 covers 0x20 and 0x21.
    let mut w = [0u8; 2];
    assert!(chip.pio_read(0x20, &mut w));
    assert_eq!(w[1], 0xff, "IMR at reset");
    assert!(!chip.ioapic_mmio_read(IOAPIC_BASE - 1, &mut d));
    assert!(!chip.ioapic_mmio_read(IOAPIC_BASE + IOAPIC_SIZE, &mut d));
    assert!(!chip.ioapic_mmio_write(u64::MAX, &d));
    assert_eq!(ioapic_read(&chip, 1), 0x0017_0011);
}

#[test]
fn dropping_chips_stops_their_timer_threads() {
    for _ in 0..20 {
        let chip = IrqChip::new(true);
        let v = chip.add_vcpu(0);
        enable_lapic(&v);
        lapic_write(&v, 0x320, 0x2_0030);
        lapic_write(&v, 0x380, 1000);
        out(&chip, 0x43, 0x34);
        out(&chip, 0x40, 0x10);
        out(&chip, 0x40, 0x00);
        drop(v);
        drop(chip);
    }
}

#[test]
fn concurrent_lines_ipis_and_acks_do_not_deadlock() {
    let chip = IrqChip::new(true);
    let v0 = chip.add_vcpu(0);
    let v1 = chip.add_vcpu(1);
    enable_lapic(&v0);
    enable_lapic(&v1);
    for pin in 16..24u32 {
        ioapic_write(&chip, 0x10 + 2 * pin, 0x0000_8040 + pin);
        ioapic_write(
            &chip,
            0x11 + 2 * pin,
            if pin % 2 == 0 { 0 } else { 0x0100_0000 },
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for k in 0..2u32 {
        let chip = Arc::clone(&chip);
        let stop = Arc::clone(&stop);
        handles.push(thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let pin = 16 + (n % 4) * 2 + k;
                chip.set_irq_line(pin, !n.is_multiple_of(3));
                chip.signal_msi(0xfee0_0000 | (u64::from(n % 2) << 12), 0x90 + n % 8);
                n = n.wrapping_add(1);
            }
        }));
    }
    let cpus: Vec<_> = [Arc::clone(&v0), Arc::clone(&v1)]
        .into_iter()
        .map(|v| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut taken = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    if v.events().load(Ordering::Relaxed) != 0
                        && v.poll(Instant::now())
                        && v.acknowledge().is_some()
                    {
                        taken += 1;
                        lapic_write(&v, 0xb0, 0);
                    }
                    // IPI to the other CPU now and then.
                    if taken % 16 == 1 {
                        lapic_write(&v, 0x300, 0x000c_40a0);
                    }
                }
                taken
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let taken: u32 = cpus.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(taken > 0);
}

#[test]
fn poll_clears_event_word_while_interrupt_waits_for_if() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    chip.signal_msi(0xfee0_0000, 0x0040);
    assert_ne!(events(&v0), 0);
    // The CPU has IF=0: it polls, remembers, and keeps running guest code.
    assert!(v0.poll(Instant::now()));
    assert_eq!(
        events(&v0),
        0,
        "a pending but held interrupt must not keep the word set"
    );
    assert!(v0.poll(Instant::now()), "still pending when asked again");
    // A higher interrupt is news.
    chip.signal_msi(0xfee0_0000, 0x0050);
    assert_ne!(events(&v0), 0);
    assert!(v0.poll(Instant::now()));
    assert_eq!(v0.acknowledge(), Some(0x50));
    // The same for the 8259 path: an unchanged request is not news.
    let chip = IrqChip::new(false);
    let bsp = chip.add_vcpu(0);
    init_pic(&chip);
    out(&chip, 0x21, 0xf8);
    chip.set_irq_line(1, true);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(events(&bsp), 0);
    out(&chip, 0x21, 0xf8); // unrelated port access, same request
    assert_eq!(events(&bsp), 0);
    chip.set_irq_line(0, true); // higher priority request
    assert_ne!(events(&bsp), 0);
}

#[test]
fn halt_wait_leaves_event_set_for_the_cpu_loop() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    enable_lapic(&v0);
    chip.signal_msi(0xfee0_0000, 0x0040);
    assert!(v0.poll(Instant::now()));
    assert_eq!(events(&v0), 0);
    halt(&v0, true);
    assert_ne!(events(&v0) & EV_INTERRUPT, 0);
}

#[test]
fn halt_with_if_clear_ignores_interrupts_but_not_nmi_or_kick() {
    let chip = IrqChip::new(false);
    let v0 = chip.add_vcpu(0);
    let v1 = chip.add_vcpu(1);
    enable_lapic(&v0);
    enable_lapic(&v1);
    chip.signal_msi(0xfee0_0000, 0x0040);
    let nmi_sent = Arc::new(AtomicBool::new(false));
    let t = {
        let chip = Arc::clone(&chip);
        let nmi_sent = Arc::clone(&nmi_sent);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            chip.signal_msi(0xfee0_0000, 0x0041);
            thread::sleep(Duration::from_millis(20));
            nmi_sent.store(true, Ordering::SeqCst);
            chip.signal_msi(0xfee0_0000, 0x0400);
        })
    };
    halt(&v0, false);
    assert!(
        nmi_sent.load(Ordering::SeqCst),
        "woke for a maskable interrupt with IF=0"
    );
    assert!(v0.take_nmi());
    t.join().unwrap();
    let t = {
        let v0 = Arc::clone(&v0);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            v0.kick();
        })
    };
    halt(&v0, false);
    assert!(v0.kicked_take());
    t.join().unwrap();
}

#[test]
fn chip_and_vcpu_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IrqChip>();
    assert_send_sync::<VcpuIrq>();
}

#[test]
fn hostile_guest_accesses_never_panic() {
    let chip = IrqChip::new(true);
    let v0 = chip.add_vcpu(0);
    let sizes = [0usize, 1, 2, 3, 4, 8, 16];
    let mut seed = 0x1234_5678u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for _ in 0..20_000 {
        let r = next();
        let len = sizes[(r % 7) as usize];
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match r % 6 {
            0 => {
                let port = [
                    0x20u16, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61,
                ][(next() % 11) as usize];
                chip.pio_write(port, &buf);
                chip.pio_read(port, &mut buf);
            }
            1 => {
                let addr = IOAPIC_BASE + u64::from(next() % 0x1000);
                chip.ioapic_mmio_write(addr, &buf);
                chip.ioapic_mmio_read(addr, &mut buf);
            }
            2 => {
                let addr = LAPIC + u64::from(next() % 0x1000);
                // Keep ICR writes away from INIT so the APIC keeps running.
                if addr & 0xff0 != 0x300 {
                    v0.lapic_mmio_write(addr, &buf);
                }
                v0.lapic_mmio_read(addr, &mut buf);
            }
            3 => {
                let msr = [0x10u32, 0x1b, 0x6e0, 0x800 + next() % 0x100][(next() % 4) as usize];
                let val = (u64::from(next()) << 32) | u64::from(next());
                v0.wrmsr(msr, val);
                v0.rdmsr(msr);
            }
            4 => {
                chip.set_irq_line(next() % 40, next() % 2 == 0);
                chip.signal_msi(0xfee0_0000 | u64::from(next() & 0xfffff), next());
            }
            _ => {
                if v0.poll(Instant::now()) {
                    v0.acknowledge();
                }
                v0.take_nmi();
                v0.take_init();
                v0.take_sipi();
                v0.set_cr8(u64::from(next()));
            }
        }
    }
}

#[test]
fn level_triggered_pic_line_via_elcr_requests_until_deasserted() {
    let chip = IrqChip::new(false);
    let bsp = chip.add_vcpu(0);
    init_pic(&chip);
    out(&chip, 0xa1, 0xf7); // unmask IRQ11
    out(&chip, 0x4d1, 0x08); // IRQ11 level (PCI INTx style)
    assert_eq!(inb(&chip, 0x4d1), 0x08);
    chip.set_irq_line(11, true);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x3b));
    // EOI to both chips while the device still asserts: requested again.
    out(&chip, 0xa0, 0x20);
    out(&chip, 0x20, 0x20);
    assert_ne!(events(&bsp), 0);
    assert!(bsp.poll(Instant::now()));
    assert_eq!(bsp.acknowledge(), Some(0x3b));
    // The device's handler clears the cause before the EOI.
    chip.set_irq_line(11, false);
    out(&chip, 0xa0, 0x20);
    out(&chip, 0x20, 0x20);
    assert!(!bsp.poll(Instant::now()));
}
