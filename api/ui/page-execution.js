// `#/executions/<id>`: one execution (GET /executions/{id}): its status
// (live while QUEUED or RUNNING, through its event stream), function, input, output, error, logs,
// timings and where it ran; a Cancel button while it is unfinished.

import { attemptsCard } from './section-retries.js';
import { h, fill, api, isAdmin, session, link, errorBox, badge, when, ms, pretty } from './lib.js';
import { followExecution } from './section-events.js';

const UNFINISHED = ['QUEUED', 'RUNNING'];

export default function routes(route) {
  route('/executions/:id', executionPage);
}

async function executionPage({ id }) {
  let execution;
  try {
    execution = await api(`/executions/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    return h('section', {}, h('h1', {}, 'Execution not found'), errorBox(error));
  }

  const status = h('span', { 'data-testid': 'execution-status', 'aria-live': 'polite' });
  const functionLink = h('span', {}, h('code', {}, execution.functionId.slice(0, 8)), ` version #${execution.functionVersion}`);
  const cancelSlot = h('div', { class: 'slot' });
  const problem = h('div', { class: 'slot' });
  const details = h('div', {});
  const creator = h('span', {}, execution.createdBy ? h('code', {}, execution.createdBy.slice(0, 8)) : '—');

  describeFunction(execution, functionLink);
  describeCreator(execution.createdBy, creator);

  function show(next) {
    execution = next;
    status.replaceChildren(badge(execution.status));
    fill(details, sections(execution, functionLink, creator));
    cancelSlot.replaceChildren(UNFINISHED.includes(execution.status) ? cancelButton() : '');
  }

  function cancelButton() {
    const button = h('button', { type: 'button', class: 'danger' }, 'Cancel');
    button.addEventListener('click', async () => {
      button.disabled = true;
      button.textContent = 'Cancelling…';
      problem.replaceChildren();
      try {
        // 200: cancelled; 202: running and still stopping (the stream follows it).
        show(await api(`/executions/${execution.id}/cancel`, { method: 'POST' }));
      } catch (error) {
        problem.replaceChildren(errorBox(error));
        button.disabled = false;
        button.textContent = 'Cancel';
      }
    });
    return button;
  }

  show(execution);
  if (UNFINISHED.includes(execution.status)) {
    // Its live stream: each status change, then the final record.
    followExecution(execution, show);
  }

  return h(
    'section',
    { class: 'execution-page' },
    h('div', { class: 'spread' }, h('h1', {}, `Execution ${execution.id.slice(-12)}`, status), cancelSlot),
    problem,
    details,
  );
}

/** The page's cards, from the execution. */
function sections(e, functionLink, creator) {
  const unfinished = UNFINISHED.includes(e.status);
  return [
    h(
      'div',
      { class: 'card' },
      h(
        'dl',
        { class: 'facts' },
        fact('Function', functionLink),
        fact('Created', stamp(e.createdAt)),
        fact('Started', stamp(e.startedAt)),
        fact('Finished', stamp(e.finishedAt)),
        fact('Duration', ms(e.durationMs)),
        fact('Queue time', ms(e.queuedMs)),
        fact('Attempts', e.attempts),
        fact('Worker', e.workerId ? h('code', {}, e.workerId) : '—'),
        fact('Started by', creator),
        fact('Request id', e.requestId ? h('code', { 'data-testid': 'request-id' }, e.requestId) : h('span', { 'data-testid': 'request-id' }, '—')),
        fact('Id', h('code', {}, e.id)),
      ),
    ),
    h('div', { class: 'card' }, h('h2', {}, 'Input'), h('pre', { class: 'wrap' }, pretty(e.input))),
    h(
      'div',
      { class: 'card' },
      h('h2', {}, 'Output'),
      e.status === 'SUCCEEDED'
        ? h('pre', { class: 'wrap output' }, pretty(e.output))
        : h('p', { class: 'muted' }, unfinished ? 'Not finished yet.' : `None: the execution ${e.status.toLowerCase()}.`),
    ),
    e.error
      ? h(
          'div',
          { class: 'card' },
          h('h2', {}, 'Error'),
          h('div', { class: 'error' }, h('strong', {}, e.error.type), ' ', e.error.message),
        )
      : null,
    h(
      'div',
      { class: 'card' },
      h('h2', {}, 'Logs'),
      e.logs ? h('pre', { class: 'wrap logs' }, e.logs) : h('p', { class: 'muted' }, unfinished ? 'Logs appear when it finishes.' : 'No logs.'),
      e.logsTruncated ? h('p', { class: 'notice' }, 'The logs were truncated: only the first part was kept.') : null,
    ),
    attemptsCard(e),
  ];
}

const fact = (term, value) => [h('dt', {}, term), h('dd', {}, value)];

/** The exact time, with "… ago" after it. */
function stamp(iso) {
  return iso ? h('span', {}, new Date(iso).toLocaleString(), ' ', h('span', { class: 'muted' }, '(', when(iso), ')')) : '—';
}

/**
 * Fills `target` with a link naming the function and its version: the
 * execution has only ids; a deleted function stays an id.
 */
async function describeFunction(e, target) {
  const path = `/functions/${e.functionId}`;
  const [fn, versions] = await Promise.allSettled([api(path), api(`${path}/versions`)]);
  if (fn.status !== 'fulfilled') {
    target.replaceChildren(h('code', {}, e.functionId), ` version #${e.functionVersion} `, h('span', { class: 'muted' }, '(function not available)'));
    return;
  }
  const version = versions.status === 'fulfilled' ? versions.value.items.find((v) => v.version === e.functionVersion) : null;
  fill(
    target,
    h('a', { href: link(path) }, fn.value.name),
    ' version ',
    version ? h('code', {}, version.semver) : null,
    ` (#${e.functionVersion})`,
  );
}

/** The email of whoever started it, where the caller may read it. */
async function describeCreator(userId, target) {
  if (!userId) return;
  if (userId === session.user?.id) {
    target.replaceChildren('you');
    return;
  }
  if (!isAdmin()) return;
  try {
    const user = await api(`/users/${userId}`);
    target.replaceChildren(user.email);
  } catch {
    // Deleted users keep their id on the execution: the short id stays.
  }
}
