//! A few sessions of one model. `Session::run` needs `&mut`, so each session
//! sits behind its own lock and a caller takes whichever is free.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::Instant;

use ort::session::Session;

pub struct Pool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Runs so far and their time with a session held, for the metrics.
    runs: AtomicU64,
    micros: AtomicU64,
}

impl Pool {
    pub fn new(sessions: Vec<Session>) -> Pool {
        assert!(!sessions.is_empty());
        Pool {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            runs: AtomicU64::new(0),
            micros: AtomicU64::new(0),
        }
    }

    /// (runs, seconds in them) since the pool was made.
    pub fn usage(&self) -> (u64, f64) {
        (self.runs.load(Ordering::Relaxed), self.micros.load(Ordering::Relaxed) as f64 / 1e6)
    }

    fn timed<R>(&self, session: &mut Session, f: impl FnOnce(&mut Session) -> R) -> R {
        let started = Instant::now();
        let out = f(session);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        out
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(mut s) => return self.timed(&mut s, f),
                Err(TryLockError::Poisoned(p)) => return self.timed(&mut p.into_inner(), f),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut s = self.sessions[start % n].lock().unwrap_or_else(|p| p.into_inner());
        self.timed(&mut s, f)
    }
}
