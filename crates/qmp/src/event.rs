//! The asynchronous events a server sends every negotiated client, with
//! QEMU's names and data members.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a machine shut down or reset (QEMU's ShutdownCause values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    HostError,
    HostQmpQuit,
    HostQmpSystemReset,
    HostSignal,
    HostUi,
    GuestShutdown,
    GuestReset,
    GuestPanic,
}

impl ShutdownReason {
    pub fn name(self) -> &'static str {
        match self {
            ShutdownReason::HostError => "host-error",
            ShutdownReason::HostQmpQuit => "host-qmp-quit",
            ShutdownReason::HostQmpSystemReset => "host-qmp-system-reset",
            ShutdownReason::HostSignal => "host-signal",
            ShutdownReason::HostUi => "host-ui",
            ShutdownReason::GuestShutdown => "guest-shutdown",
            ShutdownReason::GuestReset => "guest-reset",
            ShutdownReason::GuestPanic => "guest-panic",
        }
    }

    /// Whether the guest caused it (the events' `guest` member).
    pub fn by_guest(self) -> bool {
        matches!(
            self,
            ShutdownReason::GuestShutdown | ShutdownReason::GuestReset | ShutdownReason::GuestPanic
        )
    }
}

/// An event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QmpEvent {
    Stop,
    Resume,
    Reset(ShutdownReason),
    Powerdown,
    Shutdown(ShutdownReason),
    /// A migration's status changed (QEMU's MigrationStatus name).
    Migration(&'static str),
}

impl QmpEvent {
    pub fn name(self) -> &'static str {
        match self {
            QmpEvent::Stop => "STOP",
            QmpEvent::Resume => "RESUME",
            QmpEvent::Reset(_) => "RESET",
            QmpEvent::Powerdown => "POWERDOWN",
            QmpEvent::Shutdown(_) => "SHUTDOWN",
            QmpEvent::Migration(_) => "MIGRATION",
        }
    }

    /// The event message, stamped with the time now.
    pub fn to_json(self) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut m = Map::new();
        m.insert("event".into(), json!(self.name()));
        if let QmpEvent::Reset(r) | QmpEvent::Shutdown(r) = self {
            m.insert(
                "data".into(),
                json!({"guest": r.by_guest(), "reason": r.name()}),
            );
        }
        if let QmpEvent::Migration(status) = self {
            m.insert("data".into(), json!({ "status": status }));
        }
        m.insert(
            "timestamp".into(),
            json!({"seconds": now.as_secs(), "microseconds": now.subsec_micros()}),
        );
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_qemu() {
        let e = QmpEvent::Shutdown(ShutdownReason::HostQmpQuit).to_json();
        assert_eq!(e["event"], "SHUTDOWN");
        assert_eq!(
            e["data"],
            json!({"guest": false, "reason": "host-qmp-quit"})
        );
        assert!(e["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
        assert!(e["timestamp"]["microseconds"].as_u64().unwrap() < 1_000_000);
        let r = QmpEvent::Reset(ShutdownReason::GuestReset).to_json();
        assert_eq!(r["data"]["guest"], true);
        let s = QmpEvent::Stop.to_json();
        assert_eq!(s["event"], "STOP");
        assert!(s.get("data").is_none());
        let m = QmpEvent::Migration("completed").to_json();
        assert_eq!(m["event"], "MIGRATION");
        assert_eq!(m["data"], json!({"status": "completed"}));
    }
}
