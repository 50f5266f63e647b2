//! Threads with room for a guest's call stack: the guest's wasm stack lives
//! on the host thread's stack, so runs need [`RUN_THREAD_STACK`] of it,
//! more than tokio's blocking threads have.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use super::engine::RUN_THREAD_STACK;

thread_local! {
    /// Set on threads with [`RUN_THREAD_STACK`] of stack.
    static ON_RUN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread was started here.
pub(crate) fn on_run_thread() -> bool {
    ON_RUN_THREAD.get()
}

fn builder() -> std::thread::Builder {
    std::thread::Builder::new()
        .name("plat-run".into())
        .stack_size(RUN_THREAD_STACK)
}

/// Starts a thread whose stack holds a guest's full call stack and runs `f`
/// on it; [`Runtime::run`](super::Runtime::run) called there runs in place.
pub fn spawn_run_thread<T, F>(f: F) -> std::io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    builder().spawn(move || {
        ON_RUN_THREAD.set(true);
        f()
    })
}

/// Runs `f` on a fresh run thread and waits for it (for callers on a thread
/// of unknown stack size).
pub(crate) fn run_on_a_new_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        builder()
            .spawn_scoped(scope, || {
                ON_RUN_THREAD.set(true);
                f()
            })
            .expect("starting a run thread")
            .join()
            // `run` does not panic on guest behaviour; a panic here is a bug
            // in the host and belongs to the caller.
            .unwrap_or_else(|panic| panic::resume_unwind(panic))
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of long-lived run threads, so a run does not pay for starting
/// a thread. Dropping it lets the threads end once their current job is done.
pub struct RunThreads {
    jobs: mpsc::Sender<Job>,
    count: usize,
    /// Jobs queued or running: more than `count` means some wait.
    taken: Arc<AtomicUsize>,
}

impl RunThreads {
    /// Starts `count` threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let (count, taken) = (count.max(1), Arc::new(AtomicUsize::new(0)));
        for _ in 0..count {
            let (queue, taken) = (queue.clone(), taken.clone());
            spawn_run_thread(move || loop {
                // The lock is held only while waiting for the next job.
                let next = queue
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .recv();
                let Ok(job) = next else { return };
                // A job that panics drops its result sender, which its caller
                // sees; the thread stays for the next job.
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
                taken.fetch_sub(1, Ordering::Relaxed);
            })?;
        }
        Ok(Self { jobs, count, taken })
    }

    /// Queues `job` for the next free thread.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        // The threads only end when `self` is dropped, so the send succeeds.
        let _ = self.jobs.send(Box::new(job));
    }

    /// How many threads there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Threads with nothing to run and nothing queued for them.
    pub fn idle(&self) -> usize {
        self.count
            .saturating_sub(self.taken.load(Ordering::Relaxed))
    }
}

impl std::fmt::Debug for RunThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunThreads").finish_non_exhaustive()
    }
}
