//! `KiteX86`: gdb's x86 register layouts, chosen per connection: i386 (the
//! 32-bit layout, for guests in real or protected mode) or x86-64 (plus the
//! segment bases and control registers, named in its target description).
//! Both carry the same `X86_64CoreRegs`; the narrow one is cut down to 32
//! bits on the way out and widened on the way in.
//!
//! It must not know vCPUs or the protocol's transport.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::id::X86_64CoreRegId;
use gdbstub_arch::x86::reg::{X86CoreRegs, X86_64CoreRegs};

/// The i386 layout's target description: gdb's own register set for it.
pub const XML_I386: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0"><architecture>i386</architecture><feature name="org.gnu.gdb.i386.sse"></feature></target>"#;

/// The x86-64 'g' packet's size without the system registers; a shorter
/// one is the i386 layout.
const WIDE_BYTES: usize = 0x218;

/// What the x86-64 layout carries after gdb's core and SSE registers, in
/// order: the segment bases (gdb's `org.gnu.gdb.i386.segments`), then the
/// control registers and EFER (Kite's own feature).
pub const SYSTEM_REGS: [&str; 8] = [
    "fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer",
];

/// The x86-64 layout's target description, with every register named in
/// 'g' packet order (gdb's x86 feature names, as its manual lists them).
pub fn xml_x86_64() -> &'static str {
    static XML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    XML.get_or_init(|| {
        let reg = |name: &str, bits: u32, ty: &str| {
            format!(r#"<reg name="{name}" bitsize="{bits}" type="{ty}"/>"#)
        };
        let mut core = String::new();
        for name in [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ] {
            let ty = match name {
                "rbp" | "rsp" => "data_ptr",
                _ => "int64",
            };
            core += &reg(name, 64, ty);
        }
        core += &reg("rip", 64, "code_ptr");
        core += &reg("eflags", 32, "int32");
        for name in ["cs", "ss", "ds", "es", "fs", "gs"] {
            core += &reg(name, 32, "int32");
        }
        for i in 0..8 {
            core += &reg(&format!("st{i}"), 80, "i387_ext");
        }
        for name in ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"] {
            core += &reg(name, 32, "int");
        }
        let mut sse = String::from(concat!(
            r#"<vector id="v4f" type="ieee_single" count="4"/>"#,
            r#"<vector id="v2d" type="ieee_double" count="2"/>"#,
            r#"<vector id="v16i8" type="int8" count="16"/>"#,
            r#"<vector id="v8i16" type="int16" count="8"/>"#,
            r#"<vector id="v4i32" type="int32" count="4"/>"#,
            r#"<vector id="v2i64" type="int64" count="2"/>"#,
            r#"<union id="vec128"><field name="v4_float" type="v4f"/>"#,
            r#"<field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>"#,
            r#"<field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>"#,
            r#"<field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/></union>"#,
        ));
        for i in 0..16 {
            sse += &reg(&format!("xmm{i}"), 128, "vec128");
        }
        sse += &reg("mxcsr", 32, "int");
        let segments: String = SYSTEM_REGS[..2].iter().map(|n| reg(n, 64, "int64")).collect();
        let sys: String = SYSTEM_REGS[2..].iter().map(|n| reg(n, 64, "int64")).collect();
        format!(
            concat!(
                r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">"#,
                r#"<target version="1.0"><architecture>i386:x86-64</architecture>"#,
                r#"<feature name="org.gnu.gdb.i386.core">{}</feature>"#,
                r#"<feature name="org.gnu.gdb.i386.sse">{}</feature>"#,
                r#"<feature name="org.gnu.gdb.i386.segments">{}</feature>"#,
                r#"<feature name="org.kite.x86.sys">{}</feature></target>"#
            ),
            core, sse, segments, sys
        )
    })
}

pub enum KiteX86 {}

impl Arch for KiteX86 {
    type Usize = u64;
    type Registers = KiteRegs;
    type BreakpointKind = usize;
    type RegId = X86_64CoreRegId;

    fn target_description_xml() -> Option<&'static str> {
        // Chosen per connection (`TargetDescriptionXmlOverride`).
        None
    }
}

/// The registers, and which layout gdb reads them in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KiteRegs {
    pub wide: bool,
    pub regs: X86_64CoreRegs,
    /// `SYSTEM_REGS`, in the x86-64 layout only.
    pub system: [u64; 8],
}

fn narrow(r: &X86_64CoreRegs) -> X86CoreRegs {
    let g = &r.regs; // rax rbx rcx rdx rsi rdi rbp rsp
    let mut xmm = [0u128; 8];
    xmm.copy_from_slice(&r.xmm[..8]);
    X86CoreRegs {
        eax: g[0] as u32,
        ecx: g[2] as u32,
        edx: g[3] as u32,
        ebx: g[1] as u32,
        esp: g[7] as u32,
        ebp: g[6] as u32,
        esi: g[4] as u32,
        edi: g[5] as u32,
        eip: r.rip as u32,
        eflags: r.eflags,
        segments: r.segments.clone(),
        st: r.st,
        fpu: r.fpu.clone(),
        xmm,
        mxcsr: r.mxcsr,
    }
}

fn widen(n: &X86CoreRegs, into: &mut X86_64CoreRegs) {
    let g = &mut into.regs;
    g[0] = n.eax.into();
    g[1] = n.ebx.into();
    g[2] = n.ecx.into();
    g[3] = n.edx.into();
    g[4] = n.esi.into();
    g[5] = n.edi.into();
    g[6] = n.ebp.into();
    g[7] = n.esp.into();
    into.rip = n.eip.into();
    into.eflags = n.eflags;
    into.segments = n.segments.clone();
    into.st = n.st;
    into.fpu = n.fpu.clone();
    into.xmm[..8].copy_from_slice(&n.xmm);
    into.mxcsr = n.mxcsr;
}

impl Registers for KiteRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        if self.wide {
            self.regs.rip
        } else {
            self.regs.rip & 0xffff_ffff
        }
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        if self.wide {
            self.regs.gdb_serialize(&mut write_byte);
            for v in self.system {
                v.to_le_bytes().iter().for_each(|b| write_byte(Some(*b)));
            }
        } else {
            narrow(&self.regs).gdb_serialize(write_byte)
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() >= WIDE_BYTES {
            self.wide = true;
            self.regs.gdb_deserialize(&bytes[..WIDE_BYTES])?;
            let extra = &bytes[WIDE_BYTES..];
            for (v, chunk) in self.system.iter_mut().zip(extra.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                *v = u64::from_le_bytes(b);
            }
            Ok(())
        } else {
            self.wide = false;
            let mut n = X86CoreRegs::default();
            n.gdb_deserialize(bytes)?;
            widen(&n, &mut self.regs);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: &KiteRegs) -> Vec<u8> {
        let mut out = Vec::new();
        r.gdb_serialize(|b| out.push(b.unwrap_or(0)));
        out
    }

    #[test]
    fn the_narrow_layout_is_i386s_and_round_trips() {
        let mut r = KiteRegs::default();
        r.regs.regs[0] = 0x1_1122_3344; // rax: the high half is cut
        r.regs.regs[1] = 0xbb; // rbx
        r.regs.regs[7] = 0x7000; // rsp
        r.regs.rip = 0x10_0055;
        let narrow = bytes(&r);
        // eax ecx edx ebx esp ...: gdb's i386 order.
        assert_eq!(narrow[0..4], 0x1122_3344u32.to_le_bytes());
        assert_eq!(narrow[12..16], 0xbbu32.to_le_bytes());
        assert_eq!(narrow[16..20], 0x7000u32.to_le_bytes());
        assert_eq!(narrow[32..36], 0x10_0055u32.to_le_bytes());
        assert!(narrow.len() < WIDE_BYTES);

        let mut back = KiteRegs::default();
        back.gdb_deserialize(&narrow).unwrap();
        assert!(!back.wide);
        assert_eq!(back.regs.regs[0], 0x1122_3344);
        assert_eq!((back.regs.regs[1], back.regs.regs[7]), (0xbb, 0x7000));
        assert_eq!(back.pc(), 0x10_0055);

        r.wide = true;
        r.system = [1, 2, 3, 4, 0x1000, 6, 7, 0x500];
        let wide = bytes(&r);
        assert_eq!(wide.len(), WIDE_BYTES + 64);
        assert_eq!(
            wide[WIDE_BYTES + 32..WIDE_BYTES + 40],
            0x1000u64.to_le_bytes(),
            "cr3"
        );
        let mut back = KiteRegs::default();
        back.gdb_deserialize(&wide).unwrap();
        assert!(back.wide);
        assert_eq!((back.regs, back.system), (r.regs, r.system));
    }

    #[test]
    fn the_x86_64_description_names_every_register_once() {
        let xml = xml_x86_64();
        let count = xml.matches("<reg ").count();
        // 16 GPRs, rip, eflags, 6 selectors, 8 x87, 8 x87 control, 16 xmm,
        // mxcsr, then the system registers.
        assert_eq!(count, 16 + 2 + 6 + 8 + 8 + 16 + 1 + SYSTEM_REGS.len());
        for name in ["rax", "rip", "xmm15", "fs_base", "cr3", "efer"] {
            assert_eq!(
                xml.matches(&format!(r#"name="{name}""#)).count(),
                1,
                "{name}"
            );
        }
    }
}
