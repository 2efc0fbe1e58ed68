//! Assembles a machine from its configuration, in one readable place: guest
//! memory with the kernel loaded (`load_guest`), then the VM, the board's
//! devices and interrupt wiring, and the vCPUs in their boot state (`build`).

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kite_devices::chipset::{I440fx, PamMapper, Piix3Isa};
use kite_devices::legacy::{debug_exit, i8042, uart16550, DebugExit, Uart16550, I8042};
use kite_devices::pci::{BarAllocator, BarBuses, PciAddress, PciRoot, RamMapper};
use kite_display::InputSink;
use std::path::Path;

use crate::display_devices::{install_vga, read_vga_bios, DEFAULT_VGA_BIOS};
use crate::input_devices::{add_virtio_tablet, InputRouter};
use kite_devices::{IoBus, MmioBus, PioDevice};
use kite_hypervisor::{CpuidEntry, Hypervisor, Vcpu, Vm, VmConfig};
use vm_memory::GuestMemoryMmap;

use crate::config::{MachineConfig, MAX_CPUS};
use crate::console::Console;
use crate::control::{Control, VmEvent};
use crate::error::MachineError;
use crate::firmware::contents::cmos_settings;
use crate::firmware::{read_bios, read_option_rom};
use crate::irq::VmIrqLine;
use crate::loader::{load_kernel, BootSpec, BootState};
use crate::memory::{create_guest_memory, MemoryLayout};
use crate::memory_map::{FirmwareRom, GuestMap, PamWrites, PAM_LEN, PAM_START};
use crate::run::Machine;
use crate::snapshot::fingerprint::fingerprint;
use crate::snapshot::{DeviceTable, MachineState};

/// Check what can be checked before building anything.
pub fn validate(config: &MachineConfig) -> Result<MemoryLayout, MachineError> {
    if config.cpus == 0 || config.cpus > MAX_CPUS {
        return Err(MachineError::Config(format!(
            "--cpus {}: a machine has 1 to {MAX_CPUS} vCPUs",
            config.cpus
        )));
    }
    Ok(MemoryLayout::new(config.memory)?)
}

/// Guest RAM with the kernel (and initrd) in place, or the firmware image
/// read: everything that needs no engine, so a bad image is reported before
/// an engine is opened.
pub struct LoadedGuest {
    pub layout: MemoryLayout,
    pub mem: Arc<GuestMemoryMmap>,
    pub boot: BootState,
    /// The BIOS image when the machine boots through firmware.
    pub bios: Option<Vec<u8>>,
    /// Option ROMs for the firmware (file name, bytes).
    pub option_roms: Vec<(String, Vec<u8>)>,
}

/// Map RAM and load the kernel into it (direct boot), or read the firmware.
pub fn load_guest(config: &MachineConfig) -> Result<LoadedGuest, MachineError> {
    let layout = validate(config)?;
    let mem = Arc::new(create_guest_memory(&layout)?);
    let Some(kernel) = &config.kernel else {
        let bios = read_bios(&config.firmware.bios).map_err(MachineError::Config)?;
        let option_roms = config
            .firmware
            .option_roms
            .iter()
            .map(|p| read_option_rom(p).map_err(MachineError::Config))
            .collect::<Result<_, _>>()?;
        return Ok(LoadedGuest {
            layout,
            mem,
            boot: crate::firmware::reset_state(),
            bios: Some(bios),
            option_roms,
        });
    };
    let rsdp =
        crate::board::write_acpi_tables(&mem, &layout, config.cpus, config.display.is_some())?;
    let boot = load_kernel(
        &mem,
        &layout,
        &BootSpec {
            kernel,
            initrd: config.initrd.as_ref(),
            cmdline: &config.cmdline,
            rsdp_address: Some(rsdp),
        },
    )?;
    Ok(LoadedGuest {
        layout,
        mem,
        boot,
        bios: None,
        option_roms: Vec::new(),
    })
}

/// Build a machine ready to run around a loaded guest; `events` receives
/// whatever ends its run.
pub fn build(
    config: &MachineConfig,
    guest: LoadedGuest,
    hv: &dyn Hypervisor,
    console: &Console,
    events: &Sender<VmEvent>,
) -> Result<Machine, MachineError> {
    let LoadedGuest {
        mem,
        boot,
        layout,
        bios,
        option_roms,
    } = guest;
    let firmware = bios.is_some();
    // Disks first: a missing or locked image is the user's to fix.
    let disks = crate::virtio_devices::open_disks(config)?;

    // The VM and its RAM.
    let vm = hv
        .create_vm(&VmConfig {
            irqchip: true,
            pit: true,
            vcpus: config.cpus,
        })
        .map_err(MachineError::engine("creating the VM"))?;
    let rom = bios.as_deref().map(FirmwareRom::new).transpose()?;
    let map = GuestMap::new(vm.clone(), mem.clone(), &layout, rom)?;

    // The board; every device with state goes in `devices` for snapshots.
    let mut devices = DeviceTable::new();
    let control = Control::new(events.clone(), Arc::new(AtomicBool::new(false)));
    let io_bus = Arc::new(IoBus::new());
    let mmio_bus = Arc::new(MmioBus::new());

    let com1 = Arc::new(Mutex::new(Uart16550::new(
        VmIrqLine::new(vm.clone(), uart16550::COM1_IRQ),
        console.writer(),
    )));
    io_bus.insert(
        u64::from(uart16550::COM1_PORT),
        uart16550::UART_PORT_LEN,
        com1.clone(),
    )?;
    devices.add("serial0", com1.clone());

    let c = control.clone();
    let exit = DebugExit::new(Box::new(move |v| c.request(VmEvent::DebugExit(v))));
    io_bus.insert(
        u64::from(debug_exit::DEBUG_EXIT_PORT),
        debug_exit::DEBUG_EXIT_LEN,
        Arc::new(Mutex::new(exit)),
    )?;

    let c = control.clone();
    let kbd = Arc::new(Mutex::new(
        I8042::new(
            Some(VmIrqLine::new(vm.clone(), i8042::KEYBOARD_IRQ)),
            Box::new(move || c.request(VmEvent::Reset)),
        )
        .with_mouse(Some(VmIrqLine::new(vm.clone(), i8042::MOUSE_IRQ))),
    ));
    devices.add("i8042", kbd.clone());
    let (data, cmd) = I8042::ports(&kbd);
    for port in [data, cmd] {
        let base = u64::from(port.port());
        let dev: Arc<Mutex<dyn PioDevice>> = Arc::new(Mutex::new(port));
        io_bus.insert(base, 1, dev)?;
    }

    // PCI bus 0: the i440FX host bridge, whose PAM registers map the BIOS
    // area (at power-on: the ROM; for a kernel Kite boots itself: RAM, as
    // firmware would have left it), and the PIIX3 ISA bridge; then the
    // virtio devices from slot 3 (slot 2 is the display's, as on QEMU's pc).
    let mut pci_root = PciRoot::new();
    let pam = if firmware {
        [0; 7]
    } else {
        [0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]
    };
    let pam_mapper: Arc<dyn PamMapper> = map.clone();
    pci_root.set_host_bridge(Arc::new(Mutex::new(I440fx::new(Some(pam_mapper), pam))));
    mmio_bus.insert(
        PAM_START,
        PAM_LEN,
        Arc::new(Mutex::new(PamWrites(map.clone()))),
    )?;
    pci_root
        .add_device_at(
            PciAddress {
                device: 1,
                function: 0,
            },
            Arc::new(Mutex::new(Piix3Isa::new())),
        )
        .map_err(|e| MachineError::Config(e.to_string()))?;
    // BARs for a kernel Kite boots itself (firmware places its own).
    let mut bars = BarAllocator::new(&crate::board::pci_windows(&layout));
    let mut vga = None;
    if let Some(d) = &config.display {
        let rom = if firmware {
            Some(read_vga_bios(Path::new(DEFAULT_VGA_BIOS))?)
        } else {
            None
        };
        vga = Some((
            d,
            install_vga(&mut pci_root, &mut bars, &io_bus, &mmio_bus, d.vram, rom)?,
        ));
    }
    crate::virtio_devices::add_virtio_devices(config, disks, &vm, &mem, &mut pci_root, &mut bars)?;
    if let Some((d, renderer)) = vga {
        let tablet = add_virtio_tablet(&vm, &mem, &layout, &mut pci_root)?;
        let input: Arc<dyn InputSink> = Arc::new(InputRouter::new(kbd.clone(), Some(tablet)));
        d.display.attach(Box::new(renderer), input);
    }
    crate::ide_devices::add_ide_slots(&mut pci_root, &io_bus, &vm, &mem, &config.ide)?;
    let ram_mapper: Arc<dyn RamMapper> = map.clone();
    pci_root.attach_buses(BarBuses {
        io: Arc::downgrade(&io_bus),
        mmio: Arc::downgrade(&mmio_bus),
        ram: Some(ram_mapper),
    });

    // What the firmware reads: fw_cfg, CMOS settings, its debug console.
    let mut cmos = Vec::new();
    if firmware {
        let info = crate::firmware_devices::firmware_info(config, &layout, option_roms);
        cmos = cmos_settings(&info);
        crate::firmware_devices::add_firmware_devices(
            &io_bus,
            &info,
            &mem,
            config,
            &control,
            &mut devices,
        )?;
    }
    crate::board::add_pc_devices(
        &io_bus,
        pci_root,
        &vm,
        &layout,
        &control,
        &cmos,
        &mut devices,
    )?;

    // The vCPUs: vCPU 0 starts at the kernel's entry; the others wait for
    // the boot vCPU to start them (INIT/SIPI through the local APICs).
    let cpuid = match hv.supported_cpuid() {
        Ok(c) => Some(c),
        Err(kite_hypervisor::Error::Unsupported { .. }) => None,
        Err(e) => return Err(MachineError::engine("reading supported CPUID")(e)),
    };
    let mut vcpus = Vec::new();
    for id in 0..config.cpus {
        let mut vcpu = vm
            .create_vcpu(id)
            .map_err(MachineError::engine("creating a vCPU"))?;
        if let Some(cpuid) = &cpuid {
            vcpu.set_cpuid(&cpuid_for(cpuid, id))
                .map_err(MachineError::engine("setting CPUID"))?;
        }
        // What firmware would do (when Kite plays the firmware): MTRRs
        // enabled, write-back by default.
        if !firmware {
            vcpu.set_msrs(&[(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB)])
                .map_err(MachineError::engine("enabling MTRRs"))?;
        }
        if id == 0 {
            set_boot_state(vcpu.as_mut(), &boot)?;
        }
        vcpus.push(vcpu);
    }

    // Last, so a failed build leaves the console (and the VM) as it was.
    console.attach(com1);
    let state = Arc::new(MachineState::new(
        vm.clone(),
        mem.clone(),
        map.clone(),
        devices,
        fingerprint(config),
        vcpus.len(),
    ));
    Ok(Machine::new(
        vm, mem, map, io_bus, mmio_bus, vcpus, control, state,
    ))
}

/// IA32_MTRR_DEF_TYPE, and its value with MTRRs on and write-back default.
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// The CPUID table with vCPU `id`'s APIC id in leaves 1 and 0xb.
fn cpuid_for(entries: &[CpuidEntry], id: u32) -> Vec<CpuidEntry> {
    entries
        .iter()
        .map(|e| {
            let mut e = *e;
            match e.function {
                1 => e.ebx = (e.ebx & 0x00ff_ffff) | (id << 24),
                0xb | 0x1f => e.edx = id,
                _ => {}
            }
            e
        })
        .collect()
}

/// Put the loader's boot state into the boot vCPU, keeping the engine's own
/// APIC base (the loader does not own the local APIC).
fn set_boot_state(vcpu: &mut dyn Vcpu, boot: &BootState) -> Result<(), MachineError> {
    let current = vcpu
        .sregs()
        .map_err(MachineError::engine("reading vCPU state"))?;
    let mut sregs = boot.sregs;
    sregs.apic_base = current.apic_base;
    vcpu.set_sregs(&sregs)
        .map_err(MachineError::engine("setting segment registers"))?;
    vcpu.set_regs(&boot.regs)
        .map_err(MachineError::engine("setting registers"))?;
    Ok(())
}

/// The VM handle type the machine keeps.
pub type VmHandle = Arc<dyn Vm>;
