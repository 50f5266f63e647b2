// Stack traces: Node-style `err.stack`, with positions in the generated
// `handler.js` mapped back to the user's `handler.ts`.
//
// quickjs-ng calls `Error.prepareStackTrace(err, callSites)` when an error is
// created (eagerly, unlike V8 which formats lazily), and stores what it returns
// as `err.stack`. Without it, quickjs-ng's stack has no `Name: message` header
// and positions point at handler.js.

// error -> { stack, frames } as built at creation, so printing can rebuild the
// header when user code changed `name`/`message` after `super()` (V8 formats
// lazily, so Node shows the final name; QuickJS formats eagerly).
const stackInfo = new WeakMap();

function errorHeader(err) {
  try {
    let name = err.name;
    let message = err.message;
    name = name === undefined ? 'Error' : String(name);
    message = message === undefined ? '' : String(message);
    if (name === '') return message;
    if (message === '') return name;
    return `${name}: ${message}`;
  } catch {
    return 'Error';
  }
}

// QuickJS reports 1-based lines and 1-based columns.
function frameLocation(callSite) {
  const file = callSite.getFileName();
  const line = callSite.getLineNumber();
  const col = callSite.getColumnNumber();
  if (file === 'handler.js' && line > 0 && col > 0) {
    const mapped = native.mapPosition(line - 1, col - 1);
    if (mapped !== undefined) return `handler.ts:${mapped[0] + 1}:${mapped[1] + 1}`;
  }
  if (file == null) return '<anonymous>';
  return line > 0 ? `${file}:${line}:${col}` : String(file);
}

function formatFrame(callSite) {
  const name = callSite.getFunctionName();
  if (callSite.isNative()) return `    at ${name || '<anonymous>'} (native)`;
  const location = frameLocation(callSite);
  return name ? `    at ${name} (${location})` : `    at ${location}`;
}

function prepareStackTrace(err, callSites) {
  const frames = callSites.map(formatFrame).join('\n');
  const stack = frames === '' ? errorHeader(err) : `${errorHeader(err)}\n${frames}`;
  if (err !== null && (typeof err === 'object' || typeof err === 'function')) {
    stackInfo.set(err, { stack, frames });
  }
  return stack;
}

Error.prepareStackTrace = prepareStackTrace;

function isError(value) {
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';
}

// The stack to print for an error: the current header plus the frames
// captured at creation, unless user code replaced `err.stack` itself.
function stackForPrint(err) {
  let stack;
  try {
    stack = err.stack;
  } catch {
    stack = undefined;
  }
  const info = stackInfo.get(err);
  if (info !== undefined && stack === info.stack) {
    return info.frames === '' ? errorHeader(err) : `${errorHeader(err)}\n${info.frames}`;
  }
  if (typeof stack === 'string' && stack !== '') return stack;
  return `[${errorHeader(err)}]`;
}

// The first frame of a compile error, as QuickJS reported it (1-based), for
// plat_compile's `    at handler.js:<line>:<col>` line.
function compileErrorReport(err) {
  if (!isError(err)) return `Error: ${safeString(err)}`;
  let report = errorHeader(err);
  const info = stackInfo.get(err);
  const match = info && /^ {4}at (handler\.js:\d+:\d+)$/m.exec(info.frames);
  if (match) report += `\n    at ${match[1]}`;
  return report;
}

function safeString(value) {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

// [stdout message, stderr report] for an uncaught error or rejection.
function describeUncaught(value) {
  let message;
  if (isError(value)) {
    try {
      message = String(value.message);
    } catch {
      message = errorHeader(value);
    }
  } else if (typeof value === 'string') {
    message = value;
  } else if (typeof value === 'object' && value !== null) {
    message = safeJson(value);
    if (typeof message !== 'string') message = inspect(value, { depth: 0, breakLength: Infinity });
  } else {
    message = safeString(value);
  }
  let report;
  try {
    report = `Uncaught ${inspect(value)}`;
  } catch {
    report = `Uncaught ${message}`;
  }
  return [message, report];
}

internals.describeUncaught = describeUncaught;
internals.compileErrorReport = compileErrorReport;
