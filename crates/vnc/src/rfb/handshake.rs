//! The RFB opening: ProtocolVersion (3.8 offered; 3.3 and 3.7 accepted),
//! security negotiation (None or VNC authentication), SecurityResult, and
//! ClientInit's shared flag.
//!
//! Knows nothing of the framebuffer (ServerInit is the session's).

use std::io::Read;

use super::{auth, read_array};
use crate::error::VncError;
use crate::transport::{lock_writer, SharedWriter};

pub const SEC_NONE: u8 = 1;
pub const SEC_VNC_AUTH: u8 = 2;

/// What the opening settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol minor version in use: 3, 7 or 8.
    pub minor: u8,
    /// The client's ClientInit shared flag.
    pub shared: bool,
}

/// Parses a client's "RFB xxx.yyy\n" into the minor version we speak with it.
pub fn parse_version(v: &[u8; 12]) -> Result<u8, VncError> {
    let ok = v.starts_with(b"RFB ") && v[7] == b'.' && v[11] == b'\n';
    let digits = |b: &[u8]| -> Option<u32> {
        b.iter().try_fold(0u32, |a, &d| {
            d.is_ascii_digit().then(|| a * 10 + u32::from(d - b'0'))
        })
    };
    let (major, minor) = match (ok, digits(&v[4..7]), digits(&v[8..11])) {
        (true, Some(ma), Some(mi)) => (ma, mi),
        _ => {
            return Err(VncError::protocol(format!(
                "bad ProtocolVersion {:?}",
                String::from_utf8_lossy(v)
            )))
        }
    };
    if major != 3 {
        return Err(VncError::protocol(format!(
            "RFB major version {major} is not 3"
        )));
    }
    // RFC 6143 7.1.1: anything else below 3.7 is spoken as 3.3; above 3.8 as 3.8.
    Ok(match minor {
        7 => 7,
        m if m >= 8 => 8,
        _ => 3,
    })
}

fn send(w: &SharedWriter, msg: &[u8]) -> Result<(), VncError> {
    Ok(lock_writer(w).send(msg)?)
}

/// Sends a failed SecurityResult (with its reason string from 3.8 on).
fn fail(w: &SharedWriter, minor: u8, reason: &str) -> Result<(), VncError> {
    let mut msg = 1u32.to_be_bytes().to_vec();
    if minor >= 8 {
        msg.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        msg.extend_from_slice(reason.as_bytes());
    }
    send(w, &msg)
}

/// Runs the opening up to and including ClientInit.
pub fn run(
    r: &mut impl Read,
    w: &SharedWriter,
    password: Option<&str>,
) -> Result<Negotiated, VncError> {
    send(w, b"RFB 003.008\n")?;
    let minor = parse_version(&read_array::<12>(r)?)?;
    let sec = if password.is_some() {
        SEC_VNC_AUTH
    } else {
        SEC_NONE
    };
    if minor == 3 {
        send(w, &u32::from(sec).to_be_bytes())?;
    } else {
        send(w, &[1, sec])?;
        let [chosen] = read_array::<1>(r)?;
        if chosen != sec {
            if minor >= 8 {
                fail(w, minor, "security type not offered")?;
            }
            return Err(VncError::protocol(format!(
                "client chose security type {chosen}, offered {sec}"
            )));
        }
    }
    if let Some(pw) = password {
        let ch = auth::challenge();
        send(w, &ch)?;
        let answer = read_array::<16>(r)?;
        if !auth::check(pw, &ch, &answer) {
            fail(w, minor, "authentication failed")?;
            return Err(VncError::AuthFailed);
        }
        send(w, &0u32.to_be_bytes())?;
    } else if minor >= 8 {
        send(w, &0u32.to_be_bytes())?;
    }
    let [shared] = read_array::<1>(r)?;
    Ok(Negotiated {
        minor,
        shared: shared != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_what_we_speak() {
        assert_eq!(parse_version(b"RFB 003.008\n").unwrap(), 8);
        assert_eq!(parse_version(b"RFB 003.007\n").unwrap(), 7);
        assert_eq!(parse_version(b"RFB 003.003\n").unwrap(), 3);
        assert_eq!(parse_version(b"RFB 003.005\n").unwrap(), 3);
        assert_eq!(parse_version(b"RFB 003.889\n").unwrap(), 8);
        assert!(parse_version(b"RFB 004.000\n").is_err());
        assert!(parse_version(b"GET / HTTP/1").is_err());
        assert!(parse_version(b"RFB 00x.008\n").is_err());
    }
}
