//! The PS/2 mouse behind the i8042's aux port: its command set (reset, get
//! id with the IntelliMouse and 5-button knocks, sample rate, resolution,
//! scaling, status, stream/remote/wrap modes, data reporting, read data),
//! movement packets (3 bytes, or 4 with a wheel) and a bounded output queue.
//!
//! It knows nothing of the controller: no status bits, no interrupts.
//! Motion arrives already relative; absolute pointers are the caller's to
//! difference.

use super::queue::OutputQueue;
use crate::state::{StateError, StateReader, StateWriter};

pub const ACK: u8 = 0xfa;
pub const RESEND: u8 = 0xfe;
pub const ERROR: u8 = 0xfc;
pub const BAT_OK: u8 = 0xaa;

/// Bytes the mouse holds for the controller (whole packets only).
pub const MOUSE_QUEUE: usize = 64;
/// How far motion may pile up while the guest does not read: beyond this
/// it is lost, so a stalled guest does not get a flood of packets later.
const MAX_PENDING_MOTION: i32 = 4096;

/// Buttons in packet order: bit 0 left, 1 right, 2 middle, 3 and 4 the
/// side buttons of a 5-button mouse.
pub const BTN_LEFT: u8 = 1 << 0;
pub const BTN_RIGHT: u8 = 1 << 1;
pub const BTN_MIDDLE: u8 = 1 << 2;
pub const BTN_4: u8 = 1 << 3;
pub const BTN_5: u8 = 1 << 4;

/// A command waiting for its parameter byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    SampleRate,
    Resolution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Remote,
    Wrap,
}

pub struct Mouse {
    queue: OutputQueue,
    mode: Mode,
    /// The mode to go back to when wrap mode ends.
    before_wrap: Mode,
    reporting: bool,
    rate: u8,
    resolution: u8,
    scaling_2to1: bool,
    /// 0 plain PS/2, 3 IntelliMouse (wheel), 4 IntelliMouse Explorer.
    id: u8,
    /// The last three sample rates set, oldest first.
    rates: [u8; 3],
    param: Option<Param>,
    dx: i32,
    dy: i32,
    dz: i32,
    buttons: u8,
    sent_buttons: u8,
}

impl Default for Mouse {
    fn default() -> Self {
        Self::new()
    }
}

/// One movement packet: `dx` right, `dy` up (PS/2 sense), `dz` wheel
/// (positive towards the user), in the format of mouse `id`. Deltas
/// outside the 9-bit range are clamped and flagged as overflowed.
pub fn encode_packet(dx: i32, dy: i32, dz: i32, buttons: u8, id: u8) -> Vec<u8> {
    let mut b0 = 0x08 | (buttons & 7);
    if !(-256..=255).contains(&dx) {
        b0 |= 0x40;
    }
    if !(-256..=255).contains(&dy) {
        b0 |= 0x80;
    }
    let dx = dx.clamp(-256, 255);
    let dy = dy.clamp(-256, 255);
    if dx < 0 {
        b0 |= 0x10;
    }
    if dy < 0 {
        b0 |= 0x20;
    }
    let mut p = vec![b0, dx as u8, dy as u8];
    match id {
        3 => p.push(dz.clamp(-127, 127) as i8 as u8),
        4 => {
            let z = (dz.clamp(-8, 7) as u8) & 0x0f;
            p.push(z | ((buttons & (BTN_4 | BTN_5)) << 1));
        }
        _ => {}
    }
    p
}

impl Mouse {
    pub(super) fn save_state(&self, w: &mut StateWriter) {
        let mode = |m: Mode| match m {
            Mode::Stream => 0,
            Mode::Remote => 1,
            Mode::Wrap => 2,
        };
        self.queue.save_state(w);
        w.u8(mode(self.mode));
        w.u8(mode(self.before_wrap));
        w.bool(self.reporting);
        w.u8(self.rate);
        w.u8(self.resolution);
        w.bool(self.scaling_2to1);
        w.u8(self.id);
        w.raw(&self.rates);
        w.u8(match self.param {
            None => 0,
            Some(Param::SampleRate) => 1,
            Some(Param::Resolution) => 2,
        });
        w.u32(self.dx as u32);
        w.u32(self.dy as u32);
        w.u32(self.dz as u32);
        w.u8(self.buttons);
        w.u8(self.sent_buttons);
    }

    pub(super) fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mode = |v: u8| match v {
            0 => Mode::Stream,
            1 => Mode::Remote,
            _ => Mode::Wrap,
        };
        let mut queue = OutputQueue::new(MOUSE_QUEUE);
        queue.restore_state(r)?;
        let m = mode(r.u8_max(2, "mouse mode")?);
        let before_wrap = mode(r.u8_max(1, "mouse mode before wrap")?);
        let reporting = r.bool("mouse reporting")?;
        let rate = r.u8("mouse sample rate")?;
        let resolution = r.u8_max(3, "mouse resolution")?;
        let scaling_2to1 = r.bool("mouse scaling")?;
        let id = r.u8("mouse id")?;
        if !matches!(id, 0 | 3 | 4) {
            return Err(StateError::Invalid(format!("mouse id {id}")));
        }
        let mut rates = [0u8; 3];
        rates.copy_from_slice(r.raw(3, "mouse rates")?);
        let param = match r.u8_max(2, "mouse parameter")? {
            0 => None,
            1 => Some(Param::SampleRate),
            _ => Some(Param::Resolution),
        };
        let mut delta = [0i32; 3];
        for d in &mut delta {
            *d = r.u32("mouse motion")? as i32;
            if d.abs() > MAX_PENDING_MOTION {
                return Err(StateError::Invalid(format!("mouse motion {d}")));
            }
        }
        let buttons = r.u8_max(0x1f, "mouse buttons")?;
        let sent_buttons = r.u8_max(0x1f, "mouse buttons sent")?;
        *self = Mouse {
            queue,
            mode: m,
            before_wrap,
            reporting,
            rate,
            resolution,
            scaling_2to1,
            id,
            rates,
            param,
            dx: delta[0],
            dy: delta[1],
            dz: delta[2],
            buttons,
            sent_buttons,
        };
        Ok(())
    }

    pub fn new() -> Mouse {
        Mouse {
            queue: OutputQueue::new(MOUSE_QUEUE),
            mode: Mode::Stream,
            before_wrap: Mode::Stream,
            reporting: false,
            rate: 100,
            resolution: 2,
            scaling_2to1: false,
            id: 0,
            rates: [0; 3],
            param: None,
            dx: 0,
            dy: 0,
            dz: 0,
            buttons: 0,
            sent_buttons: 0,
        }
    }

    /// The device id the mouse reports (0, 3 or 4).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Whether the mouse streams movement packets.
    pub fn reporting(&self) -> bool {
        self.reporting && self.mode == Mode::Stream
    }

    pub fn sample_rate(&self) -> u8 {
        self.rate
    }

    pub fn resolution(&self) -> u8 {
        self.resolution
    }

    fn packet_len(&self) -> usize {
        if self.id == 0 {
            3
        } else {
            4
        }
    }

    fn defaults(&mut self) {
        self.rate = 100;
        self.resolution = 2;
        self.scaling_2to1 = false;
        self.reporting = false;
        self.mode = Mode::Stream;
    }

    /// The next byte for the controller; refills the queue with packets
    /// from pending motion first.
    pub fn pop(&mut self) -> Option<u8> {
        self.stream();
        self.queue.pop()
    }

    /// Bytes waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn reply(&mut self, bytes: &[u8]) {
        self.queue.push(bytes);
    }

    /// The mouse moved by (`dx` right, `dy` down, as on screen), the wheel
    /// turned `wheel` notches up, and `buttons` are held.
    pub fn motion(&mut self, dx: i32, dy: i32, wheel: i32, buttons: u8) {
        if !self.reporting {
            return; // a disabled mouse keeps no motion
        }
        let lim = |v: i32| v.clamp(-MAX_PENDING_MOTION, MAX_PENDING_MOTION);
        self.dx = lim(self.dx.saturating_add(dx));
        self.dy = lim(self.dy.saturating_sub(dy));
        self.dz = lim(self.dz.saturating_sub(wheel));
        self.buttons = buttons;
        self.stream();
    }

    /// Take one packet's worth of pending motion.
    fn take_packet(&mut self) -> Vec<u8> {
        let dx = self.dx.clamp(-256, 255);
        let dy = self.dy.clamp(-256, 255);
        let dz = match self.id {
            3 => self.dz.clamp(-127, 127),
            4 => self.dz.clamp(-8, 7),
            _ => 0,
        };
        self.dx -= dx;
        self.dy -= dy;
        self.dz = if self.id == 0 { 0 } else { self.dz - dz };
        self.sent_buttons = self.buttons;
        let (sx, sy) = if self.scaling_2to1 {
            (scale_2to1(dx), scale_2to1(dy))
        } else {
            (dx, dy)
        };
        encode_packet(sx, sy, dz, self.buttons, self.id)
    }

    fn has_motion(&self) -> bool {
        self.dx != 0 || self.dy != 0 || self.dz != 0 || self.buttons != self.sent_buttons
    }

    /// In stream mode with reporting on, turn pending motion into packets
    /// while whole packets fit in the queue.
    fn stream(&mut self) {
        if !self.reporting() {
            return;
        }
        while self.has_motion() && self.packet_len() <= self.queue.room() {
            let p = self.take_packet();
            self.queue.push(&p);
        }
    }

    fn status_byte(&self) -> u8 {
        let mut s = 0;
        if self.mode == Mode::Remote {
            s |= 1 << 6;
        }
        if self.reporting {
            s |= 1 << 5;
        }
        if self.scaling_2to1 {
            s |= 1 << 4;
        }
        if self.buttons & BTN_LEFT != 0 {
            s |= 1 << 2;
        }
        if self.buttons & BTN_MIDDLE != 0 {
            s |= 1 << 1;
        }
        if self.buttons & BTN_RIGHT != 0 {
            s |= 1;
        }
        s
    }

    /// A byte the guest sent to the mouse (controller command 0xd4).
    pub fn command(&mut self, b: u8) {
        if self.mode == Mode::Wrap && b != 0xff && b != 0xec {
            self.reply(&[b]);
            return;
        }
        if let Some(p) = self.param.take() {
            self.parameter(p, b);
            return;
        }
        if b != RESEND {
            self.queue.clear();
        }
        match b {
            0xff => {
                self.defaults();
                self.id = 0;
                self.rates = [0; 3];
                self.dx = 0;
                self.dy = 0;
                self.dz = 0;
                self.reply(&[ACK, BAT_OK, 0x00]);
            }
            RESEND => {
                let last = self.queue.last_sent();
                self.reply(&[last]);
            }
            0xf6 => {
                self.defaults();
                self.reply(&[ACK]);
            }
            0xf5 => {
                self.reporting = false;
                self.reply(&[ACK]);
            }
            0xf4 => {
                self.reporting = true;
                self.sent_buttons = self.buttons;
                self.reply(&[ACK]);
            }
            0xf3 => {
                self.param = Some(Param::SampleRate);
                self.reply(&[ACK]);
            }
            0xf2 => {
                let id = self.id;
                self.reply(&[ACK, id]);
            }
            0xf0 => {
                self.mode = Mode::Remote;
                self.reply(&[ACK]);
            }
            0xee => {
                self.before_wrap = self.mode;
                self.mode = Mode::Wrap;
                self.reply(&[ACK]);
            }
            0xec => {
                if self.mode == Mode::Wrap {
                    self.mode = self.before_wrap;
                }
                self.reply(&[ACK]);
            }
            0xeb => {
                self.reply(&[ACK]);
                let p = self.take_packet();
                self.reply(&p);
            }
            0xea => {
                self.mode = Mode::Stream;
                self.reply(&[ACK]);
            }
            0xe9 => {
                let s = [ACK, self.status_byte(), self.resolution, self.rate];
                self.reply(&s);
            }
            0xe8 => {
                self.param = Some(Param::Resolution);
                self.reply(&[ACK]);
            }
            0xe7 => {
                self.scaling_2to1 = true;
                self.reply(&[ACK]);
            }
            0xe6 => {
                self.scaling_2to1 = false;
                self.reply(&[ACK]);
            }
            _ => self.reply(&[RESEND]),
        }
    }

    fn parameter(&mut self, p: Param, b: u8) {
        match p {
            Param::SampleRate => {
                if !matches!(b, 10 | 20 | 40 | 60 | 80 | 100 | 200) {
                    self.reply(&[RESEND]);
                    return;
                }
                self.rate = b;
                self.rates = [self.rates[1], self.rates[2], b];
                match (self.id, self.rates) {
                    (0, [200, 100, 80]) => self.id = 3,
                    (3, [200, 200, 80]) => self.id = 4,
                    _ => {}
                }
                self.reply(&[ACK]);
            }
            Param::Resolution => {
                if b > 3 {
                    self.reply(&[RESEND]);
                    return;
                }
                self.resolution = b;
                self.reply(&[ACK]);
            }
        }
    }
}

/// The 2:1 scaling curve stream mode applies when it is on.
fn scale_2to1(v: i32) -> i32 {
    let s = match v.abs() {
        0 => 0,
        1 => 1,
        2 => 1,
        3 => 3,
        4 => 6,
        5 => 9,
        n => 2 * n,
    };
    s * v.signum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Mouse) -> Vec<u8> {
        std::iter::from_fn(|| m.pop()).collect()
    }

    fn send(m: &mut Mouse, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            m.command(b);
            out.extend(drain(m));
        }
        out
    }

    #[test]
    fn reset_and_plain_id() {
        let mut m = Mouse::new();
        assert_eq!(send(&mut m, &[0xff]), [ACK, BAT_OK, 0x00]);
        assert_eq!(send(&mut m, &[0xf2]), [ACK, 0x00]);
    }

    #[test]
    fn intellimouse_and_explorer_knocks() {
        let mut m = Mouse::new();
        // Linux's intellimouse_detect: rates 200, 100, 80 then get id.
        let r = send(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf2]);
        assert_eq!(r, [ACK, ACK, ACK, ACK, ACK, ACK, ACK, 3]);
        // im_explorer_detect: then 200, 200, 80.
        let r = send(&mut m, &[0xf3, 200, 0xf3, 200, 0xf3, 80, 0xf2]);
        assert_eq!(r.last(), Some(&4));
        // The explorer knock alone, from a plain mouse, does nothing.
        let mut m = Mouse::new();
        let r = send(&mut m, &[0xf3, 200, 0xf3, 200, 0xf3, 80, 0xf2]);
        assert_eq!(r.last(), Some(&0));
        // Reset forgets the wheel.
        let mut m = Mouse::new();
        send(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 80]);
        send(&mut m, &[0xff]);
        assert_eq!(send(&mut m, &[0xf2]), [ACK, 0]);
    }

    #[test]
    fn bad_parameters_are_refused_not_applied() {
        let mut m = Mouse::new();
        assert_eq!(send(&mut m, &[0xf3, 77]), [ACK, RESEND]);
        assert_eq!(m.sample_rate(), 100);
        assert_eq!(send(&mut m, &[0xe8, 9]), [ACK, RESEND]);
        assert_eq!(m.resolution(), 2);
        assert_eq!(send(&mut m, &[0xe8, 3]), [ACK, ACK]);
        assert_eq!(m.resolution(), 3);
        assert_eq!(send(&mut m, &[0x42]), [RESEND], "unknown command");
    }

    #[test]
    fn status_request_reports_settings() {
        let mut m = Mouse::new();
        send(&mut m, &[0xf3, 40, 0xe8, 1, 0xe7, 0xf4]);
        m.motion(0, 0, 0, BTN_LEFT | BTN_RIGHT);
        drain(&mut m);
        // reporting (bit 5), 2:1 scaling (bit 4), left (bit 2), right (bit 0)
        assert_eq!(send(&mut m, &[0xe9]), [ACK, 0x35, 1, 40]);
        assert_eq!(send(&mut m, &[0xf6, 0xe9]), [ACK, ACK, 0x05, 2, 100]);
    }

    #[test]
    fn packets_encode_sign_and_overflow() {
        assert_eq!(encode_packet(5, 3, 0, BTN_LEFT, 0), [0x09, 5, 3]);
        assert_eq!(encode_packet(-1, -2, 0, 0, 0), [0x38, 0xff, 0xfe]);
        assert_eq!(
            encode_packet(-256, 255, 0, BTN_MIDDLE, 0),
            [0x1c, 0x00, 0xff]
        );
        assert_eq!(encode_packet(300, -300, 0, 0, 0), [0xe8, 0xff, 0x00]);
        assert_eq!(encode_packet(0, 0, -1, 0, 3), [0x08, 0, 0, 0xff]);
        assert_eq!(
            encode_packet(0, 0, 100, BTN_4 | BTN_5, 4),
            [0x08, 0, 0, 0x37]
        );
        assert_eq!(encode_packet(0, 0, -3, BTN_RIGHT, 4), [0x0a, 0, 0, 0x0d]);
    }

    #[test]
    fn streaming_motion_in_screen_coordinates() {
        let mut m = Mouse::new();
        m.motion(10, 10, 0, 0);
        assert_eq!(m.queued(), 0, "no packets before reporting is on");
        send(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf4]);
        // Right and down on screen: x positive, y negative for PS/2.
        m.motion(3, 4, 1, BTN_LEFT);
        assert_eq!(drain(&mut m), [0x29, 3, 0xfc, 0xff]);
        // A big move is split over packets without loss or overflow.
        m.motion(-600, 0, 0, 0);
        let bytes = drain(&mut m);
        assert_eq!(bytes.len(), 12);
        let mut total = 0;
        for p in bytes.chunks(4) {
            assert_eq!(p[0] & 0xc0, 0, "no overflow");
            total += i32::from(p[1]) - if p[0] & 0x10 != 0 { 256 } else { 0 };
        }
        assert_eq!(total, -600);
        // Stop reporting: motion is discarded.
        send(&mut m, &[0xf5]);
        m.motion(1, 1, 0, 0);
        assert_eq!(drain(&mut m), []);
    }

    #[test]
    fn remote_mode_reads_on_request() {
        let mut m = Mouse::new();
        send(&mut m, &[0xf4, 0xf0]);
        m.motion(7, 0, 0, 0);
        assert_eq!(m.queued(), 0, "remote mode streams nothing");
        assert_eq!(send(&mut m, &[0xeb]), [ACK, 0x08, 7, 0]);
        assert_eq!(send(&mut m, &[0xeb]), [ACK, 0x08, 0, 0]);
        assert_eq!(send(&mut m, &[0xea]), [ACK]);
        m.motion(0, -2, 0, 0);
        assert_eq!(drain(&mut m), [0x08, 0, 2]);
    }

    #[test]
    fn wrap_mode_echoes_until_reset_wrap() {
        let mut m = Mouse::new();
        assert_eq!(
            send(&mut m, &[0xee, 0x12, 0xf2, 0xec, 0xf2]),
            [ACK, 0x12, 0xf2, ACK, ACK, 0]
        );
    }

    #[test]
    fn a_flood_of_motion_stays_bounded() {
        let mut m = Mouse::new();
        send(&mut m, &[0xf4]);
        for _ in 0..100_000 {
            m.motion(i32::MAX, i32::MIN, i32::MAX, BTN_LEFT);
            assert!(m.queued() <= MOUSE_QUEUE);
        }
        // Pending motion is capped, so draining ends quickly.
        let n = drain(&mut m).len();
        assert!(n <= 3 * (2 * MAX_PENDING_MOTION as usize / 256 + 2) + MOUSE_QUEUE);
    }
}
