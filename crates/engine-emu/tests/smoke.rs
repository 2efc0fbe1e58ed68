//! Smoke test of the emu engine core: real-mode code doing port I/O and HLT.

use iced_x86::code_asm::*;
use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::{Hypervisor, MemoryRegion, Segment, VcpuExit, VmConfig};

#[test]
fn real_mode_port_io_and_hlt() {
    let hv = EmuHypervisor::new();
    let vm = hv
        .create_vm(&VmConfig {
            irqchip: false,
            pit: false,
            vcpus: 1,
        })
        .unwrap();
    let mut mem = vec![0u8; 1 << 20];
    let mut a = CodeAssembler::new(16).unwrap();
    a.mov(al, 0x41u32).unwrap();
    a.add(al, 1u32).unwrap();
    a.out(0x10u32, al).unwrap();
    a.mov(dx, 0x20u32).unwrap();
    a.in_(al, dx).unwrap();
    a.mov(byte_ptr(0x500), al).unwrap();
    a.mov(ebx, dword_ptr(0x0)).unwrap(); // unbacked? no: RAM
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    mem[0x1000..0x1000 + code.len()].copy_from_slice(&code);
    unsafe {
        vm.set_memory_region(MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: mem.len() as u64,
            host_addr: mem.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        })
        .unwrap();
    }
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let mut s = vcpu.sregs().unwrap();
    s.cs = Segment::real_mode(0, true);
    vcpu.set_sregs(&s).unwrap();
    let mut r = vcpu.regs().unwrap();
    r.rip = 0x1000;
    vcpu.set_regs(&r).unwrap();
    match vcpu.run().unwrap() {
        VcpuExit::IoOut { port, size, data } => {
            assert_eq!((port, size, data.to_vec()), (0x10, 1, vec![0x42]));
        }
        e => panic!("unexpected {e:?}"),
    }
    match vcpu.run().unwrap() {
        VcpuExit::IoIn { port, size, data } => {
            assert_eq!((port, size), (0x20, 1));
            data[0] = 0x99;
        }
        e => panic!("unexpected {e:?}"),
    }
    match vcpu.run().unwrap() {
        VcpuExit::Hlt => {}
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(mem[0x500], 0x99);
    assert_eq!(vcpu.regs().unwrap().rax & 0xff, 0x99);
}
