//! The saved vCPU: registers, segment/control/system state, x87/SSE(/AVX),
//! debug registers, MSRs, the guest TSC, the local APIC, pending events and
//! the activity state, with its encoding (`to_bytes`, `from_bytes`).
//! Knows nothing of how an engine keeps any of it.

use super::codec::{DecodeError, DecodeResult, Reader, Writer};
use super::LapicState;
use crate::{DescriptorTable, Fpu, Regs, Segment, Sregs};

/// First bytes of an encoded [`VcpuState`].
pub const VCPU_MAGIC: &[u8; 8] = b"KITEVCPU";
/// Encoding version this build writes and reads.
pub const VCPU_VERSION: u16 = 1;
/// Most MSRs a state may carry (KVM lists a few hundred at most).
pub const MAX_MSRS: usize = 2048;

/// An exception waiting to be delivered (or being delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingException {
    /// 0-31.
    pub vector: u8,
    pub error_code: Option<u32>,
    /// Delivery had begun (re-inject as is) rather than merely pending.
    pub injected: bool,
}

/// Events not yet delivered and the blocking state that holds them off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventState {
    pub exception: Option<PendingException>,
    /// An external interrupt injected by the API (`Vcpu::inject`) and not
    /// yet taken (interrupts from the local APIC/8259 are in their state).
    pub interrupt: Option<u8>,
    pub nmi_pending: bool,
    /// NMIs are blocked (an NMI handler runs, until IRET).
    pub nmi_masked: bool,
    /// Interrupts are inhibited for one instruction (after STI, MOV SS).
    pub interrupt_shadow: bool,
    /// An INIT arrived and is not yet processed.
    pub init_pending: bool,
}

/// The activity state (KVM's MP state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MpState {
    #[default]
    Runnable,
    /// HLT: waiting for an interrupt.
    Halted,
    /// An application processor after INIT, waiting for a start-up IPI.
    WaitForSipi,
    /// A start-up IPI with this vector arrived and is not yet processed.
    SipiReceived(u8),
}

/// What `Vcpu::save_state` saves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuState {
    pub regs: Regs,
    /// Including CR8 (TPR) and IA32_APIC_BASE.
    pub sregs: Sregs,
    pub fpu: Fpu,
    /// Bits 255:128 of YMM0-15, when the engine has AVX.
    pub ymm_hi: Option<[[u8; 16]; 16]>,
    pub xcr0: u64,
    /// DR0-DR3, DR6, DR7.
    pub dr: [u64; 6],
    /// The guest's TSC at save; restore makes it continue from here.
    pub tsc: u64,
    /// Every other MSR the engine implements, (index, value). Not here:
    /// IA32_TSC (`tsc`), EFER and IA32_APIC_BASE (`sregs`), FS/GS base
    /// (the segments), IA32_TSC_DEADLINE (`lapic`), the x2APIC range.
    /// Restore skips an MSR the restoring engine does not implement.
    pub msrs: Vec<(u32, u64)>,
    /// The local APIC, if the VM has an irqchip.
    pub lapic: Option<LapicState>,
    pub events: EventState,
    pub mp_state: MpState,
}

impl Default for VcpuState {
    fn default() -> Self {
        VcpuState {
            regs: Regs::default(),
            sregs: Sregs::default(),
            fpu: Fpu::default(),
            ymm_hi: None,
            xcr0: 1,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400],
            tsc: 0,
            msrs: Vec::new(),
            lapic: None,
            events: EventState::default(),
            mp_state: MpState::Runnable,
        }
    }
}

/// MSRs carried elsewhere in [`VcpuState`] than `msrs`.
pub fn msr_is_carried_elsewhere(index: u32) -> bool {
    use crate::x86::*;
    matches!(
        index,
        MSR_IA32_TSC
            | MSR_EFER
            | MSR_IA32_APIC_BASE
            | MSR_FS_BASE
            | MSR_GS_BASE
            | MSR_IA32_TSC_DEADLINE
    ) || (0x800..=0x8ff).contains(&index)
}

fn put_segment(w: &mut Writer, s: &Segment) {
    w.u64(s.base);
    w.u32(s.limit);
    w.u16(s.selector);
    w.u8(s.type_);
    w.u8(s.dpl);
    let flags = u8::from(s.present)
        | u8::from(s.db) << 1
        | u8::from(s.s) << 2
        | u8::from(s.l) << 3
        | u8::from(s.g) << 4
        | u8::from(s.avl) << 5
        | u8::from(s.unusable) << 6;
    w.u8(flags);
}

fn get_segment(r: &mut Reader<'_>) -> DecodeResult<Segment> {
    let base = r.u64("segment base")?;
    let limit = r.u32("segment limit")?;
    let selector = r.u16("segment selector")?;
    let type_ = r.u8_max(15, "segment type")?;
    let dpl = r.u8_max(3, "segment dpl")?;
    let f = r.u8_max(0x7f, "segment flags")?;
    Ok(Segment {
        base,
        limit,
        selector,
        type_,
        dpl,
        present: f & 1 != 0,
        db: f & 2 != 0,
        s: f & 4 != 0,
        l: f & 8 != 0,
        g: f & 16 != 0,
        avl: f & 32 != 0,
        unusable: f & 64 != 0,
    })
}

fn put_table(w: &mut Writer, t: &DescriptorTable) {
    w.u64(t.base);
    w.u16(t.limit);
}

fn get_table(r: &mut Reader<'_>) -> DecodeResult<DescriptorTable> {
    Ok(DescriptorTable {
        base: r.u64("table base")?,
        limit: r.u16("table limit")?,
    })
}

fn put_regs(w: &mut Writer, r: &Regs) {
    for v in r.gprs() {
        w.u64(v);
    }
    w.u64(r.rip);
    w.u64(r.rflags);
}

fn get_regs(r: &mut Reader<'_>) -> DecodeResult<Regs> {
    let mut g = [0u64; 16];
    for v in g.iter_mut() {
        *v = r.u64("gpr")?;
    }
    let mut regs = Regs::default();
    regs.set_gprs(&g);
    regs.rip = r.u64("rip")?;
    regs.rflags = r.u64("rflags")?;
    Ok(regs)
}

fn put_sregs(w: &mut Writer, s: &Sregs) {
    for seg in [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt] {
        put_segment(w, seg);
    }
    put_table(w, &s.gdt);
    put_table(w, &s.idt);
    for v in [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base] {
        w.u64(v);
    }
}

fn get_sregs(r: &mut Reader<'_>) -> DecodeResult<Sregs> {
    Ok(Sregs {
        cs: get_segment(r)?,
        ds: get_segment(r)?,
        es: get_segment(r)?,
        fs: get_segment(r)?,
        gs: get_segment(r)?,
        ss: get_segment(r)?,
        tr: get_segment(r)?,
        ldt: get_segment(r)?,
        gdt: get_table(r)?,
        idt: get_table(r)?,
        cr0: r.u64("cr0")?,
        cr2: r.u64("cr2")?,
        cr3: r.u64("cr3")?,
        cr4: r.u64("cr4")?,
        cr8: r.u64("cr8")?,
        efer: r.u64("efer")?,
        apic_base: r.u64("apic base")?,
    })
}

fn put_fpu(w: &mut Writer, f: &Fpu) {
    for st in &f.fpr {
        w.bytes(st);
    }
    w.u16(f.fcw);
    w.u16(f.fsw);
    w.u8(f.ftwx);
    w.u16(f.last_opcode);
    w.u64(f.last_ip);
    w.u64(f.last_dp);
    for x in &f.xmm {
        w.bytes(x);
    }
    w.u32(f.mxcsr);
}

fn get_fpu(r: &mut Reader<'_>) -> DecodeResult<Fpu> {
    let mut f = Fpu::default();
    for st in f.fpr.iter_mut() {
        *st = r.array("x87 register")?;
    }
    f.fcw = r.u16("fcw")?;
    f.fsw = r.u16("fsw")?;
    f.ftwx = r.u8("ftw")?;
    f.last_opcode = r.u16("fop")?;
    f.last_ip = r.u64("fip")?;
    f.last_dp = r.u64("fdp")?;
    for x in f.xmm.iter_mut() {
        *x = r.array("xmm register")?;
    }
    f.mxcsr = r.u32("mxcsr")?;
    Ok(f)
}

fn put_events(w: &mut Writer, e: &EventState) {
    w.option(&e.exception, |w, x| {
        w.u8(x.vector);
        w.option(&x.error_code, |w, c| w.u32(*c));
        w.bool(x.injected);
    });
    w.option(&e.interrupt, |w, v| w.u8(*v));
    w.bool(e.nmi_pending);
    w.bool(e.nmi_masked);
    w.bool(e.interrupt_shadow);
    w.bool(e.init_pending);
}

fn get_events(r: &mut Reader<'_>) -> DecodeResult<EventState> {
    Ok(EventState {
        exception: r.option("exception", |r| {
            Ok(PendingException {
                vector: r.u8_max(31, "exception vector")?,
                error_code: r.option("error code", |r| r.u32("error code"))?,
                injected: r.bool("exception injected")?,
            })
        })?,
        interrupt: r.option("interrupt", |r| r.u8("interrupt vector"))?,
        nmi_pending: r.bool("nmi pending")?,
        nmi_masked: r.bool("nmi masked")?,
        interrupt_shadow: r.bool("interrupt shadow")?,
        init_pending: r.bool("init pending")?,
    })
}

fn put_mp_state(w: &mut Writer, m: &MpState) {
    let (tag, vector) = match *m {
        MpState::Runnable => (0, 0),
        MpState::Halted => (1, 0),
        MpState::WaitForSipi => (2, 0),
        MpState::SipiReceived(v) => (3, v),
    };
    w.u8(tag);
    w.u8(vector);
}

fn get_mp_state(r: &mut Reader<'_>) -> DecodeResult<MpState> {
    let tag = r.u8_max(3, "mp state")?;
    let vector = r.u8("sipi vector")?;
    Ok(match tag {
        0 => MpState::Runnable,
        1 => MpState::Halted,
        2 => MpState::WaitForSipi,
        _ => MpState::SipiReceived(vector),
    })
}

impl VcpuState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(VCPU_MAGIC, VCPU_VERSION);
        put_regs(&mut w, &self.regs);
        put_sregs(&mut w, &self.sregs);
        put_fpu(&mut w, &self.fpu);
        w.option(&self.ymm_hi, |w, y| {
            for x in y {
                w.bytes(x);
            }
        });
        w.u64(self.xcr0);
        for &d in &self.dr {
            w.u64(d);
        }
        w.u64(self.tsc);
        let msrs = &self.msrs[..self.msrs.len().min(MAX_MSRS)];
        w.list(msrs, |w, (i, v)| {
            w.u32(*i);
            w.u64(*v);
        });
        w.option(&self.lapic, |w, l| l.encode(w));
        put_events(&mut w, &self.events);
        put_mp_state(&mut w, &self.mp_state);
        w.finish()
    }

    /// Decode what `to_bytes` produced; hostile bytes give an error.
    pub fn from_bytes(bytes: &[u8]) -> DecodeResult<VcpuState> {
        let mut r = Reader::new(bytes, VCPU_MAGIC, VCPU_VERSION, "vCPU")?;
        let regs = get_regs(&mut r)?;
        let sregs = get_sregs(&mut r)?;
        let fpu = get_fpu(&mut r)?;
        let ymm_hi = r.option("ymm", |r| {
            let mut y = [[0u8; 16]; 16];
            for x in y.iter_mut() {
                *x = r.array("ymm register")?;
            }
            Ok(y)
        })?;
        let xcr0 = r.u64("xcr0")?;
        let mut dr = [0u64; 6];
        for d in dr.iter_mut() {
            *d = r.u64("debug register")?;
        }
        let tsc = r.u64("tsc")?;
        let msrs = r.list(MAX_MSRS, 12, "msr list", |r| {
            Ok((r.u32("msr index")?, r.u64("msr value")?))
        })?;
        for (n, (i, _)) in msrs.iter().enumerate() {
            if msrs[..n].iter().any(|(j, _)| j == i) {
                return Err(DecodeError::OutOfRange {
                    what: "duplicate msr",
                    value: u64::from(*i),
                });
            }
        }
        let lapic = r.option("lapic", LapicState::decode)?;
        let events = get_events(&mut r)?;
        let mp_state = get_mp_state(&mut r)?;
        r.finish()?;
        Ok(VcpuState {
            regs,
            sregs,
            fpu,
            ymm_hi,
            xcr0,
            dr,
            tsc,
            msrs,
            lapic,
            events,
            mp_state,
        })
    }

    /// The value of MSR `index` in `msrs`.
    pub fn msr(&self, index: u32) -> Option<u64> {
        self.msrs.iter().find(|(i, _)| *i == index).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlatKind;

    fn sample() -> VcpuState {
        let mut regs = Regs::default();
        regs.set_gprs(&core::array::from_fn(|i| 0x1111 * i as u64 + 7));
        regs.rip = 0xffff_8000_0000_1234;
        regs.rflags = 0x246;
        let sregs = Sregs {
            cs: Segment::flat(0x10, FlatKind::Code64),
            ds: Segment::flat(0x18, FlatKind::Data),
            ss: Segment::flat(0x18, FlatKind::Data),
            fs: Segment {
                base: 0x7fff_0000_1000,
                ..Segment::flat(0, FlatKind::Data)
            },
            ldt: Segment {
                unusable: true,
                type_: 2,
                ..Default::default()
            },
            gdt: DescriptorTable {
                base: 0x5000,
                limit: 0x3f,
            },
            cr0: 0x8000_0031,
            cr3: 0x1000,
            cr4: 0x6a0,
            cr8: 3,
            efer: 0xd01,
            apic_base: 0xfee0_0900,
            ..Default::default()
        };
        let mut fpu = Fpu::default();
        fpu.fpr[0][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        fpu.fsw = 7 << 11;
        fpu.ftwx = 0x80;
        fpu.xmm[15] = [0xab; 16];
        fpu.mxcsr = 0x1fa0;
        let mut lapic = LapicState {
            id: 0,
            svr: 0x1ff,
            timer_initial: 1_000_000,
            timer_current: 654_321,
            timer_divide: 0xb,
            ..Default::default()
        };
        lapic.lvt[0] = 0x2_00ec;
        lapic.irr[1] = 1 << 3;
        VcpuState {
            regs,
            sregs,
            fpu,
            ymm_hi: Some([[0x5a; 16]; 16]),
            xcr0: 7,
            dr: [1, 2, 3, 4, 0xffff_4ff0, 0x401],
            tsc: 0x1234_5678_9abc,
            msrs: vec![
                (0xc000_0082, 0xffff_ffff_8100_0000),
                (0x277, 0x0007_0406_0007_0406),
            ],
            lapic: Some(lapic),
            events: EventState {
                exception: Some(PendingException {
                    vector: 14,
                    error_code: Some(2),
                    injected: false,
                }),
                interrupt: Some(0x30),
                nmi_pending: true,
                nmi_masked: false,
                interrupt_shadow: true,
                init_pending: false,
            },
            mp_state: MpState::SipiReceived(0x9a),
        }
    }

    #[test]
    fn vcpu_state_round_trips() {
        let s = sample();
        assert_eq!(VcpuState::from_bytes(&s.to_bytes()), Ok(s));
        let d = VcpuState::default();
        assert_eq!(VcpuState::from_bytes(&d.to_bytes()), Ok(d));
    }

    #[test]
    fn hostile_vcpu_bytes_are_refused() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(
                VcpuState::from_bytes(&b[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut bad = b.clone();
        bad[3] = b'X';
        assert!(matches!(
            VcpuState::from_bytes(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut bad = b.clone();
        bad[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            VcpuState::from_bytes(&bad),
            Err(DecodeError::BadVersion { found: 2, .. })
        ));
        // An absurd MSR count: refused before any allocation.
        let mut s = sample();
        s.msrs.clear();
        // Find the MSR count by re-encoding with one MSR instead of zero.
        let mut with_one = sample();
        with_one.msrs = vec![(0x174, 0x10)];
        let one = with_one.to_bytes();
        let zero = s.to_bytes();
        let count_at = one
            .iter()
            .zip(zero.iter())
            .position(|(a, b)| a != b)
            .unwrap();
        let mut huge = zero.clone();
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(VcpuState::from_bytes(&huge).is_err());
        let mut many = zero.clone();
        many[count_at..count_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            VcpuState::from_bytes(&many),
            Err(DecodeError::Truncated { .. })
        ));
        // Duplicate MSRs, a bad exception vector, a bad activity state.
        let mut dup = sample();
        dup.msrs.push((0x277, 6));
        assert!(VcpuState::from_bytes(&dup.to_bytes()).is_err());
        let mut vec = sample();
        vec.events.exception.as_mut().unwrap().vector = 32;
        assert!(VcpuState::from_bytes(&vec.to_bytes()).is_err());
        let mut mp = sample().to_bytes();
        let n = mp.len();
        mp[n - 2] = 4;
        assert!(VcpuState::from_bytes(&mp).is_err());
    }
}
