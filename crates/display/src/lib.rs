//! Kite's screen and input, as the people's side (VNC, QMP's screendump,
//! `--screenshot-on-exit`) sees them.
//!
//! The device side (a VGA adapter, in `kite-devices`, wired by `kite-machine`)
//! implements [`Renderer`]: it brings a [`Surface`] up to date with what the
//! guest drew and says which rectangles changed. The [`Display`] handle owns
//! the one surface, renders only when someone asks (so a display with no
//! viewer costs nothing), and hands each viewer ([`Subscription`]) the damage
//! it has not seen yet. Input from viewers goes to an [`InputSink`] as Linux
//! evdev key codes and pointer events; the machine routes them to the PS/2
//! controller or a virtio tablet.
//!
//! This crate must not know about VGA registers, guest memory, the
//! hypervisor, or any wire protocol.

pub mod display;
pub mod input;
pub mod screenshot;
pub mod surface;

pub use display::{Blank, Display, Renderer, Subscription, Update};
pub use input::{Buttons, InputEvent, InputSink, NullInput};
pub use screenshot::{encode_png, encode_ppm, ScreenshotError};
pub use surface::{Damage, Rect, Surface};
