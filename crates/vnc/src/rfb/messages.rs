//! The client-to-server messages, read off the wire with every length
//! bounded.
//!
//! Knows nothing of the display or of what the messages make happen.

use std::io::{self, Read};

use kite_display::Rect;

use super::pixel_format::PixelFormat;
use super::read_array;
use crate::error::VncError;

/// SetEncodings entries beyond this many are read and ignored.
pub const MAX_ENCODINGS: usize = 64;
/// ClientCutText longer than this drops the client (we ignore the text anyway).
pub const MAX_CUT_TEXT: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    SetPixelFormat(PixelFormat),
    SetEncodings(Vec<i32>),
    UpdateRequest {
        incremental: bool,
        rect: Rect,
    },
    Key {
        down: bool,
        keysym: u32,
    },
    Pointer {
        buttons: u8,
        x: u16,
        y: u16,
    },
    /// ClientCutText, read and dropped.
    CutText,
}

/// Reads one message; `Ok(None)` when the client closed between messages.
pub fn read(r: &mut impl Read) -> Result<Option<ClientMessage>, VncError> {
    let mut t = [0u8; 1];
    loop {
        match r.read(&mut t) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(match t[0] {
        0 => {
            let b = read_array::<19>(r)?;
            let pf: [u8; 16] = b[3..].try_into().unwrap_or([0; 16]);
            ClientMessage::SetPixelFormat(PixelFormat::from_bytes(&pf)?)
        }
        2 => {
            let b = read_array::<3>(r)?;
            let n = usize::from(u16::from_be_bytes([b[1], b[2]]));
            let mut list = Vec::with_capacity(n.min(MAX_ENCODINGS));
            for i in 0..n {
                let e = i32::from_be_bytes(read_array::<4>(r)?);
                if i < MAX_ENCODINGS {
                    list.push(e);
                }
            }
            ClientMessage::SetEncodings(list)
        }
        3 => {
            let b = read_array::<9>(r)?;
            let u = |i: usize| u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
            ClientMessage::UpdateRequest {
                incremental: b[0] != 0,
                rect: Rect::new(u(1), u(3), u(5), u(7)),
            }
        }
        4 => {
            let b = read_array::<7>(r)?;
            ClientMessage::Key {
                down: b[0] != 0,
                keysym: u32::from_be_bytes([b[3], b[4], b[5], b[6]]),
            }
        }
        5 => {
            let b = read_array::<5>(r)?;
            ClientMessage::Pointer {
                buttons: b[0],
                x: u16::from_be_bytes([b[1], b[2]]),
                y: u16::from_be_bytes([b[3], b[4]]),
            }
        }
        6 => {
            let b = read_array::<7>(r)?;
            let len = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
            if len > MAX_CUT_TEXT {
                return Err(VncError::protocol(format!(
                    "ClientCutText of {len} bytes (limit {MAX_CUT_TEXT})"
                )));
            }
            io::copy(&mut r.take(u64::from(len)), &mut io::sink()).and_then(|n| {
                if n == u64::from(len) {
                    Ok(())
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                }
            })?;
            ClientMessage::CutText
        }
        other => {
            return Err(VncError::protocol(format!(
                "unknown client message type {other}"
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<ClientMessage>, VncError> {
        read(&mut io::Cursor::new(bytes.to_vec()))
    }

    #[test]
    fn messages_parse() {
        assert_eq!(
            parse(&[3, 1, 0, 1, 0, 2, 0, 3, 0, 4]).unwrap(),
            Some(ClientMessage::UpdateRequest {
                incremental: true,
                rect: Rect::new(1, 2, 3, 4)
            })
        );
        assert_eq!(
            parse(&[4, 1, 0, 0, 0, 0, 0xff, 0x0d]).unwrap(),
            Some(ClientMessage::Key {
                down: true,
                keysym: 0xff0d
            })
        );
        assert_eq!(
            parse(&[5, 5, 0, 10, 1, 0]).unwrap(),
            Some(ClientMessage::Pointer {
                buttons: 5,
                x: 10,
                y: 256
            })
        );
        assert_eq!(
            parse(&[2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xff, 0x21]).unwrap(),
            Some(ClientMessage::SetEncodings(vec![16, -223]))
        );
        assert_eq!(
            parse(&[6, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']).unwrap(),
            Some(ClientMessage::CutText)
        );
        assert_eq!(parse(&[]).unwrap(), None);
    }

    #[test]
    fn hostile_messages_are_errors_not_allocations() {
        assert!(
            parse(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "4 GiB cut text"
        );
        assert!(
            parse(&[6, 0, 0, 0, 0, 0, 0, 9, b'a']).is_err(),
            "cut text cut short"
        );
        assert!(parse(&[99]).is_err(), "unknown type");
        assert!(parse(&[3, 1, 0]).is_err(), "truncated");
        // 65535 encodings announced, 2 sent: an error after reading what came.
        assert!(parse(&[2, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 16]).is_err());
        // Many encodings: only the first MAX_ENCODINGS are kept.
        let mut m = vec![2, 0, 0x01, 0x00];
        m.extend(std::iter::repeat_n([0u8, 0, 0, 16], 256).flatten());
        match parse(&m).unwrap() {
            Some(ClientMessage::SetEncodings(l)) => assert_eq!(l.len(), MAX_ENCODINGS),
            other => panic!("{other:?}"),
        }
        let mut bad_pf = vec![0, 0, 0, 0];
        bad_pf.extend([24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        assert!(parse(&bad_pf).is_err(), "24 bpp");
    }
}
