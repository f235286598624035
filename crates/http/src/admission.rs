//! Admission of CPU-bound work (vision, generation, enrollment): a bounded
//! number waits, a bounded number runs, each on a blocking thread.

use std::sync::Arc;

use likeness_codes::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, AppState, HttpConfig};

pub(crate) struct Admission {
    /// CPU slots. A permit travels into the blocking job, so a client that
    /// hangs up does not free its slot while its work still runs.
    slots: Arc<Semaphore>,
    /// Running plus waiting generations.
    pending: Arc<Semaphore>,
}

impl Admission {
    pub(crate) fn new(config: &HttpConfig) -> Admission {
        let running = config.max_concurrent_generations.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(running)),
            pending: Arc::new(Semaphore::new(config.max_pending_generations.max(running))),
        }
    }
}

/// A place among the generations running or waiting.
pub(crate) struct Admitted {
    _place: OwnedSemaphorePermit,
}

fn overloaded() -> ApiError {
    ApiError::new(ErrorCode::ServerOverloaded, "too many requests in progress; retry later")
}

impl AppState {
    /// Admits a request that will hold photos in memory and use a CPU
    /// slot; 503 at once when too many are already running or waiting. Taken
    /// before library photos are fetched, so fetches are bounded too.
    pub(crate) fn admit(&self) -> Result<Admitted, ApiError> {
        self.admission.pending.clone().try_acquire_owned().map(|_place| Admitted { _place }).map_err(|_| overloaded())
    }

    /// Runs CPU-bound work on a blocking thread once admitted and a CPU slot
    /// is free; 503 when too many wait or the wait is too long.
    pub(crate) async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let admitted = self.admit()?;
        self.run_admitted(admitted, work).await
    }

    pub(crate) async fn run_admitted<T: Send + 'static>(
        &self,
        admitted: Admitted,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = tokio::time::timeout(self.config.queue_timeout, self.admission.slots.clone().acquire_owned())
            .await
            .map_err(|_| overloaded())?
            .map_err(|_| overloaded())?;
        tokio::task::spawn_blocking(move || {
            // Both permits live as long as the work, even if the client has gone.
            let _held = (admitted, slot);
            work()
        })
        .await
        .map_err(ApiError::task_failed)
    }
}
