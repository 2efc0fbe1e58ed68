//! The PC chipset QEMU's `pc` machine models and SeaBIOS expects: the
//! i440FX host bridge (with the PAM registers that put RAM or ROM under the
//! BIOS area) and the PIIX3 PCI-to-ISA bridge (PIRQ routing registers).

pub mod i440fx;
pub mod pam;
pub mod piix3;

pub use i440fx::I440fx;
pub use pam::{PamMapper, PamMode, PamSegment, PAM_SEGMENTS};
pub use piix3::Piix3Isa;
