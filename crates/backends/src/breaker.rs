//! A circuit breaker per backend: after `threshold` failures in a row it
//! opens and requests fail fast for `cooldown`; then one request probes,
//! and its result closes the breaker or opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is under way; others fail fast until it reports.
    Probing,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

/// Whether a request may go.
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// The first request after the cooldown: its result decides.
    Probe,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker { state: Mutex::new(State::Closed { failures: 0 }), threshold: threshold.max(1), cooldown }
    }

    /// None: the breaker is open, fail fast.
    pub fn permit(&self, now: Instant) -> Option<Permit> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => Some(Permit::Go),
            State::Open { until } if now >= until => {
                *state = State::Probing;
                Some(Permit::Probe)
            }
            State::Open { .. } | State::Probing => None,
        }
    }

    /// Records how a permitted request went (`healthy`: the backend answered
    /// as a working backend does, even with a refusal of that request).
    pub fn record(&self, healthy: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = match (&*state, healthy) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => {
                State::Closed { failures: failures + 1 }
            }
            (_, false) => State::Open { until: now + self.cooldown },
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.permit(t), Some(Permit::Go));
            b.record(false, t);
        }
        assert!(!b.is_open(), "two failures are not three");
        b.record(false, t);
        assert_eq!(b.permit(t + Duration::from_secs(5)), None, "open: fail fast");
        assert_eq!(b.permit(t + Duration::from_secs(11)), Some(Permit::Probe));
        assert_eq!(b.permit(t + Duration::from_secs(11)), None, "one probe at a time");
        b.record(false, t + Duration::from_secs(12));
        assert_eq!(b.permit(t + Duration::from_secs(13)), None, "a failed probe opens it again");
        assert_eq!(b.permit(t + Duration::from_secs(23)), Some(Permit::Probe));
        b.record(true, t + Duration::from_secs(23));
        assert_eq!(b.permit(t + Duration::from_secs(23)), Some(Permit::Go));
        assert!(!b.is_open());
    }
}
