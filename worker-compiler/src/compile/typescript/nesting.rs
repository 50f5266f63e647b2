//! Refusing sources that nest deeper than the compile thread's stack holds.
//!
//! oxc's parser, semantic analysis, transformer and printer each recurse
//! once per level of the program's tree, and a stack overflow is a process
//! abort, not a panic: a hostile source would take the whole worker down,
//! and the retried job would do it again on the next one. The compile thread
//! has a large stack of known size, and this check, run before parsing,
//! keeps every source far inside it.
//!
//! What nests without brackets is counted as well as brackets: each token
//! below makes the parser recurse for what follows it, within the same
//! statement or list item.
//! - right-associative and prefix operators: `a ? b : c ? …`, `x => y => …`,
//!   `a = b = …` (and `+=` etc.), `a ** b ** …`, labels and annotations (`:`);
//! - prefix keywords: `new new …`, `typeof`, `void`, `delete`, `await`,
//!   `yield`, TypeScript's `keyof`, `readonly`, `unique`, `infer`, `asserts`;
//! - statements that contain a statement: `if`, `else`, `while`, `for`,
//!   `with`, `do`;
//! - type arguments and assertions (`<`): `A<A<…>>`, `<T><T>x`;
//! - `namespace a.b.c …`: one module per dot.
//!
//! Those counts start over at `;` and `,` (the end of a statement or a list
//! item) and when the bracket they are in closes; a `<` only at `;` and at
//! its bracket's close, since type arguments are separated by commas; an
//! `else` only at its bracket's close, since `if (a) x; else if (b) y; else …`
//! nests across semicolons. The
//! scan is over bytes, without regard to strings and comments: it may count
//! more than the parser sees, never less, and real code stays far inside
//! the limits. Template nesting (`` `${`${…}`}` ``) is counted by its
//! braces, prefix `!`, `-`, `+` and `~` by the length of their run.

use super::source_text::SourceText;

/// Brackets (and runs of prefix operators) nested deeper than this are
/// refused. Real code stays under a few dozen levels.
pub(super) const MAX_NESTING: usize = 1_000;
/// Brackets and the tokens above, nested deeper than this, are refused. Higher
/// than [`MAX_NESTING`] because a file that leaves out semicolons counts a
/// whole block's assignments and keywords as one statement.
pub(super) const MAX_CHAIN: usize = 10_000;

/// Words that make the parser recurse for what follows them (and `else`,
/// counted apart).
const NESTING_WORDS: &[&str] = &[
    "new", "typeof", "void", "delete", "await", "yield", "if", "while", "for", "with", "do",
    "extends", "keyof", "readonly", "unique", "infer", "asserts",
];

/// Refuses a source nested deeper than the limits, at the offending byte.
pub(super) fn check(source: &str) -> Result<(), String> {
    match deepest_point(source.as_bytes()) {
        None => Ok(()),
        Some((offset, message)) => Err(SourceText::new(source).message_at(offset as u32, &message)),
    }
}

/// Open counts of one bracket level (the top level is one too), by what
/// ends them.
#[derive(Default)]
struct Level {
    /// Ended by `;` or `,`: operators and most keywords.
    item: usize,
    /// Ended by `;`: `<`, whose type arguments are separated by commas.
    statement: usize,
    /// Ended only by the bracket's close: `else`, since in
    /// `if (a) x; else if (b) y; else …` each `else` holds the rest.
    block: usize,
}

impl Level {
    fn total(&self) -> usize {
        self.item + self.statement + self.block
    }
}

/// What ends a count (see [`Level`]).
#[derive(Clone, Copy)]
enum Until {
    Item,
    Statement,
    Block,
}

/// The scan's state: the open brackets, each with its counts, and the sum
/// of all counts (what the parser holds on its stack at this point).
struct Scan {
    levels: Vec<Level>,
    open: usize,
    prefix_run: usize,
    in_namespace_name: bool,
}

impl Scan {
    fn level(&mut self) -> &mut Level {
        self.levels
            .last_mut()
            .expect("the top level is never popped")
    }

    fn add(&mut self, until: Until) {
        let level = self.level();
        match until {
            Until::Item => level.item += 1,
            Until::Statement => level.statement += 1,
            Until::Block => level.block += 1,
        }
        self.open += 1;
    }

    /// A `,` (`statement == false`) or a `;`.
    fn end(&mut self, statement: bool) {
        let level = self.level();
        let mut ended = std::mem::take(&mut level.item);
        if statement {
            ended += std::mem::take(&mut level.statement);
        }
        self.open -= ended;
    }

    fn push(&mut self) {
        self.levels.push(Level::default());
    }

    fn pop(&mut self) {
        if self.levels.len() > 1 {
            let level = self.levels.pop().expect("checked above");
            self.open -= level.total();
        }
    }

    fn brackets(&self) -> usize {
        self.levels.len() - 1
    }
}

/// The first byte where a limit is passed, with the message for it.
fn deepest_point(source: &[u8]) -> Option<(usize, String)> {
    let mut scan = Scan {
        levels: vec![Level::default()],
        open: 0,
        prefix_run: 0,
        in_namespace_name: false,
    };
    let mut i = 0;
    while i < source.len() {
        let start = i;
        let byte = source[i];
        let next = source.get(i + 1).copied();
        i += 1;
        // Runs of prefix operators (`!!!!x`, `- - -x`) recurse like brackets.
        scan.prefix_run = match byte {
            b'!' | b'-' | b'+' | b'~' => scan.prefix_run + 1,
            b' ' | b'\t' | b'\n' | b'\r' => scan.prefix_run,
            _ => 0,
        };
        match byte {
            b'(' | b'[' | b'{' => {
                scan.in_namespace_name = false;
                scan.push();
            }
            b')' | b']' | b'}' => scan.pop(),
            b';' => {
                scan.in_namespace_name = false;
                scan.end(true);
            }
            b',' => scan.end(false),
            // `??` and `?.` (not `?.5`, a ternary) do not nest.
            b'?' if next == Some(b'?') => i += 1,
            b'?' if next == Some(b'.') && !source.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            b'?' | b':' => scan.add(Until::Item),
            b'=' if next == Some(b'>') => {
                scan.add(Until::Item);
                i += 1;
            }
            // `==` and `===` do not nest; `=` and `+=`, `**=`, … do.
            b'=' if next == Some(b'=') => {
                while source.get(i) == Some(&b'=') {
                    i += 1;
                }
            }
            // The end of `!=`, `<=`, `>=`.
            b'=' if start > 0 && matches!(source[start - 1], b'!' | b'<' | b'>') => {}
            b'=' => scan.add(Until::Item),
            b'*' if next == Some(b'*') => {
                scan.add(Until::Item);
                i += 1;
            }
            b'<' => scan.add(Until::Statement),
            b'.' if scan.in_namespace_name => scan.add(Until::Item),
            _ if is_word_byte(byte) => {
                while source.get(i).copied().is_some_and(is_word_byte) {
                    i += 1;
                }
                let word = &source[start..i];
                if word == b"else" {
                    scan.add(Until::Block);
                } else if NESTING_WORDS.iter().any(|w| w.as_bytes() == word) {
                    scan.add(Until::Item);
                }
                if word == b"namespace" || word == b"module" {
                    scan.in_namespace_name = true;
                }
            }
            _ => {}
        }
        if scan.brackets() > MAX_NESTING || scan.prefix_run > MAX_NESTING {
            return Some((
                start,
                format!("the code is nested more than {MAX_NESTING} levels deep"),
            ));
        }
        if scan.brackets() + scan.open > MAX_CHAIN {
            return Some((
                start,
                format!(
                    "the code is nested more than {MAX_CHAIN} levels deep, counting the \
                     operators, arrows and keywords that contain the code after them \
                     (such as `a ? b : c ? …`, `x => y => …`, `new new …`, `if (a) if (b) …`)"
                ),
            ));
        }
    }
    None
}

/// Letters, digits, `_`, `$` and any non-ASCII byte (part of a Unicode
/// identifier or of text: either way, not an operator).
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unit` repeated `n` times, each containing the ones after it.
    fn repeated(unit: &str, n: usize) -> String {
        format!("export default () => {}1;\n", unit.repeat(n))
    }

    #[test]
    fn forms_that_nest_without_brackets_are_refused_past_the_limit() {
        for unit in [
            "a ? b : ",
            "a ? ",
            "x => ",
            "async (x) => ",
            "a = ",
            "a += ",
            "a ** ",
            "new ",
            "typeof ",
            "void ",
            "delete ",
            "await ",
            "if (a) ",
            "else ",
            "while (a) ",
            "for (;;) ",
            "label: ",
            "if (a) a; else ",
            "A<x, ",
            "<T>",
            "keyof ",
        ] {
            assert!(check(&repeated(unit, 100)).is_ok(), "{unit:?} 100 deep");
            let refused = check(&repeated(unit, MAX_CHAIN + 1)).unwrap_err();
            assert!(
                refused.contains(&format!("nested more than {MAX_CHAIN} levels deep")),
                "{unit:?}: {refused}"
            );
        }
        let namespace = format!(
            "namespace a{} {{}}\nexport default () => 1;\n",
            ".a".repeat(MAX_CHAIN + 1)
        );
        assert!(check(&namespace).is_err());
    }

    #[test]
    fn statements_and_list_items_end_what_they_opened() {
        let statements = "const a = b ? c : d => new E(typeof f);\n".repeat(20_000);
        let items = format!("const x = [{}];\n", "a ? b : c, ".repeat(20_000));
        let closed = "f(a ? b : c ? d : e)\n".repeat(20_000);

        assert!(check(&statements).is_ok());
        assert!(check(&items).is_ok());
        assert!(check(&closed).is_ok());
    }

    #[test]
    fn real_code_without_semicolons_is_far_inside_the_limit() {
        let body = "  const total = items.reduce((sum, item) => sum + item.price, 0)\n  \
                    if (total > limit) return { ok: false, total }\n"
            .repeat(1_000);
        let source = format!(
            "export default async function handler(input: {{ items: Item[] }}): Promise<Out> {{\n{body}}}\n"
        );

        assert!(check(&source).is_ok());
    }

    #[test]
    fn operators_that_do_not_nest_are_not_counted() {
        let source = format!(
            "export default (a: any) => a{};\n",
            " === a ?? a?.b !== a == a".repeat(5_000)
        );

        assert!(check(&source).is_ok());
    }
}
