//! `Control`: one boot's handle for ending its run. Devices (debug exit,
//! keyboard-controller reset, ACPI power events), the console and the vCPU
//! threads hold clones; the first request raises the stop flag and tells the
//! session why. The board also leaves the ACPI power button here, so a
//! monitor can press it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kite_devices::acpi::AcpiPmRegisters;
use kite_devices::bus::lock;

use super::VmEvent;

/// Ends a run: raises the stop flag, then tells the session why.
#[derive(Clone)]
pub struct Control {
    events: Sender<VmEvent>,
    stop: Arc<AtomicBool>,
    power_button: Arc<Mutex<Option<Arc<Mutex<AcpiPmRegisters>>>>>,
}

impl Control {
    pub fn new(events: Sender<VmEvent>, stop: Arc<AtomicBool>) -> Self {
        Control {
            events,
            stop,
            power_button: Arc::new(Mutex::new(None)),
        }
    }

    pub fn request(&self, ev: VmEvent) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.events.send(ev);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Raise the stop flag without an event (the run is ending anyway).
    pub(crate) fn raise_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The board's PM registers, whose power button a monitor may press.
    pub fn set_power_button(&self, pm: Arc<Mutex<AcpiPmRegisters>>) {
        *lock(&self.power_button) = Some(pm);
    }

    pub(crate) fn power_button(&self) -> Option<Arc<Mutex<AcpiPmRegisters>>> {
        lock(&self.power_button).clone()
    }
}
