//! Write every test kernel to a directory (default: the current one), for
//! trying them with `kite run --kernel`.

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let kernels = [
        ("hello.elf", kite_testkernels::hello()),
        ("exit_with_3.elf", kite_testkernels::exit_with(3)),
        ("compute.elf", kite_testkernels::compute(0x21)),
        ("exceptions.elf", kite_testkernels::exceptions(0x22)),
        ("hello32.elf", kite_testkernels::hello32(0x11)),
        ("print_cmdline.elf", kite_testkernels::print_cmdline(0x12)),
        ("halt.elf", kite_testkernels::halt()),
        ("triple_fault.elf", kite_testkernels::triple_fault()),
        ("i8042_reset.elf", kite_testkernels::i8042_reset()),
        ("echo.elf", kite_testkernels::echo(0x05)),
        ("counter.elf", kite_testkernels::counter()),
    ];
    for (name, bytes) in kernels {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
