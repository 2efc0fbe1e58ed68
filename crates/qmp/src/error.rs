//! QMP's error replies (class and description) and the server's own errors.

use serde_json::{json, Value};

/// QEMU's error classes, by the names clients match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotFound,
    KvmMissingCap,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
        }
    }
}

/// An error reply to one command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {desc}", class.name())]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn generic(desc: impl Into<String>) -> QmpError {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    pub fn not_found(desc: impl Into<String>) -> QmpError {
        QmpError {
            class: ErrorClass::CommandNotFound,
            desc: desc.into(),
        }
    }

    /// The `error` member of a reply.
    pub fn to_json(&self) -> Value {
        json!({"class": self.class.name(), "desc": self.desc})
    }
}

/// Why a server could not start listening.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the socket failed.
    #[error("--qmp {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("starting a QMP thread: {0}")]
    Thread(#[source] std::io::Error),
}
