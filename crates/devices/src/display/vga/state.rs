//! The VGA's snapshot state: the register file, the VBE registers, the
//! latch, and video memory (non-zero 4 KiB pages only). The PCI function's
//! own part (configuration space, framebuffer endianness) is `VgaPci`'s.
//! It must not know the snapshot file's format.

use super::registers::{AR_COUNT, CRTC_COUNT, GC_COUNT, SEQ_COUNT};
use super::vbe::REG_COUNT;
use super::VgaState;
use crate::state::{StateError, StateReader, StateWriter};

const PAGE: usize = 4096;

impl VgaState {
    pub fn save_state(&self, w: &mut StateWriter) {
        let r = &self.regs;
        w.u8(r.misc);
        w.u8(r.feature);
        w.u8(r.seq_index);
        w.raw(&r.seq);
        w.u8(r.crtc_index);
        w.raw(&r.crtc);
        w.u8(r.gc_index);
        w.raw(&r.gc);
        w.u8(r.ar_index);
        w.raw(&r.ar);
        w.bool(r.ar_flip_flop);
        w.u8(r.pel_mask);
        w.u8(r.dac_read_index);
        w.u8(r.dac_write_index);
        w.u8(r.dac_sub);
        w.u8(r.dac_state);
        w.raw(&r.dac_cache);
        w.raw(&r.palette);
        w.u8(r.st01);
        w.u16(self.vbe.index);
        for v in self.vbe.registers() {
            w.u16(v);
        }
        w.u32(self.latch);
        match self.saved_window_regs {
            None => w.bool(false),
            Some((gc6, seq4)) => {
                w.bool(true);
                w.u8(gc6);
                w.u8(seq4);
            }
        }
        // Video memory: the count of pages, then each non-zero page.
        let pages = self.vram.len() / PAGE;
        w.u32(pages as u32);
        let mut page = vec![0u8; PAGE];
        let mut present = Vec::new();
        for i in 0..pages {
            if self.vram.read(i * PAGE, &mut page) && page.iter().any(|&b| b != 0) {
                present.push(i as u32);
            }
        }
        w.u32(present.len() as u32);
        for i in present {
            w.u32(i);
            self.vram.read(i as usize * PAGE, &mut page);
            w.raw(&page);
        }
    }

    pub fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mut regs = self.regs.clone();
        regs.misc = r.u8("VGA misc")?;
        regs.feature = r.u8("VGA feature")?;
        regs.seq_index = r.u8("VGA sequencer index")?;
        regs.seq.copy_from_slice(r.raw(SEQ_COUNT, "VGA sequencer")?);
        regs.crtc_index = r.u8("VGA CRTC index")?;
        regs.crtc.copy_from_slice(r.raw(CRTC_COUNT, "VGA CRTC")?);
        regs.gc_index = r.u8("VGA graphics index")?;
        regs.gc.copy_from_slice(r.raw(GC_COUNT, "VGA graphics")?);
        regs.ar_index = r.u8("VGA attribute index")?;
        regs.ar.copy_from_slice(r.raw(AR_COUNT, "VGA attribute")?);
        regs.ar_flip_flop = r.bool("VGA attribute flip-flop")?;
        regs.pel_mask = r.u8("VGA PEL mask")?;
        regs.dac_read_index = r.u8("VGA DAC read index")?;
        regs.dac_write_index = r.u8("VGA DAC write index")?;
        regs.dac_sub = r.u8_max(2, "VGA DAC component")?;
        regs.dac_state = r.u8("VGA DAC state")?;
        regs.dac_cache.copy_from_slice(r.raw(3, "VGA DAC cache")?);
        regs.palette.copy_from_slice(r.raw(768, "VGA palette")?);
        regs.st01 = r.u8("VGA input status")?;
        regs.colours_changed = true;
        let vbe_index = r.u16("VBE index")?;
        let mut vbe = [0u16; REG_COUNT as usize];
        for v in &mut vbe {
            *v = r.u16("VBE register")?;
        }
        let latch = r.u32("VGA latch")?;
        let saved_window = if r.bool("VGA saved window")? {
            Some((r.u8("VGA saved GC 6")?, r.u8("VGA saved sequencer 4")?))
        } else {
            None
        };
        let pages = r.u32("VGA memory pages")? as usize;
        if pages != self.vram.len() / PAGE {
            return Err(StateError::Invalid(format!(
                "the snapshot's VGA has {} KiB of video memory, this one {} KiB",
                pages * 4,
                self.vram.len() / 1024
            )));
        }
        let n = r.u32("VGA page count")? as usize;
        if n > pages {
            return Err(StateError::invalid("more VGA pages than video memory"));
        }
        let mut data = Vec::with_capacity(n.min(1 << 16));
        let mut last = None;
        for _ in 0..n {
            let i = r.u32("VGA page index")? as usize;
            if i >= pages || last.is_some_and(|l| i <= l) {
                return Err(StateError::invalid(
                    "VGA page indices out of order or range",
                ));
            }
            last = Some(i);
            data.push((i, r.raw(PAGE, "VGA page")?));
        }
        let mut vbe_state = self.vbe.clone();
        vbe_state
            .restore(vbe_index, vbe)
            .map_err(|e| StateError::Invalid(format!("VGA: {e}")))?;

        self.regs = regs;
        self.vbe = vbe_state;
        self.latch = latch;
        self.saved_window_regs = saved_window;
        let zero = [0u8; PAGE];
        for i in 0..pages {
            self.vram.write(i * PAGE, &zero);
        }
        for (i, page) in data {
            self.vram.write(i * PAGE, page);
        }
        self.dirty.mark_range(0, self.vram.len());
        self.font_written = true;
        Ok(())
    }
}
