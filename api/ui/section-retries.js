// Retries and dead letters (docs/dashboard.md): `#/dead-letters`, the
// executions that failed every attempt of their retry policy (GET
// /executions?deadLetter=true), with a Re-queue button for admins (POST
// /executions/{id}/requeue); and `attemptsCard(execution)`, the card of an
// execution's runs on its page (GET /executions/{id}/attempts).

import { h, fill, api, isAdmin, link, errorBox, badge, when, ms, thead } from './lib.js';

export default function routes(route) {
  route('/dead-letters', deadLettersPage);
}

async function deadLettersPage() {
  const problem = h('div', { class: 'slot' });
  const body = h('tbody', {});
  const more = h('div', { class: 'slot' });

  async function load(cursor) {
    const query = new URLSearchParams({ deadLetter: 'true', limit: '50' });
    if (cursor) query.set('cursor', cursor);
    const page = await api(`/executions?${query}`);
    for (const execution of page.items) body.append(row(execution));
    more.replaceChildren(
      page.nextCursor ? h('button', { type: 'button', class: 'secondary', onclick: () => load(page.nextCursor) }, 'More') : '',
    );
    if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No dead letters.')));
  }

  function row(execution) {
    const action = h('td', {});
    if (isAdmin()) action.append(requeueButton(execution, action));
    return h(
      'tr',
      { 'data-testid': 'dead-letter' },
      h('td', {}, h('a', { href: link(`/executions/${execution.id}`) }, h('code', {}, execution.id.slice(-12)))),
      h('td', {}, h('a', { href: link(`/functions/${execution.functionId}`) }, h('code', {}, execution.functionId.slice(0, 8)))),
      h('td', { class: 'num' }, execution.attempts),
      h('td', {}, when(execution.finishedAt)),
      h('td', {}, execution.error ? [h('strong', {}, execution.error.type), ' ', execution.error.message] : '—'),
      action,
    );
  }

  function requeueButton(execution, cell) {
    const button = h('button', { type: 'button' }, 'Re-queue');
    button.addEventListener('click', async () => {
      button.disabled = true;
      problem.replaceChildren();
      try {
        const queued = await api(`/executions/${execution.id}/requeue`, { method: 'POST' });
        fill(cell, 'Re-queued as ', h('a', { href: link(`/executions/${queued.id}`) }, h('code', {}, queued.id.slice(-12))));
      } catch (error) {
        problem.replaceChildren(errorBox(error));
        button.disabled = false;
      }
    });
    return button;
  }

  await load(null);
  return h(
    'section',
    {},
    h('h1', {}, 'Dead letters'),
    h(
      'p',
      { class: 'muted' },
      'Executions of functions with a retry policy that failed their last attempt. ',
      isAdmin() ? 'Re-queue runs one again with the same input, as a new execution.' : 'An admin can re-queue them.',
    ),
    problem,
    h('table', {}, thead('Execution', 'Function', ['Attempts', 'num'], 'Finished', 'Error', ''), body),
    more,
  );
}

/**
 * The card of an execution's runs, oldest first; empty while there was
 * only one run (the page already shows it).
 */
export function attemptsCard(execution) {
  const card = h('div', { class: 'card', 'data-testid': 'attempts' });
  api(`/executions/${execution.id}/attempts`)
    .then(({ items }) => {
      if (items.length < 2) return;
      fill(
        card,
        h('h2', {}, 'Attempts'),
        h(
          'table',
          {},
          thead(['#', 'num'], 'Status', ['Duration', 'num'], 'Finished', 'Error', 'Next run'),
          h(
            'tbody',
            {},
            items.map((run) =>
              h(
                'tr',
                { title: run.logs || '' },
                h('td', { class: 'num' }, run.attempt),
                h('td', {}, badge(run.status)),
                h('td', { class: 'num' }, ms(run.durationMs)),
                h('td', {}, run.finishedAt ? when(run.finishedAt) : '—'),
                h('td', {}, run.error ? [h('strong', {}, run.error.type), ' ', run.error.message] : '—'),
                h('td', {}, run.retryAt ? new Date(run.retryAt).toLocaleTimeString() : '—'),
              ),
            ),
          ),
        ),
      );
    })
    .catch((error) => card.replaceChildren(errorBox(error)));
  return card;
}
