// The function page's "Webhooks" card: where finished executions are POSTed
// (admins set, change or remove the URL, and rotate the signing secret,
// which is shown once), and the deliveries, each with every attempt
// (status code, duration, error). docs/triggers.md, "Completion webhooks".

import { h, fill, api, isAdmin, errorBox, thead, when, ms, field } from './lib.js';

const SHOWN = 20;
/** Delivery statuses, in the colours of the execution statuses. */
const LOOK = { PENDING: 'queued', DELIVERED: 'succeeded', DEAD_LETTERED: 'failed' };

/** The card for function `fn` (a FunctionView); `onChange(next)` gets the updated function. */
export function webhooksSection(fn, onChange = () => {}) {
  const root = h('div', { 'data-testid': 'webhooks' });
  const secretSlot = h('div', { class: 'slot', 'aria-live': 'polite' });
  const list = h('div', {});
  const path = `/functions/${fn.id}`;

  function showSecret(secret) {
    fill(
      secretSlot,
      secret
        ? h(
            'div',
            { class: 'notice', 'data-testid': 'webhook-secret' },
            h('strong', {}, 'Signing secret (shown only now): '),
            h('code', {}, secret),
            h('p', { class: 'muted' }, 'Verify deliveries with any Standard Webhooks library and this secret.'),
          )
        : null,
    );
  }

  async function save(event) {
    event.preventDefault();
    const url = event.target.elements.webhookUrl.value.trim();
    try {
      const next = await api(path, { method: 'PUT', body: { webhookUrl: url || null } });
      showSecret(next.webhookSecret);
      fn = next;
      onChange(next);
      render();
    } catch (error) {
      fill(secretSlot, errorBox(error));
    }
  }

  async function rotate() {
    if (!confirm('Replace the signing secret? Receivers must use the new one from now on.')) return;
    try {
      const { webhookSecret } = await api(`${path}/webhooks/secret`, { method: 'POST' });
      showSecret(webhookSecret);
    } catch (error) {
      fill(secretSlot, errorBox(error));
    }
  }

  function settings() {
    if (!isAdmin()) {
      return h('p', {}, 'URL: ', fn.webhookUrl ? h('code', {}, fn.webhookUrl) : h('span', { class: 'muted' }, 'None'));
    }
    const input = h('input', { name: 'webhookUrl', type: 'url', value: fn.webhookUrl || '', placeholder: 'https://example.com/hooks/plat' });
    return h(
      'form',
      { onsubmit: save, class: 'inline-form' },
      field('Webhook URL', input, 'Each finished execution is POSTed here, signed. Empty removes it.'),
      h('button', { type: 'submit' }, 'Save'),
      h('button', { type: 'button', onclick: rotate }, 'Rotate secret'),
    );
  }

  function statusBadge(status) {
    return h('span', { class: `badge badge-${LOOK[status] || 'queued'}` }, status);
  }

  function attempts(delivery) {
    return h(
      'ol',
      { class: 'attempts' },
      delivery.attemptLog.map((a) =>
        h(
          'li',
          {},
          when(a.startedAt),
          ' — ',
          a.statusCode ?? (a.finishedAt ? 'no answer' : 'lost with its worker'),
          a.durationMs !== null && a.durationMs !== undefined ? `, ${ms(a.durationMs)}` : '',
          a.error ? h('span', { class: 'muted' }, ` (${a.error})`) : '',
        ),
      ),
    );
  }

  async function loadDeliveries() {
    try {
      const { items } = await api(`${path}/webhooks/deliveries`, { query: { limit: SHOWN } });
      if (!items.length) return fill(list, h('p', { class: 'muted' }, 'No deliveries yet.'));
      fill(
        list,
        h(
          'table',
          { 'data-testid': 'webhook-deliveries' },
          thead('Execution', 'URL', 'Status', ['Attempts', 'num'], 'Next attempt', 'Log'),
          h(
            'tbody',
            {},
            items.map((d) =>
              h(
                'tr',
                {},
                h('td', {}, h('a', { href: `#/executions/${d.executionId}` }, h('code', {}, d.executionId.slice(0, 8)))),
                h('td', {}, h('code', {}, d.url)),
                h('td', {}, statusBadge(d.status)),
                h('td', { class: 'num' }, d.attempts),
                h('td', {}, d.nextAttemptAt ? when(d.nextAttemptAt) : '—'),
                h('td', {}, attempts(d)),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      fill(list, errorBox(error));
    }
  }

  function render() {
    fill(
      root,
      h('div', { class: 'spread' }, h('h2', {}, 'Webhooks'), h('button', { type: 'button', onclick: loadDeliveries }, 'Refresh')),
      settings(),
      secretSlot,
      list,
    );
  }

  render();
  loadDeliveries();
  return root;
}
