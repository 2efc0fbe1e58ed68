//! An emu-engine VM: guest-physical memory slots, the in-engine irqchip, vCPUs.

use std::sync::{Arc, Mutex};

use kite_hypervisor::{Error, MemoryRegion, Msi, Result, Vcpu, Vm, VmConfig};

use crate::irq::IrqChip;
use crate::memory::PhysMemory;
use crate::vcpu::EmuVcpu;

pub struct EmuVm {
    pub(crate) mem: Arc<PhysMemory>,
    pub(crate) chip: Option<Arc<IrqChip>>,
    vcpu_ids: Mutex<Vec<u32>>,
    /// The tier its vCPUs run on (`None`: `KITE_EMU_TIER`).
    tier: Option<crate::jit::Tier>,
}

impl EmuVm {
    pub fn new(config: &VmConfig) -> Arc<EmuVm> {
        Self::with_tier(config, None)
    }

    /// A VM whose vCPUs run on `tier` (`None`: `KITE_EMU_TIER`).
    pub fn with_tier(config: &VmConfig, tier: Option<crate::jit::Tier>) -> Arc<EmuVm> {
        let chip = config.irqchip.then(|| IrqChip::new(config.pit));
        Arc::new(EmuVm {
            mem: Arc::new(PhysMemory::new()),
            chip,
            vcpu_ids: Mutex::new(Vec::new()),
            tier,
        })
    }

    fn chip(&self, what: &str) -> Result<&Arc<IrqChip>> {
        self.chip
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("{what} needs a VM created with an irqchip")))
    }
}

impl Vm for EmuVm {
    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()> {
        self.mem.set_region(region)
    }

    fn dirty_log(&self, slot: u32) -> Result<Vec<u64>> {
        self.mem.dirty_log(slot)
    }

    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        let mut ids = self.vcpu_ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.contains(&id) {
            return Err(Error::Invalid(format!("vCPU {id} already exists")));
        }
        if id >= 255 {
            return Err(Error::Invalid(format!(
                "vCPU id {id} is out of range (0-254)"
            )));
        }
        ids.push(id);
        let irq = self.chip.as_ref().map(|c| c.add_vcpu(id));
        let mut vcpu = EmuVcpu::new(id, self.mem.clone(), self.chip.clone(), irq);
        if let Some(t) = self.tier {
            vcpu.set_tier(t);
        }
        Ok(Box::new(vcpu))
    }

    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        if gsi >= 24 {
            return Err(Error::Invalid(format!("GSI {gsi} is out of range (0-23)")));
        }
        self.chip("set_irq_line")?.set_irq_line(gsi, level);
        Ok(())
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        let state = match &self.chip {
            Some(chip) => chip.save_state(),
            None => kite_hypervisor::state::VmState::default(),
        };
        Ok(state.to_bytes())
    }

    fn restore_state(&self, state: &[u8]) -> Result<()> {
        let s = kite_hypervisor::state::VmState::from_bytes(state)?;
        match &self.chip {
            Some(chip) => chip.restore_state(&s).map_err(Error::Invalid),
            None if s.pic.is_none() && s.ioapic.is_none() && s.pit.is_none() => Ok(()),
            None => Err(Error::Invalid(
                "the state has an irqchip but this VM was created without one".into(),
            )),
        }
    }

    fn signal_msi(&self, msi: Msi) -> Result<()> {
        self.chip("signal_msi")?.signal_msi(msi.address, msi.data);
        Ok(())
    }
}
