//! The policy in force, swapped whole when a valid edit is loaded. A
//! request takes the policy once and uses it for both stages, so a reload
//! in the middle of a request never mixes two versions.

use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::{Policy, Problem};

/// The active policy and the last edit that was refused.
pub struct Policies {
    current: RwLock<Arc<Policy>>,
    status: RwLock<Status>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The active policy's version (a content hash).
    pub version: String,
    /// When it was loaded, ms since the epoch.
    pub loaded_at_ms: i64,
    pub rules: Vec<String>,
    /// The last version that failed to load, while the active one kept serving.
    pub rejected: Option<Rejected>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub version: String,
    pub at_ms: i64,
    pub problems: Vec<Problem>,
}

impl Policies {
    pub fn new(policy: Policy, now_ms: i64) -> Policies {
        let status = Status::of(&policy, now_ms, None);
        Policies { current: RwLock::new(Arc::new(policy)), status: RwLock::new(status) }
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a newly loaded policy in force. A rejected edit stays reported
    /// only until a valid one replaces it.
    pub fn replace(&self, policy: Policy, now_ms: i64) {
        let status = Status::of(&policy, now_ms, None);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// Records an edit that failed to load; the active policy stays.
    pub fn reject(&self, version: String, problems: Vec<Problem>, now_ms: i64) {
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.rejected = Some(Rejected { version, at_ms: now_ms, problems });
    }

    pub fn status(&self) -> Status {
        self.status.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Status {
    fn of(policy: &Policy, now_ms: i64, rejected: Option<Rejected>) -> Status {
        Status {
            version: policy.version().to_string(),
            loaded_at_ms: now_ms,
            rules: policy.rule_ids().into_iter().map(String::from).collect(),
            rejected,
        }
    }
}
