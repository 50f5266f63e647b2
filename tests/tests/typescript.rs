//! TypeScript functions end to end: through the API, the compiler's oxc +
//! QuickJS build, and the executor's run of the shared JavaScript engine in
//! wasmtime. Each test asserts what a user sees: the output, the logs, the
//! execution's error, or the build's `compileError`.

use plat_tests::{assert_failed_with, TestApp, MIGRATOR};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// TypeScript's type-only syntax and the constructs it lowers at run time
/// (enums, parameter properties), async code, timers and console output.
const GREETER: &str = r#"
interface Input {
  name: string;
  times?: number;
}

enum Punctuation {
  Plain = ".",
  Loud = "!",
}

type Greeting = { greeting: string; letters: number };

class Greeter<T extends string> {
  constructor(private readonly salutation: T, public punctuation: Punctuation) {}

  greet(name: string): string {
    return `${this.salutation}, ${name}${this.punctuation}`;
  }
}

function later<T>(value: T, ms: number): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms));
}

export default async function handler(input: Input): Promise<Greeting[]> {
  console.log("called with", input);
  const greeter = new Greeter("Hello", Punctuation.Loud);
  const results: Greeting[] = [];
  for (let i = 0; i < (input.times ?? 1); i++) {
    const greeting = await later(greeter.greet(input.name as string), 5);
    results.push({ greeting, letters: [...input.name].length });
  }
  return results;
}
"#;

/// One function, many behaviours: `{"case": "<name>"}` picks one.
const CASES: &str = r#"
class CheckoutError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
    this.name = "CheckoutError";
  }
}

function validate(total: number): number {
  if (total < 0) {
    throw new CheckoutError("the total cannot be negative", 42);
  }
  return total;
}

function recurse(n: number): number {
  return recurse(n + 1) + 1;
}

// Many locals: a big QuickJS frame on the wasm shadow stack per call.
function recurseWide(n: number): number {
  const [a, b, c, d, e, f, g, h, i, j] = [n, n, n, n, n, n, n, n, n, n];
  const [k, l, m, o, p, q, r, s, t, u] = [a, b, c, d, e, f, g, h, i, j];
  const [v, w, x, y, z, aa, bb, cc, dd, ee] = [k, l, m, o, p, q, r, s, t, u];
  return recurseWide(n + 1) + v + w + x + y + z + aa + bb + cc + dd + ee;
}

export default async (input: { case: string; value?: unknown }) => {
  switch (input.case) {
    case "echo":
      return input.value;
    case "throw":
      return validate(-1);
    case "reject":
      await Promise.resolve();
      throw "a plain string";
    case "never":
      return new Promise(() => {});
    case "spin":
      for (;;) {}
    case "allocate": {
      const chunks: string[] = [];
      for (;;) chunks.push("x".repeat(1 << 20) + chunks.length);
    }
    case "cycles": {
      // 100 MB of garbage that only the cycle collector can free.
      let made = 0;
      for (let i = 0; i < 25_000; i++) {
        const node: { payload: string; self?: unknown } = { payload: "x".repeat(4000) + i };
        node.self = node;
        made += 1;
      }
      return made;
    }
    case "recurse":
      return recurse(0);
    case "recurse_wide":
      return recurseWide(0);
    case "undefined":
      return undefined;
    case "random":
      return Math.random();
    case "bigint":
      return { n: 1n };
    case "interval": {
      let ticks = 0;
      await new Promise<void>((resolve) => {
        const id = setInterval(() => {
          ticks += 1;
          if (ticks === 3) {
            clearInterval(id);
            resolve();
          }
        }, 1);
      });
      queueMicrotask(() => console.log("microtask after", ticks));
      setTimeout(() => console.log("timer after the handler returned"), 1);
      return ticks;
    }
    default:
      throw new Error(`unknown case ${input.case}`);
  }
};
"#;

/// The 1-based line on which `needle` appears in `source`.
fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|text| text.contains(needle))
        .expect("needle in source")
        + 1
}

/// Builds `source` and returns the FAILED function's `compileError`.
async fn compile_error(app: &TestApp, name: &str, source: &str) -> String {
    let id = app
        .create_function_in("typescript", name, source, json!({}))
        .await;
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "FAILED", "{function}");
    function["compileError"]
        .as_str()
        .expect("a compile error")
        .to_owned()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn typescript_runs_with_its_types_stripped_and_its_runtime_constructs_kept(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app
        .ready_function_in("typescript", "greeter", GREETER, json!({}))
        .await;

    let reply = app
        .execute(&id, json!({ "name": "Zoë 🌍", "times": 2 }), 30)
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "SUCCEEDED", "{}", reply.body);
    assert_eq!(
        reply.body["output"],
        json!([
            { "greeting": "Hello, Zoë 🌍!", "letters": 5 },
            { "greeting": "Hello, Zoë 🌍!", "letters": 5 },
        ])
    );
    assert_eq!(
        reply.body["logs"],
        "called with { name: 'Zoë 🌍', times: 2 }\n"
    );
    let function = app.get(&format!("/functions/{id}")).await.body;
    assert_eq!(function["language"], "typescript", "{function}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn values_round_trip_and_failures_say_what_went_wrong(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app
        .ready_function_in("typescript", "cases", CASES, json!({}))
        .await;

    let value = json!({
        "text": "naïve café — 日本語 🚀",
        "escapes": "quote \" backslash \\ newline \n tab \t bell \u{7}",
        "safe": 9007199254740991_i64,
        "float": -1.5e300,
        "nested": [[[{ "empty": {} }]], null, true],
    });
    let echo = app
        .execute(&id, json!({ "case": "echo", "value": value }), 30)
        .await
        .body;
    let undefined = app.run_case(&id, "undefined").await;
    let thrown = app.run_case(&id, "throw").await;
    let rejected = app.run_case(&id, "reject").await;
    let bigint = app.run_case(&id, "bigint").await;
    let unknown = app.run_case(&id, "nope").await;

    assert_eq!(echo["status"], "SUCCEEDED", "{echo}");
    // The same number, written as PostgreSQL's jsonb writes it back (every
    // digit): JSON numbers keep their exact text (serde_json's
    // arbitrary_precision), so it is compared as a number.
    let mut output = echo["output"].clone();
    assert_eq!(output["float"].as_f64(), Some(-1.5e300), "{echo}");
    output["float"] = value["float"].clone();
    assert_eq!(output, value);
    assert_eq!(undefined["status"], "SUCCEEDED", "{undefined}");
    assert_eq!(undefined["output"], Value::Null);

    assert_failed_with(&thrown, "HANDLER_ERROR", "the total cannot be negative");
    // The stack points into the user's TypeScript, not the generated code.
    let logs = thrown["logs"].as_str().unwrap();
    assert!(
        logs.starts_with("Uncaught CheckoutError: the total cannot be negative\n"),
        "{logs}"
    );
    let line = line_of(CASES, "throw new CheckoutError");
    assert!(
        logs.contains(&format!("\n    at validate (handler.ts:{line}:")),
        "{logs}"
    );
    // Extra properties are shown; the name is already in the first line.
    assert!(logs.ends_with(" {\n  code: 42\n}\n"), "{logs}");

    assert_failed_with(&rejected, "HANDLER_ERROR", "a plain string");
    assert_eq!(rejected["logs"], "Uncaught 'a plain string'\n");
    assert_failed_with(
        &bigint,
        "HANDLER_ERROR",
        "BigInt are forbidden in JSON.stringify",
    );
    assert_failed_with(&unknown, "HANDLER_ERROR", "unknown case nope");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_event_loop_runs_timers_and_microtasks_until_nothing_is_left(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app
        .ready_function_in("typescript", "cases", CASES, json!({}))
        .await;

    let interval = app.run_case(&id, "interval").await;
    let never = app.run_case(&id, "never").await;
    let first = app.run_case(&id, "random").await;
    let second = app.run_case(&id, "random").await;

    assert_eq!(interval["status"], "SUCCEEDED", "{interval}");
    assert_eq!(interval["output"], 3);
    // Like Node, the run waits for the timer the handler left behind.
    assert_eq!(
        interval["logs"],
        "microtask after 3\ntimer after the handler returned\n"
    );
    assert_failed_with(
        &never,
        "HANDLER_ERROR",
        "the handler's promise never settled (no timers or pending jobs were left)",
    );
    // The engine is a snapshot; its random state must not be part of it.
    assert!(first["output"].is_f64(), "{first}");
    assert_ne!(first["output"], second["output"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn runaway_handlers_hit_the_limits_and_the_engine_keeps_serving(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app
        .ready_function_in(
            "typescript",
            "cases",
            CASES,
            // Room for `cycles` (a few hundred ms alone) on a loaded
            // machine: this test is about limits, not speed.
            json!({ "timeoutMs": 5000, "memoryLimitMb": 64 }),
        )
        .await;

    let spin = app.run_case(&id, "spin").await;
    let cycles = app.run_case(&id, "cycles").await;
    let allocate = app.run_case(&id, "allocate").await;
    let recurse = app.run_case(&id, "recurse").await;
    let recurse_wide = app.run_case(&id, "recurse_wide").await;
    let after = app
        .execute(&id, json!({ "case": "echo", "value": "still here" }), 30)
        .await
        .body;

    assert_failed_with(&spin, "TIMEOUT", "execution exceeded the 5000 ms timeout");
    // Garbage beyond the memory limit, freed as it goes, is no failure.
    assert_eq!(cycles["status"], "SUCCEEDED", "{cycles}");
    assert_eq!(cycles["output"], 25_000);
    assert_failed_with(
        &allocate,
        "OUT_OF_MEMORY",
        "memory limit of 64 MiB exceeded",
    );
    // QuickJS has no stack check of its own on WASI: the wasm stack limit
    // ends runaway recursion, as for a Rust function.
    assert_failed_with(&recurse, "TRAP", "stack overflow");
    assert_failed_with(&recurse_wide, "TRAP", "stack overflow");
    assert_eq!(after["output"], "still here", "{after}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_typescript_fails_the_build_at_the_users_line(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let syntax = compile_error(
        &app, "syntax",
        "export default function handler(input: { n: number }) {\n  const doubled = input.n * ;\n  return doubled;\n}\n",
    )
    .await;
    let import = compile_error(
        &app, "import",
        "import { readFileSync } from \"node:fs\";\nexport default () => readFileSync(\"/etc/passwd\", \"utf8\");\n",
    )
    .await;
    let no_default = compile_error(
        &app,
        "no-default",
        "export function handler() {\n  return 1;\n}\n",
    )
    .await;
    let redeclared = compile_error(
        &app, "redeclared",
        "export default function handler() {\n  let total = 1;\n  let total = 2;\n  return total;\n}\n",
    )
    .await;
    let nested = compile_error(
        &app,
        "nested",
        &format!(
            "export default () => {}1{};\n",
            "[".repeat(5_000),
            "]".repeat(5_000)
        ),
    )
    .await;
    // A worker that survived the hostile sources still builds.
    let fine = app
        .ready_function_in(
            "typescript",
            "fine",
            "export default (input: { a: number }) => input.a + 1;\n",
            json!({}),
        )
        .await;
    let answer = app.execute(&fine, json!({ "a": 41 }), 30).await.body;

    assert!(syntax.starts_with("handler.ts:2:29: error: "), "{syntax}");
    assert!(
        syntax.contains("2 |   const doubled = input.n * ;\n  |                             ^"),
        "{syntax}"
    );
    assert!(
        import.starts_with("handler.ts:1:1: error: cannot import \"node:fs\""),
        "{import}"
    );
    assert!(no_default.contains("no default export"), "{no_default}");
    assert!(redeclared.starts_with("handler.ts:3:"), "{redeclared}");
    assert!(redeclared.contains("total"), "{redeclared}");
    assert!(
        nested.contains("the code is nested more than 1000 levels deep"),
        "{nested}"
    );
    assert_eq!(answer["output"], 42, "{answer}");
}

// oxc recurses once per level of these as it does per bracket, and a stack
// overflow is a process abort: one such source took the whole compiler down,
// and its retried job took down the next one. Each is counted, and refused.
#[sqlx::test(migrator = "MIGRATOR")]
async fn chains_of_operators_arrows_and_keywords_nested_past_the_limit_fail_the_build_and_the_worker_survives(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let chain = |unit: &str, n: usize| format!("export default (a: any) => {}a;\n", unit.repeat(n));
    let hostile = [
        ("ternaries", chain("a ? a : ", 7_000)),
        ("arrows", chain("a => ", 12_000)),
        ("assignments", chain("a = ", 15_000)),
        ("news", chain("new ", 12_000)),
        (
            "awaits",
            format!(
                "export default async (a: any) => {}a;\n",
                "await ".repeat(10_200)
            ),
        ),
        (
            "ifs",
            format!(
                "export default (a: any) => {{ {}return a; }};\n",
                "if(a)".repeat(11_000)
            ),
        ),
        (
            "templates",
            format!(
                "export default () => {}1{};\n",
                "`${".repeat(5_000),
                "}`".repeat(5_000)
            ),
        ),
        (
            "type-arguments",
            format!(
                "type A<T> = T;\nexport default (a: {}number{}) => a;\n",
                "A<".repeat(12_000),
                ">".repeat(12_000)
            ),
        ),
    ];

    let mut errors = Vec::new();
    for (name, source) in &hostile {
        assert!(
            source.len() < 64 * 1024,
            "{name} fits the test API's source limit"
        );
        errors.push((name, compile_error(&app, name, source).await));
    }
    // The worker that refused them is still there, and still builds.
    let fine = app
        .ready_function_in(
            "typescript",
            "fine",
            "export default (input: { a: number }) => input.a + 1;\n",
            json!({}),
        )
        .await;
    let answer = app.execute(&fine, json!({ "a": 41 }), 30).await.body;

    for (name, error) in &errors {
        assert!(error.starts_with("handler.ts:"), "{name}: {error}");
        assert!(
            error.contains("the code is nested more than "),
            "{name}: {error}"
        );
    }
    assert_eq!(answer["output"], 42, "{answer}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_typescript_function_has_web_globals_and_cannot_reach_the_host(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app
        .ready_function_in(
            "typescript",
            "probe",
            r#"
export default () => {
  const g = globalThis as any;
  return {
    require: typeof g.require,
    process: typeof g.process,
    fetch: typeof g.fetch,
    std: typeof g.std,
    os: typeof g.os,
    Deno: typeof g.Deno,
    Javy: typeof g.Javy,
    encoded: [...new TextEncoder().encode("é")],
    decoded: new TextDecoder().decode(new Uint8Array([0xe2, 0x82, 0xac])),
    cloned: structuredClone({ at: new Date(0) }).at instanceof Date,
    performance: typeof performance.now(),
  };
};
"#,
            json!({}),
        )
        .await;

    let probe = app.execute(&id, json!({}), 30).await.body;

    assert_eq!(
        probe["output"],
        json!({
            "require": "undefined",
            "process": "undefined",
            "fetch": "undefined",
            "std": "undefined",
            "os": "undefined",
            "Deno": "undefined",
            "Javy": "undefined",
            "encoded": [195, 169],
            "decoded": "€",
            "cloned": true,
            "performance": "number",
        }),
        "{probe}"
    );
}
