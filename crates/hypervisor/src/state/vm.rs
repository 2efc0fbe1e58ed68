//! The saved VM-wide engine state: the irqchips an engine owns (8259 pair,
//! I/O APIC, PIT) and the guest clock, with its encoding (`to_bytes`,
//! `from_bytes`). Knows nothing of engines or devices outside the engine.

use super::codec::{DecodeResult, Reader, Writer};
use super::{IoapicState, PicState, PitState};

/// First bytes of an encoded [`VmState`].
pub const VM_MAGIC: &[u8; 8] = b"KITEVMST";
/// Encoding version this build writes and reads.
pub const VM_VERSION: u16 = 1;

/// The guest's VM-wide clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockState {
    /// Nanoseconds of guest time at save (kvmclock on kvm; the irqchip's
    /// clock on emu). Restore continues from here: time does not jump.
    pub ns: u64,
}

/// What `Vm::save_state` saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmState {
    /// Master and slave 8259, if the VM has an irqchip.
    pub pic: Option<[PicState; 2]>,
    pub ioapic: Option<IoapicState>,
    /// The PIT, if the VM has one.
    pub pit: Option<PitState>,
    pub clock: ClockState,
}

impl VmState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(VM_MAGIC, VM_VERSION);
        w.option(&self.pic, |w, [m, s]| {
            m.encode(w);
            s.encode(w);
        });
        w.option(&self.ioapic, |w, io| io.encode(w));
        w.option(&self.pit, |w, p| p.encode(w));
        w.u64(self.clock.ns);
        w.finish()
    }

    /// Decode what `to_bytes` produced; hostile bytes give an error.
    pub fn from_bytes(bytes: &[u8]) -> DecodeResult<VmState> {
        let mut r = Reader::new(bytes, VM_MAGIC, VM_VERSION, "VM")?;
        let s = VmState {
            pic: r.option("pic", |r| Ok([PicState::decode(r)?, PicState::decode(r)?]))?,
            ioapic: r.option("ioapic", IoapicState::decode)?,
            pit: r.option("pit", PitState::decode)?,
            clock: ClockState {
                ns: r.u64("clock")?,
            },
        };
        r.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DecodeError, PitChannelState};
    use super::*;

    fn sample() -> VmState {
        let mut ioapic = IoapicState {
            id: 3,
            select: 0x12,
            lines: 0b101,
            ..Default::default()
        };
        ioapic.redir[4] = 0x0100_0000_0000_a031;
        let mut pit = PitState {
            port61: 3,
            ..Default::default()
        };
        pit.channels[0] = PitChannelState {
            mode: 2,
            reload: 11932,
            loaded: true,
            gate: true,
            counting: true,
            elapsed_ticks: 123_456,
            next_edge: Some(131_252),
            latched: Some((0x1234, true)),
            ..Default::default()
        };
        VmState {
            pic: Some([
                PicState {
                    imr: 0xfa,
                    vector_base: 0x20,
                    lowest_priority: 7,
                    elcr_mask: 0xf8,
                    ..Default::default()
                },
                PicState {
                    irr: 0x10,
                    vector_base: 0x28,
                    init_step: 2,
                    elcr: 0x0c,
                    ..Default::default()
                },
            ]),
            ioapic: Some(ioapic),
            pit: Some(pit),
            clock: ClockState { ns: 987_654_321 },
        }
    }

    #[test]
    fn vm_state_round_trips() {
        let s = sample();
        assert_eq!(VmState::from_bytes(&s.to_bytes()), Ok(s));
        let empty = VmState::default();
        assert_eq!(VmState::from_bytes(&empty.to_bytes()), Ok(empty));
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(VmState::from_bytes(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert!(matches!(
            VmState::from_bytes(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut bad = b.clone();
        bad[8] = 9;
        assert!(matches!(
            VmState::from_bytes(&bad),
            Err(DecodeError::BadVersion { found: 9, .. })
        ));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(VmState::from_bytes(&long), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let mut s = sample();
        s.pit.as_mut().unwrap().channels[1].reload = 0x10001;
        assert!(VmState::from_bytes(&s.to_bytes()).is_err());
        let mut s = sample();
        s.pit.as_mut().unwrap().channels[1].mode = 6;
        assert!(VmState::from_bytes(&s.to_bytes()).is_err());
        let mut s = sample();
        s.pic.as_mut().unwrap()[0].init_step = 4;
        assert!(VmState::from_bytes(&s.to_bytes()).is_err());
        let mut s = sample();
        s.ioapic.as_mut().unwrap().id = 16;
        assert!(VmState::from_bytes(&s.to_bytes()).is_err());
    }
}
