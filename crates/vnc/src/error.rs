//! The server's errors: what went wrong starting it, and why a client was dropped.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// A listening address could not be bound (in use, no permission, bad host).
    #[error("cannot listen for VNC on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The listen address is not understood.
    #[error("bad VNC address {0:?}")]
    BadAddress(String),
    /// Reading or writing a client's socket failed (it went away).
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client gave the wrong password.
    #[error("authentication failed")]
    AuthFailed,
    /// Starting a thread failed.
    #[error("cannot start a VNC thread: {0}")]
    Thread(io::Error),
}

impl VncError {
    pub fn protocol(msg: impl Into<String>) -> Self {
        VncError::Protocol(msg.into())
    }
}
