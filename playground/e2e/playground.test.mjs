// End-to-end: the gateway's GraphiQL page in headless Chromium.
//
// Starts nothing: GATEWAY_URL names a running gateway over the demo seed (run.sh starts one).
// The browser is Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) driven by
// playwright-core; every request that would leave the gateway's origin is aborted and fails the
// test, so the page is proven to work without internet access.
//
//   GATEWAY_URL=http://127.0.0.1:18181 node --test playground.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const GATEWAY_URL = process.env.GATEWAY_URL?.replace(/\/+$/, '');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const SCREENSHOT = join(ARTIFACTS, 'playground.png');
const TIMEOUT_MS = 30_000;

/** The example tabs, by operation name (GraphiQL titles a tab with its operation's name). */
const TABS = [
  'DocumentedRecruitingRequest',
  'CandidateWithPerson',
  'ActiveRequestsPage',
  'SubmitCandidateToHire',
  'ActivatedRecruitingRequests',
  'ExplainUpstreamRequests',
];

let context;
let profile;
const foreign = []; // requests for anything outside the gateway's origin
const problems = []; // uncaught page errors and console errors (CSP violations among them)

before(async () => {
  assert.ok(GATEWAY_URL, 'set GATEWAY_URL to a running gateway, such as http://127.0.0.1:18181');
  const origin = new URL(GATEWAY_URL).origin;
  // A fresh profile (--user-data-dir) per run: no tabs saved from an earlier run. Playwright adds
  // --headless itself; the other flags keep Chromium off the network it would use for itself.
  profile = mkdtempSync(join(tmpdir(), 'ats-playground-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1600, height: 900 },
  });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    foreign.push(url);
    return route.abort('blockedbyclient');
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** A page that records its errors; `/` unless told otherwise. */
async function open(path = '/') {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on('pageerror', (e) => problems.push(`${path}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${path}: console error: ${m.text()}`);
  });
  const response = await page.goto(`${GATEWAY_URL}${path}`);
  assert.equal(response.status(), 200, `GET ${path}`);
  await page.locator('.graphiql-container').waitFor();
  return page;
}

/** Runs `steps` on `page`; if they fail, keeps a screenshot of how far they got. */
async function withFailureScreenshot(page, name, steps) {
  try {
    await steps();
  } catch (e) {
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, `${name}-failure.png`);
    await page.screenshot({ path }).catch(() => {});
    console.log(`screenshot of the failure: ${path}`);
    throw e;
  }
}

/** The text of the result pane, from CodeMirror itself (the DOM holds only the visible lines). */
function resultText(page) {
  return page.evaluate(() => document.querySelector('.result-window .CodeMirror')?.CodeMirror?.getValue() ?? '');
}

test('the recruiting-request example runs and shows the request', async () => {
  const page = await open('/');
  await withFailureScreenshot(page, 'recruiting-request', async () => {
    const tabs = page.getByRole('tablist', { name: 'Select active operation' }).getByRole('tab');
    await tabs.filter({ hasText: TABS.at(-1) }).waitFor();
    assert.deepEqual((await tabs.allInnerTexts()).map((t) => t.trim()), TABS, 'the example tabs');

    // The schema docs, from introspection: the root type, a field, then a type's field descriptions.
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    const docs = page.getByRole('region', { name: 'Documentation Explorer' });
    await docs.getByRole('link', { name: 'Query', exact: true }).click();
    await docs.getByRole('link', { name: 'recruitingRequest', exact: true }).click();
    await docs.getByText('One recruiting request by id').waitFor();
    await docs.getByRole('link', { name: 'RecruitingRequest', exact: true }).click();
    await docs.getByText('Human-readable request number').waitFor();

    // Another tab, then back to the recruiting request: its operation and its variables (which
    // GraphiQL needs a nudge to show, see main.jsx) are in the editors.
    const queryEditor = page.locator('.graphiql-query-editor');
    await tabs.filter({ hasText: 'ActiveRequestsPage' }).click();
    await queryEditor.getByText('query ActiveRequestsPage').waitFor();
    await tabs.filter({ hasText: 'DocumentedRecruitingRequest' }).click();
    await queryEditor.getByText('query DocumentedRecruitingRequest').waitFor();
    await page.locator('.graphiql-editor-tool').getByText('00000d6b-0000-0000-0000-005001000000').waitFor();
    // GraphiQL works out the operation to run 100 ms after an editor change (a debounce): a run
    // before that would send the previous tab's operation name.
    await page.waitForFunction(
      () =>
        document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror?.operationName ===
        'DocumentedRecruitingRequest',
    );

    await page.locator('.graphiql-execute-button').click();
    await page.waitForFunction(
      () => document.querySelector('.result-window .CodeMirror')?.CodeMirror?.getValue().includes('USMF-000001'),
      null,
      { timeout: TIMEOUT_MS },
    );
    const result = JSON.parse(await resultText(page));
    assert.equal(result.errors, undefined, `no GraphQL errors: ${JSON.stringify(result.errors)}`);
    const request = result.data.recruitingRequest;
    assert.equal(request.recruitingRequestId, 'USMF-000001');
    assert.equal(request.description, 'Project Manager');
    assert.deepEqual(request.positions.map((p) => p.positionId).sort(), ['000426', '000461']);
    // What a person sees, not only what the editor holds.
    await page.locator('.result-window').getByText('"USMF-000001"').first().waitFor();

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    console.log(`screenshot: ${SCREENSHOT}`);
  });
  await page.close();
});

/** A GraphQL answer from the gateway, asked from here (not from a page). */
async function graphql(query) {
  const res = await fetch(`${GATEWAY_URL}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query }),
  });
  return res.json();
}

/** The gateway's open subscriptions, from /metrics. */
async function subscribersActive() {
  const text = await (await fetch(`${GATEWAY_URL}/metrics`)).text();
  return Number(/^ats_gateway_subscribers_active (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** Puts `text` in the page's query editor and waits until GraphiQL has picked its operation. */
async function setOperation(page, text, name) {
  await page.evaluate((t) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(t), text);
  await page.waitForFunction(
    (n) => document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror?.operationName === n,
    name,
  );
}

test('the subscription tab sees a request activated by a mutation in another tab', async () => {
  const found = await graphql('{ recruitingRequests(filter: {status: {ne: ACTIVE}}, first: 1) { nodes { id recruitingRequestId } } }');
  const target = found.data.recruitingRequests.nodes[0];
  assert.ok(target, `a request that is not active: ${JSON.stringify(found)}`);
  const watching = await open('/');
  const before = await subscribersActive();
  await withFailureScreenshot(watching, 'subscription', async () => {
    const tabs = watching.getByRole('tablist', { name: 'Select active operation' }).getByRole('tab');
    await tabs.filter({ hasText: 'ActivatedRecruitingRequests' }).click();
    await watching.locator('.graphiql-query-editor').getByText('subscription ActivatedRecruitingRequests').waitFor();
    await watching.waitForFunction(
      () =>
        document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror?.operationName ===
        'ActivatedRecruitingRequests',
    );
    await watching.locator('.graphiql-execute-button').click();
    // Subscribed once the watcher took its start snapshot (the gateway counts the subscriber then).
    const deadline = Date.now() + TIMEOUT_MS;
    while ((await subscribersActive()) <= before) {
      assert.ok(Date.now() < deadline, 'the page subscribed over /graphql/ws');
      await new Promise((r) => setTimeout(r, 200));
    }

    const writing = await open('/');
    await setOperation(
      writing,
      `mutation Activate { updateRecruitingRequest(id: "${target.id}", input: {status: ACTIVE}) { errors { message } record { status } } }`,
      'Activate',
    );
    await writing.locator('.graphiql-execute-button').click();
    await writing.waitForFunction(
      () => document.querySelector('.result-window .CodeMirror')?.CodeMirror?.getValue().includes('"ACTIVE"'),
    );
    await writing.close();

    // The watch reads every 5 s (run.sh): the event comes within two intervals, well in the timeout.
    await watching.waitForFunction(
      (id) => {
        const text = document.querySelector('.result-window .CodeMirror')?.CodeMirror?.getValue() ?? '';
        return text.includes('"CREATED"') && text.includes(id);
      },
      target.recruitingRequestId,
      { timeout: TIMEOUT_MS },
    );
    const result = JSON.parse(await resultText(watching));
    const event = result.data.recruitingRequestChanged;
    assert.equal(event.kind, 'CREATED');
    assert.equal(event.record.status, 'ACTIVE');
  });
  await watching.close();
});

test('a browser opening /graphql gets the same page', async () => {
  const page = await open('/graphql');
  assert.equal(await page.title(), 'ats-gateway · GraphiQL');
  await page.close();
});

test('nothing is loaded from outside the gateway and nothing went wrong', () => {
  assert.deepEqual(foreign, [], 'requests outside the gateway origin');
  assert.deepEqual(problems, [], 'page and console errors');
});
