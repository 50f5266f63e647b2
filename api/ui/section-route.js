// The function page's "HTTP route" card (docs/dashboard.md): where the
// function answers HTTP requests (`/run/{name}` and its path prefix), and
// whether callers need credentials. Admins can create, change and remove
// the route here (PUT/DELETE /functions/{id}/route).

import { h, api, isAdmin, errorBox, field } from './lib.js';

/** The card for function `fn` (a FunctionView); it loads the route itself. */
export function routeSection(fn) {
  const card = h('div', { class: 'card', 'data-testid': 'route' });
  const path = `/functions/${fn.id}/route`;

  async function load() {
    try {
      show(await api(path));
    } catch (error) {
      if (error.status === 404) show(null);
      else card.replaceChildren(h('h2', {}, 'HTTP route'), errorBox(error));
    }
  }

  function show(route) {
    const rows = route
      ? [
          h('dt', {}, 'URLs'),
          h('dd', {}, ...route.urls.map((url) => h('div', {}, h('code', {}, location.origin + url)))),
          h('dt', {}, 'Access'),
          h('dd', { 'data-testid': 'route-access' }, route.public ? 'Public: no credentials' : 'Authenticated: API key or session'),
          h('dt', {}, 'State'),
          h('dd', {}, route.enabled ? 'Enabled' : 'Disabled'),
          route.public ? h('dt', {}, 'Rate limit') : null,
          route.public
            ? h('dd', {}, route.rateLimit.perSec > 0 ? `${route.rateLimit.perSec}/s per client address, bursts of ${route.rateLimit.burst}` : 'None')
            : null,
          h('dt', {}, 'Headers passed'),
          h('dd', {}, route.forwardHeaders.length ? route.forwardHeaders.join(', ') : 'None'),
        ]
      : [h('dd', { class: 'muted' }, 'Not exposed over HTTP.')];
    card.replaceChildren(
      h('h2', {}, 'HTTP route'),
      h('dl', { class: 'facts' }, ...rows),
      isAdmin() ? editor(route) : '',
    );
  }

  /** The admin's form: the route's settings, saved with PUT. */
  function editor(route) {
    const enabled = h('input', { type: 'checkbox', checked: route ? route.enabled : true });
    const isPublic = h('input', { type: 'checkbox', checked: route ? route.public : false });
    const prefix = h('input', { type: 'text', value: route?.pathPrefix || '', placeholder: '/hooks/example' });
    const headers = h('input', { type: 'text', value: route ? route.forwardHeaders.join(', ') : '', placeholder: 'content-type, x-signature' });
    const problem = h('div', { class: 'slot' });
    async function save(event) {
      event.preventDefault();
      const body = {
        enabled: enabled.checked,
        public: isPublic.checked,
        pathPrefix: prefix.value.trim() || null,
        forwardHeaders: headers.value.split(',').map((name) => name.trim()).filter(Boolean),
      };
      if (route) body.rateLimit = route.rateLimit;
      try {
        show(await api(path, { method: 'PUT', body }));
      } catch (error) {
        problem.replaceChildren(errorBox(error));
      }
    }
    async function remove() {
      try {
        await api(path, { method: 'DELETE' });
        show(null);
      } catch (error) {
        problem.replaceChildren(errorBox(error));
      }
    }
    return h(
      'form',
      { onsubmit: save },
      field('Enabled', enabled),
      field('Public', isPublic, 'Anyone may call it; runs count as yours.'),
      field('Path prefix', prefix, 'Optional, e.g. /hooks/example'),
      field('Headers passed', headers, 'Comma-separated request headers the function sees'),
      problem,
      h('button', { type: 'submit' }, route ? 'Save route' : 'Expose over HTTP'),
      route ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Remove route') : null,
    );
  }

  load();
  return card;
}
