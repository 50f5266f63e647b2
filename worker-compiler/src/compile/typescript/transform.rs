//! TypeScript → JavaScript with oxc, in-process: parse, check, strip types
//! (and lower what TypeScript adds at run time: enums, parameter properties,
//! namespaces), print, and keep a map from every printed position back to
//! the user's `handler.ts`.
//!
//! oxc re-prints the program, so positions move; the map (from oxc's source
//! map) lets the engine rewrite stack traces and the compiler rewrite
//! QuickJS's own compile errors to the user's lines.

use std::collections::BTreeSet;
use std::path::Path;

use oxc::allocator::Allocator;
use oxc::ast::ast::{Program, Statement};
use oxc::codegen::{Codegen, CodegenOptions};
use oxc::diagnostics::{OxcDiagnostic, Severity};
use oxc::parser::Parser;
use oxc::semantic::SemanticBuilder;
use oxc::span::{LabeledSpan, SourceType, Span};
use oxc::transformer::{TransformOptions, Transformer};

use super::position_map::PositionMap;
use super::source_text::SourceText;

/// The name the user's file has in every message.
pub(crate) const USER_FILE: &str = "handler.ts";
/// At most this many diagnostics are shown; the rest are counted.
const MAX_DIAGNOSTICS: usize = 10;

/// The user's program as JavaScript, with its way back.
#[derive(Debug)]
pub(crate) struct Transformed {
    pub(crate) javascript: String,
    pub(crate) map: PositionMap,
}

/// Transforms `source`; `Err` is the compile error for the user, with
/// `handler.ts:line:column` positions and the offending line.
pub(crate) fn transform(source: &str) -> Result<Transformed, String> {
    transform_with_packages(source, &BTreeSet::new())
}

/// [`transform`] for a function that declares npm `packages`: it may import
/// them (and their subpaths), and nothing else.
pub(crate) fn transform_with_packages(
    source: &str,
    packages: &BTreeSet<String>,
) -> Result<Transformed, String> {
    let text = SourceText::new(source);
    let allocator = Allocator::default();
    let source_type = SourceType::ts().with_module(true);
    let parsed = Parser::new(&allocator, source, source_type).parse();
    if parsed.panicked || parsed.diagnostics.has_errors() {
        return Err(render(&text, parsed.diagnostics.iter()));
    }
    let mut program = parsed.program;

    // Early errors the parser leaves to semantic analysis (redeclared `let`,
    // `await` outside async, …): a user sees them here rather than from
    // QuickJS at a re-printed position.
    let semantic = SemanticBuilder::new()
        .with_check_syntax_error(true)
        .with_excess_capacity(2.0)
        .with_enum_eval(true)
        .build(&program);
    if semantic.diagnostics.has_errors() {
        return Err(render(&text, semantic.diagnostics.iter()));
    }
    let scoping = semantic.semantic.into_scoping();

    // No target lowering: QuickJS runs ES2023, so only TypeScript's own
    // syntax is transformed and no helper (which would be an import) is
    // ever needed.
    let options = TransformOptions::default();
    let transformed = Transformer::new(&allocator, Path::new(USER_FILE), &options)
        .build_with_scoping(scoping, &mut program);
    if transformed.diagnostics.has_errors() {
        return Err(render(&text, transformed.diagnostics.iter()));
    }
    check_module_shape(&text, &program, packages)?;

    let printed = Codegen::new()
        .with_options(CodegenOptions {
            source_map_path: Some(USER_FILE.into()),
            ..CodegenOptions::default()
        })
        .build(&program);
    let map = printed
        .map
        .map(|map| {
            PositionMap::from_tokens(map.get_tokens().map(|t| {
                [
                    t.get_dst_line(),
                    t.get_dst_col(),
                    t.get_src_line(),
                    t.get_src_col(),
                ]
            }))
        })
        .unwrap_or_default();
    Ok(Transformed {
        javascript: printed.code,
        map,
    })
}

/// A function is one file with a default export: imports that survive type
/// stripping would need a module Plat cannot provide, and a file without a
/// default export has no handler to call.
fn check_module_shape(
    text: &SourceText,
    program: &Program<'_>,
    packages: &BTreeSet<String>,
) -> Result<(), String> {
    let mut has_default = false;
    for statement in &program.body {
        let loads: Option<(Span, &str)> = match statement {
            Statement::ImportDeclaration(import) => {
                Some((import.span, import.source.value.as_str()))
            }
            Statement::ExportAllDeclaration(export) => {
                Some((export.span, export.source.value.as_str()))
            }
            Statement::ExportFromDeclaration(export) => {
                Some((export.span, export.source.value.as_str()))
            }
            Statement::ExportDefaultDeclaration(_) => {
                has_default = true;
                None
            }
            _ => None,
        };
        if let Some((span, module)) = loads {
            if packages.contains(package_name(module)) {
                continue;
            }
            if !packages.is_empty() {
                return Err(text.message_at(
                    span.start,
                    &format!(
                        "cannot import \"{module}\": it is not one of the function's \
                         dependencies; declare the package in `dependencies` to use it"
                    ),
                ));
            }
            return Err(text.message_at(
                span.start,
                &format!(
                    "cannot import \"{module}\": a Plat function is a single file; \
                     only type-only imports (`import type …`) are allowed"
                ),
            ));
        }
    }
    if !has_default {
        return Err(format!(
            "{USER_FILE}: error: no default export: export the handler with \
             `export default function handler(input) {{ … }}` (or `export default async (input) => …`)"
        ));
    }
    Ok(())
}

/// The package a bare specifier names: `zod` for `zod/v4`, `@s/p` for
/// `@s/p/x`. A relative or absolute specifier names no package.
fn package_name(specifier: &str) -> &str {
    let mut ends = specifier.match_indices('/').map(|(at, _)| at);
    let end = if specifier.starts_with('@') {
        ends.nth(1)
    } else {
        ends.next()
    };
    &specifier[..end.unwrap_or(specifier.len())]
}

/// One message for the user: each error as `handler.ts:line:col: error: …`
/// with its line and a caret, in source order.
fn render<'d>(text: &SourceText, diagnostics: impl Iterator<Item = &'d OxcDiagnostic>) -> String {
    let mut errors: Vec<(&OxcDiagnostic, Option<&LabeledSpan>)> = diagnostics
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d, main_label(d)))
        .collect();
    errors.sort_by_key(|(_, label)| label.map_or(u32::MAX, |l| l.offset()));
    let mut out = Vec::new();
    for (diagnostic, main) in errors.iter().take(MAX_DIAGNOSTICS) {
        let mut message = match main {
            Some(main) => {
                let mut message = text.message_at(main.offset(), &diagnostic.message);
                if let Some(note) = main.label() {
                    message.push(' ');
                    message.push_str(note);
                }
                // The other labels are context ("declared here"): one line each.
                for label in diagnostic
                    .labels
                    .iter()
                    .filter(|l| !std::ptr::eq(*l, *main))
                {
                    let (line, column) = text.position(label.offset());
                    message.push_str(&format!(
                        "\n  {USER_FILE}:{}:{}: note: {}",
                        line + 1,
                        column + 1,
                        label.label().unwrap_or("related position")
                    ));
                }
                message
            }
            None => format!("{USER_FILE}: error: {}", diagnostic.message),
        };
        if let Some(help) = &diagnostic.help {
            message.push_str("\n  help: ");
            message.push_str(help);
        }
        out.push(message);
    }
    if errors.len() > MAX_DIAGNOSTICS {
        out.push(format!(
            "… and {} more errors",
            errors.len() - MAX_DIAGNOSTICS
        ));
    }
    if out.is_empty() {
        out.push(format!(
            "{USER_FILE}: error: the TypeScript could not be parsed"
        ));
    }
    out.join("\n")
}

/// The position an error is reported at: its primary label, else its last
/// one. oxc lists context first (`a` "has already been declared here") and
/// the offending code last ("it can not be redeclared here").
fn main_label(diagnostic: &OxcDiagnostic) -> Option<&LabeledSpan> {
    diagnostic
        .labels
        .iter()
        .find(|l| l.primary())
        .or_else(|| diagnostic.labels.iter().max_by_key(|l| l.offset()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_types_and_keeps_runtime_typescript() {
        let source = "interface Input { name: string }\n\
            enum Color { Red, Green }\n\
            class Point { constructor(public x: number, private y: number) {} }\n\
            export default async function handler<T>(input: Input): Promise<{ g: string }> {\n\
              const p = new Point(1, 2) as Point;\n\
              return { g: `${input.name!} ${Color.Green} ${p.x}` };\n\
            }\n";
        let out = transform(source).expect("valid TypeScript");
        assert!(!out.javascript.contains("interface"), "{}", out.javascript);
        assert!(out.javascript.contains("Color"), "{}", out.javascript);
        assert!(out.javascript.contains("this.x = x"), "{}", out.javascript);
        assert!(out
            .javascript
            .contains("export default async function handler(input)"));
        assert!(!out.map.to_bytes().is_empty());
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let error = transform("export default function h() {\n  const x = ;\n}\n").unwrap_err();
        assert!(error.starts_with("handler.ts:2:13: error:"), "{error}");
        assert!(error.contains("const x = ;"), "{error}");
        assert!(error.contains('^'), "{error}");
    }

    #[test]
    fn semantic_errors_are_reported() {
        let error = transform("export default function h() {\n  let a = 1;\n  let a = 2;\n}\n")
            .unwrap_err();
        assert!(
            error.starts_with("handler.ts:3:7: error: Identifier `a` has already been declared"),
            "{error}"
        );
        assert!(
            error.contains("handler.ts:2:7: note: `a` has already been declared here"),
            "{error}"
        );
    }

    #[test]
    fn value_imports_are_refused_and_type_imports_allowed() {
        let error = transform("import x from 'fs';\nexport default () => x;\n").unwrap_err();
        assert!(
            error.starts_with("handler.ts:1:1: error: cannot import \"fs\""),
            "{error}"
        );
        let ok = transform("import type { X } from './x';\nexport default (i: X) => i;\n");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_default_export_is_required() {
        let error = transform("export function handler() {}\n").unwrap_err();
        assert!(error.contains("no default export"), "{error}");
    }

    #[test]
    fn generated_positions_map_back_to_typescript_lines() {
        let source = "interface A {\n  a: number\n}\n\nexport default function h(i: A) {\n  throw new Error('x');\n}\n";
        let out = transform(source).unwrap();
        let (line, _) = out
            .javascript
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("throw"))
            .unwrap();
        let column = out
            .javascript
            .lines()
            .nth(line)
            .unwrap()
            .find("throw")
            .unwrap();
        let (ts_line, ts_col) = out.map.lookup(line as u32, column as u32).unwrap();
        assert_eq!((ts_line, ts_col), (5, 2));
    }
}
