//! kvm_vcpu_events and kvm_mp_state to and from `EventState` and `MpState`.

use kite_hypervisor::state::{EventState, MpState, PendingException};
use kvm_bindings::{
    kvm_mp_state, kvm_vcpu_events, KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_SIPI_RECEIVED, KVM_MP_STATE_UNINITIALIZED, KVM_VCPUEVENT_VALID_NMI_PENDING,
    KVM_VCPUEVENT_VALID_SHADOW, KVM_VCPUEVENT_VALID_SIPI_VECTOR, KVM_X86_SHADOW_INT_MOV_SS,
    KVM_X86_SHADOW_INT_STI,
};

pub fn events_from_kvm(e: &kvm_vcpu_events) -> EventState {
    let x = &e.exception;
    EventState {
        exception: (x.injected != 0 || x.pending != 0).then_some(PendingException {
            vector: x.nr & 31,
            error_code: (x.has_error_code != 0).then_some(x.error_code),
            injected: x.injected != 0,
        }),
        interrupt: (e.interrupt.injected != 0).then_some(e.interrupt.nr),
        nmi_pending: e.nmi.injected != 0 || e.nmi.pending != 0,
        nmi_masked: e.nmi.masked != 0,
        interrupt_shadow: u32::from(e.interrupt.shadow)
            & (KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI)
            != 0,
        init_pending: e.smi.latched_init != 0,
    }
}

/// The events for `s`; `sipi_vector` from the activity state.
pub fn events_to_kvm(s: &EventState, sipi_vector: u8) -> kvm_vcpu_events {
    let mut e = kvm_vcpu_events::default();
    if let Some(x) = s.exception {
        // Without KVM_CAP_EXCEPTION_PAYLOAD KVM takes only injected ones;
        // delivering a pending one from the start is the same to the guest.
        e.exception.injected = 1;
        e.exception.nr = x.vector & 31;
        e.exception.has_error_code = u8::from(x.error_code.is_some());
        e.exception.error_code = x.error_code.unwrap_or(0);
    }
    if let Some(v) = s.interrupt {
        e.interrupt.injected = 1;
        e.interrupt.nr = v;
    }
    if s.interrupt_shadow {
        e.interrupt.shadow = KVM_X86_SHADOW_INT_STI as u8;
    }
    e.nmi.pending = u8::from(s.nmi_pending);
    e.nmi.masked = u8::from(s.nmi_masked);
    e.sipi_vector = u32::from(sipi_vector);
    e.flags = KVM_VCPUEVENT_VALID_NMI_PENDING
        | KVM_VCPUEVENT_VALID_SHADOW
        | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
    e
}

pub fn mp_state_from_kvm(m: &kvm_mp_state, sipi_vector: u32) -> MpState {
    match m.mp_state {
        KVM_MP_STATE_HALTED => MpState::Halted,
        KVM_MP_STATE_INIT_RECEIVED | KVM_MP_STATE_UNINITIALIZED => MpState::WaitForSipi,
        KVM_MP_STATE_SIPI_RECEIVED => MpState::SipiReceived(sipi_vector as u8),
        _ => MpState::Runnable,
    }
}

/// The MP state for `s` and the SIPI vector it carries (0 if none).
pub fn mp_state_to_kvm(s: &MpState) -> (kvm_mp_state, u8) {
    let (mp_state, vector) = match *s {
        MpState::Runnable => (kvm_bindings::KVM_MP_STATE_RUNNABLE, 0),
        MpState::Halted => (KVM_MP_STATE_HALTED, 0),
        MpState::WaitForSipi => (KVM_MP_STATE_INIT_RECEIVED, 0),
        MpState::SipiReceived(v) => (KVM_MP_STATE_SIPI_RECEIVED, v),
    };
    (kvm_mp_state { mp_state }, vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_mp_state_round_trip() {
        let s = EventState {
            exception: Some(PendingException {
                vector: 14,
                error_code: Some(6),
                injected: true,
            }),
            interrupt: Some(0x31),
            nmi_pending: true,
            nmi_masked: true,
            interrupt_shadow: true,
            init_pending: false,
        };
        let k = events_to_kvm(&s, 0);
        assert_eq!(k.exception.nr, 14);
        assert_eq!(k.interrupt.nr, 0x31);
        assert_eq!(events_from_kvm(&k), s);
        let quiet = EventState::default();
        assert_eq!(events_from_kvm(&events_to_kvm(&quiet, 0)), quiet);
        for m in [
            MpState::Runnable,
            MpState::Halted,
            MpState::WaitForSipi,
            MpState::SipiReceived(0x9f),
        ] {
            let (k, v) = mp_state_to_kvm(&m);
            assert_eq!(mp_state_from_kvm(&k, u32::from(v)), m);
        }
    }
}
