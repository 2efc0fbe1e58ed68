//! Comparing the host's and the emu's results of a case, and the per-form
//! report.

use iced_x86::{Formatter, IntelFormatter};

use super::forms::{Ext, Form, Relax};
use super::gen::Case;
use super::{CpuState, Outcome, Result, FLAGS_COMPARED};

/// The verdict on one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Both completed with equal results.
    Pass,
    /// Both raised this exception.
    BothFault(u8),
    /// The results differ (the text says how).
    Mismatch(String),
    /// The emu raised #UD where the host did not.
    Unimplemented(String),
    /// The native runner failed: a harness problem, not an emu one.
    Broken(String),
}

const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// The instruction as text, with its bytes.
pub fn describe(case: &Case) -> String {
    let mut f = IntelFormatter::new();
    let mut s = String::new();
    f.format(&case.ins, &mut s);
    let bytes: Vec<String> = case.code[..case.ins.len()]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("`{s}` ({})", bytes.join(" "))
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Done => "completed".into(),
        Outcome::Exception(v) => format!("exception {}", vector_name(*v)),
        Outcome::Broken(why) => format!("broken: {why}"),
    }
}

pub fn vector_name(v: u8) -> String {
    let n = match v {
        0 => "#DE",
        1 => "#DB",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        19 => "#XM",
        _ => "",
    };
    format!("{n}({v})")
}

fn inputs_text(case: &Case) -> String {
    let s = &case.state;
    let mut t = String::from("  inputs:");
    for (i, n) in GPR_NAMES.iter().enumerate() {
        if i % 4 == 0 {
            t.push_str("\n   ");
        }
        t.push_str(&format!(" {n}={:#018x}", s.gpr[i]));
    }
    t.push_str(&format!(
        "\n    rflags={:#x} mxcsr={:#x} fcw={:#x} fsw={:#x} ftw={:#04x}",
        s.rflags,
        s.mxcsr(),
        s.fcw(),
        s.fsw(),
        s.ftw()
    ));
    for i in 0..case.ins.op_count() {
        if case.ins.op_kind(i) != iced_x86::OpKind::Register {
            continue;
        }
        let r = case.ins.op_register(i);
        if r.is_xmm() {
            let n = r.number();
            t.push_str(&format!("\n    {r:?}={:#034x}", s.xmm(n)));
        } else if r.is_mm() {
            // MMn is the significand of physical register n.
            let n = r.number();
            let (m, _) = s.st((n + 8 - s.top()) & 7);
            t.push_str(&format!("\n    {r:?}={m:#018x}"));
        }
    }
    if let Some((off, size)) = case.mem {
        let end = (off + size.min(32)).min(case.data.len());
        t.push_str(&format!(
            "\n    memory operand data+{off:#x} ({size} bytes): {:02x?}",
            &case.data[off..end]
        ));
    }
    for i in 0..8 {
        if s.st_valid(i) {
            let (m, e) = s.st(i);
            t.push_str(&format!("\n    st{i}={e:04x}:{m:016x}"));
        }
    }
    t
}

/// x87 80-bit value as a monotonic integer (for ulp distances), with sign.
fn f80_key(m: u64, se: u16) -> (bool, i128) {
    let key = (i128::from(se & 0x7fff) << 63) | i128::from(m & !(1 << 63));
    (se & 0x8000 != 0, key)
}

fn f32_close(a: u32, b: u32) -> bool {
    if a == b {
        return true;
    }
    let (x, y) = (f32::from_bits(a), f32::from_bits(b));
    if x.is_nan() || y.is_nan() || x.is_sign_negative() != y.is_sign_negative() {
        return false;
    }
    let diff = (x - y).abs();
    diff <= x.abs().max(y.abs()) * (1.0 / 2048.0)
}

/// Field-by-field differences of two completed runs.
fn diff_states(form: &Form, case: &Case, host: &Result, emu: &Result) -> Vec<String> {
    let mut d = Vec::new();
    let (h, e): (&CpuState, &CpuState) = (&host.state, &emu.state);
    let inp = &case.state;
    // Compatibility mode leaves the upper halves undefined.
    let gmask = if case.bits == 32 {
        0xffff_ffff
    } else {
        u64::MAX
    };
    for (i, name) in GPR_NAMES.iter().enumerate() {
        let gmask = if case.upper_undefined & (1 << i) != 0 {
            0xffff_ffff
        } else {
            gmask
        };
        if (h.gpr[i] ^ e.gpr[i]) & gmask != 0 {
            d.push(format!(
                "{name}: in {:#x} host {:#x} emu {:#x}",
                inp.gpr[i], h.gpr[i], e.gpr[i]
            ));
        }
    }
    let fmask = FLAGS_COMPARED & !case.flags_undefined;
    if (h.rflags ^ e.rflags) & fmask != 0 {
        d.push(format!(
            "rflags (compared bits {fmask:#x}): in {:#x} host {:#x} emu {:#x}",
            inp.rflags,
            h.rflags & fmask,
            e.rflags & fmask
        ));
    }
    let mut bad = (0..host.data.len()).filter(|&i| host.data[i] != emu.data[i]);
    if let Some(first) = bad.next() {
        let n = 1 + bad.count();
        let end = (first + 16).min(host.data.len());
        d.push(format!(
            "memory: {n} bytes differ, first at data+{first:#x}: in {:02x?} host {:02x?} emu {:02x?}",
            &case.data[first..end],
            &host.data[first..end],
            &emu.data[first..end]
        ));
    }
    for i in 0..16 {
        let (a, b) = (h.xmm(i), e.xmm(i));
        let same = match form.relax {
            Relax::SseApprox => {
                (0..4).all(|l| f32_close((a >> (32 * l)) as u32, (b >> (32 * l)) as u32))
            }
            _ => a == b,
        };
        if !same {
            d.push(format!(
                "xmm{i}: in {:#034x} host {a:#034x} emu {b:#034x}",
                inp.xmm(i)
            ));
        }
    }
    if h.mxcsr() != e.mxcsr() {
        d.push(format!(
            "mxcsr: in {:#x} host {:#x} emu {:#x}",
            inp.mxcsr(),
            h.mxcsr(),
            e.mxcsr()
        ));
    }
    if h.fcw() != e.fcw() {
        d.push(format!(
            "fcw: in {:#x} host {:#x} emu {:#x}",
            inp.fcw(),
            h.fcw(),
            e.fcw()
        ));
    }
    let mut fsw_mask = !case.fsw_undefined;
    if form.relax == Relax::X87Approx {
        fsw_mask &= !0x0220; // C1 and PE depend on the rounding of the approximation
    }
    if (h.fsw() ^ e.fsw()) & fsw_mask != 0 {
        d.push(format!(
            "fsw: in {:#x} host {:#x} emu {:#x}",
            inp.fsw(),
            h.fsw(),
            e.fsw()
        ));
    }
    if h.ftw() != e.ftw() {
        d.push(format!(
            "ftw: in {:#04x} host {:#04x} emu {:#04x}",
            inp.ftw(),
            h.ftw(),
            e.ftw()
        ));
    }
    // ST(i) where the host has a valid register (the tags are compared above).
    for i in 0..8 {
        if !h.st_valid(i) {
            continue;
        }
        let (hm, he) = h.st(i);
        let (em, ee) = e.st(i);
        let same = if form.relax == Relax::X87Approx {
            let (hs, hk) = f80_key(hm, he);
            let (es, ek) = f80_key(em, ee);
            (hm, he) == (em, ee) || (hs == es && (hk - ek).abs() <= 16 && he & 0x7fff != 0x7fff)
        } else {
            (hm, he) == (em, ee)
        };
        if !same {
            d.push(format!(
                "st{i}: host {he:04x}:{hm:016x} emu {ee:04x}:{em:016x}"
            ));
        }
    }
    d
}

/// Compare one case.
pub fn compare(form: &Form, case: &Case, host: &Result, emu: &Result) -> Verdict {
    let head = || format!("{}: {}", form.name, describe(case));
    match (&host.outcome, &emu.outcome) {
        (Outcome::Broken(why), _) => Verdict::Broken(format!("{}\n  native runner: {why}", head())),
        (h, Outcome::Exception(6)) if *h != Outcome::Exception(6) => {
            Verdict::Unimplemented(format!("{}\n  host: {}, emu: #UD", head(), outcome_text(h)))
        }
        (Outcome::Exception(a), Outcome::Exception(b)) if a == b => Verdict::BothFault(*a),
        (Outcome::Done, Outcome::Done) => {
            if case.result_undefined {
                return Verdict::Pass;
            }
            let d = diff_states(form, case, host, emu);
            if d.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Mismatch(format!(
                    "{}\n  {}\n{}",
                    head(),
                    d.join("\n  "),
                    inputs_text(case)
                ))
            }
        }
        (h, e) => Verdict::Mismatch(format!(
            "{}\n  host: {}, emu: {}\n{}",
            head(),
            outcome_text(h),
            outcome_text(e),
            inputs_text(case)
        )),
    }
}

/// Why a form was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The emu's CPUID does not advertise the extension.
    NotAdvertised,
    /// The host CPU lacks the extension.
    NotOnHost,
}

/// Per-form counts.
#[derive(Debug, Clone)]
pub struct FormReport {
    pub name: String,
    pub ext: Ext,
    pub skipped: Option<Skip>,
    pub cases: usize,
    pub pass: usize,
    pub both_fault: usize,
    pub mismatch: usize,
    pub unimplemented: usize,
    pub broken: usize,
    /// Cases the generator could not build.
    pub gen_failed: usize,
    /// Cases where the host raised an exception (whatever the emu did).
    pub host_faults: usize,
    /// The first few failure descriptions.
    pub examples: Vec<String>,
}

impl FormReport {
    pub fn new(form: &Form) -> FormReport {
        FormReport {
            name: form.name.clone(),
            ext: form.ext(),
            skipped: None,
            cases: 0,
            pass: 0,
            both_fault: 0,
            mismatch: 0,
            unimplemented: 0,
            broken: 0,
            gen_failed: 0,
            host_faults: 0,
            examples: Vec::new(),
        }
    }

    pub fn add(&mut self, v: Verdict) {
        self.cases += 1;
        let text = match v {
            Verdict::Pass => {
                self.pass += 1;
                return;
            }
            Verdict::BothFault(_) => {
                self.both_fault += 1;
                return;
            }
            Verdict::Mismatch(t) => {
                self.mismatch += 1;
                t
            }
            Verdict::Unimplemented(t) => {
                self.unimplemented += 1;
                t
            }
            Verdict::Broken(t) => {
                self.broken += 1;
                t
            }
        };
        if self.examples.len() < 2 {
            self.examples.push(text);
        }
    }

    /// PASS, FAIL (results differ), UNIMPL (only #UD where the host ran it),
    /// HARNESS (the native side broke), NOGEN (no case built), SKIP.
    pub fn status(&self) -> &'static str {
        match self.skipped {
            Some(Skip::NotAdvertised) => "SKIP(cpuid)",
            Some(Skip::NotOnHost) => "SKIP(host)",
            None if self.broken > 0 => "HARNESS",
            None if self.mismatch > 0 => "FAIL",
            None if self.unimplemented > 0 => "UNIMPL",
            None if self.cases == 0 => "NOGEN",
            None => "PASS",
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.status(), "HARNESS" | "FAIL" | "UNIMPL" | "NOGEN")
    }
}

/// The results table and a per-extension summary.
pub fn table(reports: &[FormReport]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<40} {:<8} {:<11} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
        "form", "ext", "status", "cases", "pass", "fault", "mism", "unimp", "hfault"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<40} {:<8} {:<11} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
            r.name,
            format!("{:?}", r.ext),
            r.status(),
            r.cases,
            r.pass,
            r.both_fault,
            r.mismatch,
            r.unimplemented,
            r.host_faults
        ));
    }
    s.push('\n');
    s.push_str(&summary(reports));
    s
}

/// Forms per extension and status.
pub fn summary(reports: &[FormReport]) -> String {
    let mut exts: Vec<Ext> = reports.iter().map(|r| r.ext).collect();
    exts.sort();
    exts.dedup();
    let statuses = [
        "PASS",
        "FAIL",
        "UNIMPL",
        "HARNESS",
        "NOGEN",
        "SKIP(cpuid)",
        "SKIP(host)",
    ];
    let mut s = format!("{:<8}", "ext");
    for st in statuses {
        s.push_str(&format!(" {st:>11}"));
    }
    s.push_str(&format!(" {:>9}\n", "cases"));
    let line = |name: String, rs: Vec<&FormReport>| {
        let mut l = format!("{name:<8}");
        for st in statuses {
            let n = rs.iter().filter(|r| r.status() == st).count();
            l.push_str(&format!(" {n:>11}"));
        }
        let cases: usize = rs.iter().map(|r| r.cases).sum();
        l.push_str(&format!(" {cases:>9}\n"));
        l
    };
    for e in exts {
        s.push_str(&line(
            format!("{e:?}"),
            reports.iter().filter(|r| r.ext == e).collect(),
        ));
    }
    s.push_str(&line("all".into(), reports.iter().collect()));
    s
}
