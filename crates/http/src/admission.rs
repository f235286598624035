//! Admission of CPU-bound work (vision, generation, enrollment): a bounded
//! number waits, a bounded number runs, each on a blocking thread.

use std::sync::Arc;
use std::time::Duration;

use likeness_codes::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

pub(crate) struct Admission {
    /// CPU slots. A permit travels into the blocking job, so a client that
    /// hangs up does not free its slot while its work still runs.
    slots: Arc<Semaphore>,
    /// Running plus waiting work.
    places: Arc<Semaphore>,
    /// How long admitted work may wait for a slot.
    queue_timeout: Duration,
    running: usize,
    place_count: usize,
}

/// A place among the work running or waiting, held for the whole request;
/// every blocking job holds it too, so a client that hangs up does not
/// free it while its work still runs.
#[derive(Clone)]
pub(crate) struct Admitted {
    _place: Arc<OwnedSemaphorePermit>,
}

fn overloaded() -> ApiError {
    ApiError::new(ErrorCode::ServerOverloaded, "too many requests in progress; retry later")
}

impl Admission {
    pub(crate) fn new(running: usize, places: usize, queue_timeout: Duration) -> Admission {
        let (running, place_count) = (running.max(1), places.max(running).max(1));
        Admission {
            slots: Arc::new(Semaphore::new(running)),
            places: Arc::new(Semaphore::new(place_count)),
            queue_timeout,
            running,
            place_count,
        }
    }

    /// (CPU slots busy, places taken by work running or waiting), for the metrics.
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.running - self.slots.available_permits(), self.place_count - self.places.available_permits())
    }

    /// Admits work that will hold photos in memory and use a CPU slot; 503
    /// at once when too many are already running or waiting. Taken before
    /// library photos are fetched, so fetches are bounded too.
    pub(crate) fn admit(&self) -> Result<Admitted, ApiError> {
        self.places.clone().try_acquire_owned().map(|p| Admitted { _place: Arc::new(p) }).map_err(|_| overloaded())
    }

    /// Admits `work` and runs it; see [`Admission::run`].
    pub(crate) async fn run_now<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let admitted = self.admit()?;
        self.run(&admitted, work).await
    }

    /// Runs admitted work on a blocking thread once a CPU slot is free; 503
    /// when the wait is too long. The CPU slot is held only while the work
    /// runs: a request waiting on a backend holds its place, not a core.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        admitted: &Admitted,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| overloaded())?
            .map_err(|_| overloaded())?;
        let admitted = admitted.clone();
        tokio::task::spawn_blocking(move || {
            // Both permits live as long as the work, even if the client has gone.
            let _held = (admitted, slot);
            work()
        })
        .await
        .map_err(ApiError::task_failed)
    }
}
