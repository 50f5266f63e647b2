//! `plat up` as people run it: the binary, with a PostgreSQL cluster of its
//! own in a fresh data folder.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use plat_common::roles::ServiceRole;
use plat_tests::{client_with_key, module_cache_dir, workspace_binary};

/// Stops `plat up` (SIGTERM: it stops its cluster too) even when an
/// assertion fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn secret(data: &Path, name: &str) -> String {
    let path = data.join(name);
    let metadata = std::fs::metadata(&path).unwrap();
    assert_eq!(metadata.mode() & 0o777, 0o600, "{}", path.display());
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plat_up_runs_each_component_as_its_own_role_on_a_cluster_that_wants_a_password() {
    let folder = tempfile::Builder::new()
        .prefix("plat-up-")
        .tempdir()
        .unwrap();
    // When we are root the cluster runs as an unprivileged user, who must
    // be able to enter the folder.
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = folder.path().join("data");
    let (pg_port, api_port) = (free_port(), free_port());
    let mut child = Command::new(workspace_binary("plat"))
        .arg("up")
        .env_remove("DATABASE_URL")
        .env("PLAT_DATA_DIR", &data)
        .env("PLAT_PG_PORT", pg_port.to_string())
        .env("PLAT_LISTEN", format!("127.0.0.1:{api_port}"))
        // The tests' prepared toolchains, not a fresh build of serde.
        .env(
            "PLAT_CACHE_DIR",
            module_cache_dir().with_file_name("plat-test-cache"),
        )
        .env("PLAT_MODULE_CACHE_DIR", module_cache_dir())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start plat up");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // It prints the welcome once every component has connected. The rest
    // of its output is read to the end: a closed pipe would make its last
    // lines ("stopping PostgreSQL") fail.
    let (told, welcomed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut told = Some(told);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("Plat is running at") {
                if let Some(told) = told.take() {
                    let _ = told.send(Ok(seen.clone()));
                }
            }
        }
        if let Some(told) = told {
            let _ = told.send(Err(seen));
        }
    });
    let welcome = tokio::task::spawn_blocking(move || welcomed.recv().unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|output| panic!("plat up ended before running:\n{output}"));

    // Act
    let password = secret(&data, "postgres-password");
    let superuser = format!("postgres://postgres:{password}@127.0.0.1:{pg_port}/plat");
    let without_password = format!("postgres://postgres@127.0.0.1:{pg_port}/plat");
    let pool = plat_common::db::connect(&superuser, 1).await.unwrap();
    let logged_in: Vec<String> = sqlx::query_scalar(
        "select distinct usename::text from pg_stat_activity
         where datname = 'plat' and pid <> pg_backend_pid() order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let refused = plat_common::db::connect(&without_password, 1).await;
    let admin = client_with_key(&secret(&data, "admin-key"));
    let me = admin
        .get(format!("http://127.0.0.1:{api_port}/me"))
        .send()
        .await
        .unwrap();

    // Assert
    let expected: Vec<&str> = ServiceRole::ALL.iter().map(|role| role.login()).collect();
    assert_eq!(logged_in, expected, "{welcome}");
    assert!(refused.is_err(), "connected without the password");
    assert!(!welcome.contains(&password), "{welcome}");
    for role in ServiceRole::ALL {
        secret(&data, &format!("{}-db-password", role.name()));
    }
    assert_eq!(me.status(), reqwest::StatusCode::OK);
    pool.close().await;
    drop(running);
}
