// Users and groups (admins; the API answers 403 to anyone else). Users:
// create, change role, disable/enable, delete. Groups: create, rename,
// delete, add and remove members. The API enforces the rules (the last
// enabled admin stays; a user or group an access list names cannot be
// deleted); the page shows its refusals as they come.
//
// Also exports the small helpers the other admin pages share: `allUsers`,
// `userLabel` and `act`.

import { h, thead, api, session, loadSession, render, link, navigate, errorBox, badge, field, when } from './lib.js';

export default function routes(route) {
  route('/users', usersPage);
  route('/groups', groupsPage);
  route('/groups/:id', groupPage);
}

// ---------------------------------------------------------------- shared

/** Every user: GET /users is paginated (100 at most a page), so follow the cursors. */
export async function allUsers() {
  const users = [];
  let cursor = null;
  do {
    const page = await api('/users', { query: { limit: 100, cursor } });
    users.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return users;
}

/** "Ada Lovelace <ada@example.com>", or the email alone. */
export function userLabel(user) {
  return user.displayName ? `${user.displayName} <${user.email}>` : user.email;
}

/**
 * Runs `fn` for a button: disables it meanwhile and shows a failure in
 * `slot` (cleared first). Answers whether `fn` succeeded.
 */
export async function act(button, slot, fn) {
  button.disabled = true;
  slot.replaceChildren();
  try {
    await fn();
    return true;
  } catch (error) {
    slot.replaceChildren(errorBox(error));
    return false;
  } finally {
    button.disabled = false;
  }
}

/** A page whose first call was refused: its title and the reason. */
function refused(title, error) {
  return h(
    'section',
    {},
    h('h1', {}, title),
    errorBox(error),
    error.status === 403 ? h('p', { class: 'muted' }, 'Only administrators manage users and groups.') : null,
  );
}

// ---------------------------------------------------------------- users

async function usersPage() {
  let users, groups;
  try {
    [users, groups] = await Promise.all([allUsers(), api('/groups').then((list) => list.items)]);
  } catch (error) {
    return refused('Users', error);
  }
  const problem = h('div', { class: 'slot' });
  const heading = h('h2', {});
  const list = h('div', { class: 'table-wrap' });

  function draw() {
    heading.textContent = `All users (${users.length})`;
    list.replaceChildren(usersTable(users, groups, problem, reload));
  }
  async function reload() {
    users = await allUsers();
    draw();
  }
  draw();

  return h(
    'section',
    { class: 'admin-page' },
    h('h1', {}, 'Users'),
    createUserForm(reload),
    h('section', { class: 'card' }, heading, problem, list),
  );
}

function createUserForm(reload) {
  const email = h('input', { type: 'email', name: 'email', required: true, maxlength: 254, autocomplete: 'off' });
  const displayName = h('input', { type: 'text', name: 'displayName', maxlength: 128, autocomplete: 'off' });
  const role = h('select', { name: 'role' }, h('option', { value: 'DEV' }, 'DEV'), h('option', { value: 'ADMIN' }, 'ADMIN'));
  // new-password keeps the browser from filling in the admin's own password.
  const password = h('input', { type: 'password', name: 'password', minlength: 12, autocomplete: 'new-password' });
  const button = h('button', { type: 'submit' }, 'Create user');
  const problem = h('div', { class: 'slot' });
  const done = h('div', { class: 'slot' });
  const form = h(
    'form',
    {
      class: 'card form-grid',
      onsubmit: async (event) => {
        event.preventDefault();
        done.replaceChildren();
        const body = { email: email.value.trim(), role: role.value };
        if (displayName.value.trim()) body.displayName = displayName.value.trim();
        // No password: the user signs in with API keys only (see docs/security.md).
        if (password.value) body.password = password.value;
        let created;
        const ok = await act(button, problem, async () => {
          created = await api('/users', { method: 'POST', body });
          await reload();
        });
        if (ok) {
          form.reset();
          done.replaceChildren(h('div', { class: 'notice', role: 'status' }, `Created ${created.email} (${created.role}).`));
        }
      },
    },
    h('h2', {}, 'Create user'),
    problem,
    done,
    h(
      'div',
      { class: 'fields' },
      field('Email', email),
      field('Display name', displayName),
      field('Role', role, 'ADMIN manages everything; DEV runs the functions it is given.'),
      field('Password', password, 'Optional, at least 12 characters. Without one, the user can only use API keys.'),
    ),
    h('div', { class: 'row' }, button),
  );
  return form;
}

function usersTable(users, groups, problem, reload) {
  const groupNames = new Map(groups.map((g) => [g.id, g.name]));
  return h(
    'table',
    { class: 'users' },
    thead('Email', 'Display name', 'Role', 'State', 'Password', 'Groups', 'Created', 'Actions'),
    h(
      'tbody',
      {},
      users.map((user) => userRow(user, groupNames, problem, reload)),
    ),
  );
}

function userRow(user, groupNames, problem, reload) {
  const me = user.id === session.user?.id;
  const who = me ? `${user.email} (you)` : user.email;

  // A button rather than a select: one click, one confirmed change.
  const nextRole = user.role === 'ADMIN' ? 'DEV' : 'ADMIN';
  const role = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      onclick: async () => {
        const what = nextRole === 'ADMIN' ? 'an ADMIN (may do everything)' : 'a DEV';
        if (!window.confirm(`Make ${who} ${what}?`)) return;
        const ok = await act(role, problem, () => api(`/users/${user.id}`, { method: 'PUT', body: { role: nextRole } }));
        if (!ok) return;
        if (me) {
          // Demoted oneself: the navigation and this page are admin-only.
          await loadSession();
          render();
        } else {
          await reload().catch((error) => problem.replaceChildren(errorBox(error)));
        }
      },
    },
    `Make ${nextRole}`,
  );

  const toggle = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      onclick: async () => {
        const disabling = !user.disabled;
        // Disabling stops the user's keys and sessions at once: ask first.
        const warning = me ? 'Disable your own account? You are signed out at once.' : `Disable ${who}? Their API keys and sessions stop working at once.`;
        if (disabling && !window.confirm(warning)) return;
        const ok = await act(toggle, problem, () => api(`/users/${user.id}`, { method: 'PUT', body: { disabled: disabling } }));
        if (ok) await reload().catch((error) => problem.replaceChildren(errorBox(error)));
      },
    },
    user.disabled ? 'Enable' : 'Disable',
  );

  // A one-time link the admin hands over: the user sets their own password
  // with it (the only way besides an admin typing one in).
  const resetLink = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      onclick: async () => {
        let issued;
        const ok = await act(resetLink, problem, async () => {
          issued = await api(`/users/${user.id}/password-reset`, { method: 'POST' });
        });
        if (!ok) return;
        const url = `${location.origin}/ui#/reset-password?token=${encodeURIComponent(issued.token)}`;
        window.prompt(`A one-time link for ${who} to set a password, valid until ${when(issued.expiresAt)}. It is shown only now; earlier links stop working.`, url);
      },
    },
    'Reset link',
  );

  const remove = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      onclick: async () => {
        if (!window.confirm(`Delete ${who}? This cannot be undone. (Disabling keeps the record.)`)) return;
        const ok = await act(remove, problem, () => api(`/users/${user.id}`, { method: 'DELETE' }));
        if (ok) await reload().catch((error) => problem.replaceChildren(errorBox(error)));
      },
    },
    'Delete',
  );

  return h(
    'tr',
    { class: user.disabled ? 'is-disabled' : null },
    h('td', { class: 'nowrap' }, user.email, me ? h('span', { class: 'muted' }, ' (you)') : null),
    h('td', {}, user.displayName || h('span', { class: 'muted' }, '—')),
    h('td', {}, user.role),
    h('td', {}, user.disabled ? badge('DISABLED') : badge('ACTIVE')),
    h('td', {}, user.hasPassword ? 'yes' : h('span', { class: 'muted', title: 'Signs in with API keys only' }, 'no')),
    h(
      'td',
      {},
      user.groups.length === 0
        ? h('span', { class: 'muted' }, '—')
        : user.groups.map((id, i) => [i > 0 ? ', ' : null, h('a', { href: link(`/groups/${id}`) }, groupNames.get(id) || id)]),
    ),
    h('td', { class: 'nowrap' }, when(user.createdAt)),
    h('td', {}, h('div', { class: 'row nowrap' }, role, toggle, resetLink, remove)),
  );
}

// ---------------------------------------------------------------- groups

async function groupsPage() {
  let groups;
  try {
    groups = (await api('/groups')).items;
  } catch (error) {
    return refused('Groups', error);
  }
  const list = h('div', {}, groupsTable(groups));

  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 64, autocomplete: 'off' });
  const button = h('button', { type: 'submit' }, 'Create group');
  const problem = h('div', { class: 'slot' });
  const form = h(
    'form',
    {
      class: 'card',
      onsubmit: async (event) => {
        event.preventDefault();
        let created;
        const ok = await act(button, problem, async () => {
          created = await api('/groups', { method: 'POST', body: { name: name.value.trim() } });
        });
        // The new group's own page is where members are added.
        if (ok) navigate(`/groups/${created.id}`);
      },
    },
    h('h2', {}, 'Create group'),
    problem,
    h('div', { class: 'inline-form' }, field('Name', name), button),
  );

  return h(
    'section',
    { class: 'admin-page' },
    h('h1', {}, 'Groups'),
    h('p', { class: 'muted' }, 'A group is a named set of users; the access lists of functions and environments can name it.'),
    form,
    h('section', { class: 'card' }, h('h2', {}, `Groups (${groups.length})`), list),
  );
}

function groupsTable(groups) {
  if (groups.length === 0) return h('p', { class: 'muted' }, 'No groups yet.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      thead('Name', ['Members', 'num'], 'Created', 'Updated'),
      h(
        'tbody',
        {},
        groups.map((group) =>
          h(
            'tr',
            {},
            h('td', {}, h('a', { href: link(`/groups/${group.id}`) }, group.name)),
            h('td', { class: 'num' }, group.members.length),
            h('td', {}, when(group.createdAt)),
            h('td', {}, when(group.updatedAt)),
          ),
        ),
      ),
    ),
  );
}

async function groupPage({ id }) {
  let group, users;
  try {
    [group, users] = await Promise.all([api(`/groups/${encodeURIComponent(id)}`), allUsers()]);
  } catch (error) {
    if (error.status === 404 || error.status === 400) {
      return h('section', {}, h('h1', {}, 'Group not found'), errorBox(error), h('p', {}, h('a', { href: link('/groups') }, '← All groups')));
    }
    return refused('Group', error);
  }
  const byId = new Map(users.map((u) => [u.id, u]));
  const title = h('span', {}, group.name);
  const problem = h('div', { class: 'slot' });
  const members = h('div', {});

  function show(next) {
    group = next;
    title.textContent = group.name;
    document.title = `${group.name} · Plat`;
    members.replaceChildren(membersCard());
  }

  function membersCard() {
    const candidates = users.filter((u) => !group.members.includes(u.id));
    const pick = h(
      'select',
      { name: 'user', required: true },
      h('option', { value: '' }, candidates.length ? 'Choose a user…' : 'Everyone is a member'),
      candidates.map((u) => h('option', { value: u.id }, userLabel(u))),
    );
    const add = h('button', { type: 'submit', disabled: candidates.length === 0 }, 'Add member');
    const rows = group.members.map((userId) => {
      const user = byId.get(userId);
      const remove = h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            const label = user ? user.email : userId;
            if (!window.confirm(`Remove ${label} from ${group.name}? They lose what the group gave them access to.`)) return;
            await act(remove, problem, async () => {
              await api(`/groups/${group.id}/members/${userId}`, { method: 'DELETE' });
              show(await api(`/groups/${group.id}`));
            });
          },
        },
        'Remove',
      );
      return h(
        'tr',
        {},
        h('td', {}, user ? user.email : h('code', {}, userId)),
        h('td', {}, user?.displayName || h('span', { class: 'muted' }, '—')),
        h('td', {}, user ? user.role : ''),
        h('td', {}, remove),
      );
    });
    return h(
      'section',
      { class: 'card' },
      h('h2', {}, `Members (${group.members.length})`),
      group.members.length === 0
        ? h('p', { class: 'muted' }, 'No members yet.')
        : h(
            'div',
            { class: 'table-wrap' },
            h('table', {}, thead('Email', 'Display name', 'Role', ''), h('tbody', {}, rows)),
          ),
      h(
        'form',
        {
          class: 'inline-form',
          onsubmit: async (event) => {
            event.preventDefault();
            await act(add, problem, async () => {
              show(await api(`/groups/${group.id}/members`, { method: 'POST', body: { userId: pick.value } }));
            });
          },
        },
        field('Add a user', pick),
        add,
      ),
    );
  }

  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 64, value: group.name, autocomplete: 'off' });
  const rename = h('button', { type: 'submit', class: 'secondary' }, 'Rename');
  const remove = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      onclick: async () => {
        if (!window.confirm(`Delete the group ${group.name}? Its members stay; they only leave the group.`)) return;
        const ok = await act(remove, problem, () => api(`/groups/${group.id}`, { method: 'DELETE' }));
        if (ok) navigate('/groups');
      },
    },
    'Delete group',
  );

  show(group);
  return h(
    'section',
    { class: 'admin-page' },
    h('p', { class: 'crumbs' }, h('a', { href: link('/groups') }, '← Groups')),
    h('h1', {}, title),
    problem,
    members,
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Settings'),
      h('dl', { class: 'facts' }, h('dt', {}, 'Id'), h('dd', {}, h('code', {}, group.id)), h('dt', {}, 'Created'), h('dd', {}, when(group.createdAt))),
      h(
        'form',
        {
          class: 'inline-form',
          onsubmit: async (event) => {
            event.preventDefault();
            await act(rename, problem, async () => {
              show(await api(`/groups/${group.id}`, { method: 'PUT', body: { name: name.value.trim() } }));
            });
          },
        },
        field('Name', name),
        rename,
      ),
      h('div', { class: 'danger-zone' }, remove, h('small', { class: 'muted' }, 'Refused while a function or environment names the group in its access list.')),
    ),
  );
}
