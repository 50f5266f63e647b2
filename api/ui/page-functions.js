// `#/functions`: the functions the user can see, searched, filtered and
// paged (GET /functions); `#/functions/new`: the form that registers one
// (POST /functions, admins).
//
// The search and filters live in the hash query (`#/functions?q=hello&
// language=rust`), so a filtered list can be linked and survives a reload.
// Typing updates it with history.replaceState, which does not fire
// `hashchange`: the list reloads in place and the search box keeps focus.

import { h, api, isAdmin, link, navigate, errorBox, badge, field, when, onLeave } from './lib.js';

const PAGE_SIZE = 20;
const FILTERS = ['q', 'tag', 'language', 'status', 'sort'];

export default function routes(route) {
  route('/functions', listPage);
  route('/functions/new', newPage);
}

// ---------------------------------------------------------------- list

function listPage(_params, query) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query[name] || '']));

  const search = h('input', { type: 'search', name: 'q', value: filters.q, placeholder: 'Name or description', autocomplete: 'off' });
  const tag = h('input', { type: 'text', name: 'tag', value: filters.tag, placeholder: 'e.g. billing, beta', autocomplete: 'off' });
  const language = select('language', filters.language, [
    ['', 'Any'],
    ['rust', 'Rust'],
    ['typescript', 'TypeScript'],
  ]);
  const status = select('status', filters.status, [
    ['', 'Any'],
    ['READY', 'Ready'],
    ['PENDING', 'Pending'],
    ['COMPILING', 'Compiling'],
    ['FAILED', 'Failed'],
  ]);
  const sort = select('sort', filters.sort, [
    ['', 'Default'],
    ['relevance', 'Relevance'],
    ['created', 'Newest'],
    ['updated', 'Recently updated'],
    ['name', 'Alphabetical'],
  ]);

  const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
  const problem = h('div', { class: 'slot' });
  const body = h('tbody');
  const table = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'functions' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Name', 'Language', 'Status', 'Version', 'Tags', 'Description'].map((t) => h('th', {}, t)),
          h('th', { class: 'num' }, 'Runs'),
          h('th', { class: 'num' }, 'Success'),
          h('th', {}, 'Updated'),
        ),
      ),
      body,
    ),
  );
  const empty = h('div', { class: 'slot' });
  const more = h('button', { type: 'button', class: 'secondary' }, 'Load more');
  // Holds `more` while there is a next page (`hidden` loses to the buttons' display rule).
  const moreSlot = h('p', { class: 'slot' });
  let cursor = null;
  let shown = 0;
  // Each load gets a number; an answer to an older load (typing fast) is dropped.
  let generation = 0;

  /** Reads the controls into `filters` and the address bar, then reloads. */
  function apply() {
    filters.q = search.value.trim();
    filters.tag = tag.value.trim();
    filters.language = language.value;
    filters.status = status.value;
    // Relevance needs a search (the API refuses it without one).
    sort.querySelector('option[value="relevance"]').disabled = !filters.q;
    if (sort.value === 'relevance' && !filters.q) sort.value = '';
    filters.sort = sort.value;
    const params = new URLSearchParams();
    for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
    const text = params.toString();
    history.replaceState(null, '', link('/functions' + (text ? '?' + text : '')));
    load(false);
  }

  async function load(append) {
    const mine = ++generation;
    more.disabled = true;
    problem.replaceChildren();
    try {
      const page = await api('/functions', { query: { ...filters, limit: PAGE_SIZE, cursor: append ? cursor : null } });
      if (mine !== generation) return;
      if (!append) {
        body.replaceChildren();
        shown = 0;
      }
      body.append(...page.items.map(row));
      shown += page.items.length;
      cursor = page.nextCursor;
      moreSlot.replaceChildren(cursor ? more : '');
      more.disabled = false;
      summary.textContent = page.total === 0 ? '' : `Showing ${shown} of ${page.total} function${page.total === 1 ? '' : 's'}`;
      table.hidden = page.total === 0;
      empty.replaceChildren(page.total === 0 ? emptyState(filters) : '');
    } catch (error) {
      if (mine !== generation) return;
      more.disabled = false;
      problem.replaceChildren(errorBox(error));
    }
  }

  let timer = null;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(apply, 300);
  };
  onLeave(() => clearTimeout(timer));
  search.addEventListener('input', debounced);
  tag.addEventListener('input', debounced);
  for (const control of [language, status, sort]) control.addEventListener('change', apply);
  more.addEventListener('click', () => load(true));

  sort.querySelector('option[value="relevance"]').disabled = !filters.q;
  load(false);

  return h(
    'section',
    {},
    h('div', { class: 'spread' }, h('h1', {}, 'Functions'), h('a', { class: 'button', href: link('/functions/new') }, 'New function')),
    h(
      'form',
      { class: 'card filters', role: 'search', onsubmit: (event) => (event.preventDefault(), clearTimeout(timer), apply()) },
      field('Search', search),
      field('Tag', tag, 'Comma separated: all must match'),
      field('Language', language),
      field('Status', status),
      field('Sort', sort),
    ),
    problem,
    summary,
    empty,
    table,
    moreSlot,
  );
}

function select(name, value, options) {
  return h('select', { name }, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

function row(fn) {
  return h(
    'tr',
    {},
    h('td', {}, h('a', { href: link(`/functions/${fn.id}`), class: 'fn-name' }, fn.name)),
    h('td', {}, languageName(fn.language)),
    h('td', {}, badge(fn.status)),
    h(
      'td',
      { class: 'nowrap' },
      h('code', {}, fn.semver),
      ' ',
      h('span', { class: 'muted' }, `#${fn.version}`),
      fn.activeSemver && fn.activeSemver !== fn.semver ? h('div', { class: 'muted small' }, `active ${fn.activeSemver}`) : null,
    ),
    h('td', {}, tagList(fn.tags)),
    h('td', { class: 'description' }, fn.description || ''),
    h('td', { class: 'num' }, fn.executionCount.toLocaleString()),
    h('td', { class: 'num' }, percent(fn.successRate)),
    h('td', { class: 'nowrap' }, when(fn.updatedAt)),
  );
}

function emptyState(filters) {
  const filtered = FILTERS.some((name) => name !== 'sort' && filters[name]);
  if (filtered) return h('div', { class: 'notice' }, 'No function matches these filters.');
  return h(
    'div',
    { class: 'card empty-state' },
    h('h2', {}, 'No functions yet'),
    isAdmin()
      ? h('p', {}, 'Create one with ', h('a', { href: link('/functions/new') }, 'New function'), ': paste a handler in Rust or TypeScript and Plat builds it.')
      : h('p', {}, 'No function has been shared with you yet. An admin creates functions and decides who may run them.'),
  );
}

export function tagList(tags) {
  return tags?.length ? h('span', { class: 'tags' }, tags.map((t) => h('span', { class: 'tag' }, t))) : '';
}

export function languageName(language) {
  return { rust: 'Rust', typescript: 'TypeScript' }[language] || language;
}

export function percent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(rate === 1 || rate === 0 ? 0 : 1)} %`;
}

// ---------------------------------------------------------------- new

/** What the Source box starts with, per language: the smallest handler that runs. */
export const TEMPLATES = {
  rust: `use serde_json::{json, Value};

/// Called with the input JSON; the Ok value is the output JSON.
pub fn handler(input: Value) -> Result<Value, String> {
    let name = input["name"].as_str().unwrap_or("world");
    println!("greeting {name}");
    Ok(json!({ "message": format!("Hello, {name}!") }))
}
`,
  typescript: `// Called with the input JSON; the return value is the output JSON.
export default (input: any) => {
  const name = input?.name ?? "world";
  console.log(\`greeting \${name}\`);
  return { message: \`Hello, \${name}!\` };
};
`,
};

function newPage() {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', autofocus: true, placeholder: 'hello-world' });
  const language = select('language', 'rust', [
    ['rust', 'Rust'],
    ['typescript', 'TypeScript'],
  ]);
  const description = h('textarea', { name: 'description', rows: 2, class: 'prose' });
  const tags = h('input', { type: 'text', name: 'tags', placeholder: 'billing, beta', autocomplete: 'off' });
  const source = h('textarea', { name: 'source', rows: 14, spellcheck: 'false', required: true, class: 'code' });
  source.value = TEMPLATES.rust;
  const version = h('input', { type: 'text', name: 'version', placeholder: '0.1.0', autocomplete: 'off' });
  const timeout = h('input', { type: 'number', name: 'timeoutMs', min: 1, step: 1, placeholder: '10000' });
  const memory = h('input', { type: 'number', name: 'memoryLimitMb', min: 1, step: 1, placeholder: '128' });
  const variables = h('textarea', { name: 'environmentVariables', rows: 3, spellcheck: 'false', placeholder: 'GREETING=hello' });

  // The template follows the language until the user edits it: a source
  // still equal to the previous template (or empty) is not their work.
  let previous = language.value;
  language.addEventListener('change', () => {
    if (!source.value.trim() || source.value === TEMPLATES[previous]) source.value = TEMPLATES[language.value];
    previous = language.value;
  });

  const problem = h('div', { class: 'slot' });
  const button = h('button', { type: 'submit' }, 'Create function');
  // Filled when the users, groups and environments have loaded; the form
  // shows at once (nothing else on it waits for the network).
  const access = h('div', { class: 'slot' });
  let choices = null;
  if (isAdmin()) {
    accessChoices().then((loaded) => {
      choices = loaded;
      access.replaceChildren(loaded.node);
    });
  }

  const form = h(
    'form',
    {
      class: 'new-function',
      onsubmit: async (event) => {
        event.preventDefault();
        problem.replaceChildren();
        let body;
        try {
          body = {
            name: name.value.trim(),
            language: language.value,
            source: source.value,
            description: description.value.trim() || undefined,
            tags: splitTags(tags.value),
            version: version.value.trim() || undefined,
            executionConfig: executionConfig(timeout.value, memory.value, variables.value),
            ...(choices ? choices.read() : {}),
          };
        } catch (error) {
          problem.replaceChildren(errorBox(error));
          return;
        }
        button.disabled = true;
        try {
          const created = await api('/functions', { method: 'POST', body });
          navigate(`/functions/${created.id}`);
        } catch (error) {
          problem.replaceChildren(errorBox(error));
          problem.scrollIntoView({ block: 'nearest' });
          button.disabled = false;
        }
      },
    },
    h(
      'div',
      { class: 'card' },
      field('Name', name, 'Up to 64 letters, digits, -, _ or .; it names the function in URLs (/functions/<name>/execute).'),
      field('Language', language),
      field('Description', description),
      field('Tags', tags, 'Comma separated'),
      field('Source', source),
    ),
    h(
      'details',
      { class: 'card' },
      h('summary', {}, 'Version and limits'),
      h(
        'div',
        { class: 'form-row' },
        field('Version', version, 'Semantic version of this first version; 0.1.0 if empty'),
        field('Timeout (ms)', timeout, 'Empty: the default, 10000'),
        field('Memory (MB)', memory, 'Empty: the default, 128'),
      ),
      field('Environment variables', variables, 'One KEY=value per line; the only variables the function sees.'),
    ),
    access,
    problem,
    h('p', {}, button, ' ', h('a', { href: link('/functions') }, 'Cancel')),
  );

  return h(
    'section',
    {},
    h('h1', {}, 'New function'),
    isAdmin() ? null : h('div', { class: 'notice' }, 'Only admins can create functions; the server will refuse this form.'),
    form,
  );
}

function splitTags(text) {
  const tags = text
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return tags.length ? [...new Set(tags)] : undefined;
}

/** The `executionConfig` to send, or undefined when nothing was filled in. */
function executionConfig(timeout, memory, variables) {
  const config = {};
  if (timeout !== '') config.timeoutMs = Number(timeout);
  if (memory !== '') config.memoryLimitMb = Number(memory);
  const lines = variables.split('\n').filter((l) => l.trim());
  if (lines.length) {
    config.environmentVariables = {};
    for (const line of lines) {
      const at = line.indexOf('=');
      if (at < 1) throw new Error(`Environment variable line ${JSON.stringify(line)} is not KEY=value.`);
      config.environmentVariables[line.slice(0, at).trim()] = line.slice(at + 1);
    }
  }
  return Object.keys(config).length ? config : undefined;
}

/**
 * Who may see and run the function, and its environment: checkboxes of the
 * users and groups and a select of the environments (admin-only lists; a
 * list that fails to load is left out with its error shown).
 */
async function accessChoices() {
  const [users, groups, environments] = await Promise.allSettled([
    api('/users', { query: { limit: 100 } }),
    api('/groups'),
    api('/environments'),
  ]);
  const boxes = { allowedUsers: [], allowedGroups: [] };
  const checklist = (key, result, label) => {
    if (result.status === 'rejected') return h('div', {}, h('strong', {}, label), errorBox(result.reason));
    if (!result.value.items.length) return h('p', { class: 'muted' }, `No ${label.toLowerCase()} to choose from.`);
    return h(
      'fieldset',
      { class: 'checklist' },
      h('legend', {}, label),
      result.value.items.map((item) => {
        const box = h('input', { type: 'checkbox', value: item.id });
        boxes[key].push(box);
        return h('label', {}, box, ' ', item.email || item.name, item.role ? h('span', { class: 'muted' }, ` (${item.role})`) : null);
      }),
      result.value.nextCursor ? h('small', { class: 'muted' }, 'Only the first 100 are listed.') : null,
    );
  };
  const environment = h('select', { name: 'environmentId' }, h('option', { value: '' }, 'None'));
  if (environments.status === 'fulfilled') {
    for (const env of environments.value.items) environment.append(h('option', { value: env.id }, env.name));
  }
  const node = h(
    'details',
    { class: 'card' },
    h('summary', {}, 'Access and environment'),
    h('p', { class: 'muted' }, 'Nobody selected: every user can see and run it. Otherwise only admins and the chosen users and groups can.'),
    h('div', { class: 'form-row' }, checklist('allowedUsers', users, 'Users'), checklist('allowedGroups', groups, 'Groups')),
    environments.status === 'fulfilled'
      ? field('Environment', environment, 'Its variables are given to every run.')
      : errorBox(environments.reason),
  );
  const checked = (list) => list.filter((b) => b.checked).map((b) => b.value);
  return {
    node,
    read: () => ({
      allowedUsers: checked(boxes.allowedUsers),
      allowedGroups: checked(boxes.allowedGroups),
      environmentId: environment.value || undefined,
    }),
  };
}
