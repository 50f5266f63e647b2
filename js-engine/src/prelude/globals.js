// Small Web/Node globals that QuickJS lacks.

if (typeof globalThis.performance !== 'object') {
  Object.defineProperty(globalThis, 'performance', {
    value: { now: () => native.now(), timeOrigin: 0 },
    writable: true, configurable: true, enumerable: false,
  });
}

// The structured clone algorithm for the types a handler is likely to pass
// around; functions and symbols throw like the real one.
function structuredClone(value) {
  const memory = new Map();
  const clone = (v) => {
    if (typeof v === 'function' || typeof v === 'symbol') {
      throw new TypeError(`${safeString(v)} could not be cloned.`);
    }
    if (typeof v !== 'object' || v === null) return v;
    if (memory.has(v)) return memory.get(v);
    let out;
    if (Array.isArray(v)) {
      out = new Array(v.length);
      memory.set(v, out);
      for (const key of Object.keys(v)) out[key] = clone(v[key]);
      return out;
    }
    if (v instanceof Date) out = new Date(v.getTime());
    else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
    else if (v instanceof ArrayBuffer) out = v.slice(0);
    else if (ArrayBuffer.isView(v)) {
      const buffer = clone(v.buffer);
      const Ctor = v.constructor;
      out = v instanceof DataView
        ? new DataView(buffer, v.byteOffset, v.byteLength)
        : new Ctor(buffer, v.byteOffset, v.length);
    } else if (v instanceof Map) {
      out = new Map();
      memory.set(v, out);
      for (const [k, val] of v) out.set(clone(k), clone(val));
      return out;
    } else if (v instanceof Set) {
      out = new Set();
      memory.set(v, out);
      for (const entry of v) out.add(clone(entry));
      return out;
    } else if (isError(v)) {
      const Ctor = globalThis[v.name] && globalThis[v.name].prototype instanceof Error ? globalThis[v.name] : Error;
      out = new Ctor(v.message);
      if (typeof v.stack === 'string') out.stack = v.stack;
    } else if (v instanceof Boolean || v instanceof Number || v instanceof String) {
      out = Object(v.valueOf());
    } else if (v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet) {
      throw new TypeError(`${Object.prototype.toString.call(v)} could not be cloned.`);
    } else {
      out = {};
      memory.set(v, out);
      for (const key of Object.keys(v)) out[key] = clone(v[key]);
      return out;
    }
    memory.set(v, out);
    return out;
  };
  return clone(value);
}

Object.defineProperty(globalThis, 'structuredClone', {
  value: structuredClone, writable: true, configurable: true, enumerable: false,
});

// Helpers the Rust side calls during an invocation.
internals.track = function track(promiseOrValue) {
  const state = { done: false, failed: false, value: undefined };
  Promise.resolve(promiseOrValue).then(
    (value) => {
      state.done = true;
      state.value = value;
    },
    (error) => {
      state.done = true;
      state.failed = true;
      state.value = error;
    },
  );
  return state;
};

internals.stringifyResult = function stringifyResult(value) {
  const json = JSON.stringify(value);
  return json === undefined ? 'null' : json;
};
