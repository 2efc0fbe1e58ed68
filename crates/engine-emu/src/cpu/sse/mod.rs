//! SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2 instructions on the XMM registers.

use iced_x86::Instruction;

use super::exec::Handler;

/// The handler for an SSE instruction, if this group implements it.
pub fn handler(_ins: &Instruction) -> Option<Handler> {
    None
}
