// `console`: every method writes one line (ending in '\n') to stderr, since
// stdout carries the handler's result. Formatting follows Node's
// `util.formatWithOptions`.

function formatLogArgs(args) {
  const first = args[0];
  let a = 0;
  let str = '';
  let join = '';
  if (typeof first === 'string') {
    if (args.length === 1) return first;
    let lastPos = 0;
    let tempStr;
    for (let i = 0; i < first.length - 1; i++) {
      if (first.charCodeAt(i) !== 37) continue; // '%'
      const nextChar = first.charCodeAt(++i);
      if (a + 1 !== args.length) {
        switch (nextChar) {
          case 115: { // 's'
            const arg = args[++a];
            if (typeof arg === 'number') tempStr = formatNumber(arg);
            else if (typeof arg === 'bigint') tempStr = `${arg}n`;
            else if (typeof arg !== 'object' || arg === null || hasUserToString(arg)) tempStr = String(arg);
            else tempStr = inspect(arg, { depth: 0 });
            break;
          }
          case 106: // 'j'
            tempStr = stringifyForFormat(args[++a]);
            break;
          case 100: { // 'd'
            const arg = args[++a];
            tempStr = typeof arg === 'bigint' ? `${arg}n` : typeof arg === 'symbol' ? 'NaN' : formatNumber(Number(arg));
            break;
          }
          case 79: // 'O'
            tempStr = inspect(args[++a]);
            break;
          case 111: // 'o'
            tempStr = inspect(args[++a], { depth: 4 });
            break;
          case 105: { // 'i'
            const arg = args[++a];
            tempStr = typeof arg === 'bigint' ? `${arg}n` : typeof arg === 'symbol' ? 'NaN' : formatNumber(Number.parseInt(arg));
            break;
          }
          case 102: { // 'f'
            const arg = args[++a];
            tempStr = typeof arg === 'symbol' ? 'NaN' : formatNumber(Number.parseFloat(arg));
            break;
          }
          case 99: // 'c': CSS has no meaning here; consume the argument.
            a++;
            tempStr = '';
            break;
          case 37: // '%'
            str += first.slice(lastPos, i);
            lastPos = i + 1;
            continue;
          default:
            continue;
        }
        if (lastPos !== i - 1) str += first.slice(lastPos, i - 1);
        str += tempStr;
        lastPos = i + 1;
      } else if (nextChar === 37) {
        str += first.slice(lastPos, i);
        lastPos = i + 1;
      }
    }
    if (lastPos !== 0) {
      a++;
      join = ' ';
      if (lastPos < first.length) str += first.slice(lastPos);
    }
  }
  while (a < args.length) {
    const value = args[a];
    str += join;
    str += typeof value !== 'string' ? inspect(value) : value;
    join = ' ';
    a++;
  }
  return str;
}

const builtinToStrings = new Set([
  Object.prototype.toString, Array.prototype.toString, Error.prototype.toString,
  Date.prototype.toString, RegExp.prototype.toString, Function.prototype.toString,
]);

function hasUserToString(obj) {
  try {
    return typeof obj.toString === 'function' && !builtinToStrings.has(obj.toString);
  } catch {
    return false;
  }
}

function stringifyForFormat(value) {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (err instanceof TypeError && /circular/i.test(String(err.message))) return '[Circular]';
    throw err;
  }
}

let groupIndent = '';
const counts = new Map();
const timersByLabel = new Map();

function writeLine(text) {
  if (groupIndent !== '') text = groupIndent + text.replaceAll('\n', `\n${groupIndent}`);
  native.writeStderr(`${text}\n`);
}

function log(...args) {
  writeLine(formatLogArgs(args));
}

const console = {
  log,
  info: log,
  debug: log,
  warn: log,
  error: log,
  dir(value, options) {
    writeLine(inspect(value, options && typeof options === 'object' ? { depth: options.depth ?? 2 } : undefined));
  },
  trace(...args) {
    const err = { name: 'Trace', message: formatLogArgs(args) };
    Error.captureStackTrace(err, console.trace);
    writeLine(err.stack);
  },
  assert(condition, ...args) {
    if (condition) return;
    if (typeof args[0] === 'string') args[0] = `Assertion failed: ${args[0]}`;
    else args.unshift('Assertion failed');
    log(...args);
  },
  table(data) {
    // A real table is rarely worth its weight here; show the data itself.
    log(data);
  },
  count(label = 'default') {
    label = `${label}`;
    const count = (counts.get(label) || 0) + 1;
    counts.set(label, count);
    writeLine(`${label}: ${count}`);
  },
  countReset(label = 'default') {
    counts.delete(`${label}`);
  },
  time(label = 'default') {
    timersByLabel.set(`${label}`, native.now());
  },
  timeLog(label = 'default', ...data) {
    const start = timersByLabel.get(`${label}`);
    if (start === undefined) return;
    log(`${label}: ${formatDuration(native.now() - start)}`, ...data);
  },
  timeEnd(label = 'default') {
    const start = timersByLabel.get(`${label}`);
    if (start === undefined) return;
    timersByLabel.delete(`${label}`);
    writeLine(`${label}: ${formatDuration(native.now() - start)}`);
  },
  group(...label) {
    if (label.length > 0) log(...label);
    groupIndent += '  ';
  },
  groupEnd() {
    groupIndent = groupIndent.slice(0, -2);
  },
};
console.groupCollapsed = console.group;

function formatDuration(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(3)}s` : `${ms.toFixed(3)}ms`;
}

Object.defineProperty(globalThis, 'console', { value: console, writable: true, configurable: true, enumerable: false });
