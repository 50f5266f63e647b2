// API keys: every signed-in user manages their own; an admin sees
// everyone's and may create a key for another user (api/src/api_keys.rs).
// A new key's secret is in the create answer only: the page shows it once,
// with a copy button, and forgets it when dismissed or left.

import { h, thead, api, session, isAdmin, errorBox, badge, field, when } from './lib.js';
import { allUsers, userLabel, act } from './page-users.js';

// Offered expiries, in days (the API takes any future `expiresAt`).
const EXPIRIES = [
  ['', 'Never'],
  ['7', 'In 7 days'],
  ['30', 'In 30 days'],
  ['90', 'In 90 days'],
  ['365', 'In a year'],
];

export default function routes(route) {
  route('/api-keys', apiKeysPage);
}

async function apiKeysPage() {
  const admin = isAdmin();
  let keys, users;
  try {
    // Owners are shown by email, which only admins can look up (and only
    // admins see other people's keys).
    [keys, users] = await Promise.all([api('/api-keys').then((list) => list.items), admin ? allUsers() : []]);
  } catch (error) {
    return h('section', {}, h('h1', {}, 'API keys'), errorBox(error));
  }
  const owners = new Map(users.map((u) => [u.id, u]));
  const problem = h('div', { class: 'slot' });
  const newKey = h('div', { class: 'slot' });
  const showRevoked = h('input', { type: 'checkbox', onchange: () => draw() });
  const list = h('div', {});

  async function reload() {
    keys = (await api('/api-keys')).items;
    draw();
  }

  function draw() {
    const shown = showRevoked.checked ? keys : keys.filter((key) => !key.revokedAt);
    list.replaceChildren(
      shown.length === 0
        ? h('p', { class: 'muted' }, keys.length ? 'Only revoked keys.' : 'No keys yet.')
        : h('div', { class: 'table-wrap' }, keysTable(shown, owners, admin, problem, reload)),
    );
  }
  draw();

  return h(
    'section',
    { class: 'admin-page' },
    h('h1', {}, 'API keys'),
    h(
      'p',
      { class: 'muted' },
      'Programs, CI and the CLI authenticate with ',
      h('code', {}, 'Authorization: Bearer plat_…'),
      '. A key acts as its owner, with their role.',
    ),
    newKey,
    createKeyForm(users, admin, newKey, reload),
    h(
      'section',
      { class: 'card' },
      h('div', { class: 'spread' }, h('h2', {}, admin ? 'All keys' : 'Your keys'), h('label', { class: 'check' }, showRevoked, ' Show revoked')),
      problem,
      list,
    ),
  );
}

function createKeyForm(users, admin, newKey, reload) {
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 128, autocomplete: 'off', placeholder: 'ci-deploy' });
  const expiry = h('select', { name: 'expires' }, EXPIRIES.map(([value, label]) => h('option', { value }, label)));
  // Admins may create a key for someone else; everyone else gets their own.
  const owner = admin
    ? h(
        'select',
        { name: 'owner' },
        users.map((u) => h('option', { value: u.id, selected: u.id === session.user.id }, u.id === session.user.id ? `${userLabel(u)} (you)` : userLabel(u))),
      )
    : null;
  const button = h('button', { type: 'submit' }, 'Create key');
  const problem = h('div', { class: 'slot' });
  const form = h(
    'form',
    {
      class: 'card',
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { name: name.value.trim() };
        if (expiry.value) body.expiresAt = new Date(Date.now() + Number(expiry.value) * 86400000).toISOString();
        if (owner && owner.value !== session.user.id) body.userId = owner.value;
        let created;
        const ok = await act(button, problem, async () => {
          created = await api('/api-keys', { method: 'POST', body });
        });
        if (!ok) return;
        // Read before reset(), which puts the owner back to the caller.
        const ownerLabel = body.userId ? owner.selectedOptions[0]?.textContent : null;
        form.reset();
        newKey.replaceChildren(createdKey(created, ownerLabel, newKey));
        newKey.scrollIntoView({ block: 'nearest' });
        // The list is secondary: a failure to refresh it must not hide the key.
        reload().catch((error) => problem.replaceChildren(errorBox(error)));
      },
    },
    h('h2', {}, 'Create a key'),
    problem,
    h('div', { class: 'inline-form' }, field('Name', name), field('Expires', expiry), owner ? field('Owner', owner) : null, button),
  );
  return form;
}

/** The new key, shown this once, with a copy button. */
function createdKey(created, ownerLabel, slot) {
  const secret = h('code', { class: 'secret', 'data-testid': 'new-key' }, created.key);
  const status = h('span', { class: 'muted', role: 'status' });
  const copy = h(
    'button',
    {
      type: 'button',
      onclick: async () => {
        try {
          // Needs a secure context (https or localhost); else fall back.
          await navigator.clipboard.writeText(created.key);
          status.textContent = 'Copied.';
        } catch {
          // Select the key so the user can press Ctrl+C / ⌘C themselves;
          // execCommand is deprecated but still the only non-async fallback.
          const range = document.createRange();
          range.selectNodeContents(secret);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          const copied = document.execCommand && document.execCommand('copy');
          status.textContent = copied ? 'Copied.' : 'Selected: press Ctrl+C (⌘C) to copy.';
        }
      },
    },
    'Copy',
  );
  return h(
    'section',
    { class: 'card new-key' },
    h('h2', {}, `New key “${created.name}”`, ownerLabel ? ` for ${ownerLabel}` : ''),
    h('div', { class: 'notice warn', role: 'alert' }, h('strong', {}, 'Copy it now: '), 'this is the only time the key is shown. Plat keeps only its hash; if you lose it, revoke it and create another.'),
    h('div', { class: 'secret-row' }, secret, copy),
    h('div', { class: 'row' }, status, h('button', { type: 'button', class: 'secondary', onclick: () => slot.replaceChildren() }, 'Done, hide it')),
  );
}

function keysTable(keys, owners, admin, problem, reload) {
  return h(
    'table',
    { class: 'keys' },
    thead('Name', 'Prefix', admin && 'Owner', 'Created', 'Last used', 'Expires', 'State', ''),
    h('tbody', {}, keys.map((key) => keyRow(key, owners, admin, problem, reload))),
  );
}

function keyRow(key, owners, admin, problem, reload) {
  const expired = key.expiresAt && new Date(key.expiresAt) <= new Date();
  const state = key.revokedAt ? 'REVOKED' : expired ? 'EXPIRED' : 'ACTIVE';
  const owner = owners.get(key.userId);
  const revoke = key.revokedAt
    ? null
    : h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            const whose = key.userId === session.user.id ? 'Programs using it' : `${owner ? owner.email : 'Its owner'}'s programs using it`;
            if (!window.confirm(`Revoke the key “${key.name}” (${key.prefix}…)? ${whose} stop working at once.`)) return;
            await act(revoke, problem, async () => {
              await api(`/api-keys/${key.id}`, { method: 'DELETE' });
              await reload();
            });
          },
        },
        'Revoke',
      );
  return h(
    'tr',
    { class: key.revokedAt ? 'is-disabled' : null },
    h('td', {}, key.name),
    h('td', {}, h('code', {}, `${key.prefix}…`)),
    admin ? h('td', {}, owner ? owner.email : h('code', {}, key.userId), key.userId === session.user.id ? h('span', { class: 'muted' }, ' (you)') : null) : null,
    h('td', {}, when(key.createdAt)),
    h('td', {}, key.lastUsedAt ? when(key.lastUsedAt) : h('span', { class: 'muted' }, 'never')),
    h('td', {}, key.expiresAt ? expiresAt(key.expiresAt) : h('span', { class: 'muted' }, 'never')),
    h('td', {}, badge(state), key.revokedAt ? h('span', { class: 'muted' }, ' ', when(key.revokedAt)) : null),
    h('td', {}, revoke),
  );
}

/** An expiry: the date, with the exact time on hover (ago() is for the past). */
function expiresAt(iso) {
  const date = new Date(iso);
  return h('time', { datetime: iso, title: date.toLocaleString() }, date.toLocaleDateString());
}
