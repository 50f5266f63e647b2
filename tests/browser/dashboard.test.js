// End-to-end tests of the dashboard (/ui) in Debian's Chromium, driven by
// playwright-core (no browser download), with Node's own test runner.
// scripts/browser-test starts a throwaway `plat up` and runs them; by hand:
//
//   PLAT_URL=http://127.0.0.1:8080 PLAT_ADMIN_EMAIL=admin@localhost \
//   PLAT_ADMIN_PASSWORD=... PLAT_ADMIN_KEY=plat_... \
//   node --test --test-concurrency=1 tests/browser/
//
// Optional: PLAT_SCREENSHOTS=<dir> saves PNGs of the main pages there;
// PLAT_CHROMIUM overrides /usr/bin/chromium.
//
// The selectors are the ones the UI contract promises (labels, roles,
// headings and a few data-testid attributes). Every test gets a fresh
// browser context and fails on any console error (Content-Security-Policy
// violations show up there) or uncaught page error. Waits are Playwright's
// own (a locator appears); there are no sleeps.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = required('PLAT_URL').replace(/\/+$/, '');
const ADMIN_EMAIL = process.env.PLAT_ADMIN_EMAIL || 'admin@localhost';
const ADMIN_PASSWORD = required('PLAT_ADMIN_PASSWORD');
const ADMIN_KEY = required('PLAT_ADMIN_KEY');
const SCREENSHOTS = process.env.PLAT_SCREENSHOTS || '';

/** Names in this run do not clash with earlier runs on the same server. */
const RUN = 'bt' + Date.now().toString(36) + Math.floor(Math.random() * 1296).toString(36);

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** A TypeScript build takes milliseconds, a first Rust build up to a minute. */
const TS_READY_MS = 60_000;
const RUST_READY_MS = 300_000;

const TS_HELLO = `// Greets whoever the input names.
export default (input: { name: string }) => {
  console.log("hello from the browser test");
  return { greeting: "Hello, " + input.name };
};
`;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (scripts/browser-test sets it)`);
  return value.trim();
}

const url = (hash) => `${BASE}/ui#${hash}`;

// ------------------------------------------------------------ the HTTP API

/** Calls the API with the admin key (or `key`); answers the parsed body. */
async function call(method, path, body, { key = ADMIN_KEY, expect } = {}) {
  const response = await fetch(BASE + path, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      accept: 'application/json',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const ok = expect ? response.status === expect : response.ok;
  if (!ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Polls GET /functions/{id} (no browser involved) until it is built. */
async function builtFunction(id, timeoutMs = TS_READY_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fn = await call('GET', `/functions/${id}`);
    if (fn.status === 'READY' || fn.status === 'FAILED') return fn;
    if (Date.now() > deadline) throw new Error(`function ${id} still ${fn.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// --------------------------------------------------------------- browsers

let browser;
/** Signed-in cookies, so that tests not about signing in skip the form. */
let adminState;
/** A function created through the API, READY and run a few times. */
let hello;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.PLAT_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // What this machine needs: no sandbox (root), and no background
    // connections to Google's services, which the closed network refuses.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true });

  // Sign in once for the tests that are not about signing in (the login
  // rate limit is per source address: few logins per run).
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  adminState = await context.storageState();
  await context.close();

  const created = await call('POST', '/functions', {
    name: `hello-${RUN}`,
    language: 'typescript',
    source: TS_HELLO,
    description: 'Greets whoever the input names (browser test).',
    tags: ['browser-test'],
  });
  hello = await builtFunction(created.id);
  assert.equal(hello.status, 'READY', `hello-${RUN}: ${hello.compileError}`);
  for (const name of ['Ada', 'Grace', 'Linus']) {
    await call('POST', `/functions/${hello.id}/execute?wait=10`, { name });
  }
});

after(async () => {
  await browser?.close();
});

/**
 * Runs `body({page, context})` in a fresh browser context (signed in as the
 * admin unless `state: null`), then fails if any page of it logged a
 * console error, threw, or failed to load one of the dashboard's own files.
 */
async function inBrowser({ viewport = DESKTOP, state = adminState } = {}, body) {
  const context = await browser.newContext({
    viewport,
    storageState: state || undefined,
    hasTouch: viewport === PHONE,
  });
  context.setDefaultTimeout(30_000);
  context.setDefaultNavigationTimeout(30_000);
  const problems = [];
  const watch = (page) => {
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const where = message.location()?.url || '';
      // An API answer of 4xx is logged by Chromium as a failed load even
      // though the page handles it (401 before sign-in, 404 of a hidden
      // function, 403 of an admin page). The dashboard's own files must not.
      const handled4xx =
        /^Failed to load resource: the server responded with a status of 4\d\d/.test(message.text()) &&
        !new URL(where, BASE).pathname.startsWith('/ui');
      if (!handled4xx) problems.push(`console error: ${message.text()} (${where})`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.stack || error}`));
    page.on('response', (response) => {
      const path = new URL(response.url()).pathname;
      if ((path === '/ui' || path.startsWith('/ui/')) && response.status() >= 400) {
        problems.push(`${response.status()} for ${response.url()}`);
      }
    });
    page.on('requestfailed', (request) => {
      const failure = request.failure()?.errorText || '';
      // A poll cut short by leaving the page is fine.
      if (failure !== 'net::ERR_ABORTED') problems.push(`request failed: ${request.url()} ${failure}`);
    });
  };
  context.on('page', watch);
  try {
    const page = await context.newPage();
    try {
      await body({ page, context });
    } catch (error) {
      // What the page said is often why a wait timed out.
      if (problems.length) error.message += `\nThe pages also logged:\n${problems.join('\n')}`;
      throw error;
    }
    assert.deepEqual(problems, [], 'the pages logged errors');
  } finally {
    await context.close();
  }
}

async function signIn(page, email, password) {
  await page.goto(url('/functions'));
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Functions', exact: true }).waitFor();
}

async function shot(page, name, options = {}) {
  if (!SCREENSHOTS) return;
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), ...options });
}

/** Waits until the badge in `[data-testid=<testid>]` shows one of `final`. */
async function finalStatus(page, testid, final, timeout) {
  const pattern = new RegExp(`^(${final.join('|')})$`);
  const badge = page.getByTestId(testid).getByText(pattern);
  await badge.waitFor({ timeout });
  return (await badge.textContent()).trim();
}

/** The page is no wider than the screen (nothing scrolls sideways). */
async function assertNoHorizontalOverflow(page, what) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  assert.ok(scrollWidth <= innerWidth + 1, `${what}: the page is ${scrollWidth}px wide on a ${innerWidth}px screen`);
}

/** Fills the "new function" form and submits it; answers the new id. */
async function createThroughForm(page, { name, language, source, description }) {
  await page.goto(url('/functions'));
  await page.getByRole('link', { name: 'New function' }).click();
  await page.waitForURL(/#\/functions\/new$/);
  await page.getByRole('button', { name: 'Create function' }).waitFor();
  // A field's label may carry a hint after its name ("NameUp to 64 …").
  await page.getByLabel(/^Name/).fill(name);
  await page.getByLabel(/^Language/).selectOption(language);
  await page.getByLabel(/^Source/).fill(source);
  if (description) await page.getByLabel(/^Description/).fill(description);
  await page.getByRole('button', { name: 'Create function' }).click();
  await page.waitForURL(/#\/functions\/[0-9a-f-]{36}$/);
  await page.getByRole('heading', { level: 1, name }).waitFor();
  return new URL(page.url()).hash.split('/').pop();
}

/** Types `input` into the run panel, runs it, answers the result's parsed output. */
async function runFromPage(page, input, expectedText) {
  await page.getByLabel(/^Input \(JSON\)/).fill(JSON.stringify(input));
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  const result = page.getByTestId('run-result');
  const pre = result.locator('pre').filter({ hasText: expectedText }).first();
  await pre.waitFor();
  return JSON.parse(await pre.textContent());
}

// ------------------------------------------------------------------ tests

test('signing in: a wrong password shows an error, the right one opens Functions', async () => {
  await inBrowser({ state: null }, async ({ page }) => {
    await page.goto(url('/functions'));
    // Not signed in: the dashboard sends us to the sign-in form.
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.match(page.url(), /#\/login/);
    await page.getByLabel('Email').fill(ADMIN_EMAIL);
    await shot(page, 'sign-in');

    await page.getByLabel('Password').fill('not-the-password-1234');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const problem = page.getByRole('alert');
    await problem.waitFor();
    assert.notEqual((await problem.textContent()).trim(), '');
    assert.match(page.url(), /#\/login/);
    assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);

    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Functions', exact: true }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    assert.equal(await page.getByRole('alert').count(), 0);
  });
});

test('a TypeScript function: created in the form, READY, run, and its execution', { timeout: 180_000 }, async () => {
  await inBrowser({}, async ({ page }) => {
    const name = `greet-${RUN}`;
    const id = await createThroughForm(page, {
      name,
      language: 'typescript',
      source: TS_HELLO,
      description: 'Made by the browser test through the form.',
    });
    // The page follows the build by itself: no reload.
    assert.equal(await finalStatus(page, 'function-status', ['READY', 'FAILED'], TS_READY_MS), 'READY');
    assert.equal((await call('GET', `/functions/${id}`)).name, name);

    const output = await runFromPage(page, { name: 'Plat' }, 'Hello, Plat');
    assert.deepEqual(output, { greeting: 'Hello, Plat' });
    await shot(page, 'function', { fullPage: true });

    await page.getByTestId('run-result').getByRole('link', { name: 'Open execution' }).click();
    await page.waitForURL(/#\/executions\/[0-9a-f-]{36}$/);
    const executionId = new URL(page.url()).hash.split('/').pop();
    await page.getByRole('heading', { level: 1, name: /^Execution/ }).waitFor();
    assert.equal(await finalStatus(page, 'execution-status', ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'CANCELLED'], 30_000), 'SUCCEEDED');
    for (const heading of ['Input', 'Output', 'Logs']) {
      await page.getByRole('heading', { level: 2, name: heading, exact: true }).waitFor();
    }
    await page.locator('pre').filter({ hasText: /"name":\s*"Plat"/ }).first().waitFor();
    await page.locator('pre').filter({ hasText: /"greeting":\s*"Hello, Plat"/ }).first().waitFor();
    await page.getByText('hello from the browser test').first().waitFor();

    const execution = await call('GET', `/executions/${executionId}`);
    assert.equal(execution.status, 'SUCCEEDED');
    assert.ok(execution.requestId, 'the execution has a request id');
    await page.getByTestId('request-id').filter({ hasText: execution.requestId }).waitFor();
    await shot(page, 'execution');
  });
});

test('a Rust function: created in the form, READY after its build, and run', { timeout: 420_000 }, async (t) => {
  await inBrowser({}, async ({ page }) => {
    const name = `add-${RUN}`;
    await createThroughForm(page, {
      name,
      language: 'rust',
      source: `use serde_json::{json, Value};

pub fn handler(input: Value) -> Result<Value, String> {
    eprintln!("adding {} and {}", input["a"], input["b"]);
    let a = input["a"].as_i64().ok_or("a must be an integer")?;
    let b = input["b"].as_i64().ok_or("b must be an integer")?;
    Ok(json!({ "sum": a + b }))
}
`,
    });
    const started = Date.now();
    assert.equal(await finalStatus(page, 'function-status', ['READY', 'FAILED'], RUST_READY_MS), 'READY');
    t.diagnostic(`the Rust function was READY ${Date.now() - started} ms after it was created`);
    const output = await runFromPage(page, { a: 40, b: 2 }, '42');
    assert.deepEqual(output, { sum: 42 });
  });
});

test('a compile error: the function ends FAILED and shows the error', { timeout: 120_000 }, async () => {
  await inBrowser({}, async ({ page }) => {
    await createThroughForm(page, {
      name: `broken-${RUN}`,
      language: 'typescript',
      source: 'export default (input: any) => { return { oops: ; };\n',
    });
    assert.equal(await finalStatus(page, 'function-status', ['READY', 'FAILED'], TS_READY_MS), 'FAILED');
    const error = page.getByTestId('compile-error');
    await error.waitFor();
    assert.notEqual((await error.textContent()).trim(), '');
  });
});

test('a DEV sees neither a private function nor the operations', { timeout: 120_000 }, async () => {
  const me = await call('GET', '/me');
  const devEmail = `dev-${RUN}@example.com`;
  const devPassword = `dev-password-${RUN}`;
  await call('POST', '/users', { email: devEmail, password: devPassword, role: 'DEV', displayName: 'Browser Dev' });
  // Only the admin is on its access list; the other one is public.
  const secret = await call('POST', '/functions', {
    name: `secret-${RUN}`,
    language: 'typescript',
    source: TS_HELLO,
    allowedUsers: [me.id],
  });
  const shared = await call('POST', '/functions', {
    name: `shared-${RUN}`,
    language: 'typescript',
    source: TS_HELLO,
  });

  await inBrowser({ state: null }, async ({ page, context }) => {
    await signIn(page, devEmail, devPassword);
    assert.equal(await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Operations' }).count(), 0);

    // Both names hold the word RUN: the search finds the public one only.
    const search = page.getByLabel(/^Search/);
    await search.fill(RUN);
    await search.press('Enter');
    await page.waitForURL(new RegExp(`#/functions\\?q=${RUN}$`));
    const sharedLink = page.getByRole('link', { name: shared.name, exact: true });
    await sharedLink.waitFor();
    assert.equal(await page.getByRole('link', { name: secret.name, exact: true }).count(), 0);
    // The private one's exact name: the public one goes, nothing comes.
    await search.fill(secret.name);
    await search.press('Enter');
    await sharedLink.waitFor({ state: 'detached' });
    assert.equal(await page.getByRole('link', { name: secret.name, exact: true }).count(), 0);
    assert.equal(await page.getByText(secret.name).count(), 0);

    const hidden = await context.newPage();
    await hidden.goto(url(`/functions/${secret.id}`));
    await hidden.getByRole('heading', { level: 1, name: 'Function not found' }).waitFor();
    assert.equal(await hidden.getByText(secret.name).count(), 0);

    const operations = await context.newPage();
    await operations.goto(url('/operations'));
    // The page answers with the API's refusal (or, had it gone wrong, the queues).
    await operations.getByRole('alert').or(operations.getByRole('heading', { name: 'Queues' })).first().waitFor();
    for (const heading of ['Queues', 'Workers', 'Recent failures']) {
      assert.equal(await operations.getByRole('heading', { name: heading, exact: true }).count(), 0, heading);
    }
  });
});

test('operations and API keys (admin)', { timeout: 120_000 }, async () => {
  await inBrowser({}, async ({ page }) => {
    await page.goto(url('/operations'));
    for (const heading of ['Queues', 'Workers', 'Recent failures']) {
      await page.getByRole('heading', { level: 2, name: heading, exact: true }).waitFor();
    }
    // `plat up` runs one compiler and one executor (kinds "compile" and "execute").
    const workerRows = page.locator('xpath=//h2[normalize-space()="Workers"]/following::table[1]//tbody/tr');
    await workerRows.first().waitFor();
    assert.ok((await workerRows.count()) >= 1);
    await workerRows.filter({ has: page.getByRole('cell', { name: 'execute', exact: true }) }).first().waitFor();
    await shot(page, 'operations');

    await page.goto(url('/api-keys'));
    const keyName = `browser-key-${RUN}`;
    await page.getByLabel(/^Name/).fill(keyName);
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = page.getByTestId('new-key');
    await shown.waitFor();
    const text = await shown.evaluate((el) =>
      [el.value, el.textContent, ...Array.from(el.querySelectorAll('input, textarea'), (input) => input.value)]
        .filter(Boolean)
        .join(' '),
    );
    const key = text.match(/plat_[A-Za-z0-9_-]{43}/)?.[0];
    assert.ok(key, `no key in [data-testid=new-key]: ${text}`);

    // Shown once: a reload lists the key by name but no longer shows it.
    await page.reload();
    await page.getByText(keyName).first().waitFor();
    assert.equal(await page.getByTestId('new-key').count(), 0);
    assert.ok(!(await page.content()).includes(key), 'the key is still on the page after a reload');

    const me = await call('GET', '/me', undefined, { key, expect: 200 });
    assert.equal(me.email, ADMIN_EMAIL);
  });
});

test('an environment: a secret shows as set, never its value, and saving keeps it', { timeout: 120_000 }, async () => {
  const secretValue = `s3cret-${RUN}`;
  const env = await call('POST', '/environments', {
    name: `env-${RUN}`,
    variables: { REGION: 'eu', TOKEN: { value: secretValue, secret: true } },
  });
  await inBrowser({}, async ({ page }) => {
    await page.goto(url(`/environments/${env.id}`));
    await page.getByRole('heading', { level: 1, name: `env-${RUN}` }).waitFor();
    await page.locator('.var-row[data-secret="set"]').getByText('secret, set').waitFor();
    assert.ok(!(await page.content()).includes(secretValue), 'the secret value is on the page');
    assert.equal(await page.getByLabel('Variable 2 is secret').isChecked(), true);

    // Saved with the secret's field left empty: the secret keeps its value.
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByRole('status').getByText('Saved.', { exact: false }).waitFor();
    const saved = await call('GET', `/environments/${env.id}`);
    assert.deepEqual(saved.secrets, [{ name: 'TOKEN', set: true }]);
    assert.deepEqual(saved.variables, { REGION: 'eu' });
    assert.ok(!JSON.stringify(saved).includes(secretValue));
  });
  await call('DELETE', `/environments/${env.id}`, undefined, { expect: 204 });
});

test('a phone-sized screen: no sideways scrolling, and the navigation works', { timeout: 120_000 }, async () => {
  await inBrowser({ viewport: PHONE }, async ({ page }) => {
    await page.goto(url('/functions'));
    await page.getByRole('link', { name: hello.name, exact: true }).waitFor();
    await assertNoHorizontalOverflow(page, 'functions list');

    await page.getByRole('link', { name: hello.name, exact: true }).click();
    await page.waitForURL(new RegExp(`#/functions/${hello.id}$`));
    await page.getByRole('heading', { level: 1, name: hello.name }).waitFor();
    await finalStatus(page, 'function-status', ['READY'], 30_000);
    await page.getByLabel(/^Input \(JSON\)/).waitFor();
    await assertNoHorizontalOverflow(page, 'function page');
    await shot(page, 'phone-function');

    const nav = page.getByRole('navigation', { name: 'Main' });
    await nav.getByRole('link', { name: 'API keys' }).click();
    await page.waitForURL(/#\/api-keys$/);
    await page.getByRole('button', { name: 'Create key' }).waitFor();
    await assertNoHorizontalOverflow(page, 'API keys');
    await nav.getByRole('link', { name: 'Functions' }).click();
    await page.getByRole('heading', { level: 1, name: 'Functions', exact: true }).waitFor();
  });
});

test('the functions list (desktop)', async () => {
  await inBrowser({}, async ({ page }) => {
    await page.goto(url('/functions'));
    const row = page.getByRole('link', { name: hello.name, exact: true });
    await row.waitFor();
    assert.equal(await row.getAttribute('href'), `#/functions/${hello.id}`);
    await shot(page, 'functions');
  });
});
