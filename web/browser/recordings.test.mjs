// The recordings player in a real Chromium, and the sign-out form of its
// pages. edge/webrecordings_test.go
// starts an edge with a recording in its directory and runs this file with
// `node --test`; it passes, in the environment:
//   TETHER_URL         the edge's public URL (https://127.0.0.1:PORT)
//   TETHER_TOKEN       a client token with the right recordings: read
//   TETHER_RECORDING   the recording's ID
//   TETHER_FIRST       text of the recording's first frame, which it clears
//   TETHER_LAST        text of its last frame
//   TETHER_ARTIFACTS   where the screenshot goes
//   TETHER_CHROMIUM    the browser (default /usr/bin/chromium)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} is not set: run this file through edge/webrecordings_test.go`);
  return v;
};
const base = env('TETHER_URL');
const token = env('TETHER_TOKEN');
const id = env('TETHER_RECORDING');
const first = env('TETHER_FIRST');
const last = env('TETHER_LAST');
const artifacts = env('TETHER_ARTIFACTS');

// Patience for what a loaded machine may take; never a speed assertion.
const patience = 60000;

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TETHER_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  if (browser) await browser.close();
});

test('the player plays a recording to its last frame', async () => {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 600 } });
  const page = await ctx.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  const casts = [];
  page.on('request', (r) => { if (r.url().endsWith('.cast')) casts.push(r.url()); });

  await page.goto(base + '/web/login');
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(base + '/web/'), page.click('button[type=submit]')]);
  // From the device list to the recordings, to the recording.
  await Promise.all([page.waitForURL(base + '/web/recordings'), page.click('header a[href="/web/recordings"]')]);
  await Promise.all([page.waitForURL(base + '/web/recordings/' + id), page.click(`a[href="/web/recordings/${id}"]`)]);

  await page.waitForFunction(() => document.getElementById('player').dataset.state === 'ended', null, { timeout: patience });
  const text = await page.evaluate(() => document.querySelector('#player .ap-term').textContent);
  assert.ok(text.includes(last), `the last frame's text "${last}" is not in the player: ${JSON.stringify(text)}`);
  assert.ok(!text.includes(first), `the first frame's text "${first}", which the recording clears, is still shown`);
  await page.screenshot({ path: join(artifacts, 'recording.png') });
  // A 24-bit colour, as the recording's last frame sets it, under the
  // page's CSP (the player draws backgrounds on a layer of its own).
  const red = await page.evaluate(() => {
    const span = [...document.querySelectorAll('#player .ap-term span')].find((s) => !s.children.length && s.textContent.startsWith('true-red'));
    return span && getComputedStyle(span).color;
  });
  assert.equal(red, 'rgb(255, 0, 0)');

  assert.deepEqual(casts, [base + '/web/recordings/' + id + '.cast'], 'the cast comes from the edge, its URL without a credential');
  assert.deepEqual(problems, [], 'the page logged errors (a CSP violation would show here)');
  await ctx.close();
});

test('a sign-out that the edge refuses says why', async () => {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 600 } });
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(base + '/web/login');
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(base + '/web/'), page.click('button[type=submit]')]);
  // A page whose CSRF token is not the session's: the edge answers 403
  // in plain text, which the page shows.
  await page.evaluate(() => { document.querySelector('form[action="/web/logout"] input[name=csrf]').value = 'stale'; });
  const alerts = [];
  page.on('dialog', (d) => { alerts.push(d.message()); d.dismiss(); });
  await page.click('button:has-text("Sign out")');
  for (let t = 0; !alerts.length && !problems.length && t < patience; t += 50) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(problems, []);
  assert.equal(alerts.length, 1, 'the page said nothing');
  assert.match(alerts[0], /did not come from a page of this edge/);
  await page.goto(base + '/web/');
  assert.equal(page.url(), base + '/web/', 'the refused sign-out ended the session');
  await ctx.close();
});
