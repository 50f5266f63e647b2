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
