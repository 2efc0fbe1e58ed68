//! A KVM VM's engine state to and from the engine-neutral `VmState`:
//! KVM_GET/SET_IRQCHIP (8259 master, slave, IOAPIC), KVM_GET/SET_PIT2 and
//! KVM_GET/SET_CLOCK. The structure conversions are in `snapshot/`.

use kite_hypervisor::state::{ClockState, VmState};
use kite_hypervisor::{Error, Result};
use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};

use super::KvmVm;
use crate::snapshot::irqchip::{
    ioapic_from_kvm, ioapic_to_kvm, pic_from_kvm, pic_to_kvm, pit_from_kvm, pit_to_kvm,
};

/// Host CLOCK_MONOTONIC in nanoseconds (KVM's ktime for the PIT).
fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives here.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

impl KvmVm {
    fn chip(&self, id: u32) -> Result<kvm_irqchip> {
        let mut c = kvm_irqchip {
            chip_id: id,
            ..Default::default()
        };
        self.fd
            .get_irqchip(&mut c)
            .map_err(|e| Error::host("KVM_GET_IRQCHIP", e))?;
        Ok(c)
    }

    pub(crate) fn save_neutral(&self) -> Result<VmState> {
        let mut s = VmState::default();
        if self.irqchip {
            let (m, sl, io) = (
                self.chip(KVM_IRQCHIP_PIC_MASTER)?,
                self.chip(KVM_IRQCHIP_PIC_SLAVE)?,
                self.chip(KVM_IRQCHIP_IOAPIC)?,
            );
            // SAFETY: KVM filled the union member of the chip asked for.
            unsafe {
                s.pic = Some([pic_from_kvm(&m.chip.pic), pic_from_kvm(&sl.chip.pic)]);
                s.ioapic = Some(ioapic_from_kvm(&io.chip.ioapic));
            }
        }
        if self.pit {
            let p = self
                .fd
                .get_pit2()
                .map_err(|e| Error::host("KVM_GET_PIT2", e))?;
            s.pit = Some(pit_from_kvm(&p, monotonic_ns()));
        }
        let clock = self
            .fd
            .get_clock()
            .map_err(|e| Error::host("KVM_GET_CLOCK", e))?;
        s.clock = ClockState { ns: clock.clock };
        Ok(s)
    }

    pub(crate) fn restore_neutral(&self, s: &VmState) -> Result<()> {
        if s.pic.is_some() != self.irqchip || s.ioapic.is_some() != self.irqchip {
            return Err(Error::Invalid(
                "the state's irqchip does not match this VM's (created with or without one)".into(),
            ));
        }
        if s.pit.is_some() && !self.pit {
            return Err(Error::Invalid(
                "the state has a PIT but this VM was created without one".into(),
            ));
        }
        if let (Some([master, slave]), Some(ioapic)) = (&s.pic, &s.ioapic) {
            for (id, pic) in [
                (KVM_IRQCHIP_PIC_MASTER, master),
                (KVM_IRQCHIP_PIC_SLAVE, slave),
            ] {
                let mut c = self.chip(id)?;
                // SAFETY: KVM filled the `pic` member for a PIC chip id.
                c.chip.pic = pic_to_kvm(pic, unsafe { &c.chip.pic });
                self.fd
                    .set_irqchip(&c)
                    .map_err(|e| Error::host("KVM_SET_IRQCHIP", e))?;
            }
            let mut c = self.chip(KVM_IRQCHIP_IOAPIC)?;
            // SAFETY: KVM filled the `ioapic` member for the IOAPIC chip id.
            c.chip.ioapic = ioapic_to_kvm(ioapic, unsafe { &c.chip.ioapic });
            self.fd
                .set_irqchip(&c)
                .map_err(|e| Error::host("KVM_SET_IRQCHIP", e))?;
        }
        if let Some(pit) = &s.pit {
            let base = self
                .fd
                .get_pit2()
                .map_err(|e| Error::host("KVM_GET_PIT2", e))?;
            self.fd
                .set_pit2(&pit_to_kvm(pit, &base, monotonic_ns()))
                .map_err(|e| Error::host("KVM_SET_PIT2", e))?;
        }
        let clock = kvm_clock_data {
            clock: s.clock.ns,
            ..Default::default()
        };
        self.fd
            .set_clock(&clock)
            .map_err(|e| Error::host("KVM_SET_CLOCK", e))
    }
}
