//! The per-engine conformance suite (being written on branch kvm).
