//! Rate-limited logging for messages a guest can trigger at will (a bad DMA
//! descriptor, a BAR placed over another, a broken virtqueue): each call
//! site logs at most `burst` lines per `interval`; the first line after a
//! quiet spell says how many were suppressed meanwhile. A guest can then
//! not flood the host's log, and the first occurrences are still seen.
//!
//! It must not know what the messages are about.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A call site's budget. Use through `guest_warn!` (one static per call site).
pub struct RateLimit {
    burst: u32,
    interval: Duration,
    state: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(burst: u32, interval: Duration) -> RateLimit {
        RateLimit {
            burst,
            interval,
            state: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`: `Some(k)` with the number of
    /// lines suppressed since the last one logged, `None` to stay quiet.
    pub fn check_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expired = w
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= self.interval);
        if expired {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged < self.burst {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }

    /// Log `args` at `level` if the budget allows.
    pub fn log(&self, level: log::Level, args: std::fmt::Arguments<'_>) {
        match self.check_at(Instant::now()) {
            Some(0) => log::log!(level, "{args}"),
            Some(k) => log::log!(level, "{args} ({k} similar messages suppressed)"),
            None => {}
        }
    }
}

/// Lines per call site and interval `guest_warn!` allows.
pub const BURST: u32 = 10;
/// The interval `guest_warn!` counts over.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// `log::warn!` for guest-triggerable conditions: at most `BURST` lines per
/// `INTERVAL` from this call site, then a count of what was suppressed.
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::ratelimit::RateLimit =
            $crate::ratelimit::RateLimit::new($crate::ratelimit::BURST, $crate::ratelimit::INTERVAL);
        LIMIT.log(::log::Level::Warn, format_args!($($arg)+));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_silence_then_a_count_of_what_was_suppressed() {
        let r = RateLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let got: Vec<Option<u64>> = (0..5).map(|_| r.check_at(t0)).collect();
        assert_eq!(got, vec![Some(0), Some(0), Some(0), None, None]);
        // Still inside the interval: quiet.
        assert_eq!(r.check_at(t0 + Duration::from_secs(9)), None);
        // The next interval: logs again and reports the three suppressed.
        assert_eq!(r.check_at(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(r.check_at(t0 + Duration::from_secs(10)), Some(0));
    }

    #[test]
    fn a_flood_logs_a_bounded_number_of_lines() {
        let r = RateLimit::new(BURST, INTERVAL);
        let t0 = Instant::now();
        let logged = (0..100_000u64)
            .filter(|i| r.check_at(t0 + Duration::from_millis(*i)).is_some())
            .count();
        // 100 s of flooding: BURST lines per 10 s window.
        assert_eq!(logged, 10 * BURST as usize);
    }
}
