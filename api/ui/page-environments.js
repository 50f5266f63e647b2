// Environments: named sets of variables that functions reference; at a run
// they become environment variables (api/src/environments.rs). Everyone
// lists the environments they can access (names of variables only); opening
// one shows its values, except a secret's: secrets are write-only, shown as
// set or unset (the API never returns their values, to admins neither).
// Only admins create, change and delete, and set who may access one
// (docs/security.md).

import { h, thead, api, isAdmin, link, navigate, errorBox, field, when } from './lib.js';
import { allUsers, userLabel, act } from './page-users.js';

// The API's rule for variable names (functions/input.rs `check_variables`).
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export default function routes(route) {
  route('/environments', environmentsPage);
  route('/environments/:id', environmentPage);
}

// ---------------------------------------------------------------- the list

async function environmentsPage() {
  let environments;
  try {
    environments = (await api('/environments')).items;
  } catch (error) {
    // 503 when the operator has not set PLAT_SECRETS_KEY: the detail says so.
    return h('section', {}, h('h1', {}, 'Environments'), errorBox(error));
  }
  return h(
    'section',
    { class: 'admin-page' },
    h('h1', {}, 'Environments'),
    h(
      'p',
      { class: 'muted' },
      'An environment is a named set of variables a function can use: at each run they become its environment variables (the function’s own variables win on a clash). Values are encrypted at rest; this list shows variable names only, open an environment to see its values. A secret variable’s value is write-only: runs get it, nobody can read it back.',
    ),
    isAdmin() ? createForm() : null,
    h(
      'section',
      { class: 'card' },
      h('h2', {}, `Environments (${environments.length})`),
      environments.length === 0
        ? h('p', { class: 'muted' }, isAdmin() ? 'None yet.' : 'None that you can access.')
        : h('div', { class: 'table-wrap' }, environmentsTable(environments)),
    ),
  );
}

function environmentsTable(environments) {
  return h(
    'table',
    {},
    thead('Name', 'Description', 'Variables', 'Access', ['Revision', 'num'], 'Updated'),
    h(
      'tbody',
      {},
      environments.map((env) =>
        h(
          'tr',
          {},
          h('td', {}, h('a', { href: link(`/environments/${env.id}`) }, env.name)),
          h('td', {}, env.description || h('span', { class: 'muted' }, '—')),
          h('td', {}, env.variableNames.length ? h('span', { class: 'chips' }, env.variableNames.map((n) => h('code', {}, n))) : h('span', { class: 'muted' }, 'none')),
          h('td', {}, accessSummary(env)),
          h('td', { class: 'num' }, env.revision),
          h('td', {}, when(env.updatedAt)),
        ),
      ),
    ),
  );
}

/** "Everyone", or how many users and groups the access lists name. */
function accessSummary(env) {
  if (env.allowedUsers.length === 0 && env.allowedGroups.length === 0) return 'Everyone';
  const parts = [];
  if (env.allowedUsers.length) parts.push(`${env.allowedUsers.length} user${env.allowedUsers.length > 1 ? 's' : ''}`);
  if (env.allowedGroups.length) parts.push(`${env.allowedGroups.length} group${env.allowedGroups.length > 1 ? 's' : ''}`);
  return `Restricted: ${parts.join(', ')}`;
}

function createForm() {
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 64, pattern: '[A-Za-z0-9._\\-]+', autocomplete: 'off', placeholder: 'production' });
  const description = h('input', { type: 'text', name: 'description', maxlength: 2000, autocomplete: 'off' });
  const variables = variablesEditor({}, [], true);
  const button = h('button', { type: 'submit' }, 'Create environment');
  const problem = h('div', { class: 'slot' });
  return h(
    'form',
    {
      class: 'card',
      onsubmit: async (event) => {
        event.preventDefault();
        let created;
        const ok = await act(button, problem, async () => {
          const body = { name: name.value.trim(), variables: variables.read() };
          if (!ENV_NAME.test(body.name)) throw new Error('The name must be 1 to 64 letters, digits, “-”, “_” or “.”.');
          if (description.value.trim()) body.description = description.value.trim();
          created = await api('/environments', { method: 'POST', body });
        });
        if (ok) navigate(`/environments/${created.id}`);
      },
    },
    h('h2', {}, 'Create environment'),
    problem,
    h('div', { class: 'fields' }, field('Name', name, 'Letters, digits, “-”, “_” and “.”.'), field('Description', description)),
    h('h3', {}, 'Variables'),
    variables.node,
    h('div', { class: 'row' }, button),
    h('p', { class: 'muted small' }, 'A new environment is open to everyone until you restrict it on its page.'),
  );
}

// ---------------------------------------------------------------- variables

/**
 * Key/value rows, each with a "Secret" box. Values are masked until "Show
 * values" is ticked (they are still in the page: the API sent them to a
 * caller allowed to read them). A secret's value never reaches the page: its
 * row says whether it is set, and leaving its value empty keeps it (the API
 * keeps the value of a secret sent as `{secret: true}`). `read()` answers
 * the variables as the API takes them, or throws on a row it would refuse.
 */
function variablesEditor(initial, secrets, editable) {
  const rows = h('div', { class: 'var-rows' });
  const reveal = h('input', { type: 'checkbox', onchange: () => mask() });
  let count = 0;

  function mask() {
    for (const input of rows.querySelectorAll('input.var-value')) input.type = reveal.checked ? 'text' : 'password';
  }

  // `secret`: null for a plain variable, else {set} for an existing secret
  // (or {set: false} for a new row ticked secret).
  function addRow(key = '', value = '', secret = null) {
    count += 1;
    const keyInput = h('input', {
      type: 'text',
      class: 'var-key',
      value: key,
      placeholder: 'NAME',
      'aria-label': `Variable ${count}`,
      autocomplete: 'off',
      spellcheck: 'false',
      readonly: !editable,
    });
    // new-password stops the browser offering to save or fill these in.
    const status = secret ? (secret.set ? 'secret, set' : 'secret, not set') : '';
    const valueInput = h('input', {
      type: reveal.checked ? 'text' : 'password',
      class: 'var-value',
      value,
      placeholder: secret ? `${status}${editable ? ': leave empty to keep' : ''}` : 'value',
      'aria-label': `Value of variable ${count}`,
      autocomplete: 'new-password',
      spellcheck: 'false',
      readonly: !editable,
    });
    const secretBox = h('input', { type: 'checkbox', class: 'var-secret', checked: secret !== null, disabled: !editable, 'aria-label': `Variable ${count} is secret` });
    const row = h('div', { class: 'var-row' }, keyInput, valueInput, h('label', { class: 'check' }, secretBox, ' Secret'));
    if (secret) {
      row.dataset.secret = secret.set ? 'set' : 'unset';
      row.append(h('span', { class: 'muted small var-status' }, status));
    }
    if (editable) {
      row.append(h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove variable ${count}`, onclick: () => row.remove() }, '✕'));
    }
    rows.append(row);
    return keyInput;
  }

  const entries = Object.entries(initial);
  for (const [key, value] of entries) addRow(key, value);
  for (const secret of secrets) addRow(secret.name, '', { set: secret.set });
  if (editable && entries.length === 0 && secrets.length === 0) addRow();

  function read() {
    const variables = {};
    for (const row of rows.querySelectorAll('.var-row')) {
      const key = row.querySelector('.var-key').value.trim();
      const value = row.querySelector('.var-value').value;
      const secret = row.querySelector('.var-secret').checked;
      if (!key && !value) continue; // an empty row is just unused
      if (!VARIABLE_NAME.test(key)) throw new Error(`“${key}” is not a valid variable name: letters, digits and “_”, not starting with a digit.`);
      // An object would silently keep only the last of two equal names.
      if (key in variables) throw new Error(`The variable ${key} appears twice.`);
      // A secret with an empty field keeps the value it has (or stays unset).
      variables[key] = secret ? (value ? { value, secret: true } : { secret: true }) : value;
    }
    return variables;
  }

  const node = h(
    'div',
    { class: 'variables' },
    entries.length === 0 && secrets.length === 0 && !editable ? h('p', { class: 'muted' }, 'No variables.') : rows,
    h(
      'div',
      { class: 'row' },
      editable ? h('button', { type: 'button', class: 'secondary', onclick: () => addRow().focus() }, 'Add variable') : null,
      entries.length || editable ? h('label', { class: 'check' }, reveal, ' Show values') : null,
    ),
  );
  return { node, read };
}

// ---------------------------------------------------------------- one environment

async function environmentPage({ id }) {
  const admin = isAdmin();
  let env, users, groups;
  try {
    // Admins edit the access lists, which name users and groups.
    [env, users, groups] = await Promise.all([
      api(`/environments/${encodeURIComponent(id)}`),
      admin ? allUsers() : [],
      admin ? api('/groups').then((list) => list.items) : [],
    ]);
  } catch (error) {
    if (error.status === 404) {
      return h('section', {}, h('h1', {}, 'Environment not found'), errorBox(error), h('p', {}, h('a', { href: link('/environments') }, '← All environments')));
    }
    return h('section', {}, h('h1', {}, 'Environment'), errorBox(error));
  }

  const problem = h('div', { class: 'slot' });
  const saved = h('div', { class: 'slot' });
  const title = h('span', {}, env.name);
  const facts = h('dl', { class: 'facts' });
  const variables = variablesEditor(env.variables || {}, env.secrets || [], admin);

  function show(next) {
    env = next;
    title.textContent = env.name;
    document.title = `${env.name} · Plat`;
    facts.replaceChildren(
      h('dt', {}, 'Description'),
      h('dd', {}, env.description || h('span', { class: 'muted' }, '—')),
      h('dt', {}, 'Revision'),
      h('dd', {}, env.revision, h('span', { class: 'muted' }, ' (goes up with every change of the variables; the next run reads the new values)')),
      h('dt', {}, 'Access'),
      h('dd', {}, accessSummary(env)),
      h('dt', {}, 'Created'),
      h('dd', {}, when(env.createdAt)),
      h('dt', {}, 'Updated'),
      h('dd', {}, when(env.updatedAt)),
      h('dt', {}, 'Id'),
      h('dd', {}, h('code', {}, env.id)),
    );
  }
  show(env);

  const parts = [
    h('p', { class: 'crumbs' }, h('a', { href: link('/environments') }, '← Environments')),
    h('h1', {}, title),
    problem,
    saved,
    h('section', { class: 'card' }, facts),
  ];

  if (!admin) {
    parts.push(
      h('section', { class: 'card' }, h('h2', {}, 'Variables'), variables.node, h('p', { class: 'muted small' }, 'Only administrators change environments.')),
    );
    return h('section', { class: 'admin-page' }, parts);
  }

  // Admins: one form for the name, description and variables (PUT replaces
  // all the variables with what is sent), one for access, and delete.
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 64, pattern: '[A-Za-z0-9._\\-]+', value: env.name, autocomplete: 'off' });
  const description = h('input', { type: 'text', name: 'description', maxlength: 2000, value: env.description || '', autocomplete: 'off' });
  const save = h('button', { type: 'submit' }, 'Save changes');
  parts.push(
    h(
      'form',
      {
        class: 'card',
        onsubmit: async (event) => {
          event.preventDefault();
          saved.replaceChildren();
          const ok = await act(save, problem, async () => {
            const body = { name: name.value.trim(), variables: variables.read() };
            if (!ENV_NAME.test(body.name)) throw new Error('The name must be 1 to 64 letters, digits, “-”, “_” or “.”.');
            // The API keeps the old description when none is sent, so an
            // emptied field is sent as "" to clear it.
            body.description = description.value.trim();
            show(await api(`/environments/${env.id}`, { method: 'PUT', body }));
          });
          if (ok) saved.replaceChildren(h('div', { class: 'notice', role: 'status' }, 'Saved. The next run of every function using this environment gets these values.'));
        },
      },
      h('h2', {}, 'Edit'),
      h('div', { class: 'fields' }, field('Name', name), field('Description', description)),
      h('h3', {}, 'Variables'),
      variables.node,
      h('div', { class: 'row' }, save),
    ),
    accessForm(env, users, groups, problem, saved, show),
  );

  const remove = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      onclick: async () => {
        if (!window.confirm(`Delete the environment ${env.name} and its variables? This cannot be undone.`)) return;
        const ok = await act(remove, problem, () => api(`/environments/${env.id}`, { method: 'DELETE' }));
        if (ok) navigate('/environments');
      },
    },
    'Delete environment',
  );
  parts.push(
    h('section', { class: 'card danger-zone' }, remove, h('small', { class: 'muted' }, 'Refused while a function uses the environment: point it elsewhere first.')),
  );
  return h('section', { class: 'admin-page' }, parts);
}

/** Who may read the environment: everyone, or the ticked users and groups. */
function accessForm(env, users, groups, problem, saved, show) {
  // fieldset.checklist: the same look as the function form's access lists (functions.css).
  const box = (legend, list, chosen, label) =>
    h(
      'fieldset',
      { class: 'checklist' },
      h('legend', {}, legend),
      list.length === 0 ? h('span', { class: 'muted' }, 'None exist.') : null,
      list.map((item) => h('label', {}, h('input', { type: 'checkbox', value: item.id, checked: chosen.includes(item.id) }), ' ', label(item))),
    );
  const userBox = box('Users', users, env.allowedUsers, userLabel);
  const groupBox = box('Groups', groups, env.allowedGroups, (g) => g.name);
  const ticked = (node) => [...node.querySelectorAll('input:checked')].map((input) => input.value);
  const button = h('button', { type: 'submit', class: 'secondary' }, 'Save access');
  return h(
    'form',
    {
      class: 'card',
      onsubmit: async (event) => {
        event.preventDefault();
        saved.replaceChildren();
        const allowedUsers = ticked(userBox);
        const allowedGroups = ticked(groupBox);
        // Emptying both lists opens the environment's values to every user.
        if (allowedUsers.length === 0 && allowedGroups.length === 0 && (env.allowedUsers.length || env.allowedGroups.length)) {
          if (!window.confirm('With nobody ticked, every user can read these values. Continue?')) return;
        }
        const ok = await act(button, problem, async () => {
          show(await api(`/environments/${env.id}`, { method: 'PUT', body: { allowedUsers, allowedGroups } }));
        });
        if (ok) saved.replaceChildren(h('div', { class: 'notice', role: 'status' }, 'Access saved.'));
      },
    },
    h('h2', {}, 'Access'),
    h('p', { class: 'muted' }, 'Admins always have access. With nobody ticked, every user can read the values; otherwise only the ticked users and the members of the ticked groups can (others get “not found”).'),
    h('div', { class: 'grid' }, userBox, groupBox),
    h('div', { class: 'row' }, button),
  );
}
