//! The harness itself works: a `--quick` run of every scenario with one
//! profile writes a JSON file with every scenario's rows. A smoke test, not
//! a benchmark: no number is compared with a threshold.

use clap::Parser;
use plat_bench::options::{Options, Scenario};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_quick_run_writes_every_scenarios_rows_with_positive_numbers() {
    // Arrange
    plat_common::telemetry::init_for_tests();
    let folder = tempfile::tempdir().expect("a temporary folder");
    let out = folder.path().join("results.json");
    let options = Options::parse_from([
        "plat-bench",
        "--quick",
        "--profile",
        "async",
        "--out",
        out.to_str().expect("a UTF-8 path"),
    ]);

    // Act
    plat_bench::run(options).await.expect("the harness runs");

    // Assert
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the results file"))
            .expect("JSON");
    assert!(json["timestamp"].is_string(), "{json}");
    assert!(json["git_revision"].is_string(), "{json}");
    assert!(json["machine"]["cpus"].as_u64() > Some(0), "{json}");
    let profile = &json["profiles"]["async"];
    assert_eq!(profile["label"], "synchronous_commit=off", "{profile}");
    assert_eq!(profile["errors"], Value::Array(Vec::new()), "{profile}");
    for scenario in Scenario::ALL {
        let rows = profile["results"][scenario.name()]
            .as_object()
            .unwrap_or_else(|| panic!("no {} rows: {profile}", scenario.name()));
        assert!(!rows.is_empty(), "no {} rows", scenario.name());
        for (key, value) in rows {
            let value = value
                .as_f64()
                .unwrap_or_else(|| panic!("{key} is not a number: {value}"));
            match key.as_str() {
                // Every execution must succeed; the others may be anything.
                "not_succeeded_count" => assert_eq!(value, 0.0, "{key}"),
                key if key.ends_with("_count") || key.ends_with("_pct") => {
                    assert!(value.is_finite(), "{key}: {value}")
                }
                _ => assert!(value > 0.0, "{key} = {value}"),
            }
        }
    }
}
