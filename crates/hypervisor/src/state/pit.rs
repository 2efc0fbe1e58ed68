//! The saved 8254 PIT (three channels, in its programming model, with each
//! counter's progress as ticks since it was loaded) and port 0x61. Knows
//! nothing of engines.

use super::codec::{DecodeError, DecodeResult, Reader, Writer};

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitChannelState {
    /// Mode 0-5.
    pub mode: u8,
    /// Read/write access: 1 = low byte, 2 = high byte, 3 = low then high.
    pub access: u8,
    pub bcd: bool,
    /// The count loaded, 1..=65536 (0 written means 65536, or 10000 in BCD).
    pub reload: u32,
    /// A count was written since the control word.
    pub loaded: bool,
    pub gate: bool,
    /// Modes 1 and 5: the gate's rising edge started the count.
    pub triggered: bool,
    /// The counter is counting now (not paused by its gate, not waiting).
    pub counting: bool,
    /// PIT clock ticks (1.193182 MHz) counted since the count was loaded.
    pub elapsed_ticks: u64,
    /// Channel 0: the tick (since loading) of the next IRQ0 edge.
    pub next_edge: Option<u64>,
    /// Low/high access: the low byte written, waiting for the high byte.
    pub write_low: Option<u8>,
    /// Low/high access: the next live read returns the high byte.
    pub read_high_next: bool,
    /// Counter latch: the latched count and whether its low byte was read.
    pub latched: Option<(u16, bool)>,
    /// Read-back status latch.
    pub status: Option<u8>,
}

impl Default for PitChannelState {
    fn default() -> Self {
        PitChannelState {
            mode: 0,
            access: 3,
            bcd: false,
            reload: 0x10000,
            loaded: false,
            gate: false,
            triggered: false,
            counting: false,
            elapsed_ticks: 0,
            next_edge: None,
            write_low: None,
            read_high_next: false,
            latched: None,
            status: None,
        }
    }
}

/// The PIT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PitState {
    pub channels: [PitChannelState; 3],
    /// Port 0x61 bits 3:0 as last written (bit 0: channel 2 gate, bit 1: speaker).
    pub port61: u8,
}

impl PitChannelState {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.mode);
        w.u8(self.access);
        w.bool(self.bcd);
        w.u32(self.reload);
        w.bool(self.loaded);
        w.bool(self.gate);
        w.bool(self.triggered);
        w.bool(self.counting);
        w.u64(self.elapsed_ticks);
        w.option(&self.next_edge, |w, v| w.u64(*v));
        w.option(&self.write_low, |w, v| w.u8(*v));
        w.bool(self.read_high_next);
        w.option(&self.latched, |w, (v, low)| {
            w.u16(*v);
            w.bool(*low);
        });
        w.option(&self.status, |w, v| w.u8(*v));
    }

    fn decode(r: &mut Reader<'_>) -> DecodeResult<PitChannelState> {
        let mode = r.u8_max(5, "pit mode")?;
        let access = r.u8_max(3, "pit access")?;
        if access == 0 {
            return Err(DecodeError::OutOfRange {
                what: "pit access",
                value: 0,
            });
        }
        let bcd = r.bool("pit bcd")?;
        let reload = r.u32("pit reload")?;
        if reload == 0 || reload > 0x10000 {
            return Err(DecodeError::OutOfRange {
                what: "pit reload",
                value: u64::from(reload),
            });
        }
        Ok(PitChannelState {
            mode,
            access,
            bcd,
            reload,
            loaded: r.bool("pit loaded")?,
            gate: r.bool("pit gate")?,
            triggered: r.bool("pit triggered")?,
            counting: r.bool("pit counting")?,
            elapsed_ticks: r.u64("pit elapsed")?,
            next_edge: r.option("pit next edge", |r| r.u64("pit next edge"))?,
            write_low: r.option("pit write latch", |r| r.u8("pit write latch"))?,
            read_high_next: r.bool("pit read state")?,
            latched: r.option("pit latch", |r| {
                Ok((r.u16("pit latch")?, r.bool("pit latch")?))
            })?,
            status: r.option("pit status", |r| r.u8("pit status"))?,
        })
    }
}

impl PitState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        for c in &self.channels {
            c.encode(w);
        }
        w.u8(self.port61);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> DecodeResult<PitState> {
        Ok(PitState {
            channels: [
                PitChannelState::decode(r)?,
                PitChannelState::decode(r)?,
                PitChannelState::decode(r)?,
            ],
            port61: r.u8("port 0x61")? & 0x0f,
        })
    }
}
