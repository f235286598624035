//! A few sessions of one model. `Session::run` needs `&mut`, so each session
//! sits behind its own lock and a caller takes whichever is free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use ort::session::Session;

pub struct Pool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(sessions: Vec<Session>) -> Pool {
        assert!(!sessions.is_empty());
        Pool { sessions: sessions.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(mut s) => return f(&mut s),
                Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut s = self.sessions[start % n].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }
}
