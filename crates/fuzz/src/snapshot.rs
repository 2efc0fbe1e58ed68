//! The snapshot reader: what `--incoming` reads from a file or a socket
//! (hostile: a file from anywhere, a peer on the network). The stream
//! decoder checks magic, versions, lengths and every section's CRC; the
//! RAM sections' page records are parsed against a small guest's RAM and
//! applied; the engine-neutral vCPU and VM states are decoded. Invariants:
//! no panic, no write outside the guest's RAM (the memory abstraction
//! refuses it), and a stream the decoder accepts re-encodes to a stream it
//! accepts again with the same sections.

use kite_hypervisor::state::{VcpuState, VmState};
use kite_machine::snapshot::format::{decode, StreamWriter};
use kite_machine::snapshot::ram::RamPages;

use crate::support::guest_memory;

const RAM: usize = 1 << 20;

pub fn snapshot(data: &[u8]) {
    let _ = VcpuState::from_bytes(data);
    let _ = VmState::from_bytes(data);
    let Ok(stream) = decode(data) else {
        return;
    };
    let mem = guest_memory(RAM);
    for s in &stream.sections {
        if s.name.starts_with("ram") {
            if let Ok(pages) = RamPages::parse(s.data, &[(0, RAM as u64)]) {
                let _ = pages.apply_delta(&mem);
            }
        }
        let _ = VcpuState::from_bytes(s.data);
        let _ = VmState::from_bytes(s.data);
    }
    // What was accepted survives a round trip through the writer.
    let mut enc = match StreamWriter::new(Vec::new(), &stream.header) {
        Ok(e) => e,
        Err(e) => panic!("re-encoding an accepted header: {e}"),
    };
    for s in &stream.sections {
        if let Err(e) = enc.section(s.name, s.version, s.data) {
            panic!("re-encoding section {}: {e}", s.name);
        }
    }
    let bytes = match enc.finish() {
        Ok(b) => b,
        Err(e) => panic!("finishing the re-encoded stream: {e}"),
    };
    match decode(&bytes) {
        Ok(again) => assert_eq!(again.sections, stream.sections, "sections changed"),
        Err(e) => panic!("a re-encoded accepted stream is refused: {e}"),
    }
}
