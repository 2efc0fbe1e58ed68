//! The RFB protocol (RFC 6143): the opening handshake and security, the
//! client's messages, the server's updates, and one client's session.
//!
//! Knows nothing of where the bytes travel (see `transport`) or of devices.

pub mod auth;
pub mod handshake;
pub mod messages;
pub mod pixel_format;
pub mod session;

use std::io::{self, Read};

/// Reads exactly `N` bytes.
pub(crate) fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}
