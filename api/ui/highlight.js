// Syntax highlighting for the two languages Plat builds, Rust and TypeScript:
// a small tokenizer (no library), so the source view can colour keywords,
// strings, comments, numbers, types, function names, Rust macros and
// lifetimes. It builds DOM nodes (never markup): the source is user text.
//
// It is a highlighter, not a parser: Rust's nested block comments and the
// `${…}` inside template literals are shown as one comment / one string,
// and TypeScript regex literals as plain text. Good enough to read code.

const RUST_KEYWORDS = new Set(
  ('as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod ' +
    'move mut pub ref return self Self static struct super trait true type unsafe use where while').split(' '),
);
const TS_KEYWORDS = new Set(
  ('abstract as async await break case catch class const continue debugger declare default delete do else enum ' +
    'export extends false finally for from function get if implements import in instanceof interface keyof let new ' +
    'null of private protected public readonly return satisfies set static super switch this throw true try type ' +
    'typeof undefined var void while yield').split(' '),
);
// Lowercase names that are still types, so they get the type colour.
const RUST_TYPES = new Set('bool char str u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64'.split(' '));
const TS_TYPES = new Set('any bigint boolean never number object string symbol unknown'.split(' '));

const IDENT = /[A-Za-z_$][\w$]*/y;
const NUMBER = /(?:0[xob][\da-fA-F_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)(?:[a-z]+\d*)?/y;

// Rules are tried in order at each position; the first that matches wins.
// All are sticky (`y`): they match exactly at `lastIndex`.
const RULES = {
  rust: [
    ['comment', /\/\/[^\n]*/y],
    ['comment', /\/\*[\s\S]*?(?:\*\/|$)/y],
    ['meta', /#!?\[[^\]\n]*\]?/y],
    ['string', /b?r(#*)"[\s\S]*?(?:"\1|$)/y], // raw strings: r"…", r#"…"#
    ['string', /b?"(?:[^"\\]|\\[\s\S])*"?/y],
    // A char literal is closed by a quote right after one (maybe escaped)
    // character; otherwise `'a` is a lifetime (or a loop label).
    ['string', /b?'(?:\\(?:u\{[\da-fA-F]{1,6}\}|x[\da-fA-F]{2}|.)|[^'\\\n])'/y],
    ['lifetime', /'[A-Za-z_]\w*/y],
    ['macro', /[A-Za-z_]\w*!(?!=)/y],
  ],
  typescript: [
    ['comment', /\/\/[^\n]*/y],
    ['comment', /\/\*[\s\S]*?(?:\*\/|$)/y],
    ['string', /`(?:[^`\\]|\\[\s\S])*`?/y],
    ['string', /"(?:[^"\\\n]|\\[\s\S])*"?/y],
    ['string', /'(?:[^'\\\n]|\\[\s\S])*'?/y],
    ['meta', /@[A-Za-z_]\w*/y], // decorators
  ],
};

/** The source as [{kind, text}]; `kind` is null for plain text. */
export function tokenize(source, language) {
  const rules = RULES[language] || [];
  const keywords = language === 'rust' ? RUST_KEYWORDS : TS_KEYWORDS;
  const types = language === 'rust' ? RUST_TYPES : TS_TYPES;
  const tokens = [];
  let plain = '';
  const push = (kind, text) => {
    if (plain) tokens.push({ kind: null, text: plain });
    plain = '';
    tokens.push({ kind, text });
  };
  let at = 0;
  outer: while (at < source.length) {
    for (const [kind, regex] of rules) {
      regex.lastIndex = at;
      const match = regex.exec(source);
      if (match && match[0]) {
        push(kind, match[0]);
        at += match[0].length;
        continue outer;
      }
    }
    // A number only at the start of a word (not the `2` of `u32`).
    NUMBER.lastIndex = at;
    const number = /[\w$]/.test(source[at - 1] || '') ? null : NUMBER.exec(source);
    if (number) {
      push('number', number[0]);
      at += number[0].length;
      continue;
    }
    IDENT.lastIndex = at;
    const ident = IDENT.exec(source);
    if (ident) {
      push(classify(ident[0], source, at + ident[0].length, keywords, types), ident[0]);
      at += ident[0].length;
      continue;
    }
    plain += source[at++];
  }
  if (plain) tokens.push({ kind: null, text: plain });
  return tokens;
}

/** keyword, type (capitalised or built in), function (called or defined) or plain. */
function classify(word, source, end, keywords, types) {
  if (keywords.has(word)) return 'keyword';
  if (types.has(word) || /^[A-Z]/.test(word)) return 'type';
  if (/^\s*(?:\(|<[^>\n]*>\s*\()/.test(source.slice(end, end + 80))) return 'function';
  return null;
}

function node({ kind, text }) {
  if (!kind) return document.createTextNode(text);
  const span = document.createElement('span');
  span.className = `tok-${kind}`;
  span.textContent = text;
  return span;
}

/** The highlighted source as a DocumentFragment. */
export function highlight(source, language) {
  const fragment = document.createDocumentFragment();
  for (const token of tokenize(source, language)) fragment.append(node(token));
  return fragment;
}

/**
 * The highlighted source split into lines (an array of node arrays), for a
 * view with line numbers: a token spanning lines (a block comment, a
 * multi-line string) is cut at each newline and keeps its colour.
 */
export function highlightLines(source, language) {
  const lines = [[]];
  for (const token of tokenize(source.replace(/\r\n?/g, '\n'), language)) {
    token.text.split('\n').forEach((part, i) => {
      if (i > 0) lines.push([]);
      if (part) lines[lines.length - 1].push(node({ kind: token.kind, text: part }));
    });
  }
  return lines;
}
