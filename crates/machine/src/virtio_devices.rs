//! The virtio devices a configuration asks for, on PCI bus 0: the disks
//! first (/dev/vda, vdb, ... in slot order), then the network device (with
//! a thread reading frames from its tap, or running the user-mode network
//! stack), then the entropy device. Each
//! gets a BAR from the board's PCI window (mapped on the MMIO bus), INTx
//! routed as the DSDT's `_PRT` says, and MSI-X through the VM.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kite_devices::acpi::dsdt::pci_intx_gsi;
use kite_devices::bus::lock;
use kite_devices::pci::{Bar, BarAllocator, BarKind, PciAddress, PciRoot};
use kite_devices::virtio::net::user::{user_network, UserStack};
use kite_devices::virtio::net::{RxFrames, RX_QUEUE};
use kite_devices::virtio::pci_transport::{Interrupts, BAR_SIZE};
use kite_devices::virtio::{
    BlockDevice, NetDevice, RngDevice, Tap, TapError, VirtioDevice, VirtioPciDevice,
};
use kite_hypervisor::Vm;
use vm_memory::GuestMemoryMmap;

use crate::config::{MachineConfig, NetConfig};
use crate::error::MachineError;
use crate::irq::{VmIrqLine, VmMsiSender};

/// Slots 0-2 are the host bridge, the PIIX3 and the display.
pub const FIRST_VIRTIO_SLOT: u8 = 3;

/// Open every disk (checking locks) before anything else is built.
pub fn open_disks(config: &MachineConfig) -> Result<Vec<BlockDevice>, MachineError> {
    config
        .disks
        .iter()
        .map(|d| BlockDevice::open(d).map_err(|e| MachineError::Config(e.to_string())))
        .collect()
}

/// Put the virtio devices on `root` and their BARs on `mmio_bus`.
pub fn add_virtio_devices(
    config: &MachineConfig,
    disks: Vec<BlockDevice>,
    vm: &Arc<dyn Vm>,
    mem: &Arc<GuestMemoryMmap>,
    root: &mut PciRoot,
    bars: &mut BarAllocator,
) -> Result<(), MachineError> {
    let mut devices: Vec<(Box<dyn VirtioDevice>, Option<RxBackend>)> = Vec::new();
    for d in disks {
        devices.push((Box::new(d), None));
    }
    match &config.net {
        Some(NetConfig::Tap(name)) => {
            let tap = Arc::new(open_tap(name).map_err(|e| MachineError::Config(e.to_string()))?);
            let net = NetDevice::new(tap.clone(), GUEST_MAC);
            let frames = net.rx_frames();
            devices.push((Box::new(net), Some(RxBackend::Tap(tap, frames))));
        }
        Some(NetConfig::User(forwards)) => {
            let (tx, stack, from_guest) = user_network(forwards).map_err(|e| {
                MachineError::Config(format!(
                    "--net user: cannot listen for a hostfwd (is the host port free?): {e}"
                ))
            })?;
            let net = NetDevice::new(Arc::new(tx), GUEST_MAC);
            let frames = net.rx_frames();
            devices.push((
                Box::new(net),
                Some(RxBackend::User(Box::new(stack), from_guest, frames)),
            ));
        }
        None => {}
    }
    if config.rng {
        devices.push((Box::new(RngDevice::new()), None));
    }
    for (i, (device, rx)) in devices.into_iter().enumerate() {
        let slot = u8::try_from(i + usize::from(FIRST_VIRTIO_SLOT))
            .ok()
            .filter(|&s| s < 32)
            .ok_or_else(|| MachineError::Config("too many virtio devices (at most 29)".into()))?;
        let bar = Bar {
            kind: BarKind::Memory32 {
                prefetchable: false,
            },
            size: BAR_SIZE,
        };
        let address = bars
            .allocate(&bar)
            .map_err(|e| MachineError::Config(format!("virtio device in slot {slot}: {e}")))?;
        let gsi = pci_intx_gsi(slot, 0);
        let irq = Interrupts {
            intx: VmIrqLine::new(vm.clone(), gsi),
            msi: VmMsiSender::new(vm.clone()),
        };
        let dev = VirtioPciDevice::new(device, mem.clone(), irq, address, gsi as u8)
            .map_err(|e| MachineError::Config(format!("virtio device in slot {slot}: {e}")))?;
        let dev = Arc::new(Mutex::new(dev));
        root.add_device_at(
            PciAddress {
                device: slot,
                function: 0,
            },
            dev.clone(),
        )
        .map_err(|e| MachineError::Config(e.to_string()))?;
        match rx {
            Some(RxBackend::Tap(tap, frames)) => {
                spawn_rx(tap, frames, Arc::downgrade(&dev)).map_err(MachineError::Thread)?
            }
            Some(RxBackend::User(stack, from_guest, frames)) => {
                spawn_user(*stack, from_guest, frames, Arc::downgrade(&dev))
                    .map_err(MachineError::Thread)?
            }
            None => {}
        }
    }
    Ok(())
}

/// What a network device's backend thread works with: a tap and the queue
/// its reader fills, or the user-mode stack, the guest's frames for it and
/// the queue it fills.
enum RxBackend {
    Tap(Arc<Tap>, RxFrames),
    User(Box<UserStack>, Receiver<Vec<u8>>, RxFrames),
}

/// The guest's MAC address (QEMU's first one).
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Attach to the tap, waiting a moment if the previous boot's reader thread
/// still holds it (a reboot).
fn open_tap(name: &str) -> Result<Tap, TapError> {
    let mut tries = 0;
    loop {
        match Tap::open(name) {
            Err(TapError::Attach { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && tries < 20 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Read frames from the tap for the guest until the device is gone.
fn spawn_rx(
    tap: Arc<Tap>,
    frames: RxFrames,
    dev: Weak<Mutex<VirtioPciDevice>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("kite-net-rx".into())
        .spawn(move || {
            kite_sandbox::thread_started(kite_sandbox::Role::Net);
            let mut buf = vec![0u8; 65536];
            loop {
                if !tap.wait_readable(100) {
                    if dev.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
                let n = match tap.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::warn!("virtio-net: reading the tap failed, receive stops: {e}");
                        return;
                    }
                };
                let Some(d) = dev.upgrade() else {
                    return;
                };
                NetDevice::push_rx(&frames, buf[..n].to_vec());
                lock(&d).run_queue(RX_QUEUE);
            }
        })
        .map(|_| ())
}

/// Run the user-mode network stack until the device is gone.
fn spawn_user(
    stack: UserStack,
    from_guest: Receiver<Vec<u8>>,
    frames: RxFrames,
    dev: Weak<Mutex<VirtioPciDevice>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("kite-net-user".into())
        .spawn(move || {
            kite_sandbox::thread_started(kite_sandbox::Role::Net);
            stack.run(from_guest, |out| {
                let Some(d) = dev.upgrade() else {
                    return false;
                };
                for f in out {
                    NetDevice::push_rx(&frames, f);
                }
                lock(&d).run_queue(RX_QUEUE);
                true
            })
        })
        .map(|_| ())
}
