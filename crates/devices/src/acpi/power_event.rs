//! How the board's power controls (ACPI sleep, reset register) tell the
//! machine that the guest asked to power off or reset.

use std::sync::mpsc::Sender;
use std::sync::Mutex;

/// A request from the guest to change the machine's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// Soft-off (ACPI S5): the guest shut down.
    PowerOff,
    /// Reset (port 0xcf9 or the FADT reset register).
    Reset,
}

/// Receives power events; the machine stops or restarts its vCPUs.
pub trait PowerEventSink: Send + Sync {
    fn power_event(&self, event: PowerEvent);
}

impl PowerEventSink for Sender<PowerEvent> {
    fn power_event(&self, event: PowerEvent) {
        // A machine that stopped listening is already going away.
        let _ = self.send(event);
    }
}

impl PowerEventSink for Mutex<Sender<PowerEvent>> {
    fn power_event(&self, event: PowerEvent) {
        let _ = self.lock().unwrap_or_else(|e| e.into_inner()).send(event);
    }
}

/// A closure as a sink.
pub struct PowerEventFn<F: Fn(PowerEvent) + Send + Sync>(pub F);

impl<F: Fn(PowerEvent) + Send + Sync> PowerEventSink for PowerEventFn<F> {
    fn power_event(&self, event: PowerEvent) {
        (self.0)(event)
    }
}
