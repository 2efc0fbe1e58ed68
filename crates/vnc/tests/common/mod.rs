//! Test helpers: a Display whose renderer draws known patterns (changed on
//! demand), an input sink that records events, and a server on loopback.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kite_display::{Damage, Display, InputEvent, InputSink, Rect, Renderer, Surface};
use kite_vnc::{Listen, VncConfig, VncServer};

/// Eight vertical colour bars over the top half; the bottom half is a 2x2
/// checker of big squares whose colours depend on the generation.
pub const BARS: [u32; 8] = [
    0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
];

/// The colour the pattern has at (x, y) for a `w` x `h` screen at `gen`.
pub fn pattern(gen: u32, x: u32, y: u32, w: u32, h: u32) -> u32 {
    if y < h / 2 {
        BARS[(x * 8 / w) as usize]
    } else {
        let sq = (x * 2 / w + (y - h / 2) * 4 / h) % 2;
        match (gen % 3, sq) {
            (0, 0) => 0x808080,
            (0, _) => 0x204060,
            (1, 0) => 0xc04000,
            (1, _) => 0x00c040,
            (_, 0) => 0x4000c0,
            _ => 0xe0e0e0,
        }
    }
}

/// What the test changes; the renderer reads it.
pub struct Control {
    pub size: Mutex<(u32, u32)>,
    pub gen: AtomicU32,
    pub renders: AtomicU32,
}

impl Control {
    /// Moves to the next picture (the bottom half changes).
    pub fn bump(&self) {
        self.gen.fetch_add(1, Ordering::SeqCst);
    }
    pub fn resize(&self, w: u32, h: u32) {
        *self.size.lock().unwrap() = (w, h);
    }
    pub fn renders(&self) -> u32 {
        self.renders.load(Ordering::SeqCst)
    }
    pub fn gen(&self) -> u32 {
        self.gen.load(Ordering::SeqCst)
    }
}

struct PatternRenderer {
    ctl: Arc<Control>,
    drawn: Option<u32>,
}

impl Renderer for PatternRenderer {
    fn render(&mut self, s: &mut Surface) -> Damage {
        self.ctl.renders.fetch_add(1, Ordering::SeqCst);
        let (w, h) = *self.ctl.size.lock().unwrap();
        let gen = self.ctl.gen.load(Ordering::SeqCst);
        let resized = s.resize(w, h);
        if !resized && self.drawn == Some(gen) {
            return Damage::None;
        }
        let from = if resized || self.drawn.is_none() {
            0
        } else {
            h / 2
        };
        for y in from..h {
            for x in 0..w {
                s.row_mut(y)[x as usize] = pattern(gen, x, y, w, h);
            }
        }
        self.drawn = Some(gen);
        if from == 0 {
            Damage::Full
        } else {
            Damage::Rects(vec![Rect::new(0, from, w, h - from)])
        }
    }
}

/// Records every input event.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<InputEvent>>,
}

impl InputSink for Recorder {
    fn send(&self, e: InputEvent) {
        self.events.lock().unwrap().push(e);
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<InputEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    /// Waits until `pred` holds for the recorded events (or `timeout`).
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[InputEvent]) -> bool,
    ) -> Vec<InputEvent> {
        let start = Instant::now();
        loop {
            let ev = self.events.lock().unwrap().clone();
            if pred(&ev) || start.elapsed() > timeout {
                return ev;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The key events as (code, down).
    pub fn keys(events: &[InputEvent]) -> Vec<(u16, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                InputEvent::Key { code, down } => Some((*code, *down)),
                _ => None,
            })
            .collect()
    }
}

pub struct Fixture {
    pub ctl: Arc<Control>,
    pub input: Arc<Recorder>,
    pub display: Display,
}

pub fn fixture(w: u32, h: u32) -> Fixture {
    let ctl = Arc::new(Control {
        size: Mutex::new((w, h)),
        gen: AtomicU32::new(0),
        renders: AtomicU32::new(0),
    });
    let input = Arc::new(Recorder::default());
    let display = Display::new(
        Box::new(PatternRenderer {
            ctl: ctl.clone(),
            drawn: None,
        }),
        input.clone(),
    );
    Fixture {
        ctl,
        input,
        display,
    }
}

/// A config on an ephemeral loopback port.
pub fn loopback() -> VncConfig {
    VncConfig::new(Listen::Tcp {
        host: "127.0.0.1".into(),
        port: 0,
    })
}

pub fn start(cfg: VncConfig, f: &Fixture) -> VncServer {
    VncServer::start(cfg, f.display.clone()).expect("start the server")
}

/// Whether CI demands every real client (then a missing one fails the test).
pub fn clients_required() -> bool {
    std::env::var("KITE_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// Says a client is missing: a failure under KITE_REQUIRE_CLIENTS=1, else a
/// printed skip. Returns false so the caller returns.
pub fn missing(what: &str, install: &str) -> bool {
    if clients_required() {
        panic!("{what} is not installed and KITE_REQUIRE_CLIENTS=1: {install}");
    }
    eprintln!("SKIPPED: {what} is not installed ({install})");
    false
}

/// Checks an RGB image against the pattern at the centres of its regions
/// (away from edges, where JPEG blurs), within `tol` per channel.
pub fn check_picture(get: impl Fn(u32, u32) -> (u8, u8, u8), gen: u32, w: u32, h: u32, tol: i32) {
    let mut points = Vec::new();
    for bar in 0..8 {
        points.push((bar * w / 8 + w / 16, h / 4));
    }
    for (qx, qy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        points.push((qx * w / 2 + w / 4, h / 2 + qy * h / 4 + h / 8));
    }
    for (x, y) in points {
        let want = pattern(gen, x, y, w, h);
        let (r, g, b) = get(x, y);
        let want_rgb = ((want >> 16) as u8, (want >> 8) as u8, want as u8);
        let close = |a: u8, b: u8| (i32::from(a) - i32::from(b)).abs() <= tol;
        assert!(
            close(r, want_rgb.0) && close(g, want_rgb.1) && close(b, want_rgb.2),
            "pixel ({x},{y}) is {:?}, the pattern has {want_rgb:?}",
            (r, g, b)
        );
    }
}
