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
