// The web terminal's figures in a real Chromium, for make bench
// (e2e/web_bench_test.go runs it with the environment of
// terminal.test.mjs and reads the last line, "BENCH {json}"):
//   load_ms      a cold page (empty cache) from navigation to the prompt
//   key_*_ms     a keystroke from the page to its echo rendered, through
//                the edge and the agent (stty -icanon; cat >/dev/null);
//                key_received and key_parsed break it down: the echo's
//                message at the page, then parsed by xterm.js, which
//                renders it on the display's next frame (frame_p50_ms)
//   flood_mbps   `seq 1 2000000` rendered, in MB/s
import { chromium } from 'playwright-core';

const base = process.env.TETHER_URL;
const token = process.env.TETHER_TOKEN;
const device = process.env.TETHER_DEVICE;
const keys = Number(process.env.TETHER_BENCH_KEYS || 300);
const patience = 120000;

const browser = await chromium.launch({
  executablePath: process.env.TETHER_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  // Sign in once; the measured page starts in a fresh context (no cache)
  // with that session's cookie.
  const signin = await browser.newContext({ ignoreHTTPSErrors: true });
  const sp = await signin.newPage();
  await sp.goto(base + '/web/login');
  await sp.fill('input[name=token]', token);
  await Promise.all([sp.waitForURL(base + '/web/'), sp.click('button[type=submit]')]);
  const cookies = await signin.cookies();
  await signin.close();

  const bufferHas = (src) => {
    const b = window.tether && window.tether.term && window.tether.term.buffer.active;
    if (!b) return false;
    // The last lines only: a scan of the whole scrollback on every poll
    // would take the page's time from the terminal it measures.
    const lines = [];
    for (let i = Math.max(0, b.length - 60); i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
    return new RegExp(src, 'm').test(lines.join('\n'));
  };
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 600 } });
  await ctx.addCookies(cookies);
  const page = await ctx.newPage();
  // The time each output message reaches the page, for the keystrokes'
  // breakdown: a listener beside the page's own, which it does not see.
  await page.addInitScript(() => {
    const WS = window.WebSocket;
    window.__benchRecv = 0;
    window.WebSocket = class extends WS {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', (ev) => { if (typeof ev.data !== 'string') window.__benchRecv = performance.now(); });
      }
    };
  });
  const t0 = Date.now();
  await page.goto(base + '/web/d/' + device);
  await page.waitForFunction(bufferHas, '[#$] $', { timeout: patience, polling: 'raf' });
  const loadMS = Date.now() - t0;

  // Keystrokes: the tty echoes each key, cat swallows it.
  await page.click('#terminal');
  await page.keyboard.type('stty -icanon; exec cat >/dev/null');
  await page.keyboard.press('Enter');
  await page.waitForTimeout(500);
  const lat = await page.evaluate(async (n) => {
    const term = window.tether.term;
    const parsed = [];
    const rendered = [];
    const received = [];
    // The display's frame interval while the keys are measured.
    const frames = [];
    let last = 0;
    let measuring = true;
    const frame = (t) => { if (last) frames.push(t - last); last = t; if (measuring) requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
    for (let i = 0; i < n + 20; i++) {
      const ch = String.fromCharCode(97 + (i % 26));
      // A person's keys come at any point of the display's frame, not
      // right after a render as this loop would otherwise send them.
      await new Promise((r) => setTimeout(r, Math.random() * 17));
      const b = term.buffer.active;
      const x0 = b.cursorX;
      const y0 = b.cursorY;
      window.__benchRecv = 0;
      const t0 = performance.now();
      let tParsed = 0;
      await new Promise((resolve) => {
        const moved = () => term.buffer.active.cursorX !== x0 || term.buffer.active.cursorY !== y0;
        const p = term.onWriteParsed(() => { if (!tParsed && moved()) tParsed = performance.now(); });
        const r = term.onRender(() => {
          if (moved()) { p.dispose(); r.dispose(); resolve(); }
        });
        term.input(ch, true);
      });
      if (i >= 20) {
        rendered.push(performance.now() - t0);
        parsed.push((tParsed || performance.now()) - t0);
        received.push((window.__benchRecv || performance.now()) - t0);
      }
    }
    measuring = false;
    const pct = (a, q) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
    return {
      p50: pct(rendered, 0.5), p99: pct(rendered, 0.99), parsedP50: pct(parsed, 0.5), parsedP99: pct(parsed, 0.99),
      receivedP50: pct(received, 0.5), frameP50: pct(frames, 0.5),
    };
  }, keys);

  // The flood, in a new terminal.
  const fp = await ctx.newPage();
  await fp.goto(base + '/web/d/' + device);
  await fp.waitForFunction(bufferHas, '[#$] $', { timeout: patience });
  await fp.click('#terminal');
  const lines = 2000000;
  let bytes = 0;
  for (let i = 1; i <= lines; i++) bytes += String(i).length + 2;
  await fp.keyboard.type(`seq 1 ${lines}; echo flood-$((1+1))`);
  const f0 = Date.now();
  await fp.keyboard.press('Enter');
  await fp.waitForFunction(bufferHas, '^flood-2', { timeout: 10 * patience, polling: 50 });
  const floodMS = Date.now() - f0;

  console.log('BENCH ' + JSON.stringify({
    load_ms: loadMS, key_p50_ms: lat.p50, key_p99_ms: lat.p99, key_parsed_p50_ms: lat.parsedP50, key_parsed_p99_ms: lat.parsedP99,
    key_received_p50_ms: lat.receivedP50, frame_p50_ms: lat.frameP50,
    flood_mbps: bytes / 1e6 / (floodMS / 1000), flood_bytes: bytes,
  }));
  await ctx.close();
} finally {
  await browser.close();
}
