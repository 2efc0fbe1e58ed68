//! PLACEHOLDER of the in-engine interrupt controllers (LAPIC, IOAPIC, 8259
//! pair) and PIT: the contract the CPU codes against. The real module
//! replaces this file.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

pub struct IrqChip {}

impl IrqChip {
    pub fn new(_with_pit: bool) -> Arc<IrqChip> {
        Arc::new(IrqChip {})
    }
    pub fn add_vcpu(self: &Arc<Self>, id: u32) -> Arc<VcpuIrq> {
        Arc::new(VcpuIrq {
            events: AtomicU32::new(0),
            id,
        })
    }
    pub fn set_irq_line(&self, _gsi: u32, _level: bool) {}
    pub fn signal_msi(&self, _address: u64, _data: u32) {}
    pub fn pio_read(&self, _port: u16, _data: &mut [u8]) -> bool {
        false
    }
    pub fn pio_write(&self, _port: u16, _data: &[u8]) -> bool {
        false
    }
    pub fn ioapic_mmio_read(&self, _addr: u64, _data: &mut [u8]) -> bool {
        false
    }
    pub fn ioapic_mmio_write(&self, _addr: u64, _data: &[u8]) -> bool {
        false
    }
}

pub struct VcpuIrq {
    events: AtomicU32,
    id: u32,
}

impl VcpuIrq {
    pub fn events(&self) -> &AtomicU32 {
        &self.events
    }
    pub fn lapic_mmio_read(&self, _addr: u64, _data: &mut [u8]) -> bool {
        false
    }
    pub fn lapic_mmio_write(&self, _addr: u64, _data: &[u8]) -> bool {
        false
    }
    pub fn rdmsr(&self, _msr: u32) -> Option<u64> {
        None
    }
    pub fn wrmsr(&self, _msr: u32, _value: u64) -> bool {
        false
    }
    pub fn poll(&self, _now: Instant) -> bool {
        false
    }
    pub fn acknowledge(&self) -> Option<u8> {
        None
    }
    pub fn take_nmi(&self) -> bool {
        false
    }
    pub fn halt_wait(&self) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pub fn kick(&self) {}
    pub fn kicked_take(&self) -> bool {
        false
    }
    pub fn cr8(&self) -> u64 {
        0
    }
    pub fn set_cr8(&self, _v: u64) {}
    pub fn apic_id(&self) -> u32 {
        self.id
    }
    pub fn take_sipi(&self) -> Option<u8> {
        None
    }
}
