//! Display adapters: devices whose memory the guest draws on and whose
//! picture a viewer sees through `kite_display::Renderer`.
//!
//! This module must not know about viewers, wire protocols (VNC), or how the
//! machine places devices; it gets buses and memory handed to it.

pub mod vga;
