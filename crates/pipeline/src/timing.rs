//! How long each step of the request path takes, kept as histograms the
//! operator's metrics read. Counting only: nothing here does I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The steps of the request path, as the metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Decoding references and a backend's outputs.
    Decode,
    /// Vision on the references.
    VisionReferences,
    /// Vision on the outputs.
    VisionOutputs,
    /// Both policy stages.
    Policy,
    /// The built-in generator, or the wait for a backend.
    Generate,
    /// Embedding the mark and reading it back.
    Watermark,
    /// Encoding outputs (every strength tried).
    Encode,
    /// Signing the C2PA manifests.
    Sign,
    /// Committing the request's records.
    Store,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Decode,
        Step::VisionReferences,
        Step::VisionOutputs,
        Step::Policy,
        Step::Generate,
        Step::Watermark,
        Step::Encode,
        Step::Sign,
        Step::Store,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Decode => "decode",
            Step::VisionReferences => "vision_references",
            Step::VisionOutputs => "vision_outputs",
            Step::Policy => "policy",
            Step::Generate => "generate",
            Step::Watermark => "watermark",
            Step::Encode => "encode",
            Step::Sign => "sign",
            Step::Store => "store",
        }
    }
}

/// Upper bounds of the buckets, in seconds: from a policy evaluation
/// (well under a millisecond) to a slow backend (minutes).
pub const BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// A latency histogram that many threads add to without a lock.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is over the largest bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram as read at one moment: cumulative counts per bucket bound
/// (the `+Inf` one last), the count, and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0;
        let cumulative: Vec<u64> = self
            .counts
            .iter()
            .map(|c| {
                running += c.load(Ordering::Relaxed);
                running
            })
            .collect();
        Snapshot { count: running, cumulative, sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6 }
    }
}

/// One histogram per [`Step`].
#[derive(Debug, Default)]
pub struct StepTimes {
    steps: [Histogram; Step::ALL.len()],
}

impl StepTimes {
    pub fn record(&self, step: Step, elapsed: Duration) {
        self.steps[step as usize].record(elapsed);
    }

    /// Runs `work`, counting its time as `step`'s (whether it succeeds or not).
    pub fn time<T>(&self, step: Step, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.record(step, started.elapsed());
        out
    }

    /// Counts the time from now until the guard is dropped as `step`'s.
    pub fn timer(&self, step: Step) -> StepTimer<'_> {
        StepTimer { times: self, step, started: Instant::now() }
    }

    pub fn snapshot(&self, step: Step) -> Snapshot {
        self.steps[step as usize].snapshot()
    }
}

/// See [`StepTimes::timer`].
pub struct StepTimer<'a> {
    times: &'a StepTimes,
    step: Step,
    started: Instant,
}

impl Drop for StepTimer<'_> {
    fn drop(&mut self) {
        self.times.record(self.step, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_adds_up() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 40, 200_000] {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.cumulative.len(), BUCKETS.len() + 1);
        // <= 1 ms: one; <= 5 ms: three; <= 50 ms: four; over 120 s: only in +Inf.
        assert_eq!((s.cumulative[0], s.cumulative[2], s.cumulative[5]), (1, 3, 4));
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 4);
        assert_eq!(s.cumulative[BUCKETS.len()], 5);
        assert!((s.sum_seconds - 200.046).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn every_step_has_its_own_histogram() {
        let t = StepTimes::default();
        t.record(Step::Sign, Duration::from_millis(2));
        assert_eq!(t.time(Step::Store, || 7), 7);
        for step in Step::ALL {
            let expected = u64::from(matches!(step, Step::Sign | Step::Store));
            assert_eq!(t.snapshot(step).count, expected, "{}", step.as_str());
        }
    }
}
