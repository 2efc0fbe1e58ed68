//! The PC's legacy ISA devices: the 16550A UART, the isa-debug-exit port and
//! the i8042 keyboard controller (with its PS/2 keyboard and mouse).

pub mod debug_exit;
pub mod i8042;
pub mod uart16550;

pub use debug_exit::DebugExit;
pub use i8042::I8042;
pub use uart16550::Uart16550;
