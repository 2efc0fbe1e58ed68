//! Port I/O: IN and OUT (INS/OUTS are in `string.rs`). The permission check
//! (IOPL, TSS bitmap) is the system group's `check_io`.

use iced_x86::Instruction;

use crate::cpu::{Cpu, Res};

pub fn in_(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let port = cpu.read_op(ins, 1)? as u16;
    let size = cpu.op_size(ins, 0);
    cpu.check_io(port, size)?;
    let v = cpu.io_in(port, size)?;
    cpu.write_op(ins, 0, v)
}

pub fn out(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let port = cpu.read_op(ins, 0)? as u16;
    let size = cpu.op_size(ins, 1);
    cpu.check_io(port, size)?;
    let v = cpu.read_op(ins, 1)?;
    cpu.io_out(port, size, v)
}
