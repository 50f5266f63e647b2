//! Each service's database role sees only what the service needs
//! (migrations/20261206000009_create_service_roles.sql). That the grants
//! suffice is proved by every other end-to-end test: `TestApp` connects the
//! API, compiler and executor as their own roles. These prove the refusals.

use plat_common::roles::ServiceRole;
use plat_tests::{service_options, TestApp, Workers, MIGRATOR};
use sqlx::{Connection, PgConnection, PgPool};

/// Connects to the test's database as `role`'s LOGIN role.
async fn connect_as(pool: &PgPool, role: ServiceRole) -> PgConnection {
    PgConnection::connect_with(&service_options(pool, role).await)
        .await
        .expect("connect as the service's role")
}

/// The SQLSTATE of `statement` run on `conn`, or `None` when it succeeded.
async fn sqlstate(conn: &mut PgConnection, statement: &str) -> Option<String> {
    match sqlx::query(statement).execute(&mut *conn).await {
        Ok(_) => None,
        Err(error) => Some(
            error
                .as_database_error()
                .and_then(|db| db.code())
                .map(|code| code.into_owned())
                .unwrap_or_else(|| format!("not a database error: {error}")),
        ),
    }
}

const PERMISSION_DENIED: &str = "42501";

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_compiler_cannot_read_users_keys_sessions_environments_or_inputs(pool: PgPool) {
    let mut compiler = connect_as(&pool, ServiceRole::Compiler).await;

    for statement in [
        "select * from users",
        "select * from api_keys",
        "select * from sessions",
        "select * from environments",
        "select * from groups",
        "select * from audit_log",
        "select input from executions",
        "select * from execution_jobs",
        // The owner's environment variables live in the execution config.
        "select execution_config from function_versions",
        "select environment_id from functions",
        "update functions set name = 'taken'",
    ] {
        assert_eq!(
            sqlstate(&mut compiler, statement).await.as_deref(),
            Some(PERMISSION_DENIED),
            "{statement}"
        );
    }
    // What it does need stays readable.
    assert_eq!(
        sqlstate(&mut compiler, "select id, state from compile_jobs").await,
        None
    );
    assert_eq!(
        sqlstate(
            &mut compiler,
            "select source, source_sealed, dependencies, lockfile_sealed from function_versions"
        )
        .await,
        None
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_executor_cannot_read_users_keys_or_sessions(pool: PgPool) {
    let mut executor = connect_as(&pool, ServiceRole::Executor).await;

    for statement in [
        "select * from users",
        "select * from api_keys",
        "select * from sessions",
        "select * from groups",
        "select * from audit_log",
        "select source from function_versions",
        "select source_sealed from function_versions",
        "select lockfile_sealed from function_versions",
        "select * from compile_jobs",
        "delete from executions",
        "insert into functions (id, name, language) values (gen_random_uuid(), 'x', 'rust')",
    ] {
        assert_eq!(
            sqlstate(&mut executor, statement).await.as_deref(),
            Some(PERMISSION_DENIED),
            "{statement}"
        );
    }
    // It decrypts environments, so it reads them.
    assert_eq!(
        sqlstate(&mut executor, "select variables from environments").await,
        None
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_api_can_append_to_the_audit_log_but_not_rewrite_it(pool: PgPool) {
    let mut api = connect_as(&pool, ServiceRole::Api).await;

    let appended = sqlstate(
        &mut api,
        "insert into audit_log (id, action) values (gen_random_uuid(), 'test')",
    )
    .await;
    let rewritten = sqlstate(&mut api, "update audit_log set action = 'nothing'").await;
    let erased = sqlstate(&mut api, "delete from audit_log").await;
    let engines = sqlstate(&mut api, "select * from js_engines").await;

    assert_eq!(appended, None);
    assert_eq!(rewritten.as_deref(), Some(PERMISSION_DENIED));
    assert_eq!(erased.as_deref(), Some(PERMISSION_DENIED));
    assert_eq!(engines.as_deref(), Some(PERMISSION_DENIED));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_component_of_the_test_app_connects_as_its_own_role(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::default()).await;
    let database = pool
        .connect_options()
        .get_database()
        .expect("a database name")
        .to_owned();

    // Opening a pool connects once and keeps that connection; the API
    // has served a request, and each worker holds a LISTEN connection.
    let me = app.get("/me").await;
    assert_eq!(me.status, reqwest::StatusCode::OK, "{}", me.body);

    let users: Vec<String> = sqlx::query_scalar(
        "select distinct usename::text from pg_stat_activity
         where datname = $1 and pid <> pg_backend_pid() order by 1",
    )
    .bind(&database)
    .fetch_all(&pool)
    .await
    .unwrap();

    // Besides them, only the test's own pool (its superuser) is connected.
    let superuser = pool.connect_options().get_username().to_owned();
    let services: Vec<&str> = users
        .iter()
        .map(String::as_str)
        .filter(|user| *user != superuser)
        .collect();
    let expected: Vec<&str> = ServiceRole::ALL.iter().map(|role| role.login()).collect();
    assert_eq!(services, expected);
}
