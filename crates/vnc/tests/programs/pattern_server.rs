//! A VNC server over a test pattern: for trying real viewers by hand
//! (TigerVNC, gvncviewer, noVNC) and for measuring the server's cost.
//!
//! Usage: vnc-pattern-server [VNC-SPEC] [--size WxH] [--animate MS]
//!        vnc-pattern-server --bench-encode [--size WxH]
//! VNC-SPEC is what `VncConfig::parse` takes (default `localhost:0`,
//! port 5900). `--animate MS` moves a square every MS milliseconds; without
//! it the screen is static. `--bench-encode` prints the time to encode one
//! full update in Raw and ZRLE, for a simple and a noisy picture.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kite_display::{Damage, Display, InputEvent, InputSink, Rect, Renderer, Surface};
use kite_vnc::encoding::zrle::ZrleEncoder;
use kite_vnc::encoding::ClientEncodings;
use kite_vnc::rfb::pixel_format::PixelFormat;
use kite_vnc::rfb::session::encode_update;
use kite_vnc::{VncConfig, VncServer};

const BARS: [u32; 8] = [
    0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
];

fn bars_pixel(x: u32, y: u32, w: u32, h: u32) -> u32 {
    if y < h / 2 {
        BARS[(x * 8 / w) as usize]
    } else {
        ((x * 255 / w) << 16) | ((y * 255 / h) << 8) | 0x40
    }
}

fn draw_bars(s: &mut Surface) {
    let (w, h) = (s.width(), s.height());
    for y in 0..h {
        for x in 0..w {
            s.row_mut(y)[x as usize] = bars_pixel(x, y, w, h);
        }
    }
}

fn draw_noise(s: &mut Surface) {
    let mut v = 0x1234_5678u32;
    for p in s.pixels_mut() {
        v ^= v << 13;
        v ^= v >> 17;
        v ^= v << 5;
        *p = v & 0xffffff;
    }
}

struct Pattern {
    size: (u32, u32),
    tick: Arc<AtomicU32>,
    drawn: Option<u32>,
}

impl Renderer for Pattern {
    fn render(&mut self, s: &mut Surface) -> Damage {
        let t = self.tick.load(Ordering::Relaxed);
        if s.resize(self.size.0, self.size.1) || self.drawn.is_none() {
            draw_bars(s);
            self.drawn = Some(t);
            return Damage::Full;
        }
        if self.drawn == Some(t) {
            return Damage::None;
        }
        let (w, h) = (s.width(), s.height());
        let old = self.drawn.unwrap_or(0);
        let at = |t: u32| Rect::new((t * 8) % w.saturating_sub(32).max(1), h / 2 + 16, 32, 32);
        let (a, b) = (at(old), at(t));
        // Repaint the old square with the background, draw the new one.
        for y in a.y..(a.y + a.h).min(h) {
            for x in a.x..(a.x + a.w).min(w) {
                s.row_mut(y)[x as usize] = bars_pixel(x, y, w, h);
            }
        }
        s.fill(b, 0xff8000);
        self.drawn = Some(t);
        Damage::Rects(vec![a, b])
    }
}

struct LogInput;

impl InputSink for LogInput {
    fn send(&self, e: InputEvent) {
        eprintln!("input: {e:?}");
    }
}

fn bench(w: u32, h: u32) {
    let pf = PixelFormat::default_rgb888();
    for (name, draw) in [
        ("bars", draw_bars as fn(&mut Surface)),
        ("noise", draw_noise),
    ] {
        let mut s = Surface::new(w, h);
        draw(&mut s);
        for (enc_name, encs) in [("raw", vec![0]), ("zrle", vec![16])] {
            let enc = ClientEncodings::from_list(encs);
            let mut zrle = ZrleEncoder::new();
            let mut out = Vec::new();
            let runs = 20;
            let t = Instant::now();
            for _ in 0..runs {
                out.clear();
                encode_update(
                    &s,
                    &Damage::Full,
                    (w, h),
                    false,
                    &pf,
                    enc,
                    &mut zrle,
                    &mut out,
                );
            }
            let per = t.elapsed() / runs;
            println!(
                "{w}x{h} {name:5} {enc_name:4}: {:7.2} ms per full update, {:8} bytes",
                per.as_secs_f64() * 1e3,
                out.len()
            );
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut spec = "localhost:0".to_string();
    let mut size = (1024, 768);
    let mut animate = None;
    let mut bench_only = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => {
                let v = args.next().unwrap_or_default();
                let parsed = v.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
                match parsed {
                    Some(s) => size = s,
                    None => return eprintln!("--size WxH, e.g. 1024x768"),
                }
            }
            "--animate" => match args.next().and_then(|v| v.parse().ok()) {
                Some(ms) => animate = Some(Duration::from_millis(ms)),
                None => return eprintln!("--animate MS"),
            },
            "--bench-encode" => bench_only = true,
            "--help" | "-h" => {
                return println!("vnc-pattern-server [VNC-SPEC] [--size WxH] [--animate MS] | --bench-encode [--size WxH]")
            }
            other => spec = other.to_string(),
        }
    }
    if bench_only {
        return bench(size.0, size.1);
    }
    let cfg = match VncConfig::parse(&spec) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vnc-pattern-server: {e}");
            std::process::exit(2);
        }
    };
    let tick = Arc::new(AtomicU32::new(0));
    let display = Display::new(
        Box::new(Pattern {
            size,
            tick: tick.clone(),
            drawn: None,
        }),
        Arc::new(LogInput),
    );
    let server = match VncServer::start(cfg, display) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vnc-pattern-server: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "serving {}x{} on {:?} (websocket {:?})",
        size.0,
        size.1,
        server.local_addr(),
        server.websocket_addr()
    );
    loop {
        match animate {
            Some(d) => {
                std::thread::sleep(d);
                tick.fetch_add(1, Ordering::Relaxed);
            }
            None => std::thread::park(),
        }
    }
}
