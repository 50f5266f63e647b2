// Operations (admins): the queues, the workers and the newest failures from
// GET /queues, refreshed every 2 s while the page is open. A DEV gets the
// API's 403, shown as a refusal rather than as a broken page.

import { h, thead, api, link, poll, errorBox, badge, when, ago } from './lib.js';

// A worker heartbeats every 10 s by default (docs/observability.md); three
// missed rounds mean it is probably gone.
const STALE_SECS = 30;
// The oldest ready job's age, in seconds, beyond which a queue is "behind"
// (warn) and "stuck" (bad). Below the first, work is picked up promptly.
const AGE_WARN_SECS = 10;
const AGE_BAD_SECS = 60;
const REFRESH_MS = 2000;

export default function routes(route) {
  route('/operations', operationsPage);
}

function operationsPage() {
  const updated = h('span', { class: 'muted updated' }, 'loading…');
  const indicator = h('span', { class: 'row' }, h('span', { class: 'live-dot', title: 'Refreshes every 2 s' }), updated);
  const problem = h('div', { class: 'slot' });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  let lastUpdate = null;

  // The first call happens at once (poll runs the step immediately), so the
  // page appears with its headings and fills in a moment later.
  poll(async () => {
    let overview;
    try {
      overview = await api('/queues');
    } catch (error) {
      if (error.status === 403) {
        // Not an admin: nothing will change by retrying.
        body.replaceChildren(
          errorBox(error),
          h('p', { class: 'muted' }, 'The queues and workers are for administrators. Your functions and their executions are under ', h('a', { href: link('/functions') }, 'Functions'), '.'),
        );
        indicator.remove();
        return true;
      }
      // A transient failure (server restarting…): keep the last numbers,
      // say why they are getting old, and try again at the next round.
      problem.replaceChildren(errorBox(error));
      return false;
    }
    problem.replaceChildren();
    lastUpdate = Date.now();
    tick();
    body.replaceChildren(
      queuesSection(overview.queues, overview.workers),
      workersSection(overview.workers),
      failuresSection(overview.recentFailures),
    );
    return false;
  }, REFRESH_MS);

  // "updated 3 s ago" moves on its own, so a stalled refresh is visible.
  function tick() {
    if (lastUpdate === null) return;
    const seconds = Math.round((Date.now() - lastUpdate) / 1000);
    updated.textContent = `updated ${seconds} s ago`;
    updated.classList.toggle('late', seconds > (REFRESH_MS / 1000) * 5);
  }
  poll(() => tick(), 1000);

  return h(
    'section',
    { class: 'admin-page operations' },
    h('div', { class: 'spread' }, h('h1', {}, 'Operations'), indicator),
    problem,
    body,
  );
}

function queuesSection(queues, workers) {
  const live = new Set(workers.filter((w) => !w.stoppedAt && ageSecs(w.lastSeenAt) <= STALE_SECS).map((w) => w.kind));
  // Ready work with nobody to take it is the one thing an operator must
  // notice first: say it in words, not only in numbers.
  const orphaned = queues.filter((q) => q.ready > 0 && !live.has(q.name));
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Queues'),
    orphaned.map((q) => h('div', { class: 'error', role: 'status' }, `${q.ready} ready ${q.name} job(s) but no live ${q.name} worker.`)),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'Queue'),
            h('th', { class: 'num' }, 'Ready'),
            h('th', { class: 'num', title: 'Waiting for a retry' }, 'Scheduled'),
            h('th', { class: 'num' }, 'Running'),
            h('th', { class: 'num' }, 'Failed (1 h)'),
            h('th', {}, 'Oldest ready'),
            h('th', { class: 'num' }, 'Done (1 min)'),
          ),
        ),
        h(
          'tbody',
          {},
          queues.length === 0 ? h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No queues.')) : null,
          queues.map((q) =>
            h(
              'tr',
              {},
              h('td', {}, h('strong', {}, q.name)),
              h('td', { class: 'num' }, count(q.ready)),
              h('td', { class: 'num' }, q.scheduled),
              h('td', { class: 'num' }, q.running),
              h('td', { class: q.failedLastHour > 0 ? 'num bad' : 'num' }, q.failedLastHour),
              h('td', {}, oldestAge(q.oldestReadyAgeSecs)),
              h('td', { class: 'num' }, count(q.doneLastMinute)),
            ),
          ),
        ),
      ),
    ),
  );
}

/** The oldest ready job's age: text, plus a meter that turns amber then red. */
function oldestAge(secs) {
  if (secs === null || secs === undefined) return h('span', { class: 'muted' }, '—');
  const level = secs >= AGE_BAD_SECS ? 'bad' : secs >= AGE_WARN_SECS ? 'warn' : 'ok';
  return h(
    'span',
    { class: `age age-${level}` },
    // <meter> colours itself from low/high/optimum: no inline style needed.
    h('meter', { min: 0, max: AGE_BAD_SECS * 2, low: AGE_WARN_SECS, high: AGE_BAD_SECS, optimum: 0, value: Math.min(secs, AGE_BAD_SECS * 2), title: `${secs.toFixed(1)} s` }),
    duration(secs),
  );
}

function workersSection(workers) {
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Workers'),
    workers.length === 0
      ? h('p', { class: 'muted' }, 'No worker seen in the last five minutes.')
      : h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            {},
            thead('Kind', 'Host', ['PID', 'num'], 'Started', 'Last heartbeat', 'State', ['Jobs done', 'num']),
            h('tbody', {}, workers.map(workerRow)),
          ),
        ),
    h('p', { class: 'muted small' }, `Workers seen in the last five minutes. One that has not reported for ${STALE_SECS} s is marked stale: it may have died; its jobs are requeued when their lease runs out.`),
  );
}

function workerRow(worker) {
  const silent = ageSecs(worker.lastSeenAt);
  const state = worker.stoppedAt ? 'STOPPED' : silent > STALE_SECS ? 'STALE' : 'LIVE';
  return h(
    'tr',
    { class: `worker-${state.toLowerCase()}`, title: worker.id },
    h('td', {}, worker.kind),
    h('td', {}, worker.host),
    h('td', { class: 'num' }, worker.pid),
    h('td', {}, when(worker.startedAt)),
    h('td', {}, h('time', { datetime: worker.lastSeenAt, title: new Date(worker.lastSeenAt).toLocaleString() }, ago(worker.lastSeenAt))),
    h('td', {}, badge(state), worker.stoppedAt ? h('span', { class: 'muted' }, ' ', when(worker.stoppedAt)) : null),
    h('td', { class: 'num' }, count(worker.jobsDone)),
  );
}

function failuresSection(failures) {
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Recent failures'),
    failures.length === 0
      ? h('p', { class: 'muted' }, 'No failed build or run in the last 24 hours.')
      : h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'failures' },
            thead('Queue', 'Function', ['Version', 'num'], 'Error', 'Message', 'When', 'Execution'),
            h('tbody', {}, failures.map(failureRow)),
          ),
        ),
    failures.length > 0 ? h('p', { class: 'muted small' }, 'The 20 newest failures of the last 24 hours, newest first.') : null,
  );
}

function failureRow(failure) {
  // A deleted function keeps its failures here but has no page to link to.
  const fn =
    failure.functionName !== null
      ? h('a', { href: link(`/functions/${failure.functionId}`) }, failure.functionName)
      : h('span', { class: 'muted', title: failure.functionId }, 'deleted function');
  return h(
    'tr',
    {},
    h('td', {}, failure.queue),
    h('td', {}, fn),
    h('td', { class: 'num' }, failure.version),
    h('td', {}, h('code', {}, failure.errorType)),
    h('td', { class: 'message' }, h('span', { class: 'truncate', title: failure.message }, failure.message)),
    h('td', {}, when(failure.at)),
    h('td', {}, failure.executionId ? h('a', { href: link(`/executions/${failure.executionId}`) }, 'Open') : h('span', { class: 'muted' }, '—')),
  );
}

/** 51230 → "51,230" in the reader's locale. */
const count = (n) => n.toLocaleString();

/** Seconds since `iso`. */
function ageSecs(iso) {
  return (Date.now() - new Date(iso).getTime()) / 1000;
}

/** 0.4 s, 12 s, 3 min 5 s, 2 h 10 min. */
function duration(secs) {
  if (secs < 10) return `${secs.toFixed(1)} s`;
  if (secs < 60) return `${Math.round(secs)} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${Math.floor(secs % 60)} s`;
  return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min`;
}
