//! The dashboard's files at `/ui` (docs/dashboard.md): served without
//! credentials, complete (every module a page imports is there), under a
//! strict Content-Security-Policy, revalidated with ETags, and nothing but
//! the dashboard's own files. What the pages do is tested in a real browser
//! by tests/browser (scripts/browser-test).

use std::path::Path;

use plat_tests::{TestApp, Workers, MIGRATOR};
use reqwest::StatusCode;
use sqlx::PgPool;

fn ui_folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/ui")
}

/// The relative module paths a script imports (`from './x.js'`).
fn imports(script: &str) -> Vec<String> {
    script
        .match_indices("from '")
        .map(|(at, needle)| {
            let rest = &script[at + needle.len()..];
            rest[..rest.find('\'').unwrap()].to_owned()
        })
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_page_and_every_module_it_loads_are_served_without_credentials(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let anonymous = reqwest::Client::new();
    let get = |path: String| {
        let request = anonymous.get(format!("{}{path}", app.base_url));
        async move { request.send().await.unwrap() }
    };

    let page = get("/ui".to_owned()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert!(html.contains("src=\"/ui/app.js\""), "{html}");

    // Walk the module graph from app.js: a missing or misnamed page module
    // would leave the dashboard blank.
    let mut pending = vec!["app.js".to_owned()];
    let mut seen = Vec::new();
    while let Some(name) = pending.pop() {
        if seen.contains(&name) {
            continue;
        }
        let response = get(format!("/ui/{name}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript"),
            "{name}"
        );
        let script = response.text().await.unwrap();
        for import in imports(&script) {
            let file = import
                .strip_prefix("./")
                .unwrap_or_else(|| panic!("{name} imports {import}, not a file beside it"));
            pending.push(file.to_owned());
        }
        seen.push(name);
    }
    assert!(seen.len() > 5, "the pages are modules of app.js: {seen:?}");
    let style = get("/ui/style.css".to_owned()).await;
    assert_eq!(style.status(), StatusCode::OK);
    assert!(style.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}

#[test]
fn every_file_in_the_folder_is_one_the_server_serves() {
    // Only these types are served: another file would be a dead one.
    for entry in std::fs::read_dir(ui_folder()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(path.is_file(), "{name}: api/ui is one flat folder");
        let served = ["html", "js", "css", "svg", "png"]
            .iter()
            .any(|extension| name.ends_with(&format!(".{extension}")));
        assert!(served, "api/ui/{name} would not be served");
    }
}

#[test]
fn the_pages_build_markup_from_text_only() {
    // API data (names, outputs, logs) must become text nodes; markup from
    // strings would let a function's output script the dashboard.
    for entry in std::fs::read_dir(ui_folder()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            let script = std::fs::read_to_string(&path).unwrap();
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!script.contains(sink), "{} uses {sink}", path.display());
            }
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn files_are_revalidated_by_etag_and_nothing_else_is_served(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let anonymous = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", app.base_url);

    let first = anonymous.get(url("/ui/lib.js")).send().await.unwrap();
    let etag = first.headers()["etag"].clone();
    let again = anonymous
        .get(url("/ui/lib.js"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    let other = anonymous
        .get(url("/ui/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();

    assert_eq!(first.headers()["cache-control"], "no-cache");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(other.status(), StatusCode::OK);
    for path in [
        "/ui/nothing.js",
        "/ui/..%2FCargo.toml",
        "/ui/..%2Fsrc%2Fui.rs",
        "/ui/.hidden.js",
        "/ui/index.rs",
    ] {
        app.get(path).await.problem(StatusCode::NOT_FOUND);
        let anonymous_reply =
            plat_tests::read(anonymous.get(url(path)).send().await.unwrap()).await;
        anonymous_reply.problem(StatusCode::NOT_FOUND);
    }
}
