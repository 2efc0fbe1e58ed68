//! Interrupt lines from devices to the VM's interrupt controllers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kite_devices::IrqLine;
use kite_hypervisor::Vm;

/// A GSI of the VM's irqchip, as a device's interrupt line.
pub struct VmIrqLine {
    vm: Arc<dyn Vm>,
    gsi: u32,
    warned: AtomicBool,
}

impl VmIrqLine {
    pub fn new(vm: Arc<dyn Vm>, gsi: u32) -> Arc<Self> {
        Arc::new(VmIrqLine {
            vm,
            gsi,
            warned: AtomicBool::new(false),
        })
    }
}

impl IrqLine for VmIrqLine {
    fn set_level(&self, level: bool) {
        if let Err(e) = self.vm.set_irq_line(self.gsi, level) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                log::warn!("interrupt line {} lost: {e}", self.gsi);
            }
        }
    }
}

/// Message-signalled interrupts into the VM's local APICs.
pub struct VmMsiSender {
    vm: Arc<dyn Vm>,
    warned: AtomicBool,
}

impl VmMsiSender {
    pub fn new(vm: Arc<dyn Vm>) -> Arc<Self> {
        Arc::new(VmMsiSender {
            vm,
            warned: AtomicBool::new(false),
        })
    }
}

impl kite_devices::MsiSender for VmMsiSender {
    fn send_msi(&self, address: u64, data: u32) {
        if let Err(e) = self.vm.signal_msi(kite_hypervisor::Msi { address, data }) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                log::warn!("message-signalled interrupt {address:#x}/{data:#x} lost: {e}");
            }
        }
    }
}
