//! The VNC server's side of a connection, fed bytes as a client would send
//! them. `vnc`: a whole connection over a Unix socket pair (the WebSocket
//! upgrade and framing when the first byte says so, the RFB version and
//! security handshake, VNC authentication when it says so, ClientInit, then
//! the session: pixel formats, encodings, update requests, keys, pointer,
//! cut text); and, on the same bytes, the message parser alone with every
//! update it asks for encoded in the client's format and encoding.
//!
//! Checked: the connection always ends (EOF ends it cleanly or with an
//! error, never a hang or a panic), and an encoded update is never larger
//! than its raw pixels plus per-rectangle overhead (no amplification a
//! client can ask for).
//!
//! It must not know devices: the screen is a small test pattern.

use std::io::{Cursor, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use kite_display::{Damage, Display, InputEvent, InputSink, Rect, Renderer, Surface};
use kite_vnc::encoding::zrle::ZrleEncoder;
use kite_vnc::encoding::ClientEncodings;
use kite_vnc::rfb::handshake;
use kite_vnc::rfb::messages::{self, ClientMessage};
use kite_vnc::rfb::pixel_format::PixelFormat;
use kite_vnc::rfb::session::{self, SessionConfig};
use kite_vnc::transport::{self, websocket, Stream};

const W: u32 = 40;
const H: u32 = 30;
/// Update requests encoded per input at most (each is a whole screen at worst).
const MAX_UPDATES: usize = 32;

/// A 40x30 pattern that changes a little on every render.
struct Pattern(u32);

impl Renderer for Pattern {
    fn render(&mut self, surface: &mut Surface) -> Damage {
        let resized = surface.resize(W, H);
        self.0 = self.0.wrapping_add(1);
        let r = Rect::new(self.0 % W, self.0 % H, 3, 2);
        surface.fill(Rect::new(0, 0, W, H), 0x20_40_60);
        surface.fill(r, 0xff_00_00u32.wrapping_add(self.0));
        if resized {
            Damage::Full
        } else {
            Damage::Rects(vec![r])
        }
    }
}

#[derive(Default)]
struct Events(AtomicU64);

impl InputSink for Events {
    fn send(&self, _event: InputEvent) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN has no memory
        // effects; a write to a closed socket then fails with EPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    });
}

pub fn vnc(data: &[u8]) {
    ignore_sigpipe();
    let flags = data.first().copied().unwrap_or(0);
    let bytes = data.get(1..).unwrap_or(&[]);
    connection(bytes, flags & 1 != 0, flags & 2 != 0);
    parse_and_encode(bytes);
}

/// One client connection over a socket pair; the client sends `bytes` then
/// closes its sending side.
fn connection(bytes: &[u8], websocket: bool, password: bool) {
    let (server, mut client) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => panic!("harness setup: socket pair: {e}"),
    };
    // Whatever the server sends is read and dropped until it hangs up.
    let mut drain = match client.try_clone() {
        Ok(c) => c,
        Err(e) => panic!("harness setup: socket clone: {e}"),
    };
    let drainer = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut total = 0u64;
        while let Ok(n) = drain.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let sent = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = client.write_all(&sent);
        let _ = client.shutdown(std::net::Shutdown::Write);
        client
    });
    let mut stream = Stream::Unix(server);
    let display = Display::new(Box::new(Pattern(0)), Arc::new(Events::default()));
    let mut run = || -> Result<(), kite_vnc::VncError> {
        if websocket {
            websocket::server_handshake(&mut stream)?;
        }
        let (mut reader, w, control) = transport::split(stream.try_clone()?, websocket)?;
        handshake::run(&mut reader, &w, password.then_some("secret"))?;
        let cfg = SessionConfig {
            name: "fuzz".into(),
            max_fps: 1000,
        };
        session::run(reader, w, display.clone(), &cfg, &|| control.shutdown())
    };
    let _ = run();
    stream.shutdown();
    let _client = writer.join();
    let _ = drainer.join();
}

/// The message parser on its own, with each update request encoded.
fn parse_and_encode(bytes: &[u8]) {
    let mut r = Cursor::new(bytes);
    let mut pf = PixelFormat::default_rgb888();
    let mut enc = ClientEncodings::default();
    let mut zrle = ZrleEncoder::new();
    let mut surface = Surface::new(0, 0);
    let mut pattern = Pattern(0);
    pattern.render(&mut surface);
    let mut out = Vec::new();
    let mut updates = 0;
    while let Ok(Some(msg)) = messages::read(&mut r) {
        match msg {
            ClientMessage::SetPixelFormat(p) => pf = p,
            ClientMessage::SetEncodings(list) => {
                assert!(
                    list.len() <= messages::MAX_ENCODINGS,
                    "encodings list unbounded"
                );
                enc = ClientEncodings::from_list(list);
            }
            ClientMessage::UpdateRequest { rect, .. } if updates < MAX_UPDATES => {
                updates += 1;
                let mut damage = Damage::None;
                damage.add_rect(rect, W, H);
                out.clear();
                session::encode_update(
                    &surface,
                    &damage,
                    (W, H),
                    true,
                    &pf,
                    enc,
                    &mut zrle,
                    &mut out,
                );
                let raw = u64::from(W * H) * pf.bytes_per_pixel() as u64;
                let bound = 4 + 12 * 8 + raw * 2 + 1024;
                assert!(
                    (out.len() as u64) <= bound,
                    "a {}-byte update for a {W}x{H} screen",
                    out.len()
                );
            }
            _ => {}
        }
    }
}
