//! Protocol details with a hand-rolled minimal client: the handshakes of
//! each version, authentication failures, pixel format conversion,
//! incremental updates and damage, DesktopSize, hostile clients, cost when
//! idle, stop.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use kite_display::InputEvent;
use kite_vnc::{Listen, VncConfig, VncError, VncServer};

struct Client {
    s: TcpStream,
    width: u16,
    height: u16,
    name: String,
}

fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    s.read_exact(&mut b).expect("read from the server");
    b
}

fn u32be(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// Connects and runs the opening as an RFB 3.`minor` client; `shared` is ClientInit's flag.
fn connect_as(addr: SocketAddr, minor: u8, password: Option<&str>, shared: bool) -> Client {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_n(&mut s, 12), b"RFB 003.008\n");
    s.write_all(format!("RFB 003.00{minor}\n").as_bytes())
        .unwrap();
    let sec = if minor == 3 {
        u32be(&read_n(&mut s, 4)) as u8
    } else {
        let n = read_n(&mut s, 1)[0];
        let types = read_n(&mut s, n as usize);
        assert_eq!(types.len(), 1);
        s.write_all(&types).unwrap();
        types[0]
    };
    match (sec, password) {
        (1, None) => {}
        (2, Some(pw)) => {
            let ch: [u8; 16] = read_n(&mut s, 16).try_into().unwrap();
            s.write_all(&kite_vnc::rfb::auth::response(pw, &ch))
                .unwrap();
        }
        other => panic!("unexpected security {other:?}"),
    }
    if minor == 8 || sec == 2 {
        assert_eq!(u32be(&read_n(&mut s, 4)), 0, "SecurityResult OK");
    }
    s.write_all(&[shared as u8]).unwrap();
    let init = read_n(&mut s, 24);
    let name_len = u32be(&init[20..]) as usize;
    let name = String::from_utf8(read_n(&mut s, name_len)).unwrap();
    assert_eq!(
        &init[4..8],
        &[32, 24, 0, 1],
        "32 bpp, depth 24, little endian, true colour"
    );
    Client {
        s,
        width: u16::from_be_bytes([init[0], init[1]]),
        height: u16::from_be_bytes([init[2], init[3]]),
        name,
    }
}

fn connect(addr: SocketAddr) -> Client {
    connect_as(addr, 8, None, true)
}

/// One rectangle of an update.
#[derive(Debug)]
struct UpdRect {
    x: u16,
    y: u16,
    w: u16,
    h: u16,
    enc: i32,
    data: Vec<u8>,
}

impl Client {
    fn request(&mut self, incremental: bool, x: u16, y: u16, w: u16, h: u16) {
        let mut m = vec![3, incremental as u8];
        for v in [x, y, w, h] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        self.s.write_all(&m).unwrap();
    }

    fn request_full(&mut self) {
        let (w, h) = (self.width, self.height);
        self.request(false, 0, 0, w, h);
    }

    fn set_encodings(&mut self, list: &[i32]) {
        let mut m = vec![2, 0];
        m.extend_from_slice(&(list.len() as u16).to_be_bytes());
        for e in list {
            m.extend_from_slice(&e.to_be_bytes());
        }
        self.s.write_all(&m).unwrap();
    }

    /// Reads one FramebufferUpdate of Raw (and DesktopSize) rectangles; `bpp` bytes per pixel.
    fn read_update(&mut self, bpp: usize) -> Vec<UpdRect> {
        let head = read_n(&mut self.s, 4);
        assert_eq!(head[0], 0, "FramebufferUpdate");
        let n = u16::from_be_bytes([head[2], head[3]]);
        let mut rects = Vec::new();
        for _ in 0..n {
            let h = read_n(&mut self.s, 12);
            let u = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
            let enc = i32::from_be_bytes(h[8..12].try_into().unwrap());
            let (x, y, w, hh) = (u(0), u(2), u(4), u(6));
            let data = match enc {
                0 => read_n(&mut self.s, w as usize * hh as usize * bpp),
                -223 => {
                    self.width = w;
                    self.height = hh;
                    Vec::new()
                }
                other => panic!("encoding {other}"),
            };
            rects.push(UpdRect {
                x,
                y,
                w,
                h: hh,
                enc,
                data,
            });
        }
        rects
    }

    /// Whether the server sends nothing for `wait`.
    fn quiet_for(&mut self, wait: Duration) -> bool {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let r = self.s.read(&mut b);
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut)
    }

    /// Whether the server closed the connection (within 5 s).
    fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 4096];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// Pixel (x, y) of a 32 bpp little-endian Raw rectangle, as 0xRRGGBB.
fn raw_pixel(r: &UpdRect, x: u16, y: u16) -> u32 {
    let i = ((y - r.y) as usize * r.w as usize + (x - r.x) as usize) * 4;
    u32::from_le_bytes(r.data[i..i + 4].try_into().unwrap()) & 0xffffff
}

fn server(f: &Fixture) -> (VncServer, SocketAddr) {
    let s = start(loopback(), f);
    let a = s.local_addr().unwrap();
    (s, a)
}

#[test]
fn every_version_reaches_server_init_and_a_full_update() {
    let f = fixture(200, 100);
    let (_srv, addr) = server(&f);
    for minor in [3, 7, 8] {
        let mut c = connect_as(addr, minor, None, true);
        assert_eq!((c.width, c.height, c.name.as_str()), (200, 100, "kite"));
        c.request_full();
        let rects = c.read_update(4);
        let covered: u32 = rects.iter().map(|r| u32::from(r.w) * u32::from(r.h)).sum();
        assert_eq!(covered, 200 * 100, "the whole screen, once");
        for r in &rects {
            for (x, y) in [(r.x, r.y), (r.x + r.w - 1, r.y + r.h - 1)] {
                assert_eq!(
                    raw_pixel(r, x, y),
                    pattern(0, x.into(), y.into(), 200, 100),
                    "({x},{y})"
                );
            }
        }
    }
}

#[test]
fn vnc_auth_accepts_the_password_and_refuses_others_with_a_reason() {
    let f = fixture(64, 64);
    let mut cfg = loopback();
    cfg.password = Some("sesame".into());
    let srv = start(cfg, &f);
    let addr = srv.local_addr().unwrap();
    let c = connect_as(addr, 8, Some("sesame"), true);
    assert_eq!(c.width, 64);
    connect_as(addr, 3, Some("sesame"), true);
    connect_as(addr, 7, Some("sesame"), true);

    for minor in [8u8, 3] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        read_n(&mut s, 12);
        s.write_all(format!("RFB 003.00{minor}\n").as_bytes())
            .unwrap();
        if minor == 8 {
            assert_eq!(read_n(&mut s, 2), vec![1, 2], "one type: VNC auth");
            s.write_all(&[2]).unwrap();
        } else {
            assert_eq!(u32be(&read_n(&mut s, 4)), 2);
        }
        read_n(&mut s, 16);
        s.write_all(&[0u8; 16]).unwrap();
        assert_eq!(u32be(&read_n(&mut s, 4)), 1, "SecurityResult failed");
        if minor == 8 {
            let len = u32be(&read_n(&mut s, 4)) as usize;
            assert_eq!(read_n(&mut s, len), b"authentication failed");
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "closed after the failure, no ServerInit");
    }
    // Choosing security None when only VNC auth is offered is refused.
    let mut s = TcpStream::connect(addr).unwrap();
    read_n(&mut s, 12);
    s.write_all(b"RFB 003.008\n").unwrap();
    read_n(&mut s, 2);
    s.write_all(&[1]).unwrap();
    assert_eq!(u32be(&read_n(&mut s, 4)), 1);
}

#[test]
fn pixels_are_converted_to_16bpp_big_endian() {
    let f = fixture(80, 40);
    let (_srv, addr) = server(&f);
    let mut c = connect(addr);
    // SetPixelFormat: 16 bpp, depth 16, big endian, RGB565.
    c.s.write_all(&[
        0, 0, 0, 0, 16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0,
    ])
    .unwrap();
    c.request_full();
    let rects = c.read_update(2);
    let first = &rects[0];
    assert_eq!((first.x, first.y), (0, 0));
    let px = |x: usize| u16::from_be_bytes([first.data[x * 2], first.data[x * 2 + 1]]);
    assert_eq!(px(0), 0xffff, "white");
    assert_eq!(px(10), 0xffe0, "yellow");
    assert_eq!(px(20), 0x07ff, "cyan");
    assert_eq!(px(75), 0x0000, "black");
}

#[test]
fn incremental_requests_get_only_damage_and_only_once_it_happens() {
    let f = fixture(160, 120);
    let (_srv, addr) = server(&f);
    let mut c = connect(addr);
    c.request_full();
    c.read_update(4);
    c.request(true, 0, 0, 160, 120);
    assert!(
        c.quiet_for(Duration::from_millis(300)),
        "nothing changed: no update"
    );
    f.ctl.bump();
    let rects = c.read_update(4);
    assert!(!rects.is_empty());
    for r in &rects {
        assert!(r.y >= 60, "only the bottom half changed: {r:?}");
        assert_eq!(
            raw_pixel(r, r.x, r.y),
            pattern(1, r.x.into(), r.y.into(), 160, 120)
        );
    }
    // No request outstanding: a change sends nothing.
    f.ctl.bump();
    assert!(
        c.quiet_for(Duration::from_millis(300)),
        "not asked: no update"
    );
    c.request(true, 0, 0, 160, 120);
    let rects = c.read_update(4);
    assert!(rects.iter().all(|r| r.y >= 60));
    assert_eq!(
        raw_pixel(&rects[0], rects[0].x, rects[0].y),
        pattern(2, rects[0].x.into(), rects[0].y.into(), 160, 120)
    );
}

#[test]
fn a_resize_sends_desktop_size_then_the_new_screen() {
    let f = fixture(100, 50);
    let (_srv, addr) = server(&f);
    let mut c = connect(addr);
    c.set_encodings(&[0, -223]);
    c.request_full();
    c.read_update(4);
    c.request(true, 0, 0, 100, 50);
    f.ctl.resize(300, 200);
    let rects = c.read_update(4);
    assert_eq!(rects[0].enc, -223, "DesktopSize first: {rects:?}");
    assert_eq!((rects[0].w, rects[0].h), (300, 200));
    let covered: u32 = rects[1..]
        .iter()
        .map(|r| u32::from(r.w) * u32::from(r.h))
        .sum();
    assert_eq!(covered, 300 * 200);
    assert_eq!(raw_pixel(&rects[1], 0, 0), pattern(0, 0, 0, 300, 200));

    // A client without DesktopSize keeps its size and gets its part of the screen.
    let mut old = connect(addr);
    assert_eq!((old.width, old.height), (300, 200));
    old.request_full();
    old.read_update(4);
    old.request(true, 0, 0, 300, 200);
    f.ctl.resize(120, 90);
    let rects = old.read_update(4);
    assert!(
        rects
            .iter()
            .all(|r| r.enc == 0 && r.x + r.w <= 120 && r.y + r.h <= 90),
        "{rects:?}"
    );
}

#[test]
fn an_empty_screen_starts_at_640x480_and_resizes_when_the_mode_is_set() {
    let f = fixture(0, 0);
    let (_srv, addr) = server(&f);
    let mut c = connect(addr);
    assert_eq!((c.width, c.height), (640, 480));
    c.set_encodings(&[-223, 0]);
    c.request_full();
    assert!(
        c.read_update(4).is_empty(),
        "nothing to show yet, but an answer"
    );
    c.request(true, 0, 0, 640, 480);
    f.ctl.resize(320, 200);
    let rects = c.read_update(4);
    assert_eq!((rects[0].enc, rects[0].w, rects[0].h), (-223, 320, 200));
    assert_eq!(raw_pixel(&rects[1], 0, 0), pattern(0, 0, 0, 320, 200));
}

#[test]
fn input_reaches_the_sink() {
    let f = fixture(100, 100);
    let (_srv, addr) = server(&f);
    let mut c = connect(addr);
    // KeyEvent 'a' down/up, F5 down, PointerEvent right button at (5, 500) (clamped).
    c.s.write_all(&[
        4, 1, 0, 0, 0, 0, 0, 0x61, 4, 0, 0, 0, 0, 0, 0, 0x61, 4, 1, 0, 0, 0, 0, 0xff, 0xc2,
    ])
    .unwrap();
    c.s.write_all(&[5, 4, 0, 5, 1, 0xf4]).unwrap();
    let ev = f.input.wait_for(Duration::from_secs(5), |e| e.len() >= 4);
    assert_eq!(
        ev,
        vec![
            InputEvent::Key {
                code: 30,
                down: true
            },
            InputEvent::Key {
                code: 30,
                down: false
            },
            InputEvent::Key {
                code: 63,
                down: true
            },
            InputEvent::PointerAbsolute {
                x: 5,
                y: 99,
                width: 100,
                height: 100,
                buttons: kite_display::Buttons(4)
            },
        ]
    );
}

#[test]
fn hostile_clients_are_dropped_alone() {
    let f = fixture(64, 64);
    let (srv, addr) = server(&f);
    let mut good = connect(addr);

    let mut bad = connect(addr);
    bad.s.write_all(&[99, 1, 2, 3]).unwrap();
    assert!(bad.closed(), "unknown message type");

    let mut bad = connect(addr);
    bad.s
        .write_all(&[6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff])
        .unwrap();
    assert!(bad.closed(), "2 GiB ClientCutText");

    let mut bad = connect(addr);
    bad.s.write_all(&[0, 0, 0, 0, 24, 24, 0, 0]).unwrap();
    bad.s.write_all(&[0; 12]).unwrap();
    assert!(bad.closed(), "colour-map pixel format");

    let mut s = TcpStream::connect(addr).unwrap();
    read_n(&mut s, 12);
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut garbage = Client {
        s,
        width: 0,
        height: 0,
        name: String::new(),
    };
    assert!(garbage.closed(), "not RFB");

    // Half a message, then gone.
    let mut half = connect(addr);
    half.s.write_all(&[3, 0, 0]).unwrap();
    drop(half);

    // SetEncodings announcing 65535 entries is read and bounded.
    let mut many = connect(addr);
    let mut m = vec![2, 0, 0xff, 0xff];
    m.extend(std::iter::repeat_n(0u8, 65535 * 4));
    many.s.write_all(&m).unwrap();
    many.request_full();
    assert!(!many.read_update(4).is_empty(), "still served");

    good.request_full();
    assert!(
        !good.read_update(4).is_empty(),
        "the good client is unaffected"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(srv.client_count(), 2, "only the bad ones are gone");
}

#[test]
fn a_client_that_never_reads_blocks_nobody() {
    let f = fixture(1024, 768);
    let (_srv, addr) = server(&f);
    let mut slow = connect(addr);
    // Ask for 200 full screens (~600 MB) and never read one.
    for _ in 0..200 {
        slow.request_full();
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut other = connect(addr);
    for gen in 1..4 {
        f.ctl.bump();
        let t = Instant::now();
        let snap = f.display.snapshot();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "the display is not held by the slow client"
        );
        assert_eq!(snap.pixel(0, 700), Some(pattern(gen, 0, 700, 1024, 768)));
        other.request_full();
        let rects = other.read_update(4);
        let last = rects.last().unwrap();
        assert_eq!(
            raw_pixel(last, last.x, last.y + last.h - 1),
            pattern(gen, last.x.into(), (last.y + last.h - 1).into(), 1024, 768)
        );
    }
    drop(slow);
}

#[test]
fn no_client_no_rendering_and_an_idle_client_costs_little() {
    let f = fixture(320, 200);
    let (_srv, addr) = server(&f);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.ctl.renders(), 0, "no client: the display is never polled");
    let mut c = connect(addr);
    c.request_full();
    c.read_update(4);
    // Connected, not asking: no polling at all.
    let before = f.ctl.renders();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        f.ctl.renders(),
        before,
        "a client that has not asked costs no render"
    );
    // Asking incrementally against a static screen: polled at most max_fps
    // (30) times a second, backing off to 4 a second.
    c.request(true, 0, 0, 320, 200);
    let before = f.ctl.renders();
    std::thread::sleep(Duration::from_secs(1));
    let polls = f.ctl.renders() - before;
    assert!(
        (3..=30).contains(&polls),
        "{polls} polls in the first second"
    );
    let before = f.ctl.renders();
    std::thread::sleep(Duration::from_secs(1));
    let polls = f.ctl.renders() - before;
    assert!(
        (2..=5).contains(&polls),
        "{polls} polls in the next second: backed off to 4/s"
    );
    assert!(c.quiet_for(Duration::from_millis(50)));
    // A change is still seen, within the idle interval.
    f.ctl.bump();
    let t = Instant::now();
    assert!(!c.read_update(4).is_empty());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn exclusive_clients_disconnect_the_others() {
    let f = fixture(32, 32);
    let (_srv, addr) = server(&f);
    let mut first = connect(addr);
    let mut second = connect_as(addr, 8, None, false);
    assert!(first.closed(), "the exclusive client pushed the first out");
    second.request_full();
    assert!(!second.read_update(4).is_empty());
}

#[test]
fn stop_closes_everything_and_a_used_port_is_a_clear_error() {
    let f = fixture(32, 32);
    let (mut srv, addr) = server(&f);
    let mut c = connect(addr);
    let taken = VncConfig::new(Listen::Tcp {
        host: "127.0.0.1".into(),
        port: addr.port(),
    });
    let err = VncServer::start(taken, f.display.clone())
        .err()
        .expect("the port is taken");
    assert!(matches!(err, VncError::Bind { .. }));
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", addr.port())),
        "{err}"
    );
    srv.stop();
    assert_eq!(srv.client_count(), 0, "every client thread has finished");
    assert!(c.closed(), "stop() hangs up on clients");
    assert!(TcpStream::connect(addr).is_err(), "and closes the listener");
}

#[test]
fn unix_socket_listener_serves() {
    let f = fixture(48, 16);
    let path = std::env::temp_dir().join(format!("kite-vnc-{}.sock", std::process::id()));
    let mut srv = start(VncConfig::new(Listen::Unix(path.clone())), &f);
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    assert_eq!(read_n(&mut s, 12), b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").unwrap();
    assert_eq!(read_n(&mut s, 2), vec![1, 1]);
    s.write_all(&[1]).unwrap();
    assert_eq!(u32be(&read_n(&mut s, 4)), 0);
    s.write_all(&[1]).unwrap();
    let init = read_n(&mut s, 24);
    assert_eq!(&init[..4], &[0, 48, 0, 16]);
    srv.stop();
    assert!(!path.exists(), "the socket file is removed");
}

/// A WebSocket client frame (masked).
fn ws_frame(payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x82];
    let mask = [0x11, 0x22, 0x33, 0x44];
    f.push(if masked { 0x80 } else { 0 } | payload.len() as u8);
    if masked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

#[test]
fn websocket_carries_rfb_and_refuses_bad_frames() {
    let f = fixture(40, 30);
    let mut cfg = loopback();
    cfg.websocket = Some(("127.0.0.1".into(), 0));
    let srv = start(cfg, &f);
    let ws = srv.websocket_addr().unwrap();
    let open = |masked: bool| {
        let mut s = TcpStream::connect(ws).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: k\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n",
        )
        .unwrap();
        let mut resp = Vec::new();
        while !resp.ends_with(b"\r\n\r\n") {
            resp.extend(read_n(&mut s, 1));
        }
        let resp = String::from_utf8(resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
        assert!(resp.contains("Sec-WebSocket-Protocol: binary"));
        // The server's first frame: the version.
        assert_eq!(read_n(&mut s, 2), vec![0x82, 12]);
        assert_eq!(read_n(&mut s, 12), b"RFB 003.008\n");
        s.write_all(&ws_frame(b"RFB 003.008\n", masked)).unwrap();
        s
    };
    let mut s = open(true);
    assert_eq!(
        read_n(&mut s, 4),
        vec![0x82, 2, 1, 1],
        "security types in a frame"
    );
    s.write_all(&ws_frame(&[1], true)).unwrap();
    assert_eq!(read_n(&mut s, 6), vec![0x82, 4, 0, 0, 0, 0]);

    let s = open(false);
    let mut c = Client {
        s,
        width: 0,
        height: 0,
        name: String::new(),
    };
    let _ = c.s.read(&mut [0u8; 4]);
    assert!(c.closed(), "an unmasked client frame is refused");

    let mut s = TcpStream::connect(ws).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: k\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.1 400"),
        "a plain HTTP request: {resp}"
    );
}
