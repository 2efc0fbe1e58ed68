//! Kite's VNC server: lets VNC viewers (TigerVNC, gvncviewer, vncsnapshot,
//! vncdotool, noVNC in a browser) see a [`kite_display::Display`] and type and
//! point into it.
//!
//! It speaks RFB 3.8 (RFC 6143; 3.3 and 3.7 clients too) on a TCP port or a
//! Unix socket, and optionally RFB inside WebSocket binary frames (RFC 6455)
//! on a second listener so a browser connects with no proxy. Security types
//! None and VNC authentication; encodings Raw and ZRLE, pseudo-encoding
//! DesktopSize. One thread per client; updates only for damage, only when the
//! client asked, at most `max_fps` per second; the guest never waits on a
//! client socket.
//!
//! Using it (the CLI's `--display vnc=...`):
//!
//! ```no_run
//! # fn demo(display: kite_display::Display) -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = kite_vnc::VncConfig::parse("vnc=localhost:1,websocket=5701,password=on")?;
//! let server = kite_vnc::VncServer::start(cfg, display)?; // VncError::Bind: print, exit 2
//! // ... run the VM; dropping `server` (or `server.stop()`) closes everything.
//! # drop(server); Ok(()) }
//! ```
//!
//! With no client connected the server costs nothing per frame: only its
//! accept threads exist, blocked. A connected client that has not asked
//! for an update costs nothing either; one that has is polled at up to
//! `max_fps`, backing off to 4 polls a second while the screen is static.
//!
//! This crate must not know about devices, guest memory, the hypervisor or
//! the machine: it sees only the Display handle (pixels, damage, input).

pub mod config;
pub mod encoding;
pub mod error;
pub mod keysym;
pub mod rfb;
pub mod server;
pub mod transport;

pub use config::{Listen, Share, VncConfig};
pub use error::VncError;
pub use server::VncServer;
