//! TypeScript functions with npm packages, end to end against the real npm
//! registry: the API takes `dependencies`, the compiler resolves them to a
//! lockfile, checks and unpacks the tarballs and bundles them in, and the
//! executor runs the bundle.

use plat_tests::{compiler_config, TestApp, Workers, MIGRATOR};
use plat_worker_compiler::CompilerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Validates its input with zod and greets.
const ZOD_GREETER: &str = r#"import { z } from "zod";

const Input = z.object({ name: z.string().min(1) });
type Input = z.infer<typeof Input>;

function refuse(name: string): never {
  throw new Error(`no greeting for ${name}`);
}

export default (input: unknown): { greeting: string } => {
  const { name }: Input = Input.parse(input);
  if (name === "nobody") refuse(name);
  return { greeting: `Hello, ${name}!` };
};
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_validating_its_input_with_zod_runs_and_shows_its_lockfile(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "zod-greeter",
                "language": "typescript",
                "source": ZOD_GREETER,
                "dependencies": { "zod": "^3.23.8" },
                "executionConfig": {},
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "READY", "{function}");

    let good = app.execute(&id, json!({ "name": "Zoë" }), 30).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    assert_eq!(good.body["status"], "SUCCEEDED", "{}", good.body);
    assert_eq!(good.body["output"], json!({ "greeting": "Hello, Zoë!" }));

    // zod's own error, as the handler threw it.
    let bad = app.execute(&id, json!({ "name": 5 }), 30).await;
    assert_eq!(bad.status, StatusCode::OK, "{}", bad.body);
    assert_eq!(bad.body["status"], "FAILED", "{}", bad.body);
    assert_eq!(bad.body["error"]["type"], "HANDLER_ERROR", "{}", bad.body);
    let message = bad.body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("Expected string, received number"),
        "{message}"
    );
    assert!(message.contains("invalid_type"), "{message}");

    // A stack frame in the user's code points at handler.ts, through the
    // bundle.
    let refused = app.execute(&id, json!({ "name": "nobody" }), 30).await;
    assert_eq!(refused.body["status"], "FAILED", "{}", refused.body);
    let logs = refused.body["logs"].as_str().expect("logs");
    let line = ZOD_GREETER
        .lines()
        .position(|l| l.contains("throw new Error"))
        .expect("the throw")
        + 1;
    assert!(
        logs.contains(&format!("at refuse (handler.ts:{line}:")),
        "{logs}"
    );

    let version = app.get("/functions/zod-greeter/versions/1").await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.body);
    let lockfile = version.body["lockfile"].as_str().expect("a lockfile");
    let lock: Value = serde_json::from_str(lockfile).expect("the lockfile is JSON");
    assert_eq!(lock["declared"], json!({ "zod": "^3.23.8" }));
    let zod = lock["direct"]["zod"].as_str().expect("zod's exact version");
    assert!(zod.starts_with("3."), "{zod}");
    let package = &lock["packages"][format!("zod@{zod}")];
    assert!(
        package["integrity"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha512-")),
        "{lockfile}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_package_that_does_not_exist_fails_the_build_by_name(pool: PgPool) {
    // An operator who allows the name: the registry is what refuses it.
    let policy = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(
        policy.path(),
        "[npm]\n\"plat-no-such-package-7f3a9c\" = \"*\"\n",
    )
    .expect("the policy is written");
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    app.start_compiler_with(CompilerConfig {
        dependency_policy: Some(policy.path().to_path_buf()),
        ..compiler_config()
    })
    .await;
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "missing-package",
                "language": "typescript",
                "source": "import x from \"plat-no-such-package-7f3a9c\";\nexport default () => x;\n",
                "dependencies": { "plat-no-such-package-7f3a9c": "^1.0.0" },
                "executionConfig": {},
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "FAILED", "{function}");
    assert_eq!(
        function["compileError"],
        "npm package `plat-no-such-package-7f3a9c` does not exist in the registry"
    );
}

/// Each package of the default allowlist, called once; a probe that throws
/// reports its error instead of failing the run.
const ALLOWLIST_PROBE: &str = r#"import { z } from "zod";
import { addDays, formatISO } from "date-fns";
import { chunk } from "lodash-es";
import dayjs from "dayjs";
import { v4 as uuidv4 } from "uuid";
import { nanoid } from "nanoid";
import ms from "ms";
import YAML from "yaml";

function probe(run: () => unknown): string {
  try {
    return "ok " + JSON.stringify(run());
  } catch (error) {
    return "error " + String(error);
  }
}

export default () => ({
  zod: probe(() => z.number().parse(3)),
  "date-fns": probe(() => formatISO(addDays(new Date(2024, 0, 31), 1), { representation: "date" })),
  "lodash-es": probe(() => chunk([1, 2, 3], 2)),
  dayjs: probe(() => dayjs("2024-01-31").add(1, "day").format("YYYY-MM-DD")),
  uuid: probe(() => uuidv4().length),
  nanoid: probe(() => nanoid().length),
  ms: probe(() => ms("2h")),
  yaml: probe(() => YAML.parse("a: [1, 2]")),
});
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_default_allowlists_packages_build_and_those_needing_web_crypto_say_so(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "allowlist-probe",
                "language": "typescript",
                "source": ALLOWLIST_PROBE,
                "dependencies": {
                    "zod": "^3.23.8",
                    "date-fns": "^4.1.0",
                    "lodash-es": "^4.17.21",
                    "dayjs": "^1.11.13",
                    "uuid": "^11.0.0",
                    "nanoid": "^5.0.0",
                    "ms": "^2.1.3",
                    "yaml": "^2.6.0",
                },
                "executionConfig": {},
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "READY", "{function}");

    let run = app.execute(&id, json!({}), 30).await;
    assert_eq!(run.body["status"], "SUCCEEDED", "{}", run.body);
    let output = &run.body["output"];
    let working = json!({
        "zod": "ok 3",
        "date-fns": "ok \"2024-02-01\"",
        "lodash-es": "ok [[1,2],[3]]",
        "dayjs": "ok \"2024-02-01\"",
        "ms": "ok 7200000",
        "yaml": "ok {\"a\":[1,2]}",
    });
    for (name, result) in working.as_object().expect("an object") {
        assert_eq!(&output[name], result, "{name}: {output}");
    }
    // Plat's runtime has no Web Crypto: uuid and nanoid build, and say so
    // when called.
    let uuid = output["uuid"].as_str().expect("uuid's result");
    assert!(
        uuid.starts_with("error Error: crypto.getRandomValues() not supported"),
        "{output}"
    );
    assert_eq!(
        output["nanoid"],
        "error ReferenceError: crypto is not defined"
    );
}
