//! Turning rustc's JSON diagnostics (`--error-format=json`) into the `compileError`
//! shown to the user.
//!
//! Three rules:
//! - errors in the user's `handler.rs` are shown as rustc rendered them; rustc runs in
//!   the folder holding `handler.rs`, so `handler.rs:LINE:COL` is the user's own line;
//! - errors in our generated `main.rs` mean the handler does not fit the adapter (wrong
//!   or missing signature): they become one message explaining the expected signature
//!   plus rustc's one-line messages, never a snippet of generated code;
//! - anything that names a file other than those two (a `#[path]` or `include_str!`
//!   pointed at the toolchain, `/etc/passwd`, ...) is redacted to its location in
//!   `handler.rs`: rustc quotes the files it reads, and must not quote ours to users.

use serde::Deserialize;

/// The user's source, as rustc names it (rustc runs in the folder holding it).
pub(super) const USER_FILE: &str = "handler.rs";
/// Our generated entry point, next to the user's file.
pub(super) const GENERATED_FILE: &str = "main.rs";
/// Path prefixes that are safe to show: the standard library (remapped by the Rust
/// project) and the allowlisted crates (remapped by `prebuilt` to this prefix). Neither
/// exists inside the sandbox, so rustc can name them but never quote them.
pub(super) const REMAPPED_STD_PREFIX: &str = "/rustc/";
pub(super) const REMAPPED_DEPS_PREFIX: &str = "/deps-src/";
/// Cap on the text shown to the user.
const MAX_REPORT_BYTES: usize = 16 * 1024;

const SIGNATURE_HELP: &str = "\
error: handler.rs must define the function Plat calls, with this shape:
    pub fn handler(input: T) -> Result<U, E>
  where T: serde::Deserialize  (the input JSON is deserialized into it),
        U: serde::Serialize    (it is returned as the output JSON),
        E: std::fmt::Display   (its text is the error message).
  For example: pub fn handler(input: serde_json::Value) -> Result<serde_json::Value, String>";

/// What the compiler's diagnostics amount to.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// The user's code has errors: this text is the `compileError`.
    UserErrors(String),
    /// rustc crashed (an ICE) without reporting an ordinary error.
    InternalCompilerError,
    /// No error diagnostic at all: the failure is not rustc's report on the code.
    NoErrors,
}

/// Reads rustc's stderr (one JSON diagnostic per line, maybe other lines in between).
pub(super) fn judge(stderr: &str) -> Verdict {
    let mut user_errors = Vec::new();
    let mut signature_errors: Vec<String> = Vec::new();
    let mut crashed = false;

    let diagnostics = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Diagnostic>(line).ok())
        .filter(|d| d.message_type.as_deref().is_none_or(|t| t == "diagnostic"));
    for diagnostic in diagnostics {
        if diagnostic
            .level
            .starts_with("error: internal compiler error")
        {
            crashed = true;
            continue;
        }
        // The trailing "aborting due to N previous errors" adds nothing.
        if diagnostic.level != "error" || diagnostic.message.starts_with("aborting due to") {
            continue;
        }
        let primary_file = diagnostic
            .spans
            .iter()
            .find(|s| s.is_primary)
            .map(|s| s.file_name.as_str());
        if primary_file == Some(GENERATED_FILE) {
            let line = signature_error_line(&diagnostic);
            if !signature_errors.contains(&line) {
                signature_errors.push(line);
            }
        } else if primary_file.is_some_and(|file| !is_allowed_file(file)) {
            // rustc parsed a foreign file (`#[path]`, `include!`): even its message
            // quotes that file's tokens.
            user_errors.push(redacted(&diagnostic, Redact::Message));
        } else if diagnostic.is_safe_to_show() {
            user_errors.push(
                diagnostic
                    .rendered
                    .as_deref()
                    .unwrap_or(&diagnostic.message)
                    .trim_end()
                    .to_owned(),
            );
        } else {
            user_errors.push(redacted(&diagnostic, Redact::DetailsOnly));
        }
    }

    if !signature_errors.is_empty() {
        user_errors.push(format!("{SIGNATURE_HELP}\n{}", signature_errors.join("\n")));
    }
    if !user_errors.is_empty() {
        let user_errors: Vec<String> = user_errors.iter().map(|e| printable(e)).collect();
        Verdict::UserErrors(join_capped(&user_errors, MAX_REPORT_BYTES))
    } else if crashed {
        Verdict::InternalCompilerError
    } else {
        Verdict::NoErrors
    }
}

/// One line for an error in the generated code: rustc's plain message (no snippet of
/// generated code), and where in `handler.rs` rustc looked, if it says.
fn signature_error_line(diagnostic: &Diagnostic) -> String {
    let message = if mentions_foreign_path(&diagnostic.message) {
        "(message hidden: it refers to a file outside handler.rs)"
    } else {
        diagnostic.message.as_str()
    };
    match diagnostic.user_location() {
        Some((line, column)) => format!("  rustc: {message} (see {USER_FILE}:{line}:{column})"),
        None => format!("  rustc: {message}"),
    }
}

enum Redact {
    /// Keep rustc's one-line message if it names no foreign path.
    DetailsOnly,
    /// The message itself comes from a foreign file: drop it too.
    Message,
}

/// A diagnostic that involves foreign files or paths, reduced to what is safe: its
/// message (unless `redact` says otherwise) and its location in `handler.rs`.
fn redacted(diagnostic: &Diagnostic, redact: Redact) -> String {
    let message = match redact {
        Redact::DetailsOnly if !mentions_foreign_path(&diagnostic.message) => {
            diagnostic.message.as_str()
        }
        _ => "this code refers to a file outside handler.rs",
    };
    let mut text = format!("error: {message}");
    if let Some((line, column)) = diagnostic.user_location() {
        text.push_str(&format!("\n --> {USER_FILE}:{line}:{column}"));
    }
    text.push_str("\n  = note: details hidden: a function can only use its handler.rs and the allowed crates (serde, serde_json)");
    text
}

/// `text` with NUL characters shown as `␀`, as rustc shows them in its rendered
/// snippets. rustc's plain `message` keeps them raw, and user code controls some
/// messages (`compile_error!("\0")`, `#[diagnostic::on_unimplemented(message = ..)]`);
/// PostgreSQL's `text` cannot hold NUL, so a raw one made the result unstorable and
/// the build was retried until it failed as "lost with its worker".
pub(super) fn printable(text: &str) -> String {
    text.replace('\0', "\u{2400}")
}

fn join_capped(parts: &[String], cap: usize) -> String {
    let mut report = String::new();
    for (index, part) in parts.iter().enumerate() {
        let separator = if report.is_empty() { "" } else { "\n\n" };
        if report.len() + separator.len() + part.len() <= cap {
            report.push_str(separator);
            report.push_str(part);
            continue;
        }
        let mut left_out = parts.len() - index;
        if report.is_empty() {
            // A single huge diagnostic: keep its start rather than nothing.
            report.push_str(truncate_at_char_boundary(part, cap));
            report.push_str("\n...");
            left_out -= 1;
        }
        if left_out > 0 {
            report.push_str(&format!("\n\n... and {left_out} more errors not shown"));
        }
        break;
    }
    report
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn is_allowed_file(name: &str) -> bool {
    name == USER_FILE
        || name == GENERATED_FILE
        || name.starts_with(REMAPPED_STD_PREFIX)
        || name.starts_with(REMAPPED_DEPS_PREFIX)
}

/// Whether `text` names a path outside the job: an absolute path (other than the
/// remapped std/deps sources) or a `../` escape. Deliberately broad: a false positive
/// only hides details of one message, a false negative could quote a host file.
fn mentions_foreign_path(text: &str) -> bool {
    if text.contains("../") {
        return true;
    }
    let bytes = text.as_bytes();
    text.match_indices('/').any(|(i, _)| {
        let starts_word = i == 0
            || matches!(
                bytes[i - 1],
                b' ' | b'\t' | b'\n' | b'`' | b'"' | b'\'' | b'(' | b'[' | b'<' | b'=' | b','
            );
        let names_something = bytes
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'~'));
        let remapped = text[i..].starts_with(REMAPPED_STD_PREFIX)
            || text[i..].starts_with(REMAPPED_DEPS_PREFIX);
        starts_word && names_something && !remapped
    })
}

/// The subset of rustc's JSON diagnostic format we read
/// (https://doc.rust-lang.org/rustc/json.html).
#[derive(Debug, Deserialize)]
struct Diagnostic {
    #[serde(rename = "$message_type")]
    message_type: Option<String>,
    message: String,
    level: String,
    #[serde(default)]
    spans: Vec<Span>,
    #[serde(default)]
    children: Vec<Diagnostic>,
    rendered: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Span {
    file_name: String,
    line_start: usize,
    column_start: usize,
    is_primary: bool,
    label: Option<String>,
    suggested_replacement: Option<String>,
    expansion: Option<Box<Expansion>>,
}

#[derive(Debug, Deserialize)]
struct Expansion {
    /// Where the macro was invoked.
    span: Span,
    /// Where the macro is defined.
    def_site_span: Option<Span>,
}

impl Diagnostic {
    /// Every span of this diagnostic and its children, including macro call and
    /// definition sites.
    fn all_spans(&self) -> Vec<&Span> {
        fn walk<'a>(span: &'a Span, out: &mut Vec<&'a Span>) {
            out.push(span);
            if let Some(expansion) = &span.expansion {
                walk(&expansion.span, out);
                if let Some(def) = &expansion.def_site_span {
                    walk(def, out);
                }
            }
        }
        let mut out = Vec::new();
        for span in &self.spans {
            walk(span, &mut out);
        }
        for child in &self.children {
            out.extend(child.all_spans());
        }
        out
    }

    /// Every text rustc wrote itself (messages, labels, suggestions). Source lines are
    /// left out: they come from the spans' files, which `is_safe_to_show` checks.
    fn all_texts(&self) -> Vec<&str> {
        let mut texts = vec![self.message.as_str()];
        for span in &self.spans {
            texts.extend(span.label.as_deref());
            texts.extend(span.suggested_replacement.as_deref());
        }
        for child in &self.children {
            texts.extend(child.all_texts());
        }
        texts
    }

    fn is_safe_to_show(&self) -> bool {
        self.all_spans()
            .iter()
            .all(|s| is_allowed_file(&s.file_name))
            && !self.all_texts().iter().any(|t| mentions_foreign_path(t))
    }

    /// The most relevant `handler.rs` line and column: the primary span if it is
    /// there, else the first span there (e.g. the macro call behind the error).
    fn user_location(&self) -> Option<(usize, usize)> {
        let spans = self.all_spans();
        spans
            .iter()
            .find(|s| s.is_primary && s.file_name == USER_FILE)
            .or_else(|| spans.iter().find(|s| s.file_name == USER_FILE))
            .map(|s| (s.line_start, s.column_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_and_escapes_count_as_foreign() {
        assert!(mentions_foreign_path(
            "couldn't read `/etc/passwd`: No such file"
        ));
        assert!(mentions_foreign_path("/opt/rust/lib/rustlib/components"));
        assert!(mentions_foreign_path("file not found: ../../etc/shadow"));
    }

    #[test]
    fn ordinary_rust_text_is_not_mistaken_for_a_path() {
        assert!(!mentions_foreign_path("expected `u32`, found `&str`"));
        assert!(!mentions_foreign_path(
            "cannot divide `i32` by `&str`: a / b, a/b, x /= 2"
        ));
        assert!(!mentions_foreign_path(
            "// a comment, /// docs, https://example.com"
        ));
        assert!(!mentions_foreign_path(
            "required by a bound in /rustc/abc/library/core/src/lib.rs"
        ));
        assert!(!mentions_foreign_path(
            "see /deps-src/cargo/registry/src/serde_json-1.0/src/de.rs"
        ));
    }

    #[test]
    fn the_report_is_capped_and_says_how_many_errors_were_left_out() {
        let parts = vec!["x".repeat(10_000), "y".repeat(10_000), "z".repeat(10)];
        let report = join_capped(&parts, MAX_REPORT_BYTES);
        assert!(report.len() < MAX_REPORT_BYTES + 100);
        assert!(report.ends_with("... and 2 more errors not shown"));
    }

    #[test]
    fn the_aborting_summary_and_warnings_are_not_errors() {
        let stderr = r#"{"$message_type":"diagnostic","message":"unused variable: `x`","level":"warning","spans":[],"children":[],"rendered":"warning: unused"}
{"$message_type":"diagnostic","message":"aborting due to 1 previous error","level":"error","spans":[],"children":[],"rendered":"error: aborting due to 1 previous error"}"#;
        assert_eq!(judge(stderr), Verdict::NoErrors);
    }

    #[test]
    fn nul_characters_are_shown_as_a_symbol_so_the_report_can_be_stored() {
        assert_eq!(printable("before\0after"), "before\u{2400}after");
        assert_eq!(printable("plain"), "plain");
    }
}
