//! WebSocket (RFC 6455) as a byte pipe for RFB: the opening handshake, and
//! unmasking client frames into a byte stream / wrapping our messages in
//! binary frames.
//!
//! Knows nothing of RFB: it only carries bytes.

use std::io::{self, Read, Write};

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::error::VncError;

/// The longest handshake request accepted.
pub const MAX_REQUEST: usize = 8192;
/// The largest client frame accepted (RFB client messages are small).
pub const MAX_FRAME: u64 = 1 << 20;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// The value of Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Reads the client's HTTP upgrade request and answers it: 101 with the
/// accept key (and the `binary` subprotocol when offered), or 400 and an
/// error for anything else.
pub fn server_handshake<S: Read + Write>(s: &mut S) -> Result<(), VncError> {
    let mut req = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        if req.len() >= MAX_REQUEST {
            reject(s, "request too long");
            return Err(VncError::protocol("WebSocket handshake longer than 8 KiB"));
        }
        if s.read(&mut byte)? == 0 {
            return Err(VncError::protocol("closed during the WebSocket handshake"));
        }
        req.push(byte[0]);
    }
    match check_request(&req) {
        Ok(resp) => {
            s.write_all(resp.as_bytes())?;
            s.flush()?;
            Ok(())
        }
        Err(why) => {
            reject(s, &why);
            Err(VncError::Protocol(format!(
                "bad WebSocket handshake: {why}"
            )))
        }
    }
}

fn reject<S: Write>(s: &mut S, why: &str) {
    let body = format!("{why}\n");
    let _ = write!(
        s,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Checks an upgrade request; returns the 101 response.
fn check_request(req: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(req).map_err(|_| "request is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    if parts.next() != Some("GET") || !parts.nth(1).is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not a GET request: {request_line:?}"));
    }
    let (mut upgrade, mut connection, mut key, mut version, mut protocols) =
        (false, false, None, None, Vec::new());
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection = value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-key" => key = Some(value.to_string()),
            "sec-websocket-version" => version = Some(value.to_string()),
            "sec-websocket-protocol" => {
                protocols.extend(value.split(',').map(|p| p.trim().to_string()))
            }
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err("not a WebSocket upgrade".into());
    }
    if version.as_deref() != Some("13") {
        return Err("only WebSocket version 13 is supported".into());
    }
    let key = key.ok_or("no Sec-WebSocket-Key")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| "Sec-WebSocket-Key is not base64")?;
    if decoded.len() != 16 {
        return Err("Sec-WebSocket-Key is not 16 bytes".into());
    }
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(&key)
    );
    if protocols.iter().any(|p| p == "binary") {
        resp.push_str("Sec-WebSocket-Protocol: binary\r\n");
    }
    resp.push_str("\r\n");
    Ok(resp)
}

/// Writes one unmasked server frame (FIN set).
pub fn write_frame<W: Write>(w: &mut W, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let mut head = Vec::with_capacity(10);
    head.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => head.push(n as u8),
        n if n <= 0xffff => {
            head.push(126);
            head.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            head.push(127);
            head.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    w.write_all(&head)?;
    w.write_all(payload)
}

/// What the frame reader hands up besides data.
pub enum Control {
    /// The client pinged: answer with a pong carrying this.
    Ping(Vec<u8>),
    /// The client closed.
    Close,
}

/// Turns client frames into a byte stream.
#[derive(Default)]
pub struct FrameReader {
    remaining: u64,
    mask: [u8; 4],
    mask_pos: usize,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl FrameReader {
    /// Reads data bytes into `buf`: `Ok(Ok(n))` for n data bytes, or
    /// `Ok(Err(control))` when a control frame came instead.
    pub fn read<R: Read>(
        &mut self,
        r: &mut R,
        buf: &mut [u8],
    ) -> io::Result<Result<usize, Control>> {
        while self.remaining == 0 {
            let mut h = [0u8; 2];
            r.read_exact(&mut h)?;
            let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0f, h[1] & 0x80 != 0);
            if h[0] & 0x70 != 0 {
                return Err(bad("WebSocket frame with reserved bits set"));
            }
            if !masked {
                return Err(bad("unmasked WebSocket client frame"));
            }
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    r.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    r.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if len > MAX_FRAME {
                return Err(bad("WebSocket frame larger than 1 MiB"));
            }
            r.read_exact(&mut self.mask)?;
            self.mask_pos = 0;
            match opcode {
                OP_BINARY | OP_CONTINUATION => self.remaining = len,
                OP_TEXT => return Err(bad("text WebSocket frames are not RFB (use binary)")),
                OP_CLOSE | OP_PING | OP_PONG => {
                    if !fin || len > 125 {
                        return Err(bad("bad WebSocket control frame"));
                    }
                    let mut payload = vec![0u8; len as usize];
                    r.read_exact(&mut payload)?;
                    self.unmask(&mut payload);
                    match opcode {
                        OP_CLOSE => return Ok(Err(Control::Close)),
                        OP_PING => return Ok(Err(Control::Ping(payload))),
                        _ => {}
                    }
                }
                _ => return Err(bad("unknown WebSocket opcode")),
            }
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.unmask(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(Ok(n))
    }

    fn unmask(&mut self, data: &mut [u8]) {
        for b in data {
            *b ^= self.mask[self.mask_pos & 3];
            self.mask_pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser sends it.
    fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    struct Duplex {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Duplex {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn handshake(req: &str) -> (Result<(), VncError>, String) {
        let mut d = Duplex {
            input: io::Cursor::new(req.as_bytes().to_vec()),
            output: Vec::new(),
        };
        let r = server_handshake(&mut d);
        (r, String::from_utf8_lossy(&d.output).into_owned())
    }

    #[test]
    fn handshake_accepts_a_browser_and_echoes_binary() {
        let (r, out) = handshake(
            "GET /websockify HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary, base64\r\n\r\n",
        );
        assert!(r.is_ok());
        assert!(out.starts_with("HTTP/1.1 101"), "{out}");
        assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(out.contains("Sec-WebSocket-Protocol: binary\r\n"));
    }

    #[test]
    fn bad_handshakes_get_400() {
        for req in [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ] {
            let (r, out) = handshake(req);
            assert!(r.is_err(), "{req}");
            assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        }
        let (r, _) = handshake(&format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        ));
        assert!(r.is_err(), "too long");
    }

    #[test]
    fn frames_unmask_into_a_stream_and_controls_surface() {
        let mut wire = client_frame(OP_BINARY, b"RFB 003.008\n", [1, 2, 3, 4]);
        wire.extend(client_frame(OP_PING, b"hi", [9, 9, 9, 9]));
        wire.extend(client_frame(OP_BINARY, &[7u8; 300], [5, 6, 7, 8]));
        wire.extend(client_frame(OP_CLOSE, &[], [0, 0, 0, 0]));
        let mut r = io::Cursor::new(wire);
        let mut fr = FrameReader::default();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let mut pings = 0;
        loop {
            match fr.read(&mut r, &mut buf).unwrap() {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(Control::Ping(p)) => {
                    assert_eq!(p, b"hi");
                    pings += 1;
                }
                Err(Control::Close) => break,
            }
        }
        assert_eq!(pings, 1);
        assert_eq!(&got[..12], b"RFB 003.008\n");
        assert_eq!(&got[12..], &[7u8; 300][..]);
    }

    #[test]
    fn unmasked_huge_and_text_frames_are_refused() {
        let mut fr = FrameReader::default();
        let mut buf = [0u8; 8];
        let unmasked = vec![0x82, 3, 1, 2, 3];
        assert!(fr.read(&mut io::Cursor::new(unmasked), &mut buf).is_err());
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(FrameReader::default()
            .read(&mut io::Cursor::new(huge), &mut buf)
            .is_err());
        let text = client_frame(OP_TEXT, b"abc", [1, 1, 1, 1]);
        assert!(FrameReader::default()
            .read(&mut io::Cursor::new(text), &mut buf)
            .is_err());
    }

    #[test]
    fn server_frames_use_the_right_length_form() {
        let mut out = Vec::new();
        write_frame(&mut out, OP_BINARY, &[1; 5]).unwrap();
        assert_eq!(&out[..2], &[0x82, 5]);
        let mut out = Vec::new();
        write_frame(&mut out, OP_BINARY, &[1; 300]).unwrap();
        assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
        let mut out = Vec::new();
        write_frame(&mut out, OP_BINARY, &vec![1; 70000]).unwrap();
        assert_eq!(&out[..2], &[0x82, 127]);
        assert_eq!(out.len(), 70000 + 10);
    }
}
