// The schedules of a function, on its page: each with its cron expression,
// time zone, missed-tick policy, next 5 fire times and latest fire. Admins
// (who may change the function) add, pause, resume and delete them.

import { h, thead, api, isAdmin, errorBox, field, when, pretty } from './lib.js';

/** The card's content for function `fn`; it loads itself. */
export function schedulesSection(fn) {
  const path = `/functions/${fn.id}/schedules`;
  const box = h('div', { 'data-testid': 'schedules' });
  const problem = h('div', { class: 'slot' });

  async function load() {
    try {
      const { items } = await api(path);
      box.replaceChildren(
        items.length
          ? h('table', {}, thead('Cron', 'Time zone', 'Next 5 fire times', 'Missed ticks', 'Last fire', isAdmin() && ''), h('tbody', {}, items.map(row)))
          : h('p', { class: 'muted' }, 'No schedules: this function runs only when called.'),
      );
    } catch (error) {
      box.replaceChildren(errorBox(error));
    }
  }

  /** Runs `call` (a change), then reloads; a refusal shows above the table. */
  async function change(call) {
    problem.replaceChildren();
    try {
      await call();
    } catch (error) {
      problem.replaceChildren(errorBox(error));
    }
    load();
  }

  function row(schedule) {
    const one = `${path}/${schedule.id}`;
    const next = schedule.enabled
      ? h('ol', { class: 'fire-times' }, schedule.nextFireTimes.map((iso) => h('li', {}, h('time', { datetime: iso }, new Date(iso).toLocaleString()))))
      : h('span', { class: 'muted' }, 'Paused');
    const last = schedule.lastFire ? [when(schedule.lastFire.scheduledFor), ' ', schedule.lastFire.outcome] : '—';
    const actions = isAdmin()
      ? h(
          'td',
          {},
          h(
            'button',
            { type: 'button', onclick: () => change(() => api(one, { method: 'PATCH', body: { enabled: !schedule.enabled } })) },
            schedule.enabled ? 'Pause' : 'Resume',
          ),
          ' ',
          h('button', { type: 'button', class: 'danger', onclick: () => change(() => api(one, { method: 'DELETE' })) }, 'Delete'),
        )
      : null;
    return h(
      'tr',
      { 'data-schedule': schedule.id },
      h('td', {}, h('code', {}, schedule.cron)),
      h('td', {}, schedule.timezone),
      h('td', {}, next),
      h('td', {}, schedule.missedTicks),
      h('td', {}, last),
      actions,
    );
  }

  function addForm() {
    const cron = h('input', { name: 'cron', required: true, placeholder: '*/5 * * * *' });
    const timezone = h('input', { name: 'timezone', value: 'UTC' });
    const input = h('textarea', { name: 'input', rows: 2 }, pretty(null));
    const missed = h('select', { name: 'missedTicks' }, h('option', { value: 'runLatest' }, 'Run the latest once'), h('option', { value: 'skip' }, 'Skip'));
    return h(
      'form',
      {
        class: 'schedule-form',
        onsubmit: (event) => {
          event.preventDefault();
          change(async () => {
            let parsed;
            try {
              parsed = JSON.parse(input.value || 'null');
            } catch {
              throw new Error('The input is not JSON');
            }
            await api(path, { method: 'POST', body: { cron: cron.value, timezone: timezone.value || 'UTC', input: parsed, missedTicks: missed.value } });
            cron.value = '';
          });
        },
      },
      field('Cron', cron, '5 fields (minute hour day month weekday), or 6 with seconds first'),
      field('Time zone', timezone, 'An IANA name, e.g. Europe/Paris'),
      field('Input', input, 'JSON given to every run'),
      field('Missed ticks', missed, 'When Plat was down at a tick'),
      h('button', { type: 'submit' }, 'Add schedule'),
    );
  }

  load();
  return h('div', {}, h('h2', {}, 'Schedules'), problem, box, isAdmin() ? addForm() : null);
}
