//! Write the CPU-bound benchmark kernel (the compute kernel repeated ROUNDS
//! times) to PATH: `cargo run -p kite-testkernels --example bench_kernel -- PATH ROUNDS`.

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_kernel PATH ROUNDS";
    let path = args.next().ok_or(usage)?;
    let rounds: u32 = args
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("ROUNDS: {e}"))?;
    std::fs::write(&path, kite_testkernels::compute_rounds(0x21, rounds))
        .map_err(|e| format!("{path}: {e}"))
}
