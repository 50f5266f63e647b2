// A subset of Node's `util.inspect`, following its layout rules
// (lib/internal/util/inspect.js: formatValue, reduceToSingleString,
// groupArrayElements) so console output looks the way Node users expect.

const kObjectType = 0;
const kArrayExtrasType = 2;
const customInspect = Symbol.for('nodejs.util.inspect.custom');
const identifierKey = /^[a-zA-Z_][a-zA-Z_0-9]*$/;
const hasOwn = Object.prototype.hasOwnProperty;
const propertyIsEnumerable = Object.prototype.propertyIsEnumerable;
const TypedArray = Object.getPrototypeOf(Uint8Array);

// Built-in constructors have a non-writable `prototype` like classes do, but
// Node prints them as `[Function: Map]`.
const builtinFunctions = new WeakSet();
for (const name of Object.getOwnPropertyNames(globalThis)) {
  const value = globalThis[name];
  if (typeof value === 'function') builtinFunctions.add(value);
}

function inspect(value, options) {
  const ctx = {
    depth: 2,
    breakLength: 80,
    compact: 3,
    maxArrayLength: 100,
    maxStringLength: 10000,
    seen: [],
    circular: undefined,
    indentationLvl: 0,
    currentDepth: 0,
  };
  if (options) Object.assign(ctx, options);
  if (ctx.depth === null) ctx.depth = Infinity;
  return formatValue(ctx, value, 0);
}

function formatNumber(n) {
  return Object.is(n, -0) ? '-0' : `${n}`;
}

const meta = [
  '\\x00', '\\x01', '\\x02', '\\x03', '\\x04', '\\x05', '\\x06', '\\x07',
  '\\b', '\\t', '\\n', '\\x0B', '\\f', '\\r', '\\x0E', '\\x0F',
  '\\x10', '\\x11', '\\x12', '\\x13', '\\x14', '\\x15', '\\x16', '\\x17',
  '\\x18', '\\x19', '\\x1A', '\\x1B', '\\x1C', '\\x1D', '\\x1E', '\\x1F',
];

function strEscape(str) {
  let quote = 39; // '
  if (str.includes("'")) {
    if (!str.includes('"')) quote = 34;
    else if (!str.includes('`') && !str.includes('${')) quote = 96;
  }
  let result = '';
  let last = 0;
  for (let i = 0; i < str.length; i++) {
    const c = str.charCodeAt(i);
    let escaped;
    if (c === quote || c === 92) escaped = `\\${str[i]}`;
    else if (c < 32) escaped = meta[c];
    else if (c === 0x7f) escaped = '\\x7F';
    else if (c >= 0xd800 && c <= 0xdfff) {
      const next = str.charCodeAt(i + 1);
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      escaped = `\\u${c.toString(16).toUpperCase()}`;
    } else continue;
    result += str.slice(last, i) + escaped;
    last = i + 1;
  }
  const q = String.fromCharCode(quote);
  return q + result + str.slice(last) + q;
}

function formatPrimitive(ctx, value) {
  switch (typeof value) {
    case 'string': {
      let trailer = '';
      if (value.length > ctx.maxStringLength) {
        const remaining = value.length - ctx.maxStringLength;
        value = value.slice(0, ctx.maxStringLength);
        trailer = `... ${remaining} more character${remaining > 1 ? 's' : ''}`;
      }
      // Long multi-line strings are split at line breaks, like Node does.
      if (value.length > 16 && value.length > ctx.breakLength - ctx.indentationLvl - 4) {
        return value
          .split(/(?<=\n)/)
          .map(strEscape)
          .join(` +\n${' '.repeat(ctx.indentationLvl + 2)}`) + trailer;
      }
      return strEscape(value) + trailer;
    }
    case 'number':
      return formatNumber(value);
    case 'bigint':
      return `${value}n`;
    case 'boolean':
      return `${value}`;
    case 'undefined':
      return 'undefined';
    default:
      return value.toString(); // symbol
  }
}

function formatValue(ctx, value, recurseTimes) {
  if (typeof value !== 'object' && typeof value !== 'function') return formatPrimitive(ctx, value);
  if (value === null) return 'null';

  const custom = value[customInspect];
  if (typeof custom === 'function' && custom !== inspect) {
    const depth = ctx.depth - recurseTimes;
    const result = custom.call(value, depth, { ...ctx, depth }, inspect);
    if (result !== value) {
      return typeof result === 'string' ? result : formatValue(ctx, result, recurseTimes);
    }
  }

  if (ctx.seen.includes(value)) {
    if (ctx.circular === undefined) ctx.circular = new Map();
    let index = ctx.circular.get(value);
    if (index === undefined) {
      index = ctx.circular.size + 1;
      ctx.circular.set(value, index);
    }
    return `[Circular *${index}]`;
  }
  return formatRaw(ctx, value, recurseTimes);
}

function getConstructorName(obj) {
  let proto = obj;
  while (proto !== null) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, 'constructor');
    if (descriptor !== undefined && typeof descriptor.value === 'function' && descriptor.value.name !== '') {
      return String(descriptor.value.name);
    }
    proto = Object.getPrototypeOf(proto);
  }
  return null;
}

function getPrefix(constructor, tag, fallback, size = '') {
  if (constructor === null) {
    if (tag !== '' && fallback !== tag) return `[${fallback}${size}: null prototype] [${tag}] `;
    return `[${fallback}${size}: null prototype] `;
  }
  if (tag !== '' && constructor !== tag) return `${constructor}${size} [${tag}] `;
  return `${constructor}${size} `;
}

function getKeys(value) {
  const keys = Object.keys(value);
  for (const symbol of Object.getOwnPropertySymbols(value)) {
    if (propertyIsEnumerable.call(value, symbol)) keys.push(symbol);
  }
  return keys;
}

function isIndex(key) {
  if (typeof key !== 'string') return false;
  const n = Number(key);
  return n >>> 0 === n && n !== 4294967295 && String(n) === key;
}

function getFunctionBase(value, constructor, tag) {
  const prototype = Object.getOwnPropertyDescriptor(value, 'prototype');
  let name = '';
  try {
    name = typeof value.name === 'string' ? value.name : '';
  } catch {}
  if (prototype !== undefined && prototype.writable === false && !builtinFunctions.has(value)) {
    let base = name ? `[class ${name}` : '[class (anonymous)';
    const superclass = Object.getPrototypeOf(value);
    if (typeof superclass === 'function' && superclass.name) base += ` extends ${superclass.name}`;
    return `${base}]`;
  }
  let type = 'Function';
  const kind = Object.getPrototypeOf(value)?.[Symbol.toStringTag];
  if (kind === 'AsyncFunction' || kind === 'GeneratorFunction' || kind === 'AsyncGeneratorFunction') {
    type = kind;
  }
  let base = name ? `[${type}: ${name}]` : `[${type} (anonymous)]`;
  if (constructor === null) base += ' [null prototype]';
  if (tag !== '' && constructor !== tag) base += ` [${tag}]`;
  return base;
}

function formatError(ctx, err) {
  let stack = stackForPrint(err);
  // Nested errors are indented with their surroundings.
  if (ctx.indentationLvl !== 0) {
    stack = stack.replaceAll('\n', `\n${' '.repeat(ctx.indentationLvl)}`);
  }
  return stack;
}

function formatRaw(ctx, value, recurseTimes) {
  const constructor = getConstructorName(value);
  let tag = value[Symbol.toStringTag];
  if (typeof tag !== 'string' || tag === constructor) tag = '';
  let keys = getKeys(value);
  let base = '';
  let braces;
  let formatter = () => [];
  let extrasType = kObjectType;

  if (Array.isArray(value)) {
    const prefix = constructor !== 'Array' || tag !== '' ? getPrefix(constructor, tag, 'Array', `(${value.length})`) : '';
    keys = keys.filter((key) => !isIndex(key));
    braces = [`${prefix}[`, ']'];
    if (value.length === 0 && keys.length === 0) return `${braces[0]}]`;
    extrasType = kArrayExtrasType;
    formatter = formatArray;
  } else if (value instanceof Set) {
    const prefix = getPrefix(constructor, tag, 'Set', `(${value.size})`);
    if (value.size === 0 && keys.length === 0) return `${prefix}{}`;
    braces = [`${prefix}{`, '}'];
    formatter = formatSet;
  } else if (value instanceof Map) {
    const prefix = getPrefix(constructor, tag, 'Map', `(${value.size})`);
    if (value.size === 0 && keys.length === 0) return `${prefix}{}`;
    braces = [`${prefix}{`, '}'];
    formatter = formatMap;
  } else if (value instanceof TypedArray) {
    const length = value.length;
    keys = keys.filter((key) => !isIndex(key));
    const prefix = getPrefix(constructor, tag, 'TypedArray', `(${length})`);
    braces = [`${prefix}[`, ']'];
    if (length === 0 && keys.length === 0) return `${braces[0]}]`;
    extrasType = kArrayExtrasType;
    formatter = formatTypedArray;
  } else if (typeof value === 'function') {
    base = getFunctionBase(value, constructor, tag);
    if (keys.length === 0) return base;
    braces = ['{', '}'];
  } else if (value instanceof RegExp) {
    base = RegExp.prototype.toString.call(value);
    if (constructor !== 'RegExp') base = `${getPrefix(constructor, tag, 'RegExp')}${base}`;
    if (keys.length === 0) return base;
    braces = ['{', '}'];
  } else if (value instanceof Date) {
    const time = Date.prototype.getTime.call(value);
    base = Number.isNaN(time) ? 'Invalid Date' : Date.prototype.toISOString.call(value);
    if (keys.length === 0) return base;
    braces = ['{', '}'];
  } else if (isError(value)) {
    base = formatError(ctx, value);
    // Like Node: `name`, `message` and `stack` are left out when the
    // printed stack already shows them.
    keys = keys.filter((key) => {
      if (key !== 'name' && key !== 'message' && key !== 'stack') return true;
      const own = Object.getOwnPropertyDescriptor(value, key);
      return !(own && typeof own.value === 'string' && base.includes(own.value));
    });
    if (keys.length === 0) return base;
    braces = ['{', '}'];
  } else if (value instanceof ArrayBuffer) {
    const prefix = getPrefix(constructor, tag, 'ArrayBuffer');
    braces = [`${prefix}{`, '}'];
    formatter = formatArrayBuffer;
  } else if (value instanceof Promise) {
    braces = [`${getPrefix(constructor, tag, 'Promise')}{`, '}'];
    formatter = formatPromise;
  } else if (value instanceof WeakSet || value instanceof WeakMap) {
    const fallback = value instanceof WeakSet ? 'WeakSet' : 'WeakMap';
    return `${getPrefix(constructor, tag, fallback)}{ <items unknown> }`;
  } else if (value instanceof Number || value instanceof String || value instanceof Boolean ||
             value instanceof BigInt || value instanceof Symbol) {
    const primitive = value.valueOf();
    const type = constructor || 'Object';
    base = `[${type}: ${formatPrimitive({ ...ctx, breakLength: Infinity }, primitive)}]`;
    if (typeof primitive === 'string') keys = keys.filter((key) => !isIndex(key));
    if (keys.length === 0) return base;
    braces = ['{', '}'];
  } else {
    if (constructor === 'Object') {
      if (Object.prototype.toString.call(value) === '[object Arguments]') {
        braces = ['[Arguments] [', ']'];
        extrasType = kArrayExtrasType;
        keys = keys.filter((key) => !isIndex(key));
        formatter = formatArray;
      } else {
        braces = [tag !== '' ? `${getPrefix(constructor, tag, 'Object')}{` : '{', '}'];
      }
    } else {
      braces = [`${getPrefix(constructor, tag, 'Object')}{`, '}'];
    }
    if (keys.length === 0 && extrasType === kObjectType) return `${braces[0]}}`;
  }

  if (recurseTimes > ctx.depth) {
    let name = getPrefix(constructor, tag, Array.isArray(value) ? 'Array' : 'Object').slice(0, -1);
    if (constructor !== null) name = `[${name}]`;
    return name;
  }
  recurseTimes += 1;
  ctx.seen.push(value);
  ctx.currentDepth = recurseTimes;
  let output = formatter(ctx, value, recurseTimes);
  for (const key of keys) output.push(formatProperty(ctx, value, recurseTimes, key, extrasType));
  ctx.seen.pop();

  if (ctx.circular !== undefined) {
    const index = ctx.circular.get(value);
    if (index !== undefined) {
      const reference = `<ref *${index}>`;
      base = base === '' ? reference : `${reference} ${base}`;
    }
  }
  return reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value);
}

function formatProperty(ctx, value, recurseTimes, key, type) {
  const desc = Object.getOwnPropertyDescriptor(value, key) || { value: value[key], enumerable: true };
  let str;
  if (desc.value !== undefined) {
    ctx.indentationLvl += 2;
    str = formatValue(ctx, desc.value, recurseTimes);
    ctx.indentationLvl -= 2;
  } else if (desc.get !== undefined) {
    str = desc.set !== undefined ? '[Getter/Setter]' : '[Getter]';
  } else if (desc.set !== undefined) {
    str = '[Setter]';
  } else {
    str = 'undefined';
  }
  if (type === kArrayExtrasType && isIndex(String(key))) return str;
  let name;
  if (typeof key === 'symbol') name = `[${key.toString()}]`;
  else if (key === '__proto__') name = "['__proto__']";
  else if (desc.enumerable === false) name = `[${key}]`;
  else if (identifierKey.test(key)) name = key;
  else name = strEscape(key);
  return `${name}: ${str}`;
}

function formatArray(ctx, value, recurseTimes) {
  const length = value.length;
  const outputLength = Math.min(ctx.maxArrayLength, length);
  const output = [];
  let holes = 0;
  const flushHoles = () => {
    if (holes > 0) output.push(`<${holes} empty item${holes > 1 ? 's' : ''}>`);
    holes = 0;
  };
  for (let i = 0; i < outputLength; i++) {
    if (!hasOwn.call(value, i)) {
      holes++;
      continue;
    }
    flushHoles();
    output.push(formatProperty(ctx, value, recurseTimes, i, kArrayExtrasType));
  }
  flushHoles();
  const remaining = length - outputLength;
  if (remaining > 0) output.push(`... ${remaining} more item${remaining > 1 ? 's' : ''}`);
  return output;
}

function formatTypedArray(ctx, value) {
  const length = value.length;
  const outputLength = Math.min(ctx.maxArrayLength, length);
  const output = [];
  for (let i = 0; i < outputLength; i++) output.push(formatPrimitive(ctx, value[i]));
  const remaining = length - outputLength;
  if (remaining > 0) output.push(`... ${remaining} more item${remaining > 1 ? 's' : ''}`);
  return output;
}

function formatSet(ctx, value, recurseTimes) {
  const output = [];
  ctx.indentationLvl += 2;
  for (const entry of Set.prototype.values.call(value)) output.push(formatValue(ctx, entry, recurseTimes));
  ctx.indentationLvl -= 2;
  return output;
}

function formatMap(ctx, value, recurseTimes) {
  const output = [];
  ctx.indentationLvl += 2;
  for (const [k, v] of Map.prototype.entries.call(value)) {
    output.push(`${formatValue(ctx, k, recurseTimes)} => ${formatValue(ctx, v, recurseTimes)}`);
  }
  ctx.indentationLvl -= 2;
  return output;
}

function formatArrayBuffer(ctx, value) {
  const bytes = new Uint8Array(value, 0, Math.min(ctx.maxArrayLength, value.byteLength));
  let hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
  const remaining = value.byteLength - bytes.length;
  if (remaining > 0) hex += ` ... ${remaining} more byte${remaining > 1 ? 's' : ''}`;
  return [`[Uint8Contents]: <${hex}>`, `byteLength: ${value.byteLength}`];
}

function formatPromise(ctx, value, recurseTimes) {
  const [state, result] = native.promiseState(value);
  if (state === 0) return ['<pending>'];
  ctx.indentationLvl += 2;
  const str = formatValue(ctx, result, recurseTimes);
  ctx.indentationLvl -= 2;
  return [state === 2 ? `<rejected> ${str}` : str];
}

function isBelowBreakLength(ctx, output, start, base) {
  let totalLength = output.length + start;
  if (totalLength + output.length > ctx.breakLength) return false;
  for (let i = 0; i < output.length; i++) {
    totalLength += output[i].length;
    if (totalLength > ctx.breakLength) return false;
  }
  return base === '' || !base.includes('\n');
}

function reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value) {
  const entries = output.length;
  if (extrasType === kArrayExtrasType && entries > 6) output = groupArrayElements(ctx, output, value);
  if (ctx.currentDepth - recurseTimes < ctx.compact && entries === output.length) {
    const start = output.length + ctx.indentationLvl + braces[0].length + base.length + 10;
    if (isBelowBreakLength(ctx, output, start, base)) {
      const joined = output.join(', ');
      if (!joined.includes('\n')) {
        return `${base ? `${base} ` : ''}${braces[0]} ${joined} ${braces[1]}`;
      }
    }
  }
  const indentation = `\n${' '.repeat(ctx.indentationLvl)}`;
  return `${base ? `${base} ` : ''}${braces[0]}${indentation}  ${output.join(`,${indentation}  `)}${indentation}${braces[1]}`;
}

// Node prints long arrays of short entries in aligned columns.
function groupArrayElements(ctx, output, value) {
  let totalLength = 0;
  let maxLength = 0;
  let outputLength = output.length;
  if (ctx.maxArrayLength < output.length) outputLength--;
  const separatorSpace = 2;
  const dataLen = new Array(outputLength);
  for (let i = 0; i < outputLength; i++) {
    const len = output[i].length;
    dataLen[i] = len;
    totalLength += len + separatorSpace;
    if (maxLength < len) maxLength = len;
  }
  const actualMax = maxLength + separatorSpace;
  if (actualMax * 3 + ctx.indentationLvl < ctx.breakLength &&
      (totalLength / actualMax > 5 || maxLength <= 6)) {
    const averageBias = Math.sqrt(actualMax - totalLength / output.length);
    const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
    const columns = Math.min(
      Math.round(Math.sqrt(2.5 * biasedMax * outputLength) / biasedMax),
      Math.floor((ctx.breakLength - ctx.indentationLvl) / actualMax),
      ctx.compact * 4,
      15,
    );
    if (columns <= 1) return output;
    const tmp = [];
    const maxLineLength = [];
    for (let i = 0; i < columns; i++) {
      let lineLength = 0;
      for (let j = i; j < output.length; j += columns) {
        if (dataLen[j] > lineLength) lineLength = dataLen[j];
      }
      maxLineLength.push(lineLength + separatorSpace);
    }
    let padStart = true;
    if (value !== undefined) {
      for (let i = 0; i < output.length; i++) {
        if (typeof value[i] !== 'number' && typeof value[i] !== 'bigint') {
          padStart = false;
          break;
        }
      }
    }
    for (let i = 0; i < outputLength; i += columns) {
      const max = Math.min(i + columns, outputLength);
      let str = '';
      let j = i;
      for (; j < max - 1; j++) {
        const cell = `${output[j]}, `;
        str += padStart ? cell.padStart(maxLineLength[j - i], ' ') : cell.padEnd(maxLineLength[j - i], ' ');
      }
      str += padStart ? output[j].padStart(maxLineLength[j - i] - separatorSpace, ' ') : output[j];
      tmp.push(str);
    }
    if (ctx.maxArrayLength < output.length) tmp.push(output[outputLength]);
    output = tmp;
  }
  return output;
}

internals.inspect = inspect;
