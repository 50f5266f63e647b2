//! Discovery (docs/versions-and-discovery.md): `GET /functions` with full-text
//! search, tag, language and status filters, four sort orders, cursors that
//! page every order without gaps or repeats, `total`, and the execution
//! counts on each function.

use std::collections::HashSet;

use plat_tests::{client_with_key, Reply, TestApp, Workers, HELLO, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const ECHO_TS: &str = "export default (input: unknown) => input;\n";

/// Registers a TypeScript function (unbuilt without a compiler).
async fn register(app: &TestApp, name: &str, description: &str, tags: &[&str]) -> String {
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": name,
                "language": "typescript",
                "source": ECHO_TS,
                "description": description,
                "tags": tags,
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

fn names(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows the cursors of `query` from the first page to the last, `limit`
/// at a time; returns the names in order. Every page reports the same total.
async fn all_pages(
    app: &TestApp,
    client: &reqwest::Client,
    query: &str,
    limit: u32,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let mut path = format!("/functions?{query}&limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.request_with(client, Method::GET, &path, None).await;
        let page_names = names(&page);
        assert!(page_names.len() <= limit as usize);
        seen.extend(page_names);
        let page_total = page.body["total"].as_i64().expect("a total");
        assert_eq!(*total.get_or_insert(page_total), page_total, "{query}");
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no repeats in {query}: {seen:?}");
    assert_eq!(
        Some(seen.len() as i64),
        total,
        "no gaps in {query}: {seen:?}"
    );
    seen
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_name_match_ranks_above_a_description_match_and_prefixes_find_names(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    register(&app, "greeter", "Says hello to the whole world", &[]).await;
    register(&app, "hello-world", "A tiny greeter", &[]).await;
    register(&app, "adder", "Adds numbers together", &[]).await;

    let hello = app.get("/functions?q=hello").await;
    let prefix = app.get("/functions?q=hel").await;
    let stemmed = app.get("/functions?q=number").await;
    let greeter = app.get("/functions?q=greeter").await;
    let nothing = app.get("/functions?q=zebra").await;

    assert_eq!(names(&hello), ["hello-world", "greeter"]);
    assert_eq!(hello.body["total"], 2);
    assert_eq!(names(&prefix), ["hello-world"]);
    assert_eq!(names(&stemmed), ["adder"]);
    assert_eq!(names(&greeter), ["greeter", "hello-world"]);
    assert_eq!(names(&nothing), Vec::<String>::new());
    assert_eq!(nothing.body["total"], 0);
    assert_eq!(nothing.body["nextCursor"], Value::Null);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tags_and_language_filter_and_all_tags_must_match(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    register(&app, "web-prod", "", &["web", "prod"]).await;
    register(&app, "web-only", "", &["web"]).await;
    register(&app, "batch-prod", "", &["batch", "prod"]).await;
    app.create_function("in-rust", HELLO, json!({})).await;

    let web = app.get("/functions?tag=web&sort=name").await;
    let both_repeated = app.get("/functions?tag=web&tag=prod").await;
    let both_listed = app.get("/functions?tag=prod,web").await;
    let rust = app.get("/functions?language=rust").await;
    let typescript = app
        .get("/functions?language=typescript&tag=prod&sort=name")
        .await;

    assert_eq!(names(&web), ["web-only", "web-prod"]);
    assert_eq!(web.body["total"], 2);
    assert_eq!(names(&both_repeated), ["web-prod"]);
    assert_eq!(names(&both_listed), ["web-prod"]);
    assert_eq!(names(&rust), ["in-rust"]);
    assert_eq!(names(&typescript), ["batch-prod", "web-prod"]);
    // Nothing is built here: every newest version is PENDING.
    assert_eq!(app.get("/functions?status=PENDING").await.body["total"], 4);
    assert_eq!(app.get("/functions?status=READY").await.body["total"], 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_status_filter_looks_at_the_newest_version(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let ok = register(&app, "builds", "", &[]).await;
    let bad = register(&app, "breaks", "", &[]).await;
    app.wait_for_build(&ok, 1).await;
    app.wait_for_build(&bad, 1).await;
    let broken = app
        .request(
            Method::PUT,
            "/functions/breaks",
            Some(json!({ "source": "export default (" })),
        )
        .await;
    assert_eq!(broken.status, StatusCode::ACCEPTED, "{}", broken.body);
    app.wait_for_build(&bad, 2).await;

    let ready = app.get("/functions?status=READY").await;
    let failed = app.get("/functions?status=FAILED").await;

    assert_eq!(names(&ready), ["builds"]);
    assert_eq!(names(&failed), ["breaks"]);
    assert_eq!(failed.body["items"][0]["activeSemver"], "0.1.0");
    assert_eq!(failed.body["items"][0]["semver"], "0.1.1");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_sort_pages_without_gaps_or_repeats(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    // Created in this order; names in another.
    for (name, description) in [
        ("delta", "a widget"),
        ("alpha", "a widget for widgets and more widgets"),
        ("echo", "no match here"),
        ("widget-maker", "makes things"),
        ("charlie", "the widget"),
        ("bravo", "widget widget"),
    ] {
        register(&app, name, description, &[]).await;
    }
    // Touched last: first when sorted by `updated`.
    for name in ["alpha", "echo"] {
        let touched = app
            .request(
                Method::PUT,
                &format!("/functions/{name}"),
                Some(json!({ "tags": ["touched"] })),
            )
            .await;
        assert_eq!(touched.status, StatusCode::OK, "{}", touched.body);
    }
    let admin = &app.client;

    let created = all_pages(&app, admin, "sort=created", 2).await;
    let updated = all_pages(&app, admin, "sort=updated", 2).await;
    let by_name = all_pages(&app, admin, "sort=name", 4).await;
    let relevance = all_pages(&app, admin, "q=widget", 2).await;
    let explicit = all_pages(&app, admin, "q=widget&sort=relevance", 1).await;
    let defaulted = all_pages(&app, admin, "", 5).await;

    assert_eq!(
        created,
        ["bravo", "charlie", "widget-maker", "echo", "alpha", "delta"]
    );
    assert_eq!(
        updated,
        ["echo", "alpha", "bravo", "charlie", "widget-maker", "delta"]
    );
    assert_eq!(
        by_name,
        ["alpha", "bravo", "charlie", "delta", "echo", "widget-maker"]
    );
    assert_eq!(relevance.len(), 5, "{relevance:?}");
    assert_eq!(
        relevance[0], "widget-maker",
        "a name match first: {relevance:?}"
    );
    assert_eq!(explicit, relevance);
    assert_eq!(defaulted, created);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cursors_belong_to_their_query_and_bad_parameters_name_the_allowed_values(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    for name in ["one", "two", "three"] {
        register(&app, name, "thing", &["t"]).await;
    }
    let first = app.get("/functions?sort=name&limit=1").await;
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();

    let same = app
        .get(&format!("/functions?sort=name&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(names(&same), ["three"]);
    for other in [
        format!("/functions?sort=created&cursor={cursor}"),
        format!("/functions?cursor={cursor}"),
        format!("/functions?sort=name&q=thing&cursor={cursor}"),
        format!("/functions?sort=name&tag=t&cursor={cursor}"),
    ] {
        let detail = app
            .get(&other)
            .await
            .problem(StatusCode::BAD_REQUEST)
            .to_owned();
        assert!(detail.contains("different query"), "{other}: {detail}");
    }

    for (query, allowed) in [
        ("sort=size", "relevance, created, updated, name"),
        ("sort=relevance", "q"),
        ("language=cobol", "rust, typescript"),
        ("status=DONE", "PENDING, COMPILING, READY, FAILED"),
        (
            "colour=red",
            "q, tag, language, status, sort, limit, cursor",
        ),
        ("cursor=garbage", "cursor"),
        ("limit=0", "limit"),
    ] {
        let reply = app.get(&format!("/functions?{query}")).await;
        let detail = reply.problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(allowed), "{query}: {detail}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_dev_neither_sees_nor_counts_private_functions(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let other = app.create_user("other@example.com", "DEV", None).await;
    let dev_client = client_with_key(&app.create_key(&dev).await);
    for name in [
        "report-public",
        "report-mine",
        "report-secret",
        "report-open",
    ] {
        register(&app, name, "monthly report", &["reports"]).await;
    }
    for (name, user) in [("report-mine", &dev), ("report-secret", &other)] {
        let set = app
            .request(
                Method::PUT,
                &format!("/functions/{name}"),
                Some(json!({ "allowedUsers": [user] })),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    }

    for query in ["q=report", "tag=reports", "sort=name", "sort=updated"] {
        let seen = all_pages(&app, &dev_client, query, 1).await;
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["report-mine", "report-open", "report-public"],
            "{query}"
        );
        assert_eq!(
            all_pages(&app, &app.client, query, 3).await.len(),
            4,
            "{query}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn each_function_shows_how_many_runs_finished_and_how_many_succeeded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = "export default (input: { fail?: boolean }) => { if (input.fail) { throw new Error(\"no\"); } return 1; };\n";
    let id = app
        .ready_function_in("typescript", "counted", source, json!({}))
        .await;
    let fresh = app.get("/functions/counted").await.body;
    assert_eq!(fresh["executionCount"], 0);
    assert_eq!(fresh["successRate"], Value::Null);

    for fail in [false, false, false, true] {
        let run = app.execute(&id, json!({ "fail": fail }), 30).await;
        assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    }

    let function = app.get("/functions/counted").await.body;
    assert_eq!(function["executionCount"], 4, "{function}");
    assert_eq!(function["successRate"], 0.75, "{function}");
    let listed = app.get("/functions?q=counted").await;
    assert_eq!(listed.body["items"][0]["executionCount"], 4);
}
