//! One client after the opening: ServerInit, then two threads: the reader
//! (client messages: pixel format, encodings, update requests, input) and
//! the updater (polls the display only while the client has asked for an
//! update, at most `max_fps` times a second, and sends what changed).
//!
//! Knows nothing of listeners or of the transport beneath RFB.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kite_display::{Buttons, Damage, Display, InputEvent, Rect, Surface};

use super::messages::{self, ClientMessage};
use super::pixel_format::PixelFormat;
use crate::encoding::{self, raw, zrle::ZrleEncoder, ClientEncodings, Preferred};
use crate::error::VncError;
use crate::keysym;
use crate::transport::{lock_writer, SharedWriter};

/// Rectangles are cut into bands of at most this many rows (ZRLE's tile height).
const BAND: u32 = 64;
/// A static screen is polled less and less often, down to this interval;
/// any change or any input from the client brings back the full rate.
const IDLE_INTERVAL: Duration = Duration::from_millis(250);

/// What the reader tells the updater.
struct State {
    pf: PixelFormat,
    encodings: ClientEncodings,
    /// An update request is outstanding.
    requested: bool,
    /// A non-incremental request is outstanding: answer it even if nothing changed.
    must_reply: bool,
    /// Regions a non-incremental request asked for in full.
    forced: Damage,
    /// The reader is gone (client closed or broke the protocol).
    closed: bool,
    /// The client typed or pointed since the updater last looked.
    input_seen: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The settings a session needs from the server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub name: String,
    pub max_fps: u32,
}

/// Runs a client after the opening until it goes away: sends ServerInit,
/// reads messages on a thread of its own and sends updates on this one.
/// `hang_up` must end the connection (it unblocks the reader thread).
/// Returns why the client went: `Ok` when it closed cleanly.
pub fn run<R: Read + Send + 'static>(
    mut reader: R,
    writer: SharedWriter,
    display: Display,
    cfg: &SessionConfig,
    hang_up: &dyn Fn(),
) -> Result<(), VncError> {
    let sub = display.subscribe();
    let first = sub.poll();
    // Before the guest sets a mode the screen is empty; viewers cannot show
    // a 0x0 desktop, so they start at 640x480 and get DesktopSize later.
    let (mut cw, mut ch) = match (first.width.min(65535), first.height.min(65535)) {
        (0, _) | (_, 0) => (640, 480),
        size => size,
    };
    let mut owed = Damage::Full;
    let pf = PixelFormat::default_rgb888();
    let mut init = Vec::with_capacity(24 + cfg.name.len());
    init.extend_from_slice(&(cw as u16).to_be_bytes());
    init.extend_from_slice(&(ch as u16).to_be_bytes());
    init.extend_from_slice(&pf.to_bytes());
    init.extend_from_slice(&(cfg.name.len() as u32).to_be_bytes());
    init.extend_from_slice(cfg.name.as_bytes());
    lock_writer(&writer).send(&init)?;

    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pf,
            encodings: ClientEncodings::default(),
            requested: false,
            must_reply: false,
            forced: Damage::None,
            closed: false,
            input_seen: false,
        }),
        wake: Condvar::new(),
    });
    let reader_thread = {
        let shared = shared.clone();
        let display = display.clone();
        std::thread::Builder::new()
            .name("kite-vnc-read".into())
            .spawn(move || {
                kite_sandbox::thread_started(kite_sandbox::Role::Vnc);
                let result = read_loop(&mut reader, &shared, &display);
                shared.lock().closed = true;
                shared.wake.notify_all();
                result
            })
            .map_err(VncError::Thread)?
    };

    let base = Duration::from_secs(1) / cfg.max_fps.max(1);
    let mut interval = base;
    let mut next = Instant::now();
    let mut zrle = ZrleEncoder::new();
    let mut buf = Vec::new();
    let result = loop {
        // Sleep until the client has asked and the rate limit allows.
        let (pf, encodings, must_reply, forced) = {
            let mut st = shared.lock();
            loop {
                if st.closed {
                    break;
                }
                let now = Instant::now();
                if std::mem::take(&mut st.input_seen) && interval > base {
                    // The screen will likely answer the input: look soon.
                    interval = base;
                    next = next.min(now + base);
                }
                if st.requested && now >= next {
                    break;
                }
                st = if st.requested {
                    match shared.wake.wait_timeout(st, next - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    }
                } else {
                    shared.wake.wait(st).unwrap_or_else(|p| p.into_inner())
                };
            }
            if st.closed {
                break Ok(());
            }
            (
                st.pf,
                st.encodings,
                st.must_reply,
                std::mem::take(&mut st.forced),
            )
        };
        let upd = sub.poll();
        let mut desktop_size = false;
        if (upd.width, upd.height) != (cw, ch) && upd.width > 0 && upd.height > 0 {
            if encodings.desktop_size {
                (cw, ch) = (upd.width.min(65535), upd.height.min(65535));
                desktop_size = true;
            }
            owed = Damage::Full;
        }
        owed.add(upd.damage, cw, ch);
        owed.add(forced, cw, ch);
        if owed.is_none() && !desktop_size && !must_reply {
            interval = (interval * 3 / 2).clamp(base, IDLE_INTERVAL.max(base));
            next = Instant::now() + interval;
            continue;
        }
        {
            let mut st = shared.lock();
            st.requested = false;
            st.must_reply = false;
        }
        buf.clear();
        display.with_surface(|s| {
            encode_update(
                s,
                &std::mem::take(&mut owed),
                (cw, ch),
                desktop_size,
                &pf,
                encodings,
                &mut zrle,
                &mut buf,
            )
        });
        if let Err(e) = lock_writer(&writer).send(&buf) {
            break Err(e.into());
        }
        interval = base;
        next = Instant::now() + interval;
    };
    shared.lock().closed = true;
    hang_up();
    let read_result = reader_thread
        .join()
        .unwrap_or_else(|_| Err(VncError::protocol("the reader thread panicked")));
    // The updater's failure (a write) explains more than the reader's
    // consequent one; when the updater just saw the reader go, the reader's says why.
    result.and(read_result)
}

/// Builds one FramebufferUpdate message: an optional DesktopSize rectangle,
/// then the damage cut into bands, in the client's encoding and format.
#[allow(clippy::too_many_arguments)]
pub fn encode_update(
    s: &Surface,
    damage: &Damage,
    (cw, ch): (u32, u32),
    desktop_size: bool,
    pf: &PixelFormat,
    enc: ClientEncodings,
    zrle: &mut ZrleEncoder,
    out: &mut Vec<u8>,
) {
    // Only what both the client's framebuffer and the surface hold.
    let (w, h) = (cw.min(s.width()), ch.min(s.height()));
    let mut bands = Vec::new();
    for r in damage.rects(w, h) {
        let r = r.clip(w, h);
        let mut y = r.y;
        while y < r.y + r.h {
            let bh = BAND.min(r.y + r.h - y);
            if !r.is_empty() {
                bands.push(Rect::new(r.x, y, r.w, bh));
            }
            y += bh;
        }
    }
    bands.truncate(usize::from(u16::MAX) - 1);
    let count = bands.len() + usize::from(desktop_size);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    let header = |out: &mut Vec<u8>, r: Rect, e: i32| {
        for v in [r.x, r.y, r.w, r.h] {
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        out.extend_from_slice(&e.to_be_bytes());
    };
    if desktop_size {
        header(out, Rect::new(0, 0, cw, ch), encoding::DESKTOP_SIZE);
    }
    for b in bands {
        match enc.preferred {
            Preferred::Raw => {
                header(out, b, encoding::RAW);
                raw::encode(s, b, pf, out);
            }
            Preferred::Zrle => {
                header(out, b, encoding::ZRLE);
                zrle.encode(s, b, pf, out);
            }
        }
    }
}

/// Shift keys this client holds, and keys we pressed Shift for ourselves.
#[derive(Default)]
struct Keyboard {
    shift_down: u8,
    faked_shift: Vec<u16>,
}

fn read_loop(r: &mut impl Read, shared: &Shared, display: &Display) -> Result<(), VncError> {
    let mut kb = Keyboard::default();
    let mut unknown_keys = 0u32;
    while let Some(msg) = messages::read(r)? {
        if matches!(
            msg,
            ClientMessage::Key { .. } | ClientMessage::Pointer { .. }
        ) {
            let mut st = shared.lock();
            if !st.input_seen {
                st.input_seen = true;
                shared.wake.notify_all();
            }
        }
        match msg {
            ClientMessage::SetPixelFormat(pf) => shared.lock().pf = pf,
            ClientMessage::SetEncodings(list) => {
                shared.lock().encodings = ClientEncodings::from_list(list)
            }
            ClientMessage::UpdateRequest { incremental, rect } => {
                let mut st = shared.lock();
                st.requested = true;
                if !incremental {
                    st.must_reply = true;
                    st.forced
                        .add_rect(rect, u32::from(u16::MAX), u32::from(u16::MAX));
                }
                shared.wake.notify_all();
            }
            ClientMessage::Key { down, keysym } => match keysym::lookup(keysym) {
                Some(key) => kb.key(display, key, down),
                None => {
                    unknown_keys += 1;
                    if unknown_keys <= 5 {
                        log::info!("vnc: keysym {keysym:#x} has no key on a US keyboard; ignored");
                    }
                }
            },
            ClientMessage::Pointer { buttons, x, y } => {
                let (width, height) = display.with_surface(|s| (s.width(), s.height()));
                if width > 0 && height > 0 {
                    display.send_input(InputEvent::PointerAbsolute {
                        x: u32::from(x).min(width - 1),
                        y: u32::from(y).min(height - 1),
                        width,
                        height,
                        buttons: Buttons(buttons),
                    });
                }
            }
            ClientMessage::CutText => {}
        }
    }
    Ok(())
}

impl Keyboard {
    fn key(&mut self, display: &Display, key: keysym::Key, down: bool) {
        let send = |code, down| display.send_input(InputEvent::Key { code, down });
        if keysym::is_shift(key.code) {
            let bit = if key.code == keysym::code::LEFTSHIFT {
                1
            } else {
                2
            };
            if down {
                self.shift_down |= bit;
            } else {
                self.shift_down &= !bit;
            }
            send(key.code, down);
            return;
        }
        if down {
            // A shifted symbol typed with no Shift held (vncdotool, noVNC's
            // on-screen keys): hold Shift for it.
            if key.shifted
                && self.shift_down == 0
                && !self.faked_shift.contains(&key.code)
                && self.faked_shift.len() < 16
            {
                send(keysym::code::LEFTSHIFT, true);
                self.faked_shift.push(key.code);
            }
            send(key.code, true);
        } else {
            send(key.code, false);
            if let Some(i) = self.faked_shift.iter().position(|&c| c == key.code) {
                self.faked_shift.swap_remove(i);
                if self.shift_down == 0 {
                    send(keysym::code::LEFTSHIFT, false);
                }
            }
        }
    }
}
