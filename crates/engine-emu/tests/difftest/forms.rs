//! The instruction forms under test, enumerated from iced-x86's opcode
//! tables: every legacy-encoded `Code` valid in 64-bit mode at CPL 3 whose
//! CPUID features are in `Ext` (the base x86-64 set, x87, MMX, SSE..SSE4.2
//! and the small extensions below), minus what a user-mode differential test
//! cannot compare (I/O, system and segment instructions, far and indirect
//! transfers, nondeterministic ones like RDTSC/RDRAND/CPUID, whole-state
//! saves whose image holds host addresses). A `Code` with an r/m operand is
//! two forms: register and memory. String instructions also get REP/REPNE
//! forms, memory forms that allow LOCK also a locked form.
//!
//! A form is tested only if the emu advertises its extension in CPUID (and
//! the host has it); the others are reported as skipped.

use iced_x86::{Code, CpuidFeature, EncodingKind, FlowControl, Mnemonic, OpCodeOperandKind};

/// An instruction set extension a form belongs to (the CPUID bit that
/// promises it). This is the list of extensions the suite covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ext {
    /// 8086..486 and x86-64 integer instructions.
    Base,
    X87,
    Cmov,
    Cx8,
    Cx16,
    Movbe,
    Popcnt,
    Lzcnt,
    Bmi1,
    Bmi2,
    Adx,
    Clflush,
    Mmx,
    Sse,
    Sse2,
    Sse3,
    Ssse3,
    Sse41,
    Sse42,
}

impl Ext {
    /// (leaf, subleaf, register index eax=0..edx=3, bit).
    fn cpuid_bit(self) -> Option<(u32, u32, usize, u32)> {
        Some(match self {
            Ext::Base => return None,
            Ext::X87 => (1, 0, 3, 0),
            Ext::Cmov => (1, 0, 3, 15),
            Ext::Cx8 => (1, 0, 3, 8),
            Ext::Clflush => (1, 0, 3, 19),
            Ext::Mmx => (1, 0, 3, 23),
            Ext::Sse => (1, 0, 3, 25),
            Ext::Sse2 => (1, 0, 3, 26),
            Ext::Sse3 => (1, 0, 2, 0),
            Ext::Ssse3 => (1, 0, 2, 9),
            Ext::Cx16 => (1, 0, 2, 13),
            Ext::Sse41 => (1, 0, 2, 19),
            Ext::Sse42 => (1, 0, 2, 20),
            Ext::Movbe => (1, 0, 2, 22),
            Ext::Popcnt => (1, 0, 2, 23),
            Ext::Bmi1 => (7, 0, 1, 3),
            Ext::Bmi2 => (7, 0, 1, 8),
            Ext::Adx => (7, 0, 1, 19),
            Ext::Lzcnt => (0x8000_0001, 0, 2, 5),
        })
    }

    /// Does this CPUID (the emu's supported leaves) advertise the extension?
    pub fn advertised(self, cpuid: &[kite_hypervisor::CpuidEntry]) -> bool {
        let Some((leaf, sub, reg, bit)) = self.cpuid_bit() else {
            return true;
        };
        cpuid
            .iter()
            .find(|e| e.function == leaf && (!e.significant_index || e.index == sub))
            .is_some_and(|e| [e.eax, e.ebx, e.ecx, e.edx][reg] & (1 << bit) != 0)
    }

    /// Does the host CPU have the extension?
    pub fn on_host(self) -> bool {
        let Some((leaf, sub, reg, bit)) = self.cpuid_bit() else {
            return true;
        };
        let r = std::arch::x86_64::__cpuid_count(leaf, sub);
        [r.eax, r.ebx, r.ecx, r.edx][reg] & (1 << bit) != 0
    }

    fn of(f: CpuidFeature) -> Option<Option<Ext>> {
        use CpuidFeature as C;
        Some(Some(match f {
            C::INTEL8086 | C::INTEL186 | C::INTEL286 | C::INTEL386 | C::INTEL486 | C::X64 => {
                return Some(None)
            }
            C::MULTIBYTENOP | C::PAUSE => return Some(None),
            C::FPU | C::FPU287 | C::FPU387 => Ext::X87,
            C::CMOV => Ext::Cmov,
            C::CX8 => Ext::Cx8,
            C::CMPXCHG16B => Ext::Cx16,
            C::MOVBE => Ext::Movbe,
            C::POPCNT => Ext::Popcnt,
            C::LZCNT => Ext::Lzcnt,
            C::BMI1 => Ext::Bmi1,
            C::BMI2 => Ext::Bmi2,
            C::ADX => Ext::Adx,
            C::CLFSH => Ext::Clflush,
            C::MMX => Ext::Mmx,
            C::SSE => Ext::Sse,
            C::SSE2 => Ext::Sse2,
            C::SSE3 => Ext::Sse3,
            C::SSSE3 => Ext::Ssse3,
            C::SSE4_1 => Ext::Sse41,
            C::SSE4_2 => Ext::Sse42,
            _ => return None,
        }))
    }
}

/// The REP prefix a string form uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepPrefix {
    None,
    Rep,
    Repne,
}

/// How strictly a form's results are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relax {
    /// Bit for bit.
    Exact,
    /// x87 transcendental: ST values within a few ulps, C1 and PE ignored.
    X87Approx,
    /// RCPPS/RSQRTPS & co: implementation-defined approximations; the XMM
    /// results must agree to 11 bits.
    SseApprox,
}

/// One instruction form.
#[derive(Debug, Clone)]
pub struct Form {
    pub code: Code,
    /// 64: 64-bit mode; 32: 32-bit compatibility mode (forms that do not
    /// exist in 64-bit mode).
    pub bits: u32,
    /// The r/m operand (if any) is memory.
    pub mem: bool,
    pub rep: RepPrefix,
    /// With a LOCK prefix (memory forms that allow one).
    pub lock: bool,
    /// The extensions it needs (all of them).
    pub exts: Vec<Ext>,
    pub relax: Relax,
    pub name: String,
}

impl Form {
    /// The extension the report groups the form under (the most specific).
    pub fn ext(&self) -> Ext {
        self.exts.iter().copied().max().unwrap_or(Ext::Base)
    }
}

fn is_rm(k: OpCodeOperandKind) -> bool {
    use OpCodeOperandKind as K;
    matches!(
        k,
        K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem | K::mm_or_mem | K::xmm_or_mem
    )
}

/// Operand kinds the generator knows how to fill.
fn supported_kind(k: OpCodeOperandKind) -> bool {
    use OpCodeOperandKind as K;
    matches!(
        k,
        K::mem
            | K::mem_offs
            | K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::mm_or_mem
            | K::xmm_or_mem
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_rm
            | K::r32_opcode
            | K::r64_reg
            | K::r64_rm
            | K::r64_opcode
            | K::mm_reg
            | K::mm_rm
            | K::xmm_reg
            | K::xmm_rm
            | K::al
            | K::cl
            | K::ax
            | K::dx
            | K::eax
            | K::rax
            | K::st0
            | K::sti_opcode
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
            | K::seg_rSI
            | K::es_rDI
            | K::seg_rDI
            | K::seg_rBX_al
            | K::br64_1
            | K::br64_4
            | K::br32_1
            | K::br32_4
    )
}

/// Mnemonics left out, and why.
fn excluded(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        // Results differ by design between the host and any VM.
        M::Cpuid | M::Rdtsc | M::Rdtscp | M::Rdpmc | M::Rdrand | M::Rdseed | M::Rdpid
            | M::Xgetbv
            // Kernel entries, software interrupts.
            | M::Syscall | M::Sysenter | M::Int | M::Int1 | M::Int3 | M::Into
            // Segment and descriptor-table state differs between host and guest.
            | M::Lar | M::Lsl | M::Verr | M::Verw | M::Sldt | M::Str | M::Sgdt | M::Sidt
            | M::Smsw | M::Lds | M::Les | M::Lss | M::Lfs | M::Lgs | M::Swapgs
            // State images with host-specific fields (FIP/FDP/CS, reserved areas).
            | M::Fnstenv | M::Fstenv | M::Fldenv | M::Fnsave | M::Fsave | M::Frstor
            | M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64
            // Waits on host events.
            | M::Monitor | M::Mwait | M::Umonitor | M::Umwait | M::Tpause
            // Pseudo-instructions of iced.
            | M::INVALID | M::Db | M::Dw | M::Dd | M::Dq
    )
}

/// x87 instructions whose results are approximations on real hardware.
fn x87_transcendental(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Fsin | M::Fcos | M::Fsincos | M::Fptan | M::Fpatan | M::F2xm1 | M::Fyl2x | M::Fyl2xp1
    )
}

fn sse_approx(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(m, M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss)
}

/// Every form, in iced's `Code` order; `Err(reason)` for Codes left out
/// (only those that otherwise look like user-mode instructions, for the report).
pub fn all() -> Vec<Form> {
    let mut out = Vec::new();
    for code in Code::values() {
        let op = code.op_code();
        // 64-bit forms, and the forms that exist only outside 64-bit mode
        // (BCD, PUSHA/POPA, INC/DEC r32 short forms...) in 32-bit
        // compatibility mode.
        let bits = if op.mode64() {
            64
        } else if op.mode32() {
            32
        } else {
            continue;
        };
        let decodes = if bits == 64 {
            op.amd_decoder64() && op.intel_decoder64()
        } else {
            op.amd_decoder32() && op.intel_decoder32()
        };
        if !op.is_instruction()
            || !decodes
            || op.encoding() != EncodingKind::Legacy
            || !op.cpl3()
            || code.is_privileged()
            || op.is_input_output()
            || code.is_save_restore_instruction()
            || op.decoder_option() != 0
            // WAIT + FNxxx pairs: covered by WAIT and the FNxxx forms.
            || op.fwait()
            || excluded(code.mnemonic())
        {
            continue;
        }
        match code.flow_control() {
            FlowControl::Next
            | FlowControl::ConditionalBranch
            | FlowControl::UnconditionalBranch
            | FlowControl::Call
            | FlowControl::Exception => {}
            FlowControl::Return if matches!(code, Code::Retnq | Code::Retnq_imm16) => {}
            _ => continue,
        }
        let kinds = op.op_kinds();
        if !kinds.iter().all(|&k| supported_kind(k)) {
            continue;
        }
        let mut exts = Vec::new();
        let mut known = true;
        for &f in code.cpuid_features() {
            match Ext::of(f) {
                Some(Some(e)) => exts.push(e),
                Some(None) => {}
                None => known = false,
            }
        }
        if !known {
            continue;
        }
        let relax = if x87_transcendental(code.mnemonic()) {
            Relax::X87Approx
        } else if sse_approx(code.mnemonic()) {
            Relax::SseApprox
        } else {
            Relax::Exact
        };
        let base = if bits == 32 {
            format!("{code:?}[32]")
        } else {
            format!("{code:?}")
        };
        let has_rm = kinds.iter().any(|&k| is_rm(k));
        let variants: &[bool] = if has_rm { &[false, true] } else { &[false] };
        let string = kinds
            .iter()
            .any(|&k| matches!(k, OpCodeOperandKind::seg_rSI | OpCodeOperandKind::es_rDI));
        let reps: Vec<RepPrefix> = if string {
            let mut r = vec![RepPrefix::None];
            if op.can_use_rep_prefix() {
                r.push(RepPrefix::Rep);
            }
            if op.can_use_repne_prefix() {
                r.push(RepPrefix::Repne);
            }
            r
        } else {
            vec![RepPrefix::None]
        };
        for &mem in variants {
            // 0F 0D is PREFETCH/PREFETCHW on AMD hosts (/r: #UD), a
            // reserved NOP on Intel: vendor-specific, not compared.
            if matches!(
                code,
                Code::Reservednop_rm16_r16_0F0D
                    | Code::Reservednop_rm32_r32_0F0D
                    | Code::Reservednop_rm64_r64_0F0D
            ) {
                continue;
            }
            // Memory forms that take LOCK are also tested locked.
            let has_mem = mem || kinds.contains(&OpCodeOperandKind::mem);
            let locks: &[bool] = if has_mem && op.can_use_lock_prefix() {
                &[false, true]
            } else {
                &[false]
            };
            for &rep in &reps {
                for &lock in locks {
                    let mut name = match rep {
                        RepPrefix::None => String::new(),
                        RepPrefix::Rep => "rep+".into(),
                        RepPrefix::Repne => "repne+".into(),
                    };
                    if lock {
                        name.push_str("lock+");
                    }
                    name.push_str(&base);
                    if has_rm {
                        name.push_str(if mem { "/m" } else { "/r" });
                    }
                    out.push(Form {
                        code,
                        bits,
                        mem,
                        rep,
                        lock,
                        exts: exts.clone(),
                        relax,
                        name,
                    });
                }
            }
        }
    }
    out
}
