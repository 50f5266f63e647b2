//! The parts a waiting execute is made of, each timed alone on the same
//! machine and database: what the round trip would cost if nothing were
//! spent between them. Their p50s summed are the floor the `latency` rows
//! are compared with (docs/benchmarks.md, "Where the floor is").
//!
//! A waiting execute is, in order: the HTTP request and answer; a read that
//! finds the function; the enqueue (a commit); the executors' wake-up (a
//! notification); the claim (a commit); the run; the result (a commit that
//! notifies); the waiting call's wake-up (a notification); the read of the
//! result. Here the four statements run back to back on one connection with
//! the queue's own functions, and the other parts are timed on their own.

use std::time::{Duration, Instant};

use plat_common::queue::execute::{self, ExecutionJob, Finished, NewExecution};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::platform::Platform;
use crate::report::Group;
use crate::stats::Samples;

/// The channel the notification hop is timed on; nobody else listens to it.
const CHANNEL: &str = "plat_bench_floor";
/// The one-row read timed as the function's lookup; the queue chain also
/// reads the version it queues with it.
const ACTIVE_VERSION: &str = "select active_version from functions where id = $1";
/// Untimed rounds before each part is measured.
const WARMUP: usize = 50;

/// Times each part `calls` times, one after the other. Executors must be
/// stopped: the bench claims the jobs it queues itself.
pub async fn measure(
    platform: &Platform,
    function: Uuid,
    calls: usize,
    group: &mut Group,
) -> anyhow::Result<()> {
    let http = timed(calls, || async {
        platform.api.get_ok("/healthz").await?;
        Ok(())
    })
    .await?;
    let read = timed(calls, || async {
        sqlx::query(ACTIVE_VERSION)
            .bind(function)
            .fetch_one(&platform.db)
            .await?;
        Ok(())
    })
    .await?;
    let hop = notification_hop(platform, calls).await?;
    let mut chain = QueueChain::new(platform, function).await?;
    let mut steps: [Vec<Duration>; 4] = Default::default();
    for i in 0..WARMUP + calls {
        let took = chain.once(i).await?;
        if i >= WARMUP {
            for (samples, took) in steps.iter_mut().zip(took) {
                samples.push(took);
            }
        }
    }
    let queue = Samples::new(
        (0..calls)
            .map(|i| steps.iter().map(|step| step[i]).sum())
            .collect(),
    );
    let (http, read, hop) = (Samples::new(http), Samples::new(read), Samples::new(hop));
    group.push(
        "floor_http_p50_ms",
        "floor part: HTTP round trip of GET /healthz, p50 ms",
        http.ms(50.0),
    );
    group.push(
        "floor_read_p50_ms",
        "floor part: a one-row read by primary key, p50 ms",
        read.ms(50.0),
    );
    group.push(
        "floor_queue_sql_p50_ms",
        "floor part: enqueue, claim, result, read back to back, p50 ms",
        queue.ms(50.0),
    );
    for (step, samples) in ["enqueue", "claim", "result", "read"].iter().zip(steps) {
        group.push(
            format!("floor_queue_{step}_p50_ms"),
            format!("floor part: … of which the {step}, p50 ms"),
            Samples::new(samples).ms(50.0),
        );
    }
    group.push(
        "floor_notification_p50_ms",
        "floor part: NOTIFY sent → heard on another connection, p50 ms",
        hop.ms(50.0),
    );
    group.push(
        "floor_sum_p50_ms",
        "floor: HTTP + read + queue SQL + 2 notifications, p50s summed, ms",
        http.ms(50.0) + read.ms(50.0) + queue.ms(50.0) + 2.0 * hop.ms(50.0),
    );
    Ok(())
}

/// `calls` timed runs of `part` after [`WARMUP`] untimed ones.
async fn timed<F, Fut>(calls: usize, mut part: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
        let started = Instant::now();
        part().await?;
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

/// From sending `NOTIFY` (a statement of its own, as the enqueue's wake-up
/// is) to hearing it on a listening connection.
async fn notification_hop(platform: &Platform, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let mut listener = PgListener::connect_with(&platform.db).await?;
    listener.listen(CHANNEL).await?;
    let mut samples = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
        let started = Instant::now();
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(i.to_string())
            .execute(&platform.db)
            .await?;
        let heard = listener.recv().await?;
        anyhow::ensure!(
            heard.payload() == i.to_string(),
            "heard {:?}, sent {i}",
            heard.payload()
        );
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

/// The queue's statements of one execution, with the executor's own
/// functions, on one connection and with no one waiting in between.
struct QueueChain {
    function: Uuid,
    version: i32,
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

impl QueueChain {
    async fn new(platform: &Platform, function: Uuid) -> anyhow::Result<Self> {
        let version: i32 = sqlx::query_scalar(ACTIVE_VERSION)
            .bind(function)
            .fetch_one(&platform.db)
            .await?;
        Ok(Self {
            function,
            version,
            conn: platform.db.acquire().await?,
        })
    }

    /// The enqueue, claim, result and read of one execution, each timed.
    async fn once(&mut self, i: usize) -> anyhow::Result<[Duration; 4]> {
        let input = format!("{{\"n\":{i}}}");
        let id = Uuid::now_v7();
        let mut lap = Lap::start();
        execute::enqueue(
            &mut self.conn,
            NewExecution {
                id,
                function_id: self.function,
                version: self.version,
                input_json: &input,
                idempotency_key: None,
                created_by: None,
                request_id: None,
                // As a waiting execute does.
                wake_executors: true,
                max_in_flight: None,
                trigger: &plat_common::Trigger::Api,
                webhook_urls: None,
            },
        )
        .await?;
        let enqueued = lap.next();
        let jobs: Vec<ExecutionJob> = execute::claim(
            &mut *self.conn,
            "plat-bench-floor",
            Duration::from_secs(60),
            1,
        )
        .await?;
        let claimed = lap.next();
        let [job] = &jobs[..] else {
            anyhow::bail!("claimed {} jobs, queued 1", jobs.len());
        };
        anyhow::ensure!(
            job.id == id,
            "claimed another execution than the one queued"
        );
        let finished = Finished::succeeded(input, 0);
        anyhow::ensure!(execute::complete(&mut *self.conn, job, &finished).await?);
        let written = lap.next();
        let status: String =
            sqlx::query_scalar("select status::text from executions where id = $1")
                .bind(id)
                .fetch_one(&mut *self.conn)
                .await?;
        let read = lap.next();
        anyhow::ensure!(status == "SUCCEEDED", "the execution is {status}");
        Ok([enqueued, claimed, written, read])
    }
}

/// Times consecutive steps.
struct Lap(Instant);

impl Lap {
    fn start() -> Self {
        Self(Instant::now())
    }

    /// The time since the previous step ended.
    fn next(&mut self) -> Duration {
        let now = Instant::now();
        let took = now - self.0;
        self.0 = now;
        took
    }
}
