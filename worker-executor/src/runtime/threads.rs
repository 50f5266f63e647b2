//! Threads with room for a guest's call stack: the guest's wasm stack lives
//! on the host thread's stack, so runs need [`RUN_THREAD_STACK`] of it,
//! more than tokio's blocking threads have.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

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

/// Jobs waiting for a thread, one line per owner; owners take turns, one
/// job each. An executor claims many jobs ahead of its threads, and the
/// queue stamps runs fairly only up to the claim: without turns here, a run
/// of one user claimed behind a hundred of another's backlog would wait for
/// all of them (docs/architecture.md, "Fairness and quotas").
#[derive(Default)]
struct Waiting {
    lines: HashMap<Uuid, VecDeque<Job>>,
    /// Owners with jobs waiting, in the order they are served.
    turns: VecDeque<Uuid>,
    /// No more jobs will come: threads end once the lines are empty.
    closed: bool,
}

impl Waiting {
    fn push(&mut self, owner: Uuid, job: Job) {
        let line = self.lines.entry(owner).or_default();
        if line.is_empty() {
            self.turns.push_back(owner);
        }
        line.push_back(job);
    }

    fn pop(&mut self) -> Option<Job> {
        let owner = self.turns.pop_front()?;
        let line = self.lines.get_mut(&owner)?;
        let job = line.pop_front();
        if line.is_empty() {
            self.lines.remove(&owner);
        } else {
            self.turns.push_back(owner);
        }
        job
    }
}

struct Shared {
    waiting: Mutex<Waiting>,
    ready: Condvar,
}

impl Shared {
    /// The next job, or `None` once closed and empty.
    fn next(&self) -> Option<Job> {
        let mut waiting = self.waiting.lock();
        loop {
            if let Some(job) = waiting.pop() {
                return Some(job);
            }
            if waiting.closed {
                return None;
            }
            self.ready.wait(&mut waiting);
        }
    }
}

/// A fixed set of long-lived run threads, so a run does not pay for starting
/// a thread. Jobs of different owners take turns ([`RunThreads::execute`]).
/// Dropping it lets the threads end once the jobs queued are done.
pub struct RunThreads {
    shared: Arc<Shared>,
    count: usize,
    /// Jobs queued or running: more than `count` means some wait.
    taken: Arc<AtomicUsize>,
}

impl RunThreads {
    /// Starts `count` threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            ready: Condvar::new(),
        });
        let (count, taken) = (count.max(1), Arc::new(AtomicUsize::new(0)));
        for _ in 0..count {
            let (shared, taken) = (shared.clone(), taken.clone());
            spawn_run_thread(move || {
                while let Some(job) = shared.next() {
                    // A job that panics drops its result sender, which its
                    // caller sees; the thread stays for the next job.
                    let _ = panic::catch_unwind(AssertUnwindSafe(job));
                    taken.fetch_sub(1, Ordering::Relaxed);
                }
            })?;
        }
        Ok(Self {
            shared,
            count,
            taken,
        })
    }

    /// Queues `job` of `owner` for the next free thread: behind the owner's
    /// other waiting jobs, and served in turn with other owners' jobs.
    pub fn execute(&self, owner: Uuid, job: impl FnOnce() + Send + 'static) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.shared.waiting.lock().push(owner, Box::new(job));
        self.shared.ready.notify_one();
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

impl Drop for RunThreads {
    fn drop(&mut self) {
        self.shared.waiting.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl std::fmt::Debug for RunThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunThreads").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// The order in which `jobs` (owner, label) queued at once are taken.
    fn served(jobs: &[(u128, &'static str)]) -> Vec<&'static str> {
        let (done, order) = mpsc::channel();
        let mut waiting = Waiting::default();
        for &(owner, label) in jobs {
            let done = done.clone();
            waiting.push(
                Uuid::from_u128(owner),
                Box::new(move || done.send(label).unwrap()),
            );
        }
        while let Some(job) = waiting.pop() {
            job();
        }
        drop(done);
        order.iter().collect()
    }

    #[test]
    fn owners_take_turns_whatever_the_order_their_jobs_came_in() {
        let jobs = [
            (1, "a1"),
            (1, "a2"),
            (1, "a3"),
            (2, "b1"),
            (2, "b2"),
            (3, "c1"),
        ];
        assert_eq!(served(&jobs), ["a1", "b1", "c1", "a2", "b2", "a3"]);
    }

    #[test]
    fn one_owners_jobs_keep_their_order() {
        let jobs = [(7, "1"), (7, "2"), (7, "3")];
        assert_eq!(served(&jobs), ["1", "2", "3"]);
    }

    #[test]
    fn every_job_runs_on_the_threads_and_they_end_when_dropped() {
        let threads = RunThreads::start(2).unwrap();
        let (done, results) = mpsc::channel();
        for i in 0..50u128 {
            let done = done.clone();
            threads.execute(Uuid::from_u128(i % 3), move || done.send(i).unwrap());
        }
        drop(done);
        drop(threads);
        let mut ran: Vec<u128> = results.iter().collect();
        ran.sort();
        assert_eq!(ran, (0..50).collect::<Vec<_>>());
    }
}
