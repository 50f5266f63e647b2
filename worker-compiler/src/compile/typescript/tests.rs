//! The whole TypeScript build with the real engine: oxc, QuickJS in
//! wasmtime, and the emitted module. One toolchain per test binary.

use tokio::sync::OnceCell;

use super::nesting::{MAX_CHAIN, MAX_NESTING};
use super::TypeScriptToolchain;
use crate::compile::CompileFailure;

static TOOLCHAIN: OnceCell<TypeScriptToolchain> = OnceCell::const_new();

async fn toolchain() -> &'static TypeScriptToolchain {
    TOOLCHAIN
        .get_or_init(|| async {
            TypeScriptToolchain::prepare()
                .await
                .expect("preparing the TypeScript toolchain")
        })
        .await
}

async fn user_error(source: &str) -> String {
    match toolchain().await.compile(source, None).await {
        Err(CompileFailure::User(message)) => message,
        other => panic!("expected a user compile error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_handler_becomes_a_small_module_that_names_its_engine() {
    let toolchain = toolchain().await;
    let built = toolchain
        .compile(
            "export default (input: { n: number }): number => input.n * 2;\n",
            None,
        )
        .await
        .expect("compiles");

    let (sha256, engine) = toolchain.engine();
    assert_eq!(built.engine_sha256.as_deref(), Some(sha256));
    assert!(engine.starts_with(b"\0asm"));
    // Bytecode and map, not a copy of the engine.
    assert!(built.module.len() < 4096, "{} bytes", built.module.len());
}

#[tokio::test]
async fn preparing_twice_gives_the_same_engine_version() {
    let again = TypeScriptToolchain::prepare().await.expect("prepares");
    assert_eq!(again.engine().0, toolchain().await.engine().0);
}

#[tokio::test]
async fn errors_only_quickjs_finds_point_at_the_typescript_line() {
    // oxc keeps the decorator (no legacy-decorator lowering); QuickJS has no
    // decorators, so the engine's compile step is the one that refuses it.
    let source = "function logged(target: unknown) {}\n\ninterface A { a: number }\n\n@logged\nclass Thing {}\n\nexport default () => new Thing();\n";
    let error = user_error(source).await;
    assert!(error.starts_with("handler.ts:5:"), "{error}");
    assert!(error.contains("SyntaxError"), "{error}");
    assert!(error.contains("5 | @logged"), "{error}");
}

#[tokio::test]
async fn nesting_at_the_limit_compiles_and_beyond_it_is_refused() {
    let nested = |depth: usize| {
        format!(
            "export default () => {}1{};\n",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let deepest = toolchain()
        .await
        .compile(&nested(MAX_NESTING - 1), None)
        .await;
    let refused = user_error(&nested(MAX_NESTING + 1)).await;
    let prefix_operators = user_error(&format!(
        "export default () => {}1;\n",
        "!".repeat(MAX_NESTING + 1)
    ))
    .await;

    assert!(deepest.is_ok(), "{deepest:?}");
    assert!(
        refused.starts_with(&format!(
            "handler.ts:1:{}: error: the code is nested more than",
            22 + MAX_NESTING
        )),
        "{refused}"
    );
    assert!(
        prefix_operators.contains("nested more than"),
        "{prefix_operators}"
    );
}

#[tokio::test]
async fn a_megabyte_long_operator_chain_compiles() {
    // Not nested in the source, but a left-deep tree of 500 000 levels that
    // every oxc visitor recurses through: the compile thread's stack holds it.
    let chain = format!("export default () => 1{};\n", "+1".repeat(500_000));
    let built = toolchain()
        .await
        .compile(&chain, None)
        .await
        .expect("compiles");
    assert!(!built.module.is_empty());
}

#[tokio::test]
async fn every_counted_form_just_inside_the_limit_builds_or_fails_without_exhausting_the_stack() {
    // The nesting limits are only a guard if the compile thread's stack
    // holds whatever they let through: the deepest accepted source of each
    // form goes through the whole build (oxc's parser, semantic analysis,
    // transformer and printer, then QuickJS). A stack overflow would abort
    // this test binary.
    let n = MAX_CHAIN - 20;
    let arrow = |unit: &str, count: usize, end: &str| {
        format!(
            "export default async (a: any) => {}{end};\n",
            unit.repeat(count)
        )
    };
    let sources = [
        ("ternaries", arrow("a ? a : ", n / 2, "a")),
        ("arrows", arrow("a => ", n, "a")),
        ("assignments", arrow("a = ", n, "1")),
        ("exponents", arrow("a ** ", n, "a")),
        ("news", arrow("new ", n, "Object")),
        ("typeofs", arrow("typeof ", n, "a")),
        ("awaits", arrow("await ", n, "a")),
        ("assertions", arrow("<any>", n, "a")),
        (
            "ifs",
            format!(
                "export default (a: any) => {{ {}return a; }};\n",
                "if (a) ".repeat(n)
            ),
        ),
        (
            "else-ifs",
            format!(
                "export default (a: any) => {{ {}return a; }};\n",
                "if (a) a; else ".repeat(n)
            ),
        ),
        (
            "type-arguments",
            format!(
                "type A<T> = T;\nexport default (a: {}number{}) => a;\n",
                "A<".repeat(n),
                ">".repeat(n)
            ),
        ),
        (
            "keyofs",
            format!("export default (a: {}{{}}) => a;\n", "keyof ".repeat(n)),
        ),
        (
            "yields",
            format!(
                "export default function* () {{ {}1; }}\n",
                "yield ".repeat(n)
            ),
        ),
        (
            "namespaces",
            format!(
                "namespace a{} {{ export const b = 1; }}\nexport default () => 1;\n",
                ".a".repeat(n)
            ),
        ),
        (
            "templates",
            format!(
                "export default () => {}1{};\n",
                "`${".repeat(MAX_NESTING - 2),
                "}`".repeat(MAX_NESTING - 2)
            ),
        ),
    ];
    for (name, source) in sources {
        assert!(
            super::nesting::check(&source).is_ok(),
            "{name} is inside the limits"
        );
        match toolchain().await.compile(&source, None).await {
            Ok(_) | Err(CompileFailure::User(_)) => {}
            Err(other) => panic!("{name}: {other:?}"),
        }
    }
}
