//! Input from viewers: keys as Linux evdev codes (linux/input-event-codes.h,
//! e.g. KEY_A = 30, KEY_ENTER = 28), pointer events with RFB-style buttons.

/// Pointer buttons, one bit each (the RFB button-mask layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Buttons(pub u8);

impl Buttons {
    pub const LEFT: u8 = 1 << 0;
    pub const MIDDLE: u8 = 1 << 1;
    pub const RIGHT: u8 = 1 << 2;
    pub const WHEEL_UP: u8 = 1 << 3;
    pub const WHEEL_DOWN: u8 = 1 << 4;

    pub fn left(self) -> bool {
        self.0 & Self::LEFT != 0
    }
    pub fn middle(self) -> bool {
        self.0 & Self::MIDDLE != 0
    }
    pub fn right(self) -> bool {
        self.0 & Self::RIGHT != 0
    }
    /// Wheel movement this event carries: +1 up, -1 down, 0 none.
    pub fn wheel(self) -> i8 {
        match (self.0 & Self::WHEEL_UP != 0, self.0 & Self::WHEEL_DOWN != 0) {
            (true, false) => 1,
            (false, true) => -1,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// A key went down or up; `code` is a Linux evdev key code.
    Key { code: u16, down: bool },
    /// The pointer is at pixel (x, y) of a `width` x `height` screen.
    PointerAbsolute {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        buttons: Buttons,
    },
    /// The pointer moved by (dx, dy) pixels.
    PointerRelative { dx: i32, dy: i32, buttons: Buttons },
}

/// Where input goes (the machine routes it to PS/2 or a virtio tablet).
pub trait InputSink: Send + Sync {
    fn send(&self, event: InputEvent);
}

/// Drops every event (a display without input devices).
pub struct NullInput;

impl InputSink for NullInput {
    fn send(&self, _event: InputEvent) {}
}
