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

/// Leave to call: report how it went with [`Permit::record`]. A probe
/// dropped without a result (its caller went away, or it never got a
/// slot) says nothing about the backend, so the next request probes
/// instead; without that, the breaker would wait forever for a verdict.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// The first request after the cooldown: its result decides.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records how the call went (`healthy`: the backend answered as a
    /// working backend does, even with a refusal of that request).
    pub fn record(mut self, healthy: bool, now: Instant) {
        self.recorded = true;
        let b = self.breaker;
        let mut state = b.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = match (&*state, healthy) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < b.threshold => {
                State::Closed { failures: failures + 1 }
            }
            (_, false) => State::Open { until: now + b.cooldown },
        };
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut state = self.breaker.state.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(*state, State::Probing) {
                *state = State::Open { until: Instant::now() };
            }
        }
    }
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker { state: Mutex::new(State::Closed { failures: 0 }), threshold: threshold.max(1), cooldown }
    }

    /// None: the breaker is open, fail fast.
    pub fn permit(&self, now: Instant) -> Option<Permit<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now >= until => {
                *state = State::Probing;
                true
            }
            State::Open { .. } | State::Probing => return None,
        };
        Some(Permit { breaker: self, probe, recorded: false })
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
        let s = Duration::from_secs;
        for _ in 0..2 {
            let p = b.permit(t).unwrap();
            assert!(!p.is_probe());
            p.record(false, t);
        }
        assert!(!b.is_open(), "two failures are not three");
        b.permit(t).unwrap().record(false, t);
        assert!(b.permit(t + s(5)).is_none(), "open: fail fast");
        let probe = b.permit(t + s(11)).unwrap();
        assert!(probe.is_probe());
        assert!(b.permit(t + s(11)).is_none(), "one probe at a time");
        probe.record(false, t + s(12));
        assert!(b.permit(t + s(13)).is_none(), "a failed probe opens it again");
        let probe = b.permit(t + s(23)).unwrap();
        assert!(probe.is_probe());
        probe.record(true, t + s(23));
        assert!(!b.permit(t + s(23)).unwrap().is_probe());
        assert!(!b.is_open());
    }

    #[test]
    fn a_probe_dropped_without_a_result_lets_the_next_request_probe() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t = Instant::now();
        b.permit(t).unwrap().record(false, t);
        drop(b.permit(t + Duration::from_secs(11)).unwrap());
        let next = b.permit(Instant::now() + Duration::from_secs(11)).expect("not stuck open");
        assert!(next.is_probe());
        next.record(true, Instant::now());
        assert!(!b.is_open());
    }
}
