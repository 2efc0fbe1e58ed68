//! The host bridge at 00:00.0: an Intel 440FX PMC (8086:1237), class
//! 06:00:00, as QEMU's `pc` machine and SeaBIOS know it. Its PAM registers
//! (0x59-0x5f) decide what backs 0xc0000-0xfffff (see `pam`); SMRAM control
//! (0x72) reads back what the guest writes but SMRAM stays closed (Kite has
//! no SMM), as the board's only promise.

use std::sync::Arc;

use super::pam::{PamMapper, PamSegment, PAM_SEGMENTS};
use crate::pci::config_space::ConfigSpace;
use crate::pci::PciDevice;
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
pub const HOST_BRIDGE_DEVICE: u16 = 0x1237;
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;
/// PAM0-PAM6.
const PAM_OFFSET: usize = 0x59;
/// SMRAM control: reset value 0x02 (C_BASE_SEG = 0b010, the A/B segment).
const SMRAM_OFFSET: usize = 0x72;
const SMRAM_RESET: u8 = 0x02;
/// SMRAM's writable bits: D_OPEN, D_CLS, D_LCK, G_SMRAME.
const SMRAM_WRITABLE: u8 = 0x78;

/// The host bridge, with the PAM mapper its registers drive (none: the
/// registers only hold values, as for a test or a board without firmware).
pub struct I440fx {
    config: ConfigSpace,
    pam: [u8; 7],
    mapper: Option<Arc<dyn PamMapper>>,
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new(None, [0; 7])
    }
}

impl I440fx {
    /// A bridge whose PAM registers start at `pam` (all zero at power-on;
    /// 0x33/0x30 when Kite boots a kernel itself and plays the firmware).
    /// The mapper is told every segment's mode at once.
    pub fn new(mapper: Option<Arc<dyn PamMapper>>, pam: [u8; 7]) -> I440fx {
        let mut config =
            ConfigSpace::new(HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, CLASS_HOST_BRIDGE, 2);
        config.set_subsystem(0x1af4, 0x1100);
        let masks = [0x33u8; 7];
        let mut first = masks;
        // PAM0's low nibble is reserved.
        first[0] = 0x30;
        config.set_register(PAM_OFFSET, &pam, &first);
        config.set_register(SMRAM_OFFSET, &[SMRAM_RESET], &[SMRAM_WRITABLE]);
        let mut b = I440fx {
            config,
            pam,
            mapper,
        };
        b.pam = b.read_pam();
        b.apply(None);
        b
    }

    fn read_pam(&self) -> [u8; 7] {
        let mut p = [0u8; 7];
        self.config.read(PAM_OFFSET as u16, &mut p);
        p
    }

    /// Tell the mapper about segments whose mode differs from `old` (all without it).
    fn apply(&self, old: Option<[u8; 7]>) {
        let Some(m) = &self.mapper else { return };
        for index in 0..PAM_SEGMENTS {
            let now = PamSegment::mode(index, &self.pam);
            if old.is_some_and(|o| PamSegment::mode(index, &o) == now) {
                continue;
            }
            if let Some(seg) = PamSegment::get(index) {
                m.set(index, seg, now);
            }
        }
    }

    /// The PAM registers as they stand.
    pub fn pam(&self) -> [u8; 7] {
        self.pam
    }
}

impl Snapshot for I440fx {
    fn save_state(&self, w: &mut StateWriter) {
        self.config.save_state(w);
    }

    /// The configuration space, then every PAM segment whose mode it
    /// changes is re-mapped.
    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.config.restore_state(r)?;
        let old = self.pam;
        self.pam = self.read_pam();
        self.apply(Some(old));
        Ok(())
    }
}

impl PciDevice for I440fx {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
        let start = usize::from(offset);
        if start < PAM_OFFSET + 7 && start + data.len() > PAM_OFFSET {
            let old = self.pam;
            self.pam = self.read_pam();
            if old != self.pam {
                self.apply(Some(old));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::pam::PamMode;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<(usize, PamMode)>>);
    impl PamMapper for Record {
        fn set(&self, index: usize, _segment: PamSegment, mode: PamMode) {
            self.0.lock().unwrap().push((index, mode));
        }
    }

    #[test]
    fn restore_reapplies_the_saved_pam_mapping() {
        let mut a = I440fx::new(None, [0; 7]);
        a.write_config(0x5a, &[0x33, 0x11]);
        let saved = crate::state::save_to_vec(&a);
        let rec = Arc::new(Record::default());
        let mut b = I440fx::new(Some(rec.clone()), [0; 7]);
        rec.0.lock().unwrap().clear();
        crate::state::restore_from(&mut b, &saved).unwrap();
        assert_eq!(b.pam(), a.pam());
        let changed: Vec<usize> = rec.0.lock().unwrap().iter().map(|r| r.0).collect();
        assert_eq!(changed, vec![1, 2, 3, 4]);
        // Another device's configuration space is refused.
        let other = crate::state::save_to_vec(&crate::chipset::Piix3Isa::new());
        assert!(crate::state::restore_from(&mut b, &other).is_err());
    }

    #[test]
    fn pam_writes_reach_the_mapper_for_changed_segments_only() {
        let rec = Arc::new(Record::default());
        let mut b = I440fx::new(Some(rec.clone()), [0; 7]);
        assert_eq!(rec.0.lock().unwrap().len(), PAM_SEGMENTS);
        rec.0.lock().unwrap().clear();
        // What SeaBIOS does: PAM1-6 to 0x33, then PAM0 to 0x30.
        b.write_config(0x5a, &[0x33, 0x33]);
        assert_eq!(rec.0.lock().unwrap().len(), 4);
        b.write_config(0x59, &[0xff]);
        let mut v = [0u8];
        b.read_config(0x59, &mut v);
        assert_eq!(v[0], 0x30, "reserved bits stay zero");
        let last = *rec.0.lock().unwrap().last().unwrap();
        assert_eq!(
            last,
            (
                0,
                PamMode {
                    read_ram: true,
                    write_ram: true
                }
            )
        );
        // The same value again changes nothing.
        let n = rec.0.lock().unwrap().len();
        b.write_config(0x58, &[0, 0x30, 0x33, 0x33]);
        assert_eq!(rec.0.lock().unwrap().len(), n);
        // SMRAM: writable bits only; ids fixed.
        b.write_config(0x72, &[0xff]);
        b.read_config(0x72, &mut v);
        assert_eq!(v[0], 0x7a);
        let mut id = [0u8; 4];
        b.read_config(0, &mut id);
        assert_eq!(id, [0x86, 0x80, 0x37, 0x12]);
    }
}
