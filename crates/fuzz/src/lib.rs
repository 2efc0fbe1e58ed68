//! kite-fuzz: one harness per guest- or socket-facing surface of Kite,
//! `pub fn <target>(data: &[u8])`. Each builds the device (with a small
//! guest memory where it needs one), reads the bytes as a stream of
//! operations, and asserts what a user relies on beyond "no panic": no
//! access outside guest memory or the device's buffers, bounded queues, and
//! a device that still answers a well-formed request afterwards.
//!
//! libFuzzer drives them from `fuzz/` (`cargo +nightly fuzz run <target>`,
//! see docs/FUZZING.md); on stable, `cargo test -p kite-fuzz` replays the
//! committed corpora and crash regressions through the same functions.
//!
//! This crate must not be linked into Kite itself; it knows every crate but
//! none of them knows it.

pub mod cpu;
pub mod display;
pub mod firmware;
pub mod input;
pub mod irq;
pub mod legacy;
pub mod loader;
pub mod net_user;
pub mod pci;
pub mod qmp;
pub mod snapshot;
pub mod storage;
pub mod support;
pub mod virtio;
pub mod vnc;

pub use cpu::{emu_exec, x86_decode};
pub use display::vga;
pub use firmware::fw_cfg;
pub use irq::{ioapic, lapic, pic, pit};
pub use legacy::{i8042, rtc_cmos, serial};
pub use loader::{loader_bzimage, loader_elf, loader_initrd, loader_multiboot};
pub use net_user::net_user;
pub use pci::{pci_bus, virtio_pci};
pub use qmp::qmp;
pub use snapshot::snapshot;
pub use storage::ide;
pub use virtio::{virtio_blk, virtio_chain, virtio_input, virtio_net, virtio_rng};
pub use vnc::vnc;

/// A harness: the fuzzer's bytes in, a panic on a broken invariant.
pub type Harness = fn(&[u8]);

/// Every target by name (its `fuzz/fuzz_targets/<name>.rs`, corpus and
/// regression directories use the same name).
pub const TARGETS: &[(&str, Harness)] = &[
    ("serial", serial),
    ("i8042", i8042),
    ("rtc_cmos", rtc_cmos),
    ("pit", pit),
    ("pic", pic),
    ("ioapic", ioapic),
    ("lapic", lapic),
    ("x86_decode", x86_decode),
    ("emu_exec", emu_exec),
    ("loader_bzimage", loader_bzimage),
    ("loader_elf", loader_elf),
    ("loader_multiboot", loader_multiboot),
    ("loader_initrd", loader_initrd),
    ("qmp", qmp),
    ("snapshot", snapshot),
    ("vnc", vnc),
    ("virtio_chain", virtio_chain),
    ("virtio_blk", virtio_blk),
    ("virtio_net", virtio_net),
    ("virtio_input", virtio_input),
    ("virtio_rng", virtio_rng),
    ("virtio_pci", virtio_pci),
    ("net_user", net_user),
    ("pci_bus", pci_bus),
    ("ide", ide),
    ("fw_cfg", fw_cfg),
    ("vga", vga),
];

/// The harness called `name`.
pub fn target(name: &str) -> Option<Harness> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}
