//! Pure conversions between KVM's state structures (kvm_lapic_state,
//! kvm_pic_state, kvm_ioapic_state, kvm_pit_state2, kvm_xsave,
//! kvm_vcpu_events, kvm_mp_state) and the engine-neutral structs of
//! `kite_hypervisor::state`. No ioctls here (`vcpu/state.rs` and
//! `vm/state.rs` make them), so each conversion is unit-tested on its own.

pub mod events;
pub mod irqchip;
pub mod lapic;
pub mod xsave;
