//! What a user asks for: the machine's configuration, before anything is built.

use std::path::PathBuf;

pub use kite_devices::storage::ide::{DriveKind as IdeDriveKind, IdeDriveConfig};
pub use kite_devices::virtio::net::user::HostForward;
pub use kite_devices::virtio::BlockConfig;

pub use crate::firmware::{BootDevice, BootFailure, FirmwareConfig};
use crate::loader::Image;

/// Which engine runs guest mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// kvm when the host CPU has VT-x/AMD-V and /dev/kvm opens, else emu.
    #[default]
    Auto,
    Kvm,
    Emu,
}

/// Where the guest's COM1 goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SerialMode {
    /// Output to stdout, input from stdin (raw mode on a terminal; Ctrl-A x quits).
    #[default]
    Stdio,
    /// Output dropped, no input.
    None,
    /// Output written to this file (created or truncated), no input.
    File(PathBuf),
}

/// Everything needed to build (and rebuild, on reboot) the machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub engine: EngineChoice,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub cpus: u32,
    /// The kernel Kite loads itself (direct boot); without one the machine
    /// boots through its firmware.
    pub kernel: Option<Image>,
    /// The firmware, when there is no kernel.
    pub firmware: FirmwareConfig,
    pub initrd: Option<Image>,
    pub cmdline: String,
    pub serial: SerialMode,
    /// A reset or triple fault ends the run instead of rebooting.
    pub no_reboot: bool,
    /// Disk images for virtio-blk devices, in PCI slot order (/dev/vda first).
    pub disks: Vec<BlockConfig>,
    /// The PIIX IDE drives: primary master, primary slave, secondary
    /// master, secondary slave (the controller is there even with none).
    pub ide: [Option<IdeDriveConfig>; 4],
    /// The screen: a standard VGA (and a virtio tablet) whose picture and
    /// input go through this display, attached afresh at every boot.
    pub display: Option<DisplayConfig>,
    /// A virtio entropy device fed by the host's getrandom.
    pub rng: bool,
    /// A virtio network device and its host side.
    pub net: Option<NetConfig>,
}

/// Where a virtio network device's frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetConfig {
    /// A host tap interface, by name.
    Tap(String),
    /// User-mode networking: guest 10.0.2.15, gateway 10.0.2.2 (the host's
    /// loopback), DNS 10.0.2.3, DHCP; no privileges needed. Host TCP
    /// addresses forwarded to guest ports.
    User(Vec<HostForward>),
}

/// The most vCPUs a machine may have (one xAPIC id byte, minus broadcast).
pub const MAX_CPUS: u32 = 254;

/// A machine's screen: the display viewers hold, and the VGA's memory.
#[derive(Clone)]
pub struct DisplayConfig {
    pub display: kite_display::Display,
    /// Video memory in bytes (a power of two, 4 to 256 MiB).
    pub vram: u64,
}

impl std::fmt::Debug for DisplayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisplayConfig")
            .field("vram", &self.vram)
            .finish()
    }
}
