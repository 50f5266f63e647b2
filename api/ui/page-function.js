// `#/functions/<id>`: one function. Its header and facts (live while the
// newest version builds), the compile error pointing into the source, the
// source, a run panel, its recent executions, versions (rollback,
// deprecation) and stats; admins can also edit and delete it.
//
// The page is a set of slots, each filled by its own loader, so one part
// failing (an error box) leaves the others working, and a change (a run, a
// rollback, a build finishing) reloads only the parts it affects.

import { h, thead, fill, api, isAdmin, link, navigate, errorBox, badge, field, when, ms, pretty } from './lib.js';
import { followExecution, followFunction } from './section-events.js';
import { highlightLines } from './highlight.js';
import { lineChart, barChart } from './chart.js';
import { tagList, languageName, percent } from './page-functions.js';
import { routeSection } from './section-route.js';
import { schedulesSection } from './section-schedules.js';
import { webhooksSection } from './section-webhooks.js';

const BUILDING = ['PENDING', 'COMPILING'];
const UNFINISHED = ['QUEUED', 'RUNNING'];
const RECENT = 10;

export default function routes(route) {
  route('/functions/:id', functionPage);
}

/**
 * Where a compile error points in the user's source: the compilers name it
 * `handler.rs` / `handler.ts` (`--> handler.rs:3:18`, `handler.ts:2:9:
 * error: …`, `(see handler.rs:7:1)`; see cli/src/source_location.rs);
 * otherwise a `line N` in the text. {line, column} or null.
 */
export function errorLocation(text, language) {
  if (!text) return null;
  const file = language === 'typescript' ? 'handler\\.ts' : 'handler\\.rs';
  // Not `myhandler.rs:` nor `src/handler.rs:`, as the CLI does.
  const match = new RegExp(`(?:^|[^\\w./])${file}:(\\d+):(\\d+)`).exec(text);
  if (match && Number(match[1]) > 0) return { line: Number(match[1]), column: Math.max(1, Number(match[2])) };
  const loose = /\bline (\d+)(?:,? col(?:umn)? (\d+))?/i.exec(text);
  return loose && Number(loose[1]) > 0 ? { line: Number(loose[1]), column: Number(loose[2] || 1) } : null;
}

async function functionPage({ id }) {
  let fn;
  try {
    fn = await api(`/functions/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    return h(
      'section',
      {},
      h('h1', {}, 'Function not found'),
      errorBox(error),
      h('p', {}, h('a', { href: link('/functions') }, 'All functions')),
    );
  }
  const path = `/functions/${fn.id}`;

  const title = h('span', {});
  const status = h('span', { 'data-testid': 'function-status', 'aria-live': 'polite' });
  const facts = h('dl', { class: 'facts' });
  const compileError = h('div', { class: 'slot', 'data-testid': 'compile-error' });
  const actionProblem = h('div', { class: 'slot' });
  const sourceCard = h('div', { class: 'card source-card' });
  const runs = h('div', {});
  const versions = h('div', {});
  const stats = h('div', {});
  const names = lookupNames();

  // What the source card shows: a version's source, and whether it is being edited.
  const shown = { version: null, semver: '', source: null, editing: false, dependencies: {}, buildWarnings: [], lockfile: null };

  /** Shows `next` (a FunctionView) in the header, facts and compile error. */
  function update(next) {
    fn = next;
    title.textContent = fn.name;
    status.replaceChildren(badge(fn.status));
    fillFacts(facts, fn, names);
    // Re-rendered only when it changes: it is an alert, read out when shown.
    if (compileError.dataset.text === (fn.compileError || '')) return;
    compileError.dataset.text = fn.compileError || '';
    const at = errorLocation(fn.compileError, fn.language);
    compileError.replaceChildren(
      fn.compileError
        ? h(
            'div',
            { class: 'error compile-error', role: 'alert' },
            h(
              'div',
              { class: 'spread' },
              h('strong', {}, `Version ${fn.semver} did not build`),
              at ? h('button', { type: 'button', class: 'link', onclick: () => showErrorLine(true) }, `Go to line ${at.line}:${at.column}`) : null,
            ),
            h('pre', { class: 'wrap' }, fn.compileError),
          )
        : '',
    );
  }

  // ------------------------------------------------------------ status

  let watching = false;
  /** While the newest version builds, re-reads the function each time its
   * event stream says a build moved on; stops when it is final. */
  function watch() {
    if (watching || !BUILDING.includes(fn.status)) return;
    watching = true;
    const close = followFunction(fn.id, async (kind) => {
      if (kind === 'execution') return;
      const next = await api(path);
      if (!watching) return;
      update(next);
      if (BUILDING.includes(next.status)) return;
      watching = false;
      close();
      loadVersions();
      if (shown.version === next.version) renderSource();
    });
  }

  // ------------------------------------------------------------ source

  async function loadSource(version) {
    shown.editing = false;
    sourceCard.replaceChildren(h('h2', {}, 'Source'), h('p', { class: 'muted' }, 'Loading…'));
    try {
      const v = await api(`${path}/versions/${version}`);
      Object.assign(shown, {
        version: v.version,
        semver: v.semver,
        source: v.source,
        dependencies: v.dependencies || {},
        buildWarnings: v.buildWarnings || [],
        lockfile: v.lockfile || null,
      });
      renderSource();
    } catch (error) {
      sourceCard.replaceChildren(h('h2', {}, 'Source'), errorBox(error));
    }
  }

  function renderSource() {
    if (shown.source === null || shown.editing) return;
    // The compile error is about the newest version: mark its line only there.
    const at = shown.version === fn.version ? errorLocation(fn.compileError, fn.language) : null;
    const view = sourceView(shown.source, fn.language, at, fn.compileError);
    sourceCard.replaceChildren(
      h(
        'div',
        { class: 'spread' },
        h('h2', {}, 'Source ', h('span', { class: 'muted' }, `version ${shown.semver} (#${shown.version})`)),
        h(
          'div',
          { class: 'row' },
          shown.version !== fn.version
            ? h('button', { type: 'button', class: 'secondary', onclick: () => loadSource(fn.version) }, 'Show newest')
            : null,
          isAdmin() ? h('button', { type: 'button', class: 'secondary', onclick: editSource }, 'Edit') : null,
        ),
      ),
      view,
      // replaceChildren would show a null as the text "null".
      ...[dependencyView()].filter(Boolean),
    );
    if (at) showErrorLine(false);
  }

  /** The version's declared dependencies, its build warnings and its lockfile (docs/dependencies.md). */
  function dependencyView() {
    const names = Object.keys(shown.dependencies || {});
    if (names.length === 0 && shown.buildWarnings.length === 0) return null;
    const requirement = (spec) => (typeof spec === 'string' ? spec : JSON.stringify(spec));
    return h(
      'div',
      { 'data-testid': 'dependencies' },
      h('h3', {}, 'Dependencies'),
      h('ul', {}, ...names.map((name) => h('li', {}, h('code', {}, name), ' ', requirement(shown.dependencies[name])))),
      ...shown.buildWarnings.map((warning) => h('p', { class: 'notice' }, warning)),
      shown.lockfile
        ? h('details', {}, h('summary', {}, 'Lockfile'), h('pre', { class: 'code' }, shown.lockfile))
        : null,
    );
  }

  /** Scrolls the source view to the error line; `page`: the page too. */
  function showErrorLine(page, reload = true) {
    const view = sourceCard.querySelector('.source');
    const line = view?.querySelector('.line-error');
    if (!line) {
      // Another version is shown: show the newest, where the error is.
      if (page && reload && shown.version !== fn.version) loadSource(fn.version).then(() => showErrorLine(true, false));
      return;
    }
    // Centre the line inside the source box without moving the page.
    const centre = () => (view.scrollTop = line.offsetTop - view.clientHeight / 2);
    if (view.isConnected) centre();
    else requestAnimationFrame(centre);
    if (page) {
      view.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      line.classList.remove('flash');
      void line.offsetWidth; // restart the animation
      line.classList.add('flash');
    }
  }

  /** Admins: a new version from edited source and limits (PUT → 202). */
  function editSource() {
    shown.editing = true;
    const source = h('textarea', { name: 'source', rows: Math.min(30, shown.source.split('\n').length + 2), spellcheck: 'false', class: 'code' });
    source.value = shown.source;
    const config = fn.executionConfig || {};
    const version = h('input', { type: 'text', name: 'version', placeholder: 'next patch', autocomplete: 'off' });
    const timeout = h('input', { type: 'number', name: 'timeoutMs', min: 1, value: config.timeoutMs });
    const memory = h('input', { type: 'number', name: 'memoryLimitMb', min: 1, value: config.memoryLimitMb });
    const problem = h('div', { class: 'slot' });
    const save = h('button', { type: 'submit' }, 'Save as new version');
    sourceCard.replaceChildren(
      h(
        'form',
        {
          onsubmit: async (event) => {
            event.preventDefault();
            save.disabled = true;
            problem.replaceChildren();
            const body = { source: source.value, version: version.value.trim() || undefined };
            const limits = {};
            if (Number(timeout.value) !== config.timeoutMs) limits.timeoutMs = Number(timeout.value);
            if (Number(memory.value) !== config.memoryLimitMb) limits.memoryLimitMb = Number(memory.value);
            if (Object.keys(limits).length) body.executionConfig = limits;
            try {
              update(await api(path, { method: 'PUT', body }));
              watch();
              loadVersions();
              loadSource(fn.version);
            } catch (error) {
              problem.replaceChildren(errorBox(error));
              save.disabled = false;
            }
          },
        },
        h('h2', {}, 'Edit source'),
        h('p', { class: 'muted' }, `Saving builds a new version from this source (now ${fn.semver}); the active version keeps running until it is READY.`),
        field('Source', source),
        h(
          'div',
          { class: 'form-row' },
          field('New version', version, `Greater than ${fn.semver}; empty: the next patch`),
          field('Timeout (ms)', timeout),
          field('Memory (MB)', memory),
        ),
        problem,
        h(
          'div',
          { class: 'row' },
          save,
          h('button', { type: 'button', class: 'secondary', onclick: () => ((shown.editing = false), renderSource()) }, 'Cancel'),
        ),
      ),
    );
    source.focus();
  }

  async function remove() {
    if (!confirm(`Delete the function ${fn.name}, all its versions, and cancel its queued runs? Its past executions stay readable.`)) return;
    actionProblem.replaceChildren();
    try {
      await api(path, { method: 'DELETE' });
      navigate('/functions');
    } catch (error) {
      actionProblem.replaceChildren(errorBox(error));
    }
  }

  // ------------------------------------------------------------ runs

  async function loadRuns() {
    try {
      const page = await api(`${path}/executions`, { query: { limit: RECENT } });
      fill(
        runs,
        h('h2', {}, 'Recent executions'),
        isAdmin() ? null : h('p', { class: 'muted' }, 'The ones you started.'),
        page.items.length ? executionsTable(page.items) : h('p', { class: 'muted' }, 'No executions yet.'),
      );
    } catch (error) {
      runs.replaceChildren(h('h2', {}, 'Recent executions'), errorBox(error));
    }
  }

  // ------------------------------------------------------------ versions

  async function loadVersions() {
    const problem = h('div', { class: 'slot' });
    /** Runs a version action, then reloads what it changed. */
    const act = (button, call) => async () => {
      button.disabled = true;
      problem.replaceChildren();
      try {
        const answer = await call();
        if (answer?.id === fn.id) update(answer); // rollback answers the function
        loadVersions();
      } catch (error) {
        problem.replaceChildren(errorBox(error));
        button.disabled = false;
      }
    };
    const actions = (v) => {
      const cell = h('td', { class: 'actions' });
      const buttons = [];
      const add = (label, cls, call) => {
        const button = h('button', { type: 'button', class: cls }, label);
        button.addEventListener('click', act(button, call));
        buttons.push(button);
      };
      if (v.status === 'READY' && !v.active && !v.retired) {
        add('Roll back', 'secondary', () => api(`${path}/rollback`, { method: 'POST', body: { version: v.version } }));
      }
      // Retiring is for good: the version never runs again, its queued runs
      // are cancelled (docs/versions-and-discovery.md).
      if (!v.active && !v.retired && (v.status === 'READY' || v.status === 'FAILED')) {
        add('Retire', 'danger', () =>
          window.confirm(`Retire version ${v.semver} for good? It never runs again, its queued runs are cancelled, and it cannot be rolled back to.`)
            ? api(`${path}/versions/${v.version}/retire`, { method: 'POST' })
            : null,
        );
      }
      if (v.deprecated) {
        add('Undeprecate', 'secondary', () => api(`${path}/versions/${v.version}/deprecation`, { method: 'DELETE' }));
      } else {
        const button = h('button', { type: 'button', class: 'secondary' }, 'Deprecate');
        button.addEventListener('click', () => cell.replaceChildren(deprecateForm(v, () => cell.replaceChildren(row))));
        buttons.push(button);
      }
      const row = h('div', { class: 'row' }, sourceButton(v), ...buttons);
      cell.append(row);
      return cell;
    };
    const sourceButton = (v) =>
      h('button', { type: 'button', class: 'link', onclick: () => loadSource(v.version).then(() => sourceCard.scrollIntoView({ block: 'start' })) }, 'Source');
    /** Asks for the message callers will see (required by the API), in the row. */
    const deprecateForm = (v, back) => {
      const message = h('input', { type: 'text', name: 'message', required: true, maxlength: 500, placeholder: 'Use 2.0.0: …' });
      const ok = h('button', { type: 'submit' }, 'Deprecate');
      const form = h(
        'form',
        { class: 'row' },
        field('Why (shown to callers)', message),
        ok,
        h('button', { type: 'button', class: 'secondary', onclick: back }, 'Cancel'),
      );
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        act(ok, () => api(`${path}/versions/${v.version}/deprecate`, { method: 'POST', body: { message: message.value } }))();
      });
      requestAnimationFrame(() => message.focus());
      return form;
    };
    try {
      const list = await api(`${path}/versions`);
      versions.replaceChildren(
        h('h2', {}, 'Versions'),
        problem,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'versions' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Version', '#', 'Status', 'Created', 'Build', 'Deprecated', 'Actions'].map((t) => h('th', {}, t)),
              ),
            ),
            h(
              'tbody',
              {},
              list.items.map((v) =>
                h(
                  'tr',
                  { class: v.active ? 'active' : null },
                  h('td', { class: 'nowrap' }, h('code', {}, v.semver), v.active ? h('span', { class: 'active-mark', title: 'Runs use this version' }, 'active') : null),
                  h('td', {}, v.version),
                  h('td', {}, badge(v.status)),
                  h('td', { class: 'nowrap' }, when(v.createdAt)),
                  h('td', { class: 'nowrap' }, v.compileDurationMs !== null ? ms(v.compileDurationMs) : '—'),
                  h('td', {}, v.retired ? badge('RETIRED') : v.deprecated ? [badge('DEPRECATED'), ' ', h('span', { class: 'muted' }, v.deprecationMessage || '')] : ''),
                  isAdmin() ? actions(v) : h('td', {}, sourceButton(v)),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      versions.replaceChildren(h('h2', {}, 'Versions'), errorBox(error));
    }
  }

  // ------------------------------------------------------------ stats

  let bucket = 'hour';
  async function loadStats() {
    const toggle = h(
      'div',
      { class: 'row toggle', role: 'group', 'aria-label': 'Period' },
      [
        ['hour', 'Last 24 h'],
        ['day', 'Last 30 days'],
      ].map(([value, label]) =>
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            'aria-pressed': String(bucket === value),
            onclick: () => {
              bucket = value;
              loadStats();
            },
          },
          label,
        ),
      ),
    );
    const heading = h('div', { class: 'spread' }, h('h2', {}, 'Stats'), toggle);
    try {
      const s = await api(`${path}/stats`, { query: { bucket } });
      stats.replaceChildren(heading, statsView(s, bucket));
    } catch (error) {
      stats.replaceChildren(heading, errorBox(error));
    }
  }

  /** A run changes the recent runs, the stats and the function's counts. */
  function afterRun() {
    loadRuns();
    loadStats();
    api(path).then(update, () => {}); // the counts only; a failure here changes nothing shown
  }

  // ------------------------------------------------------------ layout

  update(fn);
  watch();
  loadSource(fn.version);
  loadRuns();
  loadVersions();
  loadStats();

  return h(
    'section',
    { class: 'function-page' },
    h('p', { class: 'crumbs' }, h('a', { href: link('/functions') }, '← Functions')),
    h(
      'div',
      { class: 'spread' },
      h('h1', {}, title, status),
      isAdmin() ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete') : null,
    ),
    actionProblem,
    h('div', { class: 'card' }, facts),
    routeSection(fn),
    compileError,
    sourceCard,
    h('div', { class: 'card' }, runPanel(() => fn, afterRun)),
    h('div', { class: 'card' }, runs),
    h('div', { class: 'card' }, versions),
    h('div', { class: 'card' }, schedulesSection(fn)),
    h('div', { class: 'card' }, stats),
    h('div', { class: 'card' }, webhooksSection(fn, update)),
  );
}

/** The facts list of a function. `names` resolves user, group and environment ids. */
function fillFacts(dl, fn, names) {
  const config = fn.executionConfig || {};
  const variables = Object.keys(config.environmentVariables || {});
  const access = h('span', {}, fn.allowedUsers.length || fn.allowedGroups.length ? 'Restricted' : 'Everyone');
  const environment = h('span', {}, fn.environmentId ? fn.environmentId.slice(0, 8) : 'None');
  names.then(({ users, groups, environments }) => {
    const list = [
      ...fn.allowedUsers.map((id) => `user ${users.get(id) || id.slice(0, 8)}`),
      ...fn.allowedGroups.map((id) => `group ${groups.get(id) || id.slice(0, 8)}`),
    ];
    if (list.length) access.textContent = `Admins and ${list.join(', ')}`;
    if (fn.environmentId && environments.has(fn.environmentId)) environment.textContent = environments.get(fn.environmentId);
  });
  const rows = [
    ['Language', languageName(fn.language)],
    ['Version', [h('code', {}, fn.semver), ` (#${fn.version}, newest)`]],
    ['Active version', fn.activeSemver ? [h('code', {}, fn.activeSemver), ` (#${fn.activeVersion})`] : 'None yet: no version is READY'],
    ['Description', fn.description || h('span', { class: 'muted' }, 'None')],
    ['Tags', fn.tags.length ? tagList(fn.tags) : h('span', { class: 'muted' }, 'None')],
    ['Who may run it', access],
    ['Environment', environment],
    ['Limits', `${ms(config.timeoutMs)} timeout, ${config.memoryLimitMb} MB memory`],
    variables.length ? ['Variables', variables.join(', ')] : null,
    ['Runs', `${fn.executionCount.toLocaleString()} finished, ${percent(fn.successRate)} succeeded`],
    ['Created', when(fn.createdAt)],
    ['Updated', when(fn.updatedAt)],
    ['Id', h('code', {}, fn.id)],
  ];
  dl.replaceChildren(...rows.filter(Boolean).flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

/**
 * Names for ids, from the lists the caller may read (users and groups are
 * admin-only): Maps id → name, empty where the list is not readable.
 */
async function lookupNames() {
  const read = async (path, label) => {
    try {
      const list = await api(path, { query: path === '/users' ? { limit: 100 } : undefined });
      return new Map(list.items.map((item) => [item.id, item[label]]));
    } catch {
      return new Map(); // not allowed: the page shows short ids instead
    }
  };
  const admin = isAdmin();
  const [users, groups, environments] = await Promise.all([
    admin ? read('/users', 'email') : new Map(),
    admin ? read('/groups', 'name') : new Map(),
    read('/environments', 'name'),
  ]);
  return { users, groups, environments };
}

/** The source with line numbers; the error line (`at`) marked. */
function sourceView(source, language, at, message) {
  const lines = highlightLines(source, language);
  return h(
    'pre',
    { class: 'source', tabindex: 0, 'aria-label': 'Source' },
    h(
      'code',
      {},
      lines.map((nodes, i) => {
        const n = i + 1;
        const isError = at && at.line === n;
        return h(
          'span',
          { class: isError ? 'line line-error' : 'line', 'data-n': n, title: isError ? `${at.line}:${at.column}: ${firstLine(message)}` : null },
          nodes,
        );
      }),
    ),
  );
}

const firstLine = (text) => (text || '').split('\n').find((l) => l.trim()) || '';

/**
 * The run panel: "Input (JSON)", "Run" → POST execute?wait=30; the result in
 * [data-testid=run-result], followed (its event stream) until final when
 * the API answers 202.
 */
function runPanel(current, changed) {
  const input = h('textarea', { name: 'input', rows: 5, spellcheck: 'false', class: 'code' });
  input.value = '{\n  "name": "world"\n}';
  const problem = h('div', { class: 'slot' });
  const result = h('div', { class: 'slot', 'data-testid': 'run-result', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit' }, 'Run');
  let run = 0; // a newer run stops the following of an older one

  const form = h(
    'form',
    {
      class: 'run-panel',
      onsubmit: async (event) => {
        event.preventDefault();
        problem.replaceChildren();
        let value = null; // an empty input is JSON null, as the API takes it
        if (input.value.trim()) {
          try {
            value = JSON.parse(input.value);
          } catch (error) {
            problem.replaceChildren(h('div', { class: 'error', role: 'alert' }, h('strong', {}, 'Input (JSON) is not valid JSON.'), ' ', error.message));
            input.focus();
            return;
          }
        }
        const mine = ++run;
        button.disabled = true;
        button.textContent = 'Running…';
        try {
          const answer = await api(`/functions/${current().id}/execute`, { method: 'POST', body: value, query: { wait: 30 }, raw: true });
          const deprecation = answer.headers.get('deprecation') ? decodeMessage(answer.headers.get('plat-deprecation-message')) : null;
          fill(result, runResult(answer.body, deprecation));
          if (UNFINISHED.includes(answer.body.status)) {
            const close = followExecution(answer.body, (execution) => {
              if (mine !== run) return close();
              fill(result, runResult(execution, deprecation));
              if (!UNFINISHED.includes(execution.status)) changed();
            });
          }
          changed();
        } catch (error) {
          result.replaceChildren(errorBox(error));
        } finally {
          button.disabled = false;
          button.textContent = 'Run';
        }
      },
    },
    h('h2', {}, 'Run'),
    field('Input (JSON)', input, 'Any JSON value; empty means null. Runs the active version and waits up to 30 s.'),
    problem,
    h('p', {}, button),
    result,
  );
  return form;
}

function decodeMessage(text) {
  try {
    return decodeURIComponent(text || '');
  } catch {
    return text;
  }
}

/** A run's result: status, output, error, logs, and where to read more. */
function runResult(e, deprecation) {
  return [
    h(
      'div',
      { class: 'spread' },
      h('div', { class: 'row' }, badge(e.status), e.durationMs !== null ? h('span', {}, ms(e.durationMs)) : null, h('span', { class: 'muted' }, `version #${e.functionVersion}`)),
      h('a', { href: link(`/executions/${e.id}`) }, 'Open execution'),
    ),
    deprecation !== null && deprecation !== undefined ? h('div', { class: 'notice' }, h('strong', {}, 'This version is deprecated.'), ' ', deprecation) : null,
    UNFINISHED.includes(e.status) ? h('p', { class: 'muted' }, 'Still running after 30 s; this updates when it finishes.') : null,
    e.status === 'SUCCEEDED' ? [h('h3', {}, 'Output'), h('pre', { class: 'output' }, pretty(e.output))] : null,
    e.error ? h('div', { class: 'error' }, h('strong', {}, e.error.type), ' ', e.error.message) : null,
    e.logs ? [h('h3', {}, 'Logs'), h('pre', { class: 'wrap logs' }, e.logs), e.logsTruncated ? h('p', { class: 'muted' }, 'Logs truncated.') : null] : null,
  ];
}

function executionsTable(items) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      thead('Status', 'Created', ['Duration', 'num'], 'Version', 'Execution'),
      h(
        'tbody',
        {},
        items.map((e) =>
          h(
            'tr',
            {},
            h('td', {}, badge(e.status)),
            h('td', { class: 'nowrap' }, when(e.createdAt)),
            h('td', { class: 'num' }, ms(e.durationMs)),
            h('td', {}, `#${e.functionVersion}`),
            h('td', {}, h('a', { href: link(`/executions/${e.id}`) }, h('code', {}, e.id.slice(-12)))),
          ),
        ),
      ),
    ),
  );
}

/** Totals and charts of GET /functions/{f}/stats. */
function statsView(s, bucket) {
  const series = s.series || [];
  const at = (p) => new Date(p.start);
  const labels = series.map((p) =>
    bucket === 'hour' ? at(p).toLocaleTimeString([], { hour: 'numeric' }) : at(p).toLocaleDateString([], { month: 'short', day: 'numeric' }),
  );
  const titles = series.map((p) => at(p).toLocaleString([], bucket === 'hour' ? { dateStyle: 'medium', timeStyle: 'short' } : { dateStyle: 'medium' }));
  const rate = series.map((p) => (p.total ? (100 * p.succeeded) / p.total : null));
  const d = s.durationMs || {};
  const errors = Object.entries(s.errors || {});
  return h(
    'div',
    {},
    h(
      'dl',
      { class: 'facts stats-totals' },
      h('dt', {}, 'Executions'),
      h('dd', {}, s.total.toLocaleString(), ' ', h('span', { class: 'muted' }, Object.entries(s.byStatus || {}).map(([k, v]) => `${k.toLowerCase()} ${v}`).join(', '))),
      h('dt', {}, 'Success rate'),
      h('dd', {}, percent(s.successRate)),
      h('dt', {}, 'Duration'),
      h('dd', {}, `p50 ${ms(d.p50)} · p95 ${ms(d.p95)} · p99 ${ms(d.p99)} · avg ${d.avg === null || d.avg === undefined ? '—' : ms(Math.round(d.avg))}`),
      h('dt', {}, 'Avg queue time'),
      h('dd', {}, s.queuedMs?.avg === null || s.queuedMs?.avg === undefined ? '—' : ms(Math.round(s.queuedMs.avg))),
      h('dt', {}, 'Errors'),
      h('dd', {}, errors.length ? errors.map(([type, n]) => h('span', { class: 'tag' }, `${type} ${n}`)) : 'None'),
    ),
    h(
      'div',
      { class: 'charts' },
      barChart({
        title: 'Executions',
        labels,
        titles,
        series: [
          { name: 'Succeeded', values: series.map((p) => p.succeeded), className: 'ok' },
          { name: 'Failed', values: series.map((p) => p.failed), className: 'bad' },
          { name: 'Cancelled', values: series.map((p) => p.cancelled), className: 'grey' },
        ],
      }),
      lineChart({
        title: 'Success rate',
        labels,
        titles,
        yMax: 100,
        yFormat: (v) => `${Math.round(v)} %`,
        series: [{ name: 'Success rate', values: rate, className: 'ok' }],
      }),
      lineChart({
        title: 'Duration',
        labels,
        titles,
        yFormat: (v) => ms(Math.round(v * 10) / 10),
        series: [
          { name: 'p50', values: series.map((p) => p.durationMs?.p50 ?? null), className: 'p50' },
          { name: 'p95', values: series.map((p) => p.durationMs?.p95 ?? null), className: 'p95' },
        ],
      }),
    ),
  );
}
