// What every page of the dashboard uses: building DOM, calling the API with
// the session, the hash router, polling that stops when the page is left,
// and formatting. No framework: pages are functions that return a DOM node.
//
// Safety rule: text from the API (names, outputs, logs, errors) only ever
// becomes DOM text (h() children are text nodes), never markup.

/** h('div', {class: 'x', onclick: fn}, 'text', node, [more], null) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces `el`'s children the way h() takes them: null/false skipped,
 * arrays flattened, strings as text (DOM replaceChildren would print "null").
 */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An SVG element (charts); attributes are set as given. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

// ---------------------------------------------------------------- the API

/** Who is signed in (GET /me) and the CSRF token writes must carry. */
export const session = { user: null, csrf: null };

/** A refused or failed call: `status` and the problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/**
 * Calls the JSON API with the session cookie. `options`: {method, body,
 * query (object; null/'' values are left out), headers, raw}. Answers the
 * parsed body, or with `raw: true` {status, headers, body}. A 401 sends the
 * user to the sign-in page; any other non-2xx throws ApiError.
 */
export async function api(path, options = {}) {
  const method = options.method || 'GET';
  const headers = { accept: 'application/json', ...(options.headers || {}) };
  let body;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  if (method !== 'GET' && session.csrf) headers['x-csrf-token'] = session.csrf;
  let url = path;
  if (options.query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query)) {
      if (value !== null && value !== undefined && value !== '') params.set(key, value);
    }
    const text = params.toString();
    if (text) url += (url.includes('?') ? '&' : '?') + text;
  }
  const response = await fetch(url, { method, headers, body, credentials: 'same-origin' });
  const type = response.headers.get('content-type') || '';
  const parsed = type.includes('json') ? await response.json().catch(() => null) : await response.text();
  if (response.status === 401 && !options.allowUnauthorized) {
    session.user = null;
    session.csrf = null;
    navigate('/login?next=' + encodeURIComponent(currentPath()));
    throw new ApiError(401, parsed);
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return options.raw ? { status: response.status, headers: response.headers, body: parsed } : parsed;
}

/** Fills `session` from GET /me; false when nobody is signed in. */
export async function loadSession() {
  try {
    const me = await api('/me', { allowUnauthorized: true });
    session.user = me;
    session.csrf = me.csrfToken || null;
    return true;
  } catch (error) {
    if (error.status === 401) return false;
    throw error;
  }
}

export const isAdmin = () => session.user?.role === 'ADMIN';

// ---------------------------------------------------------------- routing

const routes = [];
let leaving = [];

/** route('/functions/:id', (params, query) => node | Promise<node>) */
export function route(pattern, render, { public: isPublic = false } = {}) {
  const names = [];
  const regex = new RegExp(
    '^' + pattern.replace(/:([a-zA-Z]+)/g, (_, name) => (names.push(name), '([^/]+)')) + '$',
  );
  routes.push({ regex, names, render, isPublic });
}

/** The page's path, the part after `#` (`/functions?q=x`). */
export function currentPath() {
  return location.hash.slice(1) || '/functions';
}

/** A link target for a dashboard path. */
export const link = (path) => '#' + path;

export function navigate(path) {
  if (currentPath() === path) render();
  else location.hash = path;
}

/** Runs `fn` when the current page is left (timers, listeners). */
export function onLeave(fn) {
  leaving.push(fn);
}

/**
 * Calls `step` now and then every `ms` until it returns true (done), the
 * page is left, or it throws (shown in the console; polling goes on).
 */
export function poll(step, ms = 1000) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    let done = false;
    try {
      done = await step();
    } catch (error) {
      console.warn('poll', error);
    }
    if (!done && !stopped) timer = setTimeout(run, document.hidden ? ms * 5 : ms);
  };
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
  run();
}

let layout = null;

/** Set by app.js: wraps a page node in the header and navigation. */
export function setLayout(fn) {
  layout = fn;
}

export async function render() {
  for (const fn of leaving) fn();
  leaving = [];
  const full = currentPath();
  const [path, search] = full.split('?');
  const query = Object.fromEntries(new URLSearchParams(search || ''));
  const main = document.getElementById('app');
  for (const { regex, names, render: page, isPublic } of routes) {
    const match = regex.exec(path);
    if (!match) continue;
    const params = Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(match[i + 1])]));
    if (!isPublic && !session.user && !(await loadSession())) {
      navigate('/login?next=' + encodeURIComponent(full));
      return;
    }
    let node;
    try {
      node = await page(params, query);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      node = h('section', {}, h('h1', {}, 'Something went wrong'), errorBox(error));
    }
    main.replaceChildren(isPublic ? node : layout(node));
    document.title = (main.querySelector('h1')?.textContent || 'Plat') + ' · Plat';
    window.scrollTo(0, 0);
    return;
  }
  main.replaceChildren(layout(h('section', {}, h('h1', {}, 'Not found'), h('p', {}, `No page at ${path}.`))));
}

// ---------------------------------------------------------------- pieces

/** An error as the page shows it: the problem's title and detail. */
export function errorBox(error) {
  const problem = error instanceof ApiError ? error.problem : {};
  return h(
    'div',
    { class: 'error', role: 'alert' },
    h('strong', {}, problem.title || 'Error'),
    ' ',
    problem.detail || error.message || String(error),
  );
}

/** A status badge: READY, FAILED, SUCCEEDED, … */
export function badge(status) {
  return h('span', { class: `badge badge-${String(status).toLowerCase()}` }, status);
}

/**
 * A table's head: `thead('Name', ['Runs', 'num'], admin && 'Owner')`. A
 * [text, class] pair gets that class; a false or null column is left out.
 */
export function thead(...columns) {
  const cells = columns
    .filter((column) => column !== null && column !== undefined && column !== false)
    .map((column) => (Array.isArray(column) ? h('th', { class: column[1] }, column[0]) : h('th', {}, column)));
  return h('thead', {}, h('tr', {}, cells));
}

let fieldCount = 0;

/**
 * A labelled form field: the label names only the input (so "Name" is its
 * accessible name), and the hint is its description.
 */
export function field(label, input, hint) {
  const id = input.id || `field-${++fieldCount}`;
  input.id = id;
  let note = null;
  if (hint) {
    note = h('small', { id: `${id}-hint` }, hint);
    input.setAttribute('aria-describedby', note.id);
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, note);
}

/** "3 s ago", "5 min ago", or the date. */
export function ago(iso) {
  if (!iso) return '';
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** A time element with the exact time on hover. */
export function when(iso) {
  return iso ? h('time', { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso)) : '—';
}

export function ms(value) {
  if (value === null || value === undefined) return '—';
  return value < 1000 ? `${value} ms` : `${(value / 1000).toFixed(2)} s`;
}

/** Pretty JSON as text for a <pre>. */
export const pretty = (value) => JSON.stringify(value, null, 2);
