//! Differential testing of the emu engine against the host CPU.
//!
//! Every case is one instruction (plus, for branches, a marker move) with
//! random inputs: the 16 GPRs, RFLAGS, a 4 KiB data page that memory operands
//! point into, the x87/MMX/SSE state (an FXSAVE image). The same bytes run
//!
//! - natively, in a forked child process (`native.rs`), at the same virtual
//!   addresses, with faults turned into the exception vector they raised;
//! - on the emu engine (`emu.rs`), driven only through the hypervisor API, in
//!   64-bit long mode at CPL 3 with identity paging;
//!
//! and the outcomes are compared (`compare.rs`). The instruction forms come
//! from iced-x86's opcode tables (`forms.rs`); the inputs from `gen.rs`.
//!
//! Memory layout, identical on both sides (all below 2 GiB so absolute
//! 32-bit addressing reaches it):
//! - `TEST_ADDR`: the instruction under test, then `jmp END_ADDR`;
//! - `END_ADDR`: natively the register-saving epilogue, on the emu `out 0xe0, al`;
//! - `DATA_ADDR`: the 4 KiB data page;
//! - natively, the prologue and the state blocks follow the end page; on the
//!   emu, the page tables, GDT, IDT, TSS and exception stubs live at `SYS_ADDR`.

pub mod compare;
pub mod emu;
pub mod forms;
pub mod gen;
pub mod native;

/// The page holding the instruction under test.
pub const TEST_ADDR: u64 = 0x4000_0000;
/// Where the test code jumps when the instruction completed.
pub const END_ADDR: u64 = 0x4000_1000;
/// Where 32-bit (compatibility mode) test code jumps when it completed.
pub const END32_ADDR: u64 = END_ADDR + 0x800;
/// The data page memory operands point into.
pub const DATA_ADDR: u64 = 0x4001_0000;
pub const DATA_SIZE: usize = 4096;
/// Longest test code (instruction + marker + jump).
pub const CODE_MAX: usize = 48;

/// RFLAGS bits an instruction can define (arithmetic flags and DF).
pub const FLAGS_ARITH: u64 = 0x8d5;
pub const FLAG_DF: u64 = 0x400;
pub const FLAGS_COMPARED: u64 = FLAGS_ARITH | FLAG_DF;

/// Register state in and out of a case. `fx` is a 64-bit FXSAVE image
/// (x87, MMX, XMM0-15, MXCSR). The layout is shared with the native
/// prologue/epilogue (offsets `GPR_OFF`, `RFLAGS_OFF`, `FX_OFF`).
#[repr(C, align(16))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CpuState {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub _pad: u64,
    pub fx: [u8; 512],
}

pub const GPR_OFF: u64 = 0;
pub const RFLAGS_OFF: u64 = 128;
pub const FX_OFF: u64 = 144;

impl Default for CpuState {
    fn default() -> Self {
        CpuState {
            gpr: [0; 16],
            rflags: 0x202,
            _pad: 0,
            fx: [0; 512],
        }
    }
}

/// Accessors for the FXSAVE image.
impl CpuState {
    pub fn fcw(&self) -> u16 {
        u16::from_le_bytes([self.fx[0], self.fx[1]])
    }
    pub fn set_fcw(&mut self, v: u16) {
        self.fx[0..2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn fsw(&self) -> u16 {
        u16::from_le_bytes([self.fx[2], self.fx[3]])
    }
    pub fn set_fsw(&mut self, v: u16) {
        self.fx[2..4].copy_from_slice(&v.to_le_bytes());
    }
    /// Abridged tag byte: bit i set = physical register i valid.
    pub fn ftw(&self) -> u8 {
        self.fx[4]
    }
    pub fn set_ftw(&mut self, v: u8) {
        self.fx[4] = v;
    }
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes([self.fx[24], self.fx[25], self.fx[26], self.fx[27]])
    }
    pub fn set_mxcsr(&mut self, v: u32) {
        self.fx[24..28].copy_from_slice(&v.to_le_bytes());
    }
    /// ST(i) as (significand, sign+exponent).
    pub fn st(&self, i: usize) -> (u64, u16) {
        let o = 32 + 16 * i;
        let mut m = [0u8; 8];
        m.copy_from_slice(&self.fx[o..o + 8]);
        (
            u64::from_le_bytes(m),
            u16::from_le_bytes([self.fx[o + 8], self.fx[o + 9]]),
        )
    }
    pub fn set_st(&mut self, i: usize, mant: u64, se: u16) {
        let o = 32 + 16 * i;
        self.fx[o..o + 8].copy_from_slice(&mant.to_le_bytes());
        self.fx[o + 8..o + 10].copy_from_slice(&se.to_le_bytes());
        self.fx[o + 10..o + 16].fill(0);
    }
    pub fn xmm(&self, i: usize) -> u128 {
        let o = 160 + 16 * i;
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.fx[o..o + 16]);
        u128::from_le_bytes(b)
    }
    pub fn set_xmm(&mut self, i: usize, v: u128) {
        let o = 160 + 16 * i;
        self.fx[o..o + 16].copy_from_slice(&v.to_le_bytes());
    }
    /// x87 TOP from the status word.
    pub fn top(&self) -> usize {
        usize::from((self.fsw() >> 11) & 7)
    }
    /// Is ST(i) valid (tagged non-empty)?
    pub fn st_valid(&self, i: usize) -> bool {
        self.ftw() & (1 << ((self.top() + i) & 7)) != 0
    }
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the end of the test code.
    Done,
    /// Raised this exception vector.
    Exception(u8),
    /// The runner itself failed (native child crashed outside the test code,
    /// emu internal error, timeout...).
    Broken(String),
}

/// What one side produced for a case.
#[derive(Clone)]
pub struct Result {
    pub outcome: Outcome,
    pub state: CpuState,
    pub data: Box<[u8; DATA_SIZE]>,
}

/// A small deterministic PRNG (splitmix64): cases depend only on the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_0fd1_ff7e_5701)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability num/den.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A stable hash of a string, to derive per-form seeds.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Settings of a run, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Random cases per form (KITE_DIFF_CASES).
    pub cases: usize,
    /// Base seed (KITE_DIFF_SEED); each form derives its own from its name.
    pub seed: u64,
    /// Only forms whose name contains this (KITE_DIFF_FILTER).
    pub filter: Option<String>,
    /// The emu's execution tier (KITE_DIFF_TIER: interp, auto or all;
    /// interp if unset).
    pub tier: kite_engine_emu::jit::Tier,
}

/// Cases per form in the CI set.
pub const CI_CASES: usize = 200;
/// The CI set's fixed seed.
pub const CI_SEED: u64 = 0x4b17_e0d1_ff00_0001;

impl Settings {
    pub fn from_env() -> Settings {
        let num = |k: &str| {
            std::env::var(k).ok().and_then(|v| {
                let v = v.trim();
                match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse().ok(),
                }
            })
        };
        Settings {
            cases: num("KITE_DIFF_CASES").map_or(CI_CASES, |n| n as usize),
            seed: num("KITE_DIFF_SEED").unwrap_or(CI_SEED),
            filter: std::env::var("KITE_DIFF_FILTER")
                .ok()
                .filter(|s| !s.is_empty()),
            tier: match std::env::var("KITE_DIFF_TIER").as_deref() {
                Ok("all") => kite_engine_emu::jit::Tier::All,
                Ok("auto") => kite_engine_emu::jit::Tier::Auto,
                _ => kite_engine_emu::jit::Tier::Interp,
            },
        }
    }
}

/// Generate `n` cases of a form (deterministic in the seed and form name).
pub fn cases_for(form: &forms::Form, n: usize, seed: u64) -> (Vec<gen::Case>, usize) {
    let mut rng = Rng::new(seed ^ hash_str(&form.name));
    let mut out = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        match gen::generate(form, &mut rng) {
            Some(c) => out.push(c),
            None => failed += 1,
        }
    }
    (out, failed)
}

/// Run the cases natively (in chunks, one child process each).
pub fn run_native(stubs: &native::Stubs, cases: &[gen::Case]) -> Vec<Result> {
    let mut out = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(1024) {
        let inputs: Vec<native::Input> = chunk
            .iter()
            .map(|c| native::Input {
                bits: c.bits,
                code: &c.code,
                state: &c.state,
                data: &c.data,
            })
            .collect();
        out.extend(native::run(stubs, &inputs));
    }
    out
}

/// Run `forms` on both sides and compare; one report per form.
pub fn run_forms(forms: &[forms::Form], settings: &Settings) -> Vec<compare::FormReport> {
    let stubs = native::Stubs::new();
    let mut emu = emu::EmuRunner::with_tier(settings.tier);
    let cpuid = {
        use kite_hypervisor::Hypervisor;
        kite_engine_emu::EmuHypervisor::new()
            .supported_cpuid()
            .expect("emu CPUID")
    };
    let mut reports = Vec::new();
    for form in forms {
        if let Some(f) = &settings.filter {
            if !form.name.contains(f.as_str()) {
                continue;
            }
        }
        let mut rep = compare::FormReport::new(form);
        if !form.exts.iter().all(|e| e.advertised(&cpuid)) {
            rep.skipped = Some(compare::Skip::NotAdvertised);
            reports.push(rep);
            continue;
        }
        if !form.exts.iter().all(|e| e.on_host()) {
            rep.skipped = Some(compare::Skip::NotOnHost);
            reports.push(rep);
            continue;
        }
        let (cases, failed) = cases_for(form, settings.cases, settings.seed);
        rep.gen_failed = failed;
        let host = run_native(&stubs, &cases);
        for (case, h) in cases.iter().zip(host.iter()) {
            if matches!(h.outcome, Outcome::Exception(_)) {
                rep.host_faults += 1;
            }
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                emu.run_one(case.bits, &case.code, &case.state, &case.data)
            }));
            let e = match run {
                Ok(e) => e,
                Err(p) => {
                    // An emu bug: report it, and start over with a fresh VM.
                    emu = emu::EmuRunner::with_tier(settings.tier);
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Result {
                        outcome: Outcome::Broken(format!("the emu panicked: {msg}")),
                        state: case.state,
                        data: case.data.clone(),
                    }
                }
            };
            rep.add(compare::compare(form, case, h, &e));
        }
        reports.push(rep);
    }
    reports
}
