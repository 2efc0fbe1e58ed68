//! kite-qmp: a QMP (QEMU Machine Protocol) server. Clients connect on Unix
//! or TCP sockets, get a greeting, negotiate capabilities (none offered)
//! with `qmp_capabilities`, then send JSON commands and receive replies and
//! asynchronous events (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN, MIGRATION), with the
//! shapes and error classes of QEMU's qmp-spec and QAPI schema.
//!
//! It knows nothing of devices, engines or how a machine runs: it talks to
//! one `QmpBackend` (status, stop/cont, reset, power button, quit, vCPU
//! threads, disks, migration) and is told about events through
//! `QmpServer::broadcast`.

mod address;
mod backend;
mod commands;
mod error;
mod event;
mod framing;
mod server;
mod stream;

pub use address::{Endpoint, ListenAddress};
pub use backend::{BlockInfo, CpuInfo, MigrationStats, QmpBackend, RunState, VersionInfo};
pub use error::{ErrorClass, QmpError, ServerError};
pub use event::{QmpEvent, ShutdownReason};
// The connection's parts, for the fuzz harness (kite-fuzz) to drive without a socket.
pub use commands::{Reply, Session};
pub use framing::{Frame, Framer};
pub use server::{greeting, QmpServer, MAX_CLIENTS, MAX_MESSAGE};
