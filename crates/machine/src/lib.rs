//! The Kite PC: guest memory layout, kernel loaders, the board (devices on the
//! buses, interrupt wiring), and one host thread per vCPU that runs it and
//! dispatches its exits.
//!
//! This crate knows what a PC is; it must not know how an engine runs guest
//! code: it talks to engines only through the hypervisor API.

pub mod loader;
pub mod memory;
