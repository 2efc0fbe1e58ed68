//! A small x86-64 machine-code emitter: exactly the instruction forms the
//! templates in `translate.rs` use, nothing more. Memory operands are always
//! `[rbx + disp32]` (rbx holds the `Cpu` pointer in generated code) or a
//! host pointer in rax/rdx. The scratch registers are rax rcx rdx rsi rdi;
//! r12-r15 hold copies of guest registers (`translate.rs`, "mirrors") and
//! appear only in `load`, `store` and `mov_rr`, the forms that take a
//! REX.R/REX.B bit.

/// Host registers by encoding number.
pub const RAX: u8 = 0;
pub const RCX: u8 = 1;
pub const RDX: u8 = 2;
/// The `Cpu` pointer in generated code.
pub const RBX: u8 = 3;
pub const RSI: u8 = 6;
pub const RDI: u8 = 7;
/// The registers that mirror guest registers (callee-saved in sysv64, so
/// every call out of generated code keeps them).
pub const MIRRORS: [u8; 4] = [12, 13, 14, 15];

/// Two-operand ALU operations: (opcode of `op r/m, r`, /digit of `op r/m, imm32`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AluOp {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

impl AluOp {
    fn rm_r(self) -> u8 {
        match self {
            AluOp::Add => 0x01,
            AluOp::Or => 0x09,
            AluOp::Adc => 0x11,
            AluOp::Sbb => 0x19,
            AluOp::And => 0x21,
            AluOp::Sub => 0x29,
            AluOp::Xor => 0x31,
            AluOp::Cmp => 0x39,
            AluOp::Test => 0x85,
        }
    }

    fn digit(self) -> u8 {
        match self {
            AluOp::Add => 0,
            AluOp::Or => 1,
            AluOp::Adc => 2,
            AluOp::Sbb => 3,
            AluOp::And => 4,
            AluOp::Sub => 5,
            AluOp::Xor => 6,
            AluOp::Cmp => 7,
            AluOp::Test => 0,
        }
    }
}

/// A memory operand of the forms the templates use: a field of the `Cpu`
/// (`[rbx + disp32]`) or guest memory through a host pointer (`[rax]`).
#[derive(Clone, Copy, Debug)]
pub enum Mem {
    Cpu(usize),
    AtRax,
}

/// A jump target inside the code being emitted.
#[derive(Clone, Copy, Debug)]
pub struct Label(usize);

#[derive(Default)]
pub struct Asm {
    pub buf: Vec<u8>,
    /// Where each label is bound (offset in `buf`).
    labels: Vec<Option<usize>>,
    /// rel32 fields to patch: (offset of the field, label).
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.buf.len());
    }

    /// Patch every rel32 to its label. `None` if a label was never bound.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        for &(at, l) in &self.fixups {
            let to = self.labels[l.0]?;
            let rel = to as i64 - (at as i64 + 4);
            let rel = i32::try_from(rel).ok()?;
            self.buf[at..at + 4].copy_from_slice(&rel.to_le_bytes());
        }
        Some(self.buf)
    }

    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn rex_w(&mut self, w: bool) {
        if w {
            self.byte(0x48);
        }
    }

    /// The REX prefix of a form with `reg` in ModRM.reg and `rm` in
    /// ModRM.rm (registers 0..15), if it needs one.
    fn rex(&mut self, w: bool, reg: u8, rm: u8) {
        let b = 0x40 | (u8::from(w) << 3) | ((reg >> 3) << 2) | (rm >> 3);
        if b != 0x40 {
            self.byte(b);
        }
    }

    /// ModRM (and disp32) for `[rbx + disp]` with `reg` (its low 3 bits)
    /// in the reg field.
    fn rbx_disp(&mut self, reg: u8, disp: usize) {
        self.byte(0x83 | ((reg & 7) << 3));
        self.i32(disp as i32);
    }

    /// `mov r, [rbx + disp]` (32-bit loads zero-extend; any of r0-r15).
    pub fn load(&mut self, w: bool, r: u8, disp: usize) {
        self.rex(w, r, RBX);
        self.byte(0x8b);
        self.rbx_disp(r, disp);
    }

    /// `mov [rbx + disp], r` (any of r0-r15).
    pub fn store(&mut self, w: bool, r: u8, disp: usize) {
        self.rex(w, r, RBX);
        self.byte(0x89);
        self.rbx_disp(r, disp);
    }

    /// `mov byte [rbx + disp], v`.
    pub fn store_u8(&mut self, disp: usize, v: u8) {
        self.byte(0xc6);
        self.rbx_disp(0, disp);
        self.byte(v);
    }

    /// `mov byte [rbx + disp], al`.
    pub fn store_u8_from_al(&mut self, disp: usize) {
        self.byte(0x88);
        self.rbx_disp(RAX, disp);
    }

    /// `mov dword [rbx + disp], v` or, with `w`, `mov qword [rbx + disp], sext(v)`.
    pub fn store_i32(&mut self, w: bool, disp: usize, v: i32) {
        self.rex_w(w);
        self.byte(0xc7);
        self.rbx_disp(0, disp);
        self.i32(v);
    }

    /// `mov r64, imm64` (the short form `mov r32, imm32` when it fits).
    pub fn mov_imm(&mut self, r: u8, v: u64) {
        if let Ok(v32) = u32::try_from(v) {
            self.byte(0xb8 + r);
            self.i32(v32 as i32);
        } else {
            self.byte(0x48);
            self.byte(0xb8 + r);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// `op dst, src` on registers.
    pub fn alu_rr(&mut self, op: AluOp, w: bool, dst: u8, src: u8) {
        self.rex_w(w);
        self.byte(op.rm_r());
        self.byte(0xc0 | (src << 3) | dst);
    }

    /// `op dst, imm32` (sign-extended with `w`).
    pub fn alu_ri(&mut self, op: AluOp, w: bool, dst: u8, imm: i32) {
        self.rex_w(w);
        self.byte(if op == AluOp::Test { 0xf7 } else { 0x81 });
        self.byte(0xc0 | (op.digit() << 3) | dst);
        self.i32(imm);
    }

    /// `inc r` or `dec r`.
    pub fn inc_dec(&mut self, dec: bool, w: bool, r: u8) {
        self.rex_w(w);
        self.byte(0xff);
        self.byte(0xc0 | (u8::from(dec) << 3) | r);
    }

    /// `lea dst, [rcx + rdx * scale + disp32]`.
    pub fn lea_rcx_rdx(&mut self, w: bool, dst: u8, scale: u32, disp: i32) {
        self.rex_w(w);
        self.byte(0x8d);
        self.byte(0x84 | (dst << 3));
        let ss = scale.trailing_zeros() as u8;
        self.byte((ss << 6) | (RDX << 3) | RCX);
        self.i32(disp);
    }

    /// `lea dst, [rcx + disp32]`.
    pub fn lea_rcx(&mut self, w: bool, dst: u8, disp: i32) {
        self.rex_w(w);
        self.byte(0x8d);
        self.byte(0x80 | (dst << 3) | RCX);
        self.i32(disp);
    }

    /// `setcc byte [rbx + disp]`.
    pub fn setcc_mem(&mut self, cc: u8, disp: usize) {
        self.byte(0x0f);
        self.byte(0x90 + cc);
        self.rbx_disp(0, disp);
    }

    /// `cmp dword [rbx + disp], imm32`.
    pub fn cmp_mem32(&mut self, disp: usize, imm: u32) {
        self.byte(0x81);
        self.rbx_disp(7, disp);
        self.i32(imm as i32);
    }

    /// `jcc rel32` to `l` (cc as in the x86 condition encoding).
    pub fn jcc(&mut self, cc: u8, l: Label) {
        self.byte(0x0f);
        self.byte(0x80 + cc);
        self.fixups.push((self.buf.len(), l));
        self.i32(0);
    }

    /// `jmp rel32` to `l`.
    pub fn jmp(&mut self, l: Label) {
        self.byte(0xe9);
        self.fixups.push((self.buf.len(), l));
        self.i32(0);
    }

    /// `mov dst, src` (registers r0-r15; a 32-bit move zero-extends).
    pub fn mov_rr(&mut self, w: bool, dst: u8, src: u8) {
        self.rex(w, src, dst);
        self.byte(0x89);
        self.byte(0xc0 | ((src & 7) << 3) | (dst & 7));
    }

    /// `shl`/`shr`/`sar`/`rol`/`ror` `r, imm8` (`digit` 4, 5, 7, 0, 1).
    pub fn shift_ri(&mut self, digit: u8, w: bool, r: u8, imm: u8) {
        self.rex_w(w);
        self.byte(0xc1);
        self.byte(0xc0 | (digit << 3) | r);
        self.byte(imm);
    }

    /// `shift_ri` on `size` bytes (al cl dl bl for bytes).
    pub fn shift_ri_x(&mut self, digit: u8, size: u32, r: u8, imm: u8) {
        let adj = self.size_prefix(size);
        self.byte(0xc1 - adj);
        self.byte(0xc0 | (digit << 3) | r);
        self.byte(imm);
    }

    /// `shl`/`shr`/`sar`/`rol`/`ror` `r, cl` (`digit` 4, 5, 7, 0, 1).
    pub fn shift_cl(&mut self, digit: u8, w: bool, r: u8) {
        self.rex_w(w);
        self.byte(0xd3);
        self.byte(0xc0 | (digit << 3) | r);
    }

    /// `xor r, [rdx]`.
    pub fn xor_r_at_rdx(&mut self, w: bool, r: u8) {
        self.rex_w(w);
        self.byte(0x33);
        self.byte((r << 3) | RDX);
    }

    /// `add r, [rdx + 8]`.
    pub fn add_r_at_rdx8(&mut self, w: bool, r: u8) {
        self.rex_w(w);
        self.byte(0x03);
        self.byte(0x40 | (r << 3) | RDX);
        self.byte(8);
    }

    /// `add r, [rbx + disp]`.
    pub fn add_r_mem(&mut self, w: bool, r: u8, disp: usize) {
        self.rex_w(w);
        self.byte(0x03);
        self.rbx_disp(r, disp);
    }

    /// `mov r, [rax]`.
    pub fn load_at_rax(&mut self, w: bool, r: u8) {
        self.rex_w(w);
        self.byte(0x8b);
        self.byte(r << 3);
    }

    /// `mov [rax], r`.
    pub fn store_at_rax(&mut self, w: bool, r: u8) {
        self.rex_w(w);
        self.byte(0x89);
        self.byte(r << 3);
    }

    /// `cmp byte [rbx + disp], imm8`.
    pub fn cmp_mem8(&mut self, disp: usize, imm: u8) {
        self.byte(0x80);
        self.rbx_disp(7, disp);
        self.byte(imm);
    }

    /// ModRM (and displacement) for memory operand `m` with `reg` in the
    /// reg field.
    fn modrm(&mut self, reg: u8, m: Mem) {
        match m {
            Mem::Cpu(disp) => self.rbx_disp(reg, disp),
            Mem::AtRax => self.byte(reg << 3),
        }
    }

    /// Load `size` (1, 2, 4, 8) bytes at `m` into `r`, zero- or (`sign`)
    /// sign-extended to 32 bits, or to 64 with `w` (a 32-bit result
    /// zero-extends, as every 32-bit write of the host does).
    pub fn load_x(&mut self, size: u32, sign: bool, w: bool, r: u8, m: Mem) {
        match size {
            1 | 2 => {
                self.rex_w(w);
                self.byte(0x0f);
                self.byte(match (size, sign) {
                    (1, false) => 0xb6,
                    (2, false) => 0xb7,
                    (1, true) => 0xbe,
                    _ => 0xbf,
                });
            }
            4 if sign && w => {
                self.byte(0x48);
                self.byte(0x63);
            }
            4 => self.byte(0x8b),
            _ => {
                self.byte(0x48);
                self.byte(0x8b);
            }
        }
        self.modrm(r, m);
    }

    /// Store the low `size` (1, 2, 4, 8) bytes of `r` at `m`; a byte store
    /// takes only al, cl, dl.
    pub fn store_x(&mut self, size: u32, r: u8, m: Mem) {
        debug_assert!(size != 1 || r < 4);
        match size {
            1 => self.byte(0x88),
            2 => {
                self.byte(0x66);
                self.byte(0x89);
            }
            4 => self.byte(0x89),
            _ => {
                self.byte(0x48);
                self.byte(0x89);
            }
        }
        self.modrm(r, m);
    }

    /// Operand-size prefix of a `size`-byte (1, 2, 4, 8) ALU operation and
    /// the opcode adjustment (-1 for the byte forms).
    fn size_prefix(&mut self, size: u32) -> u8 {
        match size {
            1 => 1,
            2 => {
                self.byte(0x66);
                0
            }
            4 => 0,
            _ => {
                self.byte(0x48);
                0
            }
        }
    }

    /// `not r` (`neg`: false) or `neg r` of `size` bytes (al cl dl bl for
    /// bytes).
    pub fn not_neg(&mut self, neg: bool, size: u32, r: u8) {
        let adj = self.size_prefix(size);
        self.byte(0xf7 - adj);
        self.byte(0xc0 | ((2 + u8::from(neg)) << 3) | r);
    }

    /// `op dst, src` of `size` bytes on registers (al cl dl for bytes).
    pub fn alu_rr_x(&mut self, op: AluOp, size: u32, dst: u8, src: u8) {
        let adj = self.size_prefix(size);
        self.byte(op.rm_r() - adj);
        self.byte(0xc0 | (src << 3) | dst);
    }

    /// `op dst, imm` of `size` bytes: imm8, imm16, imm32 or (8 bytes) a
    /// sign-extended imm32, from the low bits of `imm`.
    pub fn alu_ri_x(&mut self, op: AluOp, size: u32, dst: u8, imm: u64) {
        let adj = self.size_prefix(size);
        let opc = if op == AluOp::Test { 0xf7 } else { 0x81 };
        self.byte(opc - adj);
        self.byte(0xc0 | (op.digit() << 3) | dst);
        match size {
            1 => self.byte(imm as u8),
            2 => self.buf.extend_from_slice(&(imm as u16).to_le_bytes()),
            _ => self.i32(imm as u32 as i32),
        }
    }

    /// `pushfq; pop rcx` (the host's RFLAGS into rcx).
    pub fn flags_to_rcx(&mut self) {
        self.buf.extend_from_slice(&[0x9c, 0x59]);
    }

    /// `setcc r8` (al cl dl).
    pub fn setcc_r(&mut self, cc: u8, r: u8) {
        self.byte(0x0f);
        self.byte(0x90 + cc);
        self.byte(0xc0 | r);
    }

    /// `cmovcc dst, src`.
    pub fn cmov_rr(&mut self, cc: u8, w: bool, dst: u8, src: u8) {
        self.rex_w(w);
        self.byte(0x0f);
        self.byte(0x40 + cc);
        self.byte(0xc0 | (dst << 3) | src);
    }

    /// `imul dst, src`.
    pub fn imul_rr(&mut self, w: bool, dst: u8, src: u8) {
        self.rex_w(w);
        self.byte(0x0f);
        self.byte(0xaf);
        self.byte(0xc0 | (dst << 3) | src);
    }

    /// `imul dst, src, imm32`.
    pub fn imul_rri(&mut self, w: bool, dst: u8, src: u8, imm: i32) {
        self.rex_w(w);
        self.byte(0x69);
        self.byte(0xc0 | (dst << 3) | src);
        self.i32(imm);
    }

    /// `call rax`.
    pub fn call_rax(&mut self) {
        self.buf.extend_from_slice(&[0xff, 0xd0]);
    }

    /// `test rax, rax`.
    pub fn test_rax(&mut self) {
        self.buf.extend_from_slice(&[0x48, 0x85, 0xc0]);
    }

    /// `push rbx; push r12; push r13; push r14; push r15; mov rbx, rdi`
    /// (the prologue: rbx = the `Cpu`, r12-r15 free for mirrors; five
    /// pushes realign the stack to 16 bytes for calls).
    pub fn prologue(&mut self) {
        self.buf.extend_from_slice(&[
            0x53, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57, 0x48, 0x89, 0xfb,
        ]);
    }

    /// `pop r15; pop r14; pop r13; pop r12; pop rbx; ret` (status in rax).
    pub fn epilogue(&mut self) {
        self.buf
            .extend_from_slice(&[0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5b, 0xc3]);
    }

    /// `mov rdi, rbx` (the `Cpu` as first argument).
    pub fn arg0_cpu(&mut self) {
        self.buf.extend_from_slice(&[0x48, 0x89, 0xdf]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encodings, checked against iced-x86's decoder.
    #[test]
    fn encodings_decode_as_intended() {
        let mut a = Asm::new();
        a.load(true, RAX, 0x10);
        a.load(false, RCX, 0x7fff_0000);
        a.store(true, RDX, 8);
        a.store_u8(3, 1);
        a.store_u8_from_al(4);
        a.store_i32(true, 16, -1);
        a.mov_imm(RSI, 0x1234_5678_9abc_def0);
        a.mov_imm(RDI, 5);
        a.alu_rr(AluOp::Sub, true, RAX, RCX);
        a.alu_ri(AluOp::Cmp, false, RAX, -5);
        a.alu_ri(AluOp::Test, true, RAX, 0x100);
        a.inc_dec(true, false, RAX);
        a.lea_rcx_rdx(true, RAX, 8, -16);
        a.lea_rcx(false, RAX, -8);
        a.lea_rcx(true, RAX, 0x100);
        a.setcc_mem(2, 0x20);
        a.cmp_mem32(0x40, 0xffff_fff0);
        a.call_rax();
        a.test_rax();
        a.mov_rr(true, RCX, RAX);
        a.shift_ri(7, true, RCX, 16);
        a.shift_ri(5, false, RDX, 12);
        a.xor_r_at_rdx(true, RCX);
        a.add_r_at_rdx8(true, RAX);
        a.add_r_mem(true, RDX, 0x30);
        a.load_at_rax(false, RAX);
        a.store_at_rax(true, RCX);
        a.cmp_mem8(0x50, 3);
        a.load_x(1, false, false, RCX, Mem::AtRax);
        a.load_x(2, false, false, RAX, Mem::Cpu(0x21));
        a.load_x(1, true, false, RDX, Mem::Cpu(0x22));
        a.load_x(1, true, true, RAX, Mem::AtRax);
        a.load_x(2, true, true, RCX, Mem::Cpu(0x24));
        a.load_x(2, true, false, RAX, Mem::AtRax);
        a.load_x(4, true, true, RDX, Mem::AtRax);
        a.load_x(4, false, false, RCX, Mem::Cpu(0x28));
        a.load_x(4, true, false, RAX, Mem::AtRax);
        a.load_x(8, false, true, RCX, Mem::AtRax);
        a.store_x(1, RCX, Mem::AtRax);
        a.store_x(1, RAX, Mem::Cpu(0x31));
        a.store_x(2, RDX, Mem::Cpu(0x32));
        a.store_x(4, RCX, Mem::AtRax);
        a.store_x(8, RSI, Mem::AtRax);
        a.alu_rr_x(AluOp::Add, 1, RAX, RCX);
        a.alu_rr_x(AluOp::Test, 1, RAX, RAX);
        a.alu_rr_x(AluOp::Cmp, 2, RCX, RDX);
        a.alu_rr_x(AluOp::Xor, 4, RAX, RCX);
        a.alu_rr_x(AluOp::Or, 8, RCX, RDX);
        a.alu_ri_x(AluOp::Sub, 1, RCX, 0x1ff);
        a.alu_ri_x(AluOp::Test, 1, RAX, 0x80);
        a.alu_ri_x(AluOp::And, 2, RCX, 0x1_8001);
        a.alu_ri_x(AluOp::Test, 2, RCX, 0xffff);
        a.alu_ri_x(AluOp::Cmp, 4, RCX, 0xffff_fffe);
        a.alu_ri_x(AluOp::Add, 8, RCX, u64::MAX);
        a.alu_ri_x(AluOp::Test, 8, RAX, 0x10);
        a.flags_to_rcx();
        a.setcc_r(0xf, RCX);
        a.cmov_rr(0xc, true, RAX, RCX);
        a.cmov_rr(0x5, false, RCX, RDX);
        a.shift_ri(4, false, RAX, 3);
        a.shift_cl(4, true, RAX);
        a.shift_cl(7, false, RDX);
        a.shift_ri(0, true, RAX, 5);
        a.shift_ri(1, false, RCX, 31);
        a.imul_rr(true, RAX, RCX);
        a.imul_rr(false, RCX, RDX);
        a.imul_rri(true, RAX, RCX, -3);
        a.imul_rri(false, RDX, RAX, 0x1234_5678);
        a.not_neg(false, 1, RCX);
        a.not_neg(true, 2, RAX);
        a.not_neg(false, 4, RDX);
        a.not_neg(true, 8, RAX);
        a.alu_rr_x(AluOp::Adc, 4, RAX, RCX);
        a.alu_rr_x(AluOp::Sbb, 1, RCX, RDX);
        a.alu_ri_x(AluOp::Adc, 2, RAX, 0x8000);
        a.alu_ri_x(AluOp::Sbb, 8, RCX, 0xffff_ffff_ffff_fff0);
        a.shift_ri_x(5, 2, RAX, 5);
        a.shift_ri_x(4, 1, RCX, 7);
        a.shift_ri_x(7, 4, RDX, 3);
        a.load(true, 12, 0x40);
        a.load(false, 15, 0x48);
        a.store(true, 13, 0x50);
        a.mov_rr(true, 14, RAX);
        a.mov_rr(false, RCX, 12);
        a.mov_rr(true, 15, 13);
        a.epilogue();
        let text: Vec<String> = {
            let code = a.finish().unwrap();
            let mut d = iced_x86::Decoder::new(64, &code, iced_x86::DecoderOptions::NONE);
            let mut f = iced_x86::IntelFormatter::new();
            let mut out = Vec::new();
            while d.can_decode() {
                let ins = d.decode();
                let mut s = String::new();
                iced_x86::Formatter::format(&mut f, &ins, &mut s);
                out.push(s);
            }
            out
        };
        assert_eq!(
            text,
            [
                "mov rax,[rbx+10h]",
                "mov ecx,[rbx+7FFF0000h]",
                "mov [rbx+8],rdx",
                "mov byte ptr [rbx+3],1",
                "mov [rbx+4],al",
                "mov qword ptr [rbx+10h],0FFFFFFFFFFFFFFFFh",
                "mov rsi,123456789ABCDEF0h",
                "mov edi,5",
                "sub rax,rcx",
                "cmp eax,0FFFFFFFBh",
                "test rax,100h",
                "dec eax",
                "lea rax,[rcx+rdx*8-10h]",
                "lea eax,[rcx-8]",
                "lea rax,[rcx+100h]",
                "setb [rbx+20h]",
                "cmp dword ptr [rbx+40h],0FFFFFFF0h",
                "call rax",
                "test rax,rax",
                "mov rcx,rax",
                "sar rcx,10h",
                "shr edx,0Ch",
                "xor rcx,[rdx]",
                "add rax,[rdx+8]",
                "add rdx,[rbx+30h]",
                "mov eax,[rax]",
                "mov [rax],rcx",
                "cmp byte ptr [rbx+50h],3",
                "movzx ecx,byte ptr [rax]",
                "movzx eax,word ptr [rbx+21h]",
                "movsx edx,byte ptr [rbx+22h]",
                "movsx rax,byte ptr [rax]",
                "movsx rcx,word ptr [rbx+24h]",
                "movsx eax,word ptr [rax]",
                "movsxd rdx,[rax]",
                "mov ecx,[rbx+28h]",
                "mov eax,[rax]",
                "mov rcx,[rax]",
                "mov [rax],cl",
                "mov [rbx+31h],al",
                "mov [rbx+32h],dx",
                "mov [rax],ecx",
                "mov [rax],rsi",
                "add al,cl",
                "test al,al",
                "cmp cx,dx",
                "xor eax,ecx",
                "or rcx,rdx",
                "sub cl,0FFh",
                "test al,80h",
                "and cx,8001h",
                "test cx,0FFFFh",
                "cmp ecx,0FFFFFFFEh",
                "add rcx,0FFFFFFFFFFFFFFFFh",
                "test rax,10h",
                "pushfq",
                "pop rcx",
                "setg cl",
                "cmovl rax,rcx",
                "cmovne ecx,edx",
                "shl eax,3",
                "shl rax,cl",
                "sar edx,cl",
                "rol rax,5",
                "ror ecx,1Fh",
                "imul rax,rcx",
                "imul ecx,edx",
                "imul rax,rcx,0FFFFFFFFFFFFFFFDh",
                "imul edx,eax,12345678h",
                "not cl",
                "neg ax",
                "not edx",
                "neg rax",
                "adc eax,ecx",
                "sbb cl,dl",
                "adc ax,8000h",
                "sbb rcx,0FFFFFFFFFFFFFFF0h",
                "shr ax,5",
                "shl cl,7",
                "sar edx,3",
                "mov r12,[rbx+40h]",
                "mov r15d,[rbx+48h]",
                "mov [rbx+50h],r13",
                "mov r14,rax",
                "mov ecx,r12d",
                "mov r15,r13",
                "pop r15",
                "pop r14",
                "pop r13",
                "pop r12",
                "pop rbx",
                "ret",
            ]
        );
    }
}

/// The forms block chaining uses (`jit::chain`): loads and compares through
/// a base register other than rbx (rsi: the chain slot; rcx: a pointer the
/// `Cpu` holds), and the jump into the next translation.
impl Asm {
    /// How far a translation's body is from its entry (chaining jumps
    /// there, with rbx already the `Cpu` and the stack as after the
    /// prologue).
    pub const PROLOGUE_LEN: usize = 12;

    /// ModRM and disp32 for `[base + disp]`, `base` one of rax rcx rdx rbx
    /// rsi rdi (no SIB byte needed).
    fn base_disp(&mut self, reg: u8, base: u8, disp: usize) {
        debug_assert!(base < 8 && base != 4 && base != 5);
        self.byte(0x80 | (reg << 3) | base);
        self.i32(disp as i32);
    }

    /// `mov r, [base + disp]` (32-bit loads zero-extend).
    pub fn load_from(&mut self, w: bool, r: u8, base: u8, disp: usize) {
        self.rex_w(w);
        self.byte(0x8b);
        self.base_disp(r, base, disp);
    }

    /// `cmp r, [base + disp]`.
    pub fn cmp_r_mem(&mut self, w: bool, r: u8, base: u8, disp: usize) {
        self.rex_w(w);
        self.byte(0x3b);
        self.base_disp(r, base, disp);
    }

    /// `cmp dword [base + disp], imm8` (sign-extended), or with `byte`
    /// `cmp byte [base + disp], imm8`.
    pub fn cmp_mem_imm8(&mut self, byte: bool, base: u8, disp: usize, imm: i8) {
        self.byte(if byte { 0x80 } else { 0x83 });
        self.base_disp(7, base, disp);
        self.byte(imm as u8);
    }

    /// `movzx r32, byte [rbx + disp]`.
    pub fn movzx_r32_m8(&mut self, r: u8, disp: usize) {
        self.byte(0x0f);
        self.byte(0xb6);
        self.base_disp(r, RBX, disp);
    }

    /// `setcc r8` (al, cl, dl or bl: no REX needed).
    pub fn setcc_r8(&mut self, cc: u8, r: u8) {
        debug_assert!(r < 4);
        self.byte(0x0f);
        self.byte(0x90 | cc);
        self.byte(0xc0 | r);
    }

    /// `inc qword [rbx + disp]`.
    pub fn inc_mem64(&mut self, disp: usize) {
        self.byte(0x48);
        self.byte(0xff);
        self.base_disp(0, RBX, disp);
    }

    /// `lea r, [rax + disp8]` (64-bit).
    pub fn lea_rax_disp8(&mut self, r: u8, disp: i8) {
        debug_assert!(r < 8);
        self.byte(0x48);
        self.byte(0x8d);
        self.byte(0x40 | (r << 3));
        self.byte(disp as u8);
    }

    /// `jmp rax`.
    pub fn jmp_rax(&mut self) {
        self.byte(0xff);
        self.byte(0xe0);
    }
}

#[cfg(test)]
mod chain_form_tests {
    use super::*;

    #[test]
    fn the_chaining_forms_decode_as_intended() {
        let mut a = Asm::new();
        a.prologue();
        assert_eq!(a.buf.len(), Asm::PROLOGUE_LEN);
        a.load_from(true, RAX, RSI, 0);
        a.load_from(false, RCX, RSI, 0x18);
        a.load_from(true, RCX, RCX, 0);
        a.cmp_r_mem(true, RCX, RSI, 8);
        a.cmp_r_mem(true, RCX, 3, 0x700);
        a.cmp_mem_imm8(false, RCX, 0, 0);
        a.cmp_mem_imm8(true, RCX, 0, 0);
        a.movzx_r32_m8(RDX, 0x6c0);
        a.setcc_r8(4, RDX);
        a.inc_mem64(0x720);
        a.lea_rax_disp8(RCX, 7);
        a.jmp_rax();
        let code = a.finish().unwrap();
        let mut d = iced_x86::Decoder::new(64, &code, iced_x86::DecoderOptions::NONE);
        let mut f = iced_x86::IntelFormatter::new();
        let mut text = Vec::new();
        while d.can_decode() {
            let ins = d.decode();
            let mut s = String::new();
            iced_x86::Formatter::format(&mut f, &ins, &mut s);
            text.push(s);
        }
        assert_eq!(
            text,
            [
                "push rbx",
                "push r12",
                "push r13",
                "push r14",
                "push r15",
                "mov rbx,rdi",
                "mov rax,[rsi]",
                "mov ecx,[rsi+18h]",
                "mov rcx,[rcx]",
                "cmp rcx,[rsi+8]",
                "cmp rcx,[rbx+700h]",
                "cmp dword ptr [rcx],0",
                "cmp byte ptr [rcx],0",
                "movzx edx,byte ptr [rbx+6C0h]",
                "sete dl",
                "inc qword ptr [rbx+720h]",
                "lea rcx,[rax+7]",
                "jmp rax",
            ]
        );
    }
}
