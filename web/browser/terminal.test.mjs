// The web terminal in a real Chromium. e2e/web_test.go starts the built
// edge and agent and runs this file with `node --test`; it passes the
// addresses and the token in the environment:
//   TETHER_URL         the edge's public URL (https://127.0.0.1:PORT)
//   TETHER_TOKEN       a client token allowed a shell on TETHER_DEVICE
//   TETHER_DEVICE      the device
//   TETHER_ATTACK_URL  a page on another origin that tries to use the edge
//   TETHER_ARTIFACTS   where the screenshot and the session cookie go
//   TETHER_CHROMIUM    the browser (default /usr/bin/chromium)
//   TETHER_FILES_DIR   a directory the device serves: downloads beneath
//                      it, uploads beneath its "in" directory
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} is not set: run this file through e2e/web_test.go`);
  return v;
};
const base = env('TETHER_URL');
const token = env('TETHER_TOKEN');
const device = env('TETHER_DEVICE');
const attackURL = env('TETHER_ATTACK_URL');
const artifacts = env('TETHER_ARTIFACTS');
const filesDir = env('TETHER_FILES_DIR');

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

async function newPage() {
  // The edge's certificate is the test PKI's.
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 600 } });
  const page = await ctx.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (r) => { if (r.status() >= 400 && r.status() !== 401) problems.push(`${r.status()} ${r.url()}`); });
  return { ctx, page, problems };
}

async function signIn(page) {
  await page.goto(base + '/web/login');
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(base + '/web/'), page.click('button[type=submit]')]);
}

async function openTerminal(page) {
  await page.goto(base + '/web/d/' + device);
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: patience });
  await page.click('#terminal');
}

// waitText waits until the terminal's buffer (scrollback and screen)
// matches re. On a timeout, its error shows the page's state and the
// terminal's last lines.
async function waitText(page, re, timeout = patience) {
  try {
    await page.waitForFunction((src) => {
      const b = window.tether.term.buffer.active;
      const lines = [];
      for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
      return new RegExp(src, 'm').test(lines.join('\n'));
    }, re.source, { timeout, polling: 50 });
  } catch (e) {
    const seen = await page.evaluate(() => {
      const b = window.tether.term.buffer.active;
      let end = b.length; // past the blank rows below the last output
      while (end > 0 && b.getLine(end - 1).translateToString(true).trim() === '') end--;
      const lines = [];
      for (let i = Math.max(0, end - 12); i < end; i++) lines.push(b.getLine(i).translateToString(true));
      return { state: document.getElementById('state').textContent, lines };
    }).catch((err) => ({ state: 'unknown: ' + err, lines: [] }));
    throw new Error(`${re} did not show: ${e.message}\nstate: ${seen.state}\nthe terminal's last lines:\n${seen.lines.join('\n')}`);
  }
}

// outputLine matches a line of a command's output, text (a regular
// expression's source). A line typed before the shell printed its prompt
// is echoed by the terminal at once, and the shell, which reads it after
// its prompt, prints the output right after the prompt ("# 42"): keys
// typed ahead, as people type them.
const outputLine = (text) => new RegExp(`^(?:.*[#$] )?${text}\\s*$`);

async function typeLine(page, s) {
  await page.keyboard.type(s);
  await page.keyboard.press('Enter');
}

test('sign in, run a command, resize, exit with a status, leave, sign out', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  // The list's filter: an ID pattern that matches the device, then one
  // that matches nothing.
  await page.fill('#filter input[name=match]', device.slice(0, 3) + '*');
  await Promise.all([page.waitForURL(/\/web\/\?match=/), page.click('#filter button')]);
  assert.match(await page.textContent('#filter .count'), /^1 device$/);
  await page.screenshot({ path: join(artifacts, 'devices.png') });
  await page.fill('#filter input[name=match]', 'nothing-*');
  await Promise.all([page.waitForURL(/match=nothing/), page.click('#filter button')]);
  assert.match(await page.textContent('#devices'), /No device you may reach matches the filter/);
  await page.click('text=all devices');
  const row = page.locator('#devices a', { hasText: device });
  await row.waitFor({ timeout: patience });
  assert.equal(await row.count(), 1, 'the device list does not link the device');
  await row.click();
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: patience });
  await page.click('#terminal');

  await typeLine(page, 'echo $((6*7))');
  await waitText(page, outputLine('42'));
  // The shell's title names the tab.
  assert.equal(await page.title(), `${device} · Tether`);
  await typeLine(page, "printf '\\033]0;%s\\007' \"title-$((6*7))\"");
  await page.waitForFunction((d) => document.title === `title-42 · ${d} · Tether`, device, { timeout: patience });
  // A focused terminal at its prompt runs no animation: one (a blinking
  // cursor) would keep the tab making frames, 60 a second.
  assert.deepEqual(await page.evaluate(() => document.getAnimations().map((a) => a.animationName || String(a))), [],
    'the idle terminal runs an animation');

  await page.setViewportSize({ width: 640, height: 360 });
  await page.waitForFunction(() => window.tether.term.cols < 80, null, { timeout: patience });
  const { cols, rows } = await page.evaluate(() => ({ cols: window.tether.term.cols, rows: window.tether.term.rows }));
  // The resize reaches the device on its own stream: ask until it shows.
  for (let i = 0; ; i++) {
    await typeLine(page, 'stty size');
    try {
      await waitText(page, outputLine(`${rows} ${cols}`), 2000);
      break;
    } catch (e) {
      if (i >= 20) throw e;
    }
  }
  await page.screenshot({ path: join(artifacts, 'terminal.png') });

  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === 'tether_session');
  assert.ok(session, 'no session cookie');
  assert.ok(session.httpOnly && session.secure && session.sameSite === 'Strict', 'cookie attributes');
  await writeFile(join(artifacts, 'session-cookie.txt'), session.value);

  await typeLine(page, 'exit 7');
  await waitText(page, /\[exited 7\]/);
  assert.equal(await page.evaluate(() => window.tether.exited), 7);
  // Keys do nothing then, but Enter starts a new shell in the same page.
  await waitText(page, /^Press Enter for a new shell\.\s*$/);
  await page.keyboard.type('echo lost');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: patience });
  assert.equal(await page.evaluate(() => window.tether.exited), null);
  await typeLine(page, 'echo again-$((6*7))');
  await waitText(page, outputLine('again-42'));
  const stray = await page.evaluate(() => {
    const b = window.tether.term.buffer.active;
    for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true).includes('echo lost')) return true;
    return false;
  });
  assert.equal(stray, false, 'keys typed after the exit reached the new shell');

  // Leaving the page while its shell runs asks first.
  const asked = new Promise((resolve) => page.once('dialog', (d) => { resolve(d.type()); d.accept(); }));
  await page.goto(base + '/web/');
  assert.equal(await asked, 'beforeunload');
  await Promise.all([page.waitForURL(base + '/web/login'), page.click('button:has-text("Sign out")')]);
  await page.goto(base + '/web/');
  assert.equal(page.url(), base + '/web/login', 'after sign-out the session still works');
  assert.deepEqual(problems, [], 'the page logged errors (a CSP violation would show here)');
  await ctx.close();
});

test('a flood renders whole, the heap stays small, and Ctrl-C stops yes', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await openTerminal(page);
  await typeLine(page, 'seq 1 2000000; echo flood-$((1+1))');
  await waitText(page, /^2000000\s*\n.*flood-2/, 300000);
  const last = await page.evaluate(() => {
    const b = window.tether.term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true).trim());
    return lines.filter((l) => /^\d+$/.test(l)).slice(-3);
  });
  assert.deepEqual(last, ['1999998', '1999999', '2000000']);
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize } = await cdp.send('Runtime.getHeapUsage');
  console.log(`JS heap after the flood: ${(usedSize / 1048576).toFixed(1)} MiB`);
  assert.ok(usedSize < 100 * 1048576, `the JS heap is ${usedSize} bytes after the flood; want under 100 MB`);

  await typeLine(page, 'yes');
  await waitText(page, /^y$/);
  const t0 = Date.now();
  await page.keyboard.press('Control+C');
  await typeLine(page, 'echo back-$((40+2))');
  await waitText(page, outputLine('back-42'));
  console.log(`Ctrl-C during yes: the prompt answered after ${Date.now() - t0} ms`);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a paste larger than a message arrives whole', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await openTerminal(page);
  await typeLine(page, 'stty -echo; echo ready-$((1+1)); wc -c; stty echo');
  await waitText(page, outputLine('ready-2'));
  // 100000 bytes in 1000 lines, the edge's message bound being 64 KiB.
  await page.evaluate(() => window.tether.term.paste(('x'.repeat(99) + '\n').repeat(1000)));
  await page.keyboard.press('Control+D');
  await waitText(page, /^\s*100000\s*$/);
  assert.equal(await page.evaluate(() => document.getElementById('state').textContent), 'connected');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a paste of 4 MiB into a program that echoes it arrives whole', async () => {
  // The device reads none of it for a second: it fills the device's
  // stream window, and the page holds back what would be more than
  // 1 MiB ahead of what the edge wrote to the device. Then the echo's
  // acks, queued behind keystrokes, still reach the edge. tee echoes,
  // not the tty: a tty whose output is behind drops echoes, and wc's
  // count could land inside the paste's last line.
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await openTerminal(page);
  await typeLine(page, 'stty -icanon -echo; echo ready-$((1+1)); sleep 1; head -c 4194304 | tee /dev/stderr | wc -c; stty icanon echo');
  await waitText(page, outputLine('ready-2'));
  await page.evaluate(() => window.tether.term.paste(('x'.repeat(63) + '\n').repeat(65536)));
  await waitText(page, /^\s*4194304\s*$/, 2 * patience);
  assert.equal(await page.evaluate(() => document.getElementById('state').textContent), 'connected');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('24-bit colours show, and nothing breaks the CSP', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await openTerminal(page);
  // The sequences come from printf, so that the echo of the command line
  // holds none of the colour.
  await typeLine(page, "printf '\\033[38;2;255;0;0mtrue-red\\033[48;2;0;0;255m-on-blue\\033[0m\\n'");
  await waitText(page, outputLine('true-red-on-blue'));
  const colours = await page.waitForFunction(() => {
    const rows = window.tether.term.element.querySelector('.xterm-rows');
    const span = (text) => [...rows.querySelectorAll('span')].find((s) => s.textContent === text);
    const red = span('true-red');
    const blue = span('-on-blue');
    if (!red || !blue) return null;
    return { red: getComputedStyle(red).color, blue: getComputedStyle(blue).backgroundColor };
  }, null, { timeout: patience, polling: 50 });
  assert.deepEqual(await colours.jsonValue(), { red: 'rgb(255, 0, 0)', blue: 'rgb(0, 0, 255)' });
  assert.deepEqual(problems, [], 'the page broke its CSP or logged an error');
  await ctx.close();
});

test('the keyboard copies and pastes as in a desktop terminal', async () => {
  const { ctx, page, problems } = await newPage();
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await signIn(page);
  await openTerminal(page);
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());
  // selectOutput selects text where it stands alone on a line of output.
  const selectOutput = (text) => page.evaluate((text) => {
    const t = window.tether.term;
    const b = t.buffer.active;
    for (let i = b.length - 1; i >= 0; i--) {
      const line = b.getLine(i).translateToString(true);
      const at = line.indexOf(text);
      if (at >= 0 && !line.includes('echo')) {
        t.select(at, i, text.length);
        return t.getSelection();
      }
    }
    return '';
  }, text);
  // The tty echoes a ^C that reaches the shell.
  const interrupted = () => page.evaluate(() => {
    const b = window.tether.term.buffer.active;
    for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true).includes('^C')) return true;
    return false;
  });

  await typeLine(page, 'echo copy-$((6*7))-me');
  await waitText(page, outputLine('copy-42-me'));
  assert.equal(await selectOutput('copy-42-me'), 'copy-42-me');
  await page.keyboard.press('Control+Shift+C');
  assert.equal(await clipboard(), 'copy-42-me', 'Ctrl+Shift+C did not copy the selection');
  await typeLine(page, 'echo insert-$((6*7))-me');
  await waitText(page, outputLine('insert-42-me'));
  assert.equal(await selectOutput('insert-42-me'), 'insert-42-me');
  await page.keyboard.press('Control+Insert');
  assert.equal(await clipboard(), 'insert-42-me', 'Ctrl+Insert did not copy the selection');
  // Without a selection, Ctrl+Shift+C copies nothing and sends nothing.
  await page.evaluate(() => window.tether.term.clearSelection());
  await page.keyboard.press('Control+Shift+C');
  assert.equal(await clipboard(), 'insert-42-me');
  // A copy the browser refuses says so, beside the connection's state.
  assert.equal(await selectOutput('copy-42-me'), 'copy-42-me');
  await page.evaluate(() => {
    const write = navigator.clipboard.writeText;
    navigator.clipboard.writeText = () => {
      navigator.clipboard.writeText = write;
      return Promise.reject(new Error('not allowed'));
    };
  });
  await page.keyboard.press('Control+Shift+C');
  await page.waitForFunction(() => document.getElementById('note').textContent === 'copy failed: not allowed', null, { timeout: patience });
  assert.equal(await page.textContent('#state'), 'connected');
  await page.evaluate(() => window.tether.term.clearSelection());

  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((2+3))'));
  await page.keyboard.press('Control+Shift+V');
  await page.keyboard.press('Enter');
  await waitText(page, outputLine('pasted-5'));
  await page.evaluate(() => navigator.clipboard.writeText('echo shifted-$((2+3))'));
  await page.keyboard.press('Shift+Insert');
  await page.keyboard.press('Enter');
  await waitText(page, outputLine('shifted-5'));
  assert.equal(await interrupted(), false, 'a copy or a paste sent Ctrl-C to the shell');

  // Ctrl+C still interrupts, selection or not.
  await typeLine(page, 'sleep 100');
  assert.notEqual(await selectOutput('pasted-5'), '');
  await page.keyboard.press('Control+C');
  await typeLine(page, 'echo after-$((6*7))');
  await waitText(page, outputLine('after-42'));
  assert.equal(await interrupted(), true, 'Ctrl+C did not reach the shell');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a URL in the output opens in a new tab on Ctrl+click, not on a click', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await openTerminal(page);
  const url = base + '/web/?from=link-42';
  await typeLine(page, `echo "see ${base}/web/?from=link-$((6*7)) there"`);
  await waitText(page, outputLine(`see ${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} there`));
  // The middle of the URL where the output shows it.
  const at = await page.evaluate((url) => {
    const t = window.tether.term;
    const b = t.buffer.active;
    for (let y = b.viewportY + t.rows - 1; y >= b.viewportY; y--) {
      const line = b.getLine(y).translateToString(true);
      const x = line.indexOf(url);
      if (x >= 0 && !line.includes('echo')) {
        const row = t.element.querySelector('.xterm-rows').children[y - b.viewportY].getBoundingClientRect();
        return { x: row.left + (x + url.length / 2) * (row.width / t.cols), y: row.top + row.height / 2 };
      }
    }
    return null;
  }, url);
  assert.ok(at, 'the URL is not on the screen');
  let opened = 0;
  ctx.on('page', () => opened++);
  // xterm.js finds the link under the pointer, and shows it.
  await page.mouse.move(at.x, at.y);
  await page.waitForSelector('.xterm-screen.xterm-cursor-pointer', { timeout: patience });
  await page.mouse.click(at.x, at.y);
  await page.keyboard.down('Control');
  const [tab] = await Promise.all([ctx.waitForEvent('page', { timeout: patience }), page.mouse.click(at.x, at.y)]);
  await page.keyboard.up('Control');
  await tab.waitForURL(url, { timeout: patience });
  assert.equal(opened, 1, 'a plain click opened the link too');
  assert.equal(await tab.evaluate(() => window.opener), null, 'the new tab has a handle on the terminal');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('Ctrl+Shift+F finds in the scrollback; leaving once the shell ended asks nothing', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await openTerminal(page);
  await typeLine(page, 'echo needle-$((6*7)); seq 1 300');
  await waitText(page, /^300\s*$/);
  const row = (text) => page.evaluate((text) => {
    const b = window.tether.term.buffer.active;
    for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true).trim() === text) return i;
    return -1;
  }, text);
  const needle = await row('needle-42');
  assert.ok(needle >= 0);
  assert.ok(await page.evaluate((r) => window.tether.term.buffer.active.viewportY > r, needle), 'the needle is on the screen already');

  await page.keyboard.press('Control+Shift+F');
  await page.waitForSelector('#find:not([hidden])', { timeout: patience });
  await page.keyboard.type('needle-4');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => window.tether.term.getSelection() === 'needle-4', null, { timeout: patience });
  const { top, rows } = await page.evaluate(() => ({ top: window.tether.term.buffer.active.viewportY, rows: window.tether.term.rows }));
  assert.ok(needle >= top && needle < top + rows, `the match (row ${needle}) is not on the screen (rows ${top} to ${top + rows - 1})`);
  await page.screenshot({ path: join(artifacts, 'find.png') });

  await page.fill('#find-text', 'no-such-needle');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('find-state').textContent === 'not found', null, { timeout: patience });
  // Escape closes the bar, and the keys go to the shell again.
  await page.keyboard.press('Escape');
  assert.equal(await page.isHidden('#find'), true);
  await typeLine(page, 'echo back-$((6*7))');
  await waitText(page, outputLine('back-42'));
  // Once the shell has ended, leaving asks nothing.
  await typeLine(page, 'exit');
  await waitText(page, /^Press Enter for a new shell\.\s*$/);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.type()); d.accept(); });
  await page.goto(base + '/web/');
  assert.deepEqual(dialogs, []);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('the files page downloads a file and uploads one, and shows a refusal', async () => {
  const { ctx, page, problems } = await newPage();
  await signIn(page);
  await Promise.all([page.waitForURL(base + '/web/files/' + device), page.click(`a[href="/web/files/${device}"]`)]);

  const content = Buffer.from('a line of a log\n'.repeat(5000) + 'é, the end\n');
  await writeFile(join(filesDir, 'device.log'), content);
  await page.fill('#download input[name=path]', filesDir + '/device.log');
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: patience }), page.click('#download button')]);
  assert.equal(dl.suggestedFilename(), 'device.log');
  assert.equal(await dl.failure(), null);
  assert.ok(content.equals(await readFile(await dl.path())), 'the download is not the file');
  assert.equal(page.url(), base + '/web/files/' + device, 'the download left the page');

  // A path that is not there: the page again, with the device's reason.
  await page.fill('#download input[name=path]', filesDir + '/no-such.log');
  await Promise.all([page.waitForSelector('#download-error', { timeout: patience }), page.click('#download button')]);
  assert.match(await page.textContent('#download-error'), /no-such\.log/);
  assert.equal(await page.inputValue('#download input[name=path]'), filesDir + '/no-such.log');

  // An upload large enough to report its progress on the way.
  const up = Buffer.alloc(8 << 20, 0xa5);
  await page.setInputFiles('#upload-file', { name: 'firmware.bin', mimeType: 'application/octet-stream', buffer: up });
  await page.fill('#upload-path', filesDir + '/in');
  await page.evaluate(() => {
    window.uploadStates = [];
    new MutationObserver(() => window.uploadStates.push(document.getElementById('upload-state').textContent))
      .observe(document.getElementById('upload-state'), { childList: true, characterData: true, subtree: true });
  });
  await page.click('#upload button');
  await page.waitForFunction(() => /^Uploaded|refused|failed/.test(document.getElementById('upload-state').textContent), null, { timeout: patience });
  const sum = createHash('sha256').update(up).digest('hex');
  assert.equal(await page.textContent('#upload-state'), `Uploaded firmware.bin (${up.length} bytes) to ${filesDir}/in, SHA-256 ${sum}.`);
  assert.ok(up.equals(await readFile(join(filesDir, 'in', 'firmware.bin'))), 'the device did not store the upload');
  const states = await page.evaluate(() => window.uploadStates);
  assert.ok(states.some((s) => /^Uploading firmware\.bin: \d+ % of 8388608 bytes…$/.test(s)), 'no progress shown: ' + states.join(' | '));
  await page.screenshot({ path: join(artifacts, 'files.png') });

  // The device admits no upload outside "in": its reason shows.
  await page.fill('#upload-path', filesDir);
  await page.click('#upload button');
  await page.waitForFunction(() => /refused/.test(document.getElementById('upload-state').textContent), null, { timeout: patience });
  assert.match(await page.textContent('#upload-state'), /^Upload refused \(502\): .*not allowed/);
  assert.equal(await page.getAttribute('#upload-state', 'class'), 'error');
  // The two refusals, and the browser's console lines about them, are the
  // only problems.
  assert.deepEqual(problems.filter((p) => !/\/web\/(upload|download)\?/.test(p) && !p.includes('status of 502')), [],
    'the page broke its CSP or logged an error');
  assert.ok(problems.length <= 4, problems.join('\n'));
  await ctx.close();
});

test('a page on another origin can neither get a ticket nor open the WebSocket', async () => {
  const { ctx, page } = await newPage();
  await signIn(page);
  await page.goto(attackURL);
  const result = await page.evaluate(async ({ edge, device }) => {
    const out = {};
    try {
      const r = await fetch(edge + '/web/ticket?device=' + device, { method: 'POST', credentials: 'include' });
      out.cors = 'status ' + r.status + ' ' + (await r.text());
    } catch (e) {
      out.cors = 'blocked';
    }
    // A no-cors request reaches the edge, which refuses it for its origin;
    // the page cannot read the answer either way.
    const r = await fetch(edge + '/web/ticket?device=' + device, { method: 'POST', credentials: 'include', mode: 'no-cors' });
    out.noCors = r.type;
    out.ws = await new Promise((resolve) => {
      const ws = new WebSocket(edge.replace('https:', 'wss:') + '/web/ws');
      ws.onopen = () => { ws.close(); resolve('opened'); };
      ws.onerror = () => resolve('refused');
    });
    return out;
  }, { edge: base, device });
  assert.equal(result.cors, 'blocked');
  assert.equal(result.noCors, 'opaque');
  assert.equal(result.ws, 'refused');
  await ctx.close();
});

test('a wrong token sets no cookie', async () => {
  const { ctx, page } = await newPage();
  await page.goto(base + '/web/login');
  await page.fill('input[name=token]', 'not-the-token-0123456789');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error');
  const cookies = await ctx.cookies();
  assert.equal(cookies.find((c) => c.name === 'tether_session'), undefined);
  await ctx.close();
});
