//! Where viewers' input goes in the guest: keys to the i8042 keyboard,
//! absolute pointer positions to the virtio tablet once the guest's driver
//! has it running (else to the PS/2 mouse, differenced into motion), and
//! relative motion to the PS/2 mouse. Also puts the tablet on PCI.
//!
//! This module routes events; it must not know scan codes, packet formats
//! or virtio queues (the devices do), nor any viewer protocol.

use std::sync::{Arc, Mutex};

use kite_devices::acpi::dsdt::pci_intx_gsi;
use kite_devices::bus::lock;
use kite_devices::legacy::i8042::mouse::{BTN_LEFT, BTN_MIDDLE, BTN_RIGHT};
use kite_devices::legacy::I8042;
use kite_devices::pci::{PciAddress, PciRoot};
use kite_devices::virtio::input::{self, EVENT_QUEUE};
use kite_devices::virtio::pci_transport::{Interrupts, BAR_SIZE};
use kite_devices::virtio::{TabletDevice, TabletHandle, VirtioPciDevice};
use kite_display::{Buttons, InputEvent, InputSink};
use kite_hypervisor::Vm;
use vm_memory::GuestMemoryMmap;

use crate::error::MachineError;
use crate::irq::{VmIrqLine, VmMsiSender};
use crate::memory::MemoryLayout;

/// A virtio tablet on PCI: the handle that feeds it and its transport (to
/// run its event queue when events arrive).
#[derive(Clone)]
pub struct Tablet {
    handle: TabletHandle,
    dev: Arc<Mutex<VirtioPciDevice>>,
}

impl Tablet {
    /// Whether the guest's virtio-input driver has the tablet running.
    pub fn is_active(&self) -> bool {
        self.handle.is_active()
    }
}

/// The tablet's BAR: the top of the 32-bit PCI window, away from the
/// bump allocator the other virtio devices take from the bottom.
pub fn tablet_bar_address(layout: &MemoryLayout) -> u64 {
    let (base, len) = crate::board::pci_windows(layout).mmio32;
    (base + len - BAR_SIZE) & !(BAR_SIZE - 1)
}

/// Put a virtio tablet (virtio-input, PCI 1af4:1052) in the first free
/// slot of `root`, with its BAR at `tablet_bar_address(layout)`. Call it
/// before `PciRoot::attach_buses`, only when the machine has a display.
pub fn add_virtio_tablet(
    vm: &Arc<dyn Vm>,
    mem: &Arc<GuestMemoryMmap>,
    layout: &MemoryLayout,
    root: &mut PciRoot,
) -> Result<Tablet, MachineError> {
    let slot = (1u8..32)
        .find(|&device| {
            !root.is_present(PciAddress {
                device,
                function: 0,
            })
        })
        .ok_or_else(|| MachineError::Config("no free PCI slot for the virtio tablet".into()))?;
    let gsi = pci_intx_gsi(slot, 0);
    let irq = Interrupts {
        intx: VmIrqLine::new(vm.clone(), gsi),
        msi: VmMsiSender::new(vm.clone()),
    };
    let tablet = new_tablet(mem, irq, tablet_bar_address(layout), gsi as u8)
        .map_err(|e| MachineError::Config(format!("virtio tablet in slot {slot}: {e}")))?;
    root.add_device_at(
        PciAddress {
            device: slot,
            function: 0,
        },
        tablet.dev.clone(),
    )
    .map_err(|e| MachineError::Config(e.to_string()))?;
    Ok(tablet)
}

/// A tablet on its transport, BAR 0 at `bar_address`, INTx reported as
/// `line`.
fn new_tablet(
    mem: &Arc<GuestMemoryMmap>,
    irq: Interrupts,
    bar_address: u64,
    line: u8,
) -> Result<Tablet, kite_devices::pci::ConfigSpaceError> {
    let (device, handle) = TabletDevice::new();
    let dev = VirtioPciDevice::new(Box::new(device), mem.clone(), irq, bar_address, line)?;
    Ok(Tablet {
        handle,
        dev: Arc::new(Mutex::new(dev)),
    })
}

/// Routes a display's input to the guest's input devices.
pub struct InputRouter {
    i8042: Arc<Mutex<I8042>>,
    tablet: Option<Tablet>,
    /// The last absolute position, to turn positions into PS/2 motion.
    last_position: Mutex<Option<(u32, u32)>>,
}

impl InputRouter {
    pub fn new(i8042: Arc<Mutex<I8042>>, tablet: Option<Tablet>) -> InputRouter {
        InputRouter {
            i8042,
            tablet,
            last_position: Mutex::new(None),
        }
    }

    fn to_mouse(&self, dx: i32, dy: i32, buttons: Buttons) {
        let mut b = 0;
        if buttons.left() {
            b |= BTN_LEFT;
        }
        if buttons.right() {
            b |= BTN_RIGHT;
        }
        if buttons.middle() {
            b |= BTN_MIDDLE;
        }
        lock(&self.i8042).mouse_event(dx, dy, i32::from(buttons.wheel()), b);
    }

    fn absolute(&self, x: u32, y: u32, width: u32, height: u32, buttons: Buttons) {
        let last = lock(&self.last_position).replace((x, y));
        if let Some(t) = self.tablet.as_ref().filter(|t| t.is_active()) {
            let mut b = 0;
            if buttons.left() {
                b |= input::BUTTON_LEFT;
            }
            if buttons.right() {
                b |= input::BUTTON_RIGHT;
            }
            if buttons.middle() {
                b |= input::BUTTON_MIDDLE;
            }
            let wheel = i32::from(buttons.wheel());
            if t.handle.pointer(x, y, width, height, b, wheel) {
                lock(&t.dev).run_queue(EVENT_QUEUE);
            }
            return;
        }
        let (dx, dy) = match last {
            Some((lx, ly)) => (delta(x, lx), delta(y, ly)),
            None => (0, 0),
        };
        self.to_mouse(dx, dy, buttons);
    }
}

/// `a - b` as a motion, saturated to what an i32 holds.
fn delta(a: u32, b: u32) -> i32 {
    let d = i64::from(a) - i64::from(b);
    d.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl InputSink for InputRouter {
    fn send(&self, event: InputEvent) {
        match event {
            InputEvent::Key { code, down } => lock(&self.i8042).key_event(code, down),
            InputEvent::PointerAbsolute {
                x,
                y,
                width,
                height,
                buttons,
            } => self.absolute(x, y, width, height, buttons),
            InputEvent::PointerRelative { dx, dy, buttons } => self.to_mouse(dx, dy, buttons),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_devices::MmioDevice;

    /// The controller with a streaming mouse, interrupts polled.
    fn i8042() -> Arc<Mutex<I8042>> {
        let c = Arc::new(Mutex::new(
            I8042::new(None, Box::new(|| {})).with_mouse(None),
        ));
        {
            let mut k = lock(&c);
            k.write_command(0x60);
            k.write_data(0x44); // translate, system flag, both ports enabled
            k.write_command(0xd4);
            k.write_data(0xf4); // mouse: enable reporting
            assert_eq!(k.read_data(), 0xfa);
        }
        c
    }

    fn read_all(c: &Arc<Mutex<I8042>>) -> Vec<u8> {
        let mut k = lock(c);
        let mut v = Vec::new();
        while k.status() & 1 != 0 {
            v.push(k.read_data());
        }
        v
    }

    #[test]
    fn keys_reach_the_keyboard_as_set_1() {
        let c = i8042();
        let r = InputRouter::new(c.clone(), None);
        r.send(InputEvent::Key {
            code: 28,
            down: true,
        });
        r.send(InputEvent::Key {
            code: 28,
            down: false,
        });
        assert_eq!(read_all(&c), [0x1c, 0x9c]);
    }

    #[test]
    fn without_a_tablet_positions_become_ps2_motion() {
        let c = i8042();
        let r = InputRouter::new(c.clone(), None);
        let at = |x, y, b| InputEvent::PointerAbsolute {
            x,
            y,
            width: 800,
            height: 600,
            buttons: Buttons(b),
        };
        r.send(at(100, 100, 0));
        assert_eq!(read_all(&c), [], "the first position is only a reference");
        r.send(at(110, 95, Buttons::LEFT));
        // +10 right, 5 up on screen: PS/2 y +5; left button.
        assert_eq!(read_all(&c), [0x09, 10, 5]);
        r.send(InputEvent::PointerRelative {
            dx: -3,
            dy: 2,
            buttons: Buttons(0),
        });
        assert_eq!(read_all(&c), [0x38, 0xfd, 0xfe]);
    }

    /// A guest driver's side of the tablet's transport: BAR 0 through
    /// MMIO, one event queue with rings at fixed places.
    mod driver {
        use super::*;
        use kite_devices::pci::PciDevice;
        use kite_devices::{IrqLine, MsiSender};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use vm_memory::{Bytes, GuestAddress};

        pub const DESC: u64 = 0x1000;
        pub const AVAIL: u64 = 0x2000;
        pub const USED: u64 = 0x3000;
        pub const DATA: u64 = 0x10000;

        #[derive(Default)]
        pub struct Lines(pub AtomicUsize);
        impl IrqLine for Lines {
            fn set_level(&self, l: bool) {
                if l {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        impl MsiSender for Lines {
            fn send_msi(&self, _: u64, _: u32) {}
        }

        pub fn tablet() -> (Tablet, Arc<GuestMemoryMmap>, Arc<Lines>) {
            let mem =
                Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap());
            let lines = Arc::new(Lines::default());
            let irq = Interrupts {
                intx: lines.clone(),
                msi: lines.clone(),
            };
            let t = new_tablet(&mem, irq, 0xfebf_8000, 16).unwrap();
            (t, mem, lines)
        }

        fn w(t: &Tablet, off: u64, v: u64, len: usize) {
            MmioDevice::write(&mut *lock(&t.dev), off, &v.to_le_bytes()[..len]);
        }

        /// Memory decode on, features negotiated, event queue (16 entries)
        /// ready, DRIVER_OK: what Linux's virtio_input probe leaves.
        pub fn bring_up(t: &Tablet) {
            PciDevice::write_config(&mut *lock(&t.dev), 4, &[0x02, 0x00]);
            w(t, 0x14, 1 | 2, 1); // ACKNOWLEDGE | DRIVER
            w(t, 0x08, 1, 4);
            w(t, 0x0c, 1, 4); // VIRTIO_F_VERSION_1 (bit 32)
            w(t, 0x14, 1 | 2 | 8, 1); // FEATURES_OK
            w(t, 0x16, 0, 2);
            w(t, 0x18, 16, 2);
            w(t, 0x20, DESC, 4);
            w(t, 0x28, AVAIL, 4);
            w(t, 0x30, USED, 4);
            w(t, 0x1c, 1, 2);
            w(t, 0x14, 1 | 2 | 8 | 4, 1); // DRIVER_OK
        }

        /// Post `n` 8-byte device-writable buffers and notify.
        pub fn post(t: &Tablet, mem: &GuestMemoryMmap, n: u16) {
            for i in 0..n {
                let d = GuestAddress(DESC + 16 * u64::from(i));
                mem.write_obj(DATA + 8 * u64::from(i), d).unwrap();
                mem.write_obj(8u32, GuestAddress(d.0 + 8)).unwrap();
                mem.write_obj(2u16, GuestAddress(d.0 + 12)).unwrap();
                mem.write_obj(i, GuestAddress(AVAIL + 4 + 2 * u64::from(i)))
                    .unwrap();
            }
            mem.write_obj(n, GuestAddress(AVAIL + 2)).unwrap();
            w(t, 0x3000, 0, 2);
        }

        pub fn used_idx(mem: &GuestMemoryMmap) -> u16 {
            mem.read_obj(GuestAddress(USED + 2)).unwrap()
        }

        pub fn event(mem: &GuestMemoryMmap, i: u64) -> (u16, u16, i32) {
            let a = DATA + 8 * i;
            (
                mem.read_obj(GuestAddress(a)).unwrap(),
                mem.read_obj(GuestAddress(a + 2)).unwrap(),
                mem.read_obj(GuestAddress(a + 4)).unwrap(),
            )
        }
    }

    #[test]
    fn positions_go_to_the_tablet_once_its_driver_is_up() {
        let (t, mem, lines) = driver::tablet();
        let c = i8042();
        let r = InputRouter::new(c.clone(), Some(t.clone()));
        let at = |x, y, b| InputEvent::PointerAbsolute {
            x,
            y,
            width: 640,
            height: 480,
            buttons: Buttons(b),
        };
        // Driver not up: the PS/2 mouse moves.
        r.send(at(0, 0, 0));
        r.send(at(3, 0, 0));
        assert_eq!(read_all(&c), [0x08, 3, 0]);
        driver::bring_up(&t);
        assert!(t.is_active());
        driver::post(&t, &mem, 16);
        r.send(at(639, 479, Buttons::RIGHT));
        assert_eq!(read_all(&c), [], "the mouse no longer moves");
        assert_eq!(driver::used_idx(&mem), 4);
        assert_eq!(driver::event(&mem, 0), (3, 0, 32767));
        assert_eq!(driver::event(&mem, 1), (3, 1, 32767));
        assert_eq!(driver::event(&mem, 2), (1, 0x111, 1));
        assert_eq!(driver::event(&mem, 3), (0, 0, 0));
        assert!(lines.0.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        // Relative motion still goes to the mouse.
        r.send(InputEvent::PointerRelative {
            dx: 1,
            dy: 0,
            buttons: Buttons(0),
        });
        assert_eq!(read_all(&c), [0x08, 1, 0]);
        // The driver resets the device: back to the mouse.
        MmioDevice::write(&mut *lock(&t.dev), 0x14, &[0]);
        assert!(!t.is_active());
        r.send(at(600, 479, 0));
        assert_eq!(read_all(&c), [0x18, 0xd9, 0]);
    }

    #[test]
    fn deltas_saturate() {
        assert_eq!(delta(0, u32::MAX), i32::MIN);
        assert_eq!(delta(u32::MAX, 0), i32::MAX);
        assert_eq!(delta(5, 7), -2);
    }
}
