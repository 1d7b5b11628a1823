//! The worker pool CEL programs run on: a few threads started once and fed
//! through a bounded queue, instead of an OS thread per evaluation. The
//! caller waits at most the program's time limit, counted from when it
//! queued; a full queue is refused at once. Owns the threads and the queue;
//! knows nothing of policies or what the jobs compute.
//!
//! CEL cannot loop, so a job always finishes: one over its limit keeps its
//! worker until it does, and its answer is dropped. With every worker held
//! that way, the queue fills and later evaluations are refused ("busy")
//! rather than piling up threads.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Evaluations that may wait for a worker.
pub use crate::limits::PROGRAM_QUEUE as QUEUE;

/// At most this many workers (fewer on a smaller machine).
pub use crate::limits::PROGRAM_WORKERS as MAX_WORKERS;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// The queue was full: too many evaluations at once.
    Busy,
    /// No answer within the limit.
    TimedOut,
    /// The job panicked.
    Crashed,
}

/// A fixed set of worker threads and their queue.
pub struct ProgramPool {
    queue: SyncSender<Job>,
    workers: usize,
}

impl ProgramPool {
    /// Starts `workers` threads (at least one) sharing a queue of `queue` jobs.
    pub fn start(workers: usize, queue: usize) -> ProgramPool {
        let workers = workers.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let rx = rx.clone();
            // A worker that cannot start leaves the others; with none, every
            // job times out (fail closed) and the log says why.
            if let Err(e) = std::thread::Builder::new()
                .name(format!("sigil-program-{n}"))
                .spawn(move || work(&rx))
            {
                tracing::error!(error = %e, "cannot start a policy program worker");
            }
        }
        ProgramPool { queue: tx, workers }
    }

    /// The pool every program shares: one worker per core, up to
    /// [`MAX_WORKERS`].
    pub fn shared() -> &'static ProgramPool {
        static POOL: OnceLock<ProgramPool> = OnceLock::new();
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            ProgramPool::start(cores.min(MAX_WORKERS), QUEUE)
        })
    }

    /// How many workers run jobs.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `job` on a worker and waits up to `limit` for its answer.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
        limit: Duration,
    ) -> Result<T, PoolError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            // The caller may have given up: then nobody reads the answer.
            let _ = answer.send(job());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PoolError::Busy),
            // No worker left to receive: the same as none answering.
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::TimedOut),
        }
        match answered.recv_timeout(limit) {
            Ok(value) => Ok(value),
            Err(RecvTimeoutError::Timeout) => Err(PoolError::TimedOut),
            // The job dropped its answer unsent: it panicked.
            Err(RecvTimeoutError::Disconnected) => Err(PoolError::Crashed),
        }
    }
}

impl ProgramPool {
    /// [`ProgramPool::run`] for async callers: the job is queued without
    /// blocking and its answer awaited, so no thread waits on it (the
    /// worker hands the answer straight back to the task).
    pub async fn run_async<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
        limit: Duration,
    ) -> Result<T, PoolError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(job());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PoolError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::TimedOut),
        }
        match tokio::time::timeout(limit, answered).await {
            Ok(Ok(value)) => Ok(value),
            // The job dropped its answer unsent: it panicked.
            Ok(Err(_)) => Err(PoolError::Crashed),
            Err(_) => Err(PoolError::TimedOut),
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take a job, not to run it.
        let job = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        // A panicking job must not take its worker with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    #[tokio::test]
    async fn async_callers_get_the_same_answers_limits_and_refusals() {
        let pool = ProgramPool::start(1, 1);
        let name = pool
            .run_async(
                || std::thread::current().name().unwrap_or("").to_string(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(name.starts_with("sigil-program-"), "{name}");
        let crashed = pool
            .run_async(|| -> u8 { panic!("boom") }, Duration::from_secs(5))
            .await;
        assert_eq!(crashed, Err(PoolError::Crashed));
        let gate = Arc::new(Barrier::new(2));
        let held = gate.clone();
        let slow = pool.run_async(move || held.wait(), Duration::from_millis(20));
        assert_eq!(slow.await.err(), Some(PoolError::TimedOut));
        // The worker is still held and the queue takes one: a third is refused.
        let _queued = pool.queue.try_send(Box::new(|| {}));
        let refused = pool.run_async(|| 1, Duration::from_secs(5)).await;
        assert_eq!(refused, Err(PoolError::Busy));
        gate.wait();
    }

    #[test]
    fn jobs_run_on_the_pool_threads_not_new_ones() {
        let pool = ProgramPool::start(2, 8);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let name = pool
                .run(
                    || std::thread::current().name().unwrap_or("").to_string(),
                    Duration::from_secs(5),
                )
                .unwrap();
            names.insert(name);
        }
        assert!(names.len() <= 2, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("sigil-program-")));
    }

    #[test]
    fn a_slow_job_times_out_and_a_full_queue_is_refused() {
        let pool = ProgramPool::start(1, 1);
        let release = Arc::new(Barrier::new(2));
        let held = release.clone();
        // The one worker is held until the barrier…
        let slow = pool.run(
            move || {
                held.wait();
            },
            Duration::from_millis(20),
        );
        assert_eq!(slow, Err(PoolError::TimedOut));
        // …one job waits in the queue, the next is refused.
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let queued = pool.run(
            move || {
                r.fetch_add(1, Ordering::SeqCst);
            },
            Duration::from_millis(20),
        );
        assert_eq!(queued, Err(PoolError::TimedOut));
        assert_eq!(
            pool.run(|| (), Duration::from_millis(20)),
            Err(PoolError::Busy)
        );
        release.wait();
        // Once free, the worker drains the queue and answers again.
        let start = std::time::Instant::now();
        while ran.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(pool.run(|| 7, Duration::from_secs(5)), Ok(7));
    }

    #[test]
    fn a_panicking_job_keeps_its_worker() {
        let pool = ProgramPool::start(1, 4);
        assert_eq!(
            // Generous: a panic prints its backtrace first (RUST_BACKTRACE=1),
            // and the answer comes as soon as the worker catches it.
            pool.run(|| panic!("boom"), Duration::from_secs(120)),
            Err::<(), _>(PoolError::Crashed)
        );
        assert_eq!(pool.run(|| 1, Duration::from_secs(5)), Ok(1));
    }
}
