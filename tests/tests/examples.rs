//! The files in `examples/` compile and do what `examples/README.md` says.

use plat_tests::{TestApp, MIGRATOR};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_examples_compile_and_answer_as_documented(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let hello = app
        .ready_function(
            "hello",
            include_str!("../../examples/hello/handler.rs"),
            json!({}),
        )
        .await;
    let typed = app
        .ready_function(
            "order-total",
            include_str!("../../examples/typed/handler.rs"),
            json!({}),
        )
        .await;

    let typescript = app
        .ready_function_in(
            "typescript",
            "order-total-ts",
            include_str!("../../examples/hello-ts/handler.ts"),
            json!({}),
        )
        .await;

    let greeting = app.execute(&hello, json!({ "name": "Ada" }), 30).await;
    let total = app
        .execute(&typed, json!({ "items": [{ "name": "tea", "cents": 350, "quantity": 2 }], "coupon": "TENOFF" }), 30)
        .await;
    let refused = app
        .execute(&typed, json!({ "items": [], "coupon": null }), 30)
        .await;

    let ts_total = app
        .execute(&typescript, json!({ "items": [{ "name": "tea", "cents": 350, "quantity": 2 }], "coupon": "TENOFF" }), 30)
        .await;
    let ts_refused = app.execute(&typescript, json!({ "items": [] }), 30).await;

    assert_eq!(
        greeting.body["output"],
        json!({ "greeting": "Hello, Ada!" })
    );
    assert_eq!(
        total.body["output"],
        json!({ "itemCount": 2, "totalCents": 630 })
    );
    assert_eq!(total.body["logs"], "2 x tea at 350 cents\n");
    assert_eq!(
        refused.body["error"],
        json!({ "type": "HANDLER_ERROR", "message": "the order has no items" })
    );
    assert_eq!(ts_total.body["output"], total.body["output"]);
    assert_eq!(ts_total.body["logs"], "2 x tea at 350 cents\n");
    assert_eq!(
        ts_refused.body["error"],
        json!({ "type": "HANDLER_ERROR", "message": "the order has no items" })
    );
    assert_eq!(
        ts_refused.body["logs"],
        "Uncaught Error: the order has no items\n    at handler (handler.ts:20:15)\n"
    );
}

/// Registers an example folder as `plat deploy` would: its function.json's
/// name, language and dependencies, and its entry file's text.
async fn deploy_example(app: &TestApp, manifest: &str, source: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_str(manifest).expect("valid function.json");
    let reply = app
        .request(
            reqwest::Method::POST,
            "/functions",
            Some(json!({
                "name": manifest["name"],
                "language": manifest["language"],
                "source": source,
                "dependencies": manifest["dependencies"],
            })),
        )
        .await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::ACCEPTED,
        "{}",
        reply.body
    );
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    let built = app.wait_for_build(&id, 1).await;
    assert_eq!(built["status"], "READY", "{built}");
    id
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_dependency_examples_build_from_their_function_json_and_answer_as_documented(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let words = deploy_example(
        &app,
        include_str!("../../examples/word-stats/function.json"),
        include_str!("../../examples/word-stats/handler.rs"),
    )
    .await;
    let signup = deploy_example(
        &app,
        include_str!("../../examples/signup-ts/function.json"),
        include_str!("../../examples/signup-ts/handler.ts"),
    )
    .await;

    let input = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let stats = app
        .execute(
            &words,
            input(include_str!("../../examples/word-stats/input.json")),
            30,
        )
        .await;
    let adult = app
        .execute(
            &signup,
            input(include_str!("../../examples/signup-ts/input.json")),
            30,
        )
        .await;
    let refused = app
        .execute(
            &signup,
            json!({ "email": "not an address", "birthDate": "1990-12-10", "today": "2026-12-06" }),
            30,
        )
        .await;

    assert_eq!(
        stats.body["output"],
        json!({
            "words": 7,
            "distinctWords": 5,
            "mostCommon": "the",
            "sha256": "fe8d7e3cffdc6b747789d7b0c8f683f320b5fba0590e2ee7a5ce88956b3603cc",
        }),
        "{}",
        stats.body
    );
    assert_eq!(
        adult.body["output"],
        json!({ "email": "ada@example.com", "age": 35, "adult": true }),
        "{}",
        adult.body
    );
    assert_eq!(
        refused.body["error"]["type"], "HANDLER_ERROR",
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"]["message"], "email: Invalid email");
}
