// The dashboard's entry: the layout, sign-in and sign-out, and the table of
// pages. Every page module exports `routes(route)`, which registers its
// paths (see lib.js `route`).

import { h, api, session, loadSession, isAdmin, route, render, navigate, link, setLayout, currentPath, errorBox, field } from './lib.js';
import functionsPages from './page-functions.js';
import functionPage from './page-function.js';
import executionPage from './page-execution.js';
import operationsPage from './page-operations.js';
import usersPages from './page-users.js';
import apiKeysPage from './page-api-keys.js';
import environmentsPages from './page-environments.js';
import retriesPages from './section-retries.js';

const NAV = [
  { path: '/functions', label: 'Functions' },
  { path: '/operations', label: 'Operations', admin: true },
  { path: '/users', label: 'Users', admin: true },
  { path: '/groups', label: 'Groups', admin: true },
  { path: '/api-keys', label: 'API keys' },
  { path: '/environments', label: 'Environments' },
  { path: '/dead-letters', label: 'Dead letters' },
];

setLayout((page) => {
  const here = currentPath();
  const items = NAV.filter((item) => !item.admin || isAdmin()).map((item) =>
    h('a', { href: link(item.path), 'aria-current': here.startsWith(item.path) ? 'page' : null }, item.label),
  );
  return h(
    'div',
    { class: 'shell' },
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: link('/functions') }, h('img', { src: '/ui/icon.svg', alt: '' }), 'Plat'),
      h('nav', { 'aria-label': 'Main' }, items),
      h(
        'div',
        { class: 'who' },
        h('span', { class: 'email', title: session.user.role }, session.user.email),
        h('button', { type: 'button', class: 'link', onclick: logout }, 'Sign out'),
      ),
    ),
    h('div', { class: 'page' }, page),
  );
});

async function logout() {
  try {
    await api('/auth/logout', { method: 'POST' });
  } catch {
    // Signed out either way: the page forgets the session below.
  }
  session.user = null;
  session.csrf = null;
  navigate('/login');
}

function loginPage(_params, query) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const problem = h('div', { class: 'slot' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'card login',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        problem.replaceChildren();
        try {
          await api('/auth/login', {
            method: 'POST',
            body: { email: email.value, password: password.value },
            allowUnauthorized: true,
          });
          await loadSession();
          navigate(safeNext(query.next));
        } catch (error) {
          problem.replaceChildren(errorBox(error));
          button.disabled = false;
        }
      },
    },
    h('h1', {}, h('img', { src: '/ui/icon.svg', alt: '' }), 'Sign in to Plat'),
    problem,
    field('Email', email),
    field('Password', password),
    button,
    h('p', { class: 'muted' }, 'Scripts and the CLI use API keys instead; see ', h('a', { href: '/docs' }, 'the API reference'), '.'),
  );
  return h('div', { class: 'login-page' }, form);
}

/**
 * Sets a password with the one-time token an admin issued (their link puts
 * it after the `#`, which browsers never send to a server or in a Referer).
 */
function resetPasswordPage(_params, query) {
  const token = h('input', { type: 'text', name: 'token', autocomplete: 'off', required: true, value: query.token || '' });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', minlength: 12, required: true });
  const problem = h('div', { class: 'slot' });
  const button = h('button', { type: 'submit' }, 'Set password');
  const form = h(
    'form',
    {
      class: 'card login',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        problem.replaceChildren();
        try {
          await api('/auth/password-reset', {
            method: 'POST',
            body: { token: token.value.trim(), password: password.value },
            allowUnauthorized: true,
          });
          navigate('/login');
        } catch (error) {
          problem.replaceChildren(errorBox(error));
          button.disabled = false;
        }
      },
    },
    h('h1', {}, h('img', { src: '/ui/icon.svg', alt: '' }), 'Set your password'),
    problem,
    field('Reset token', token),
    field('New password', password, 'At least 12 characters.'),
    button,
    h('p', { class: 'muted' }, 'The token works once; ask an admin for a new one if it has expired.'),
  );
  return h('div', { class: 'login-page' }, form);
}

/** Only a dashboard path: `next` comes from the address bar. */
function safeNext(next) {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/functions';
}

route('/login', loginPage, { public: true });
route('/reset-password', resetPasswordPage, { public: true });
route('/', () => (navigate('/functions'), h('div')));
for (const register of [functionsPages, functionPage, executionPage, operationsPage, usersPages, apiKeysPage, environmentsPages, retriesPages]) {
  register(route);
}

window.addEventListener('hashchange', render);
render();
