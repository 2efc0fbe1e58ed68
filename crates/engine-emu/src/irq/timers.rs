//! The irqchip's timer thread: one host thread per VM sleeping until the
//! earliest armed deadline (local APIC timers, PIT channel 0), then firing
//! it so that a timer interrupt becomes pending, and a halted vCPU wakes,
//! without the vCPU having to poll. Like KVM's hrtimers; costs nothing while
//! no timer is armed.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{lock, IrqChip};

/// Whose deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Pit,
    /// A vCPU's local APIC timer, by registration index.
    Vcpu(usize),
}

#[derive(Debug, Default)]
struct State {
    deadlines: BTreeMap<TimerKey, Instant>,
    shutdown: bool,
}

/// Armed deadlines, shared by the irqchip and its timer thread.
#[derive(Debug, Default)]
pub(crate) struct TimerScheduler {
    state: Mutex<State>,
    cv: Condvar,
}

impl TimerScheduler {
    /// Arm (Some) or disarm (None) `key`'s deadline.
    pub(crate) fn set(&self, key: TimerKey, deadline: Option<Instant>) {
        let mut st = lock(&self.state);
        match deadline {
            Some(d) => {
                st.deadlines.insert(key, d);
            }
            None => {
                st.deadlines.remove(&key);
            }
        }
        drop(st);
        self.cv.notify_one();
    }

    pub(crate) fn shutdown(&self) {
        lock(&self.state).shutdown = true;
        self.cv.notify_one();
    }

    fn run(&self, chip: &Weak<IrqChip>) {
        let mut st = lock(&self.state);
        loop {
            if st.shutdown {
                return;
            }
            let now = Instant::now();
            let due: Vec<TimerKey> = st
                .deadlines
                .iter()
                .filter(|(_, &d)| d <= now)
                .map(|(&k, _)| k)
                .collect();
            if !due.is_empty() {
                for k in &due {
                    st.deadlines.remove(k);
                }
                drop(st);
                match chip.upgrade() {
                    Some(chip) => {
                        for k in due {
                            chip.fire_timer(k, now);
                        }
                    }
                    None => return,
                }
                st = lock(&self.state);
                continue;
            }
            let next = st.deadlines.values().min().copied();
            st = match next {
                None => self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    self.cv
                        .wait_timeout(st, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Start the timer thread; None if the host refused a thread (timers then
/// run only when a vCPU polls or halts).
pub(crate) fn spawn(sched: &Arc<TimerScheduler>, chip: Weak<IrqChip>) -> Option<JoinHandle<()>> {
    let sched = Arc::clone(sched);
    std::thread::Builder::new()
        .name("kite-irq-timer".into())
        .spawn(move || {
            kite_sandbox::thread_started(kite_sandbox::Role::Timer);
            sched.run(&chip)
        })
        .ok()
}
