//! A database outage under load: the test runs its own PostgreSQL cluster,
//! stops it while executions are queued and running, and starts it again.

use plat_local_postgres::{LocalPostgres, Options};
use plat_tests::{TestApp, Workers};
use reqwest::{Method, StatusCode};
use serde_json::json;

const BUSY_DOUBLER: &str = r#"
pub fn handler(n: u64) -> Result<u64, String> {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(20) {
        std::hint::black_box(0);
    }
    Ok(n * 2)
}
"#;

/// Stops the cluster when the test ends, whether it passed or not.
struct Cluster(LocalPostgres);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_loses_no_accepted_execution_and_the_api_recovers() {
    let folder = tempfile::Builder::new()
        .prefix("plat-outage-")
        .tempdir()
        .unwrap();
    let options = Options::scratch(folder.path()).unwrap();
    let cluster = Cluster(LocalPostgres::start(options).expect("a cluster of the test's own"));
    let pool = plat_common::db::pool_options(5)
        .connect(&cluster.0.url("postgres"))
        .await
        .unwrap();
    plat_common::db::migrate(&pool).await.unwrap();
    let app = TestApp::spawn_with(
        pool.clone(),
        Workers {
            compilers: 1,
            executors: 1,
        },
    )
    .await;
    let id = app
        .ready_function("survivor", BUSY_DOUBLER, json!({}))
        .await;
    let mut accepted = Vec::new();
    for n in 0..60 {
        let reply = app.execute(&id, json!(n), 0).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        accepted.push((n, reply.body["id"].as_str().unwrap().to_owned()));
    }

    // The database goes away while executions run and wait.
    cluster.0.stop().expect("stop the cluster");
    let while_down = app.get("/functions").await;
    let execute_while_down = app
        .request(
            Method::POST,
            &format!("/functions/{id}/execute?wait=0"),
            Some(json!(1)),
        )
        .await;
    let ready_while_down = app.get("/readyz").await;
    cluster.0.restart().expect("start the cluster again");

    assert!(while_down
        .problem(StatusCode::SERVICE_UNAVAILABLE)
        .contains("unavailable"));
    assert_eq!(while_down.headers["retry-after"], "5");
    execute_while_down.problem(StatusCode::SERVICE_UNAVAILABLE);
    ready_while_down.problem(StatusCode::SERVICE_UNAVAILABLE);
    for (n, execution_id) in &accepted {
        let execution = app.wait_for_execution(execution_id).await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_eq!(execution["output"], json!(n * 2));
    }
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let after = app.execute(&id, json!(21), 30).await;
    assert_eq!(after.body["output"], json!(42), "{}", after.body);
}
