// The web terminal's figures in a real Chromium, for make bench
// (e2e/web_bench_test.go runs it with the environment of
// terminal.test.mjs and reads the last line, "BENCH {json}"):
//   load_ms      a cold page (empty cache) from navigation to the prompt
//   key_*_ms     a keystroke from the page to its echo on screen, through
//                the edge and the agent (stty -icanon; cat >/dev/null):
//                until the frame in which xterm.js drew the character into
//                the terminal's rows (checked in the DOM) has been laid out
//                and painted, on Chromium's 60 Hz frame clock (frame_ms);
//                typed at a fast typist's pace, a pause of 20 to 200 ms
//                (at random) between an echo and the next key: about nine
//                keys a second, or 100 words a minute
//   floor_key_*  key_*'s keystrokes on the floor's page, in turns with
//                them: the same page, xterm.js and WebSocket, echoed by a
//                server on loopback with nothing of Tether's behind it
//                (floor.js, TETHER_FLOOR_URL)
//   burst_*_ms   the same keystroke, with a pause of 0 to 17 ms: about 60
//                keys a second, twice a held key's repeat rate, so that
//                each echo comes while the frame clock still ticks from
//                the last
//   key_wait_*   of that, the wait for a frame: from the echo parsed,
//                when xterm.js asks for a frame, to the start (the frame's
//                time) of the frame that drew it; 0 after a quiet spell,
//                up to 16.7 ms at 60 Hz while the page animates
//   key_nowait_* each keystroke less its wait: what the edge, the agent and
//                the page take, as on a display that starts a frame as
//                soon as it is asked
//                key_received, key_parsed and key_drawn break it down:
//                the echo's message at the page, parsed by xterm.js, then
//                drawn into the rows (its render event), before the
//                frame's layout and paint
//   idle_*_pct   the page's renderer process (all threads, and its main
//                thread) while the terminal sits focused at its prompt,
//                in % of a core
//   flood_mbps   `seq 1 2000000` rendered, in MB/s; meanwhile the CPU
//                seconds of the page's renderer process, and the seconds
//                its main thread ran and waited for a CPU
import { readdirSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.TETHER_URL;
const token = process.env.TETHER_TOKEN;
const device = process.env.TETHER_DEVICE;
const keys = Number(process.env.TETHER_BENCH_KEYS || 300);
const patience = 120000;

const launch = () => chromium.launch({
  executablePath: process.env.TETHER_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

// The process IDs of this script's Chromium renderers (Linux's /proc;
// none elsewhere).
function renderers() {
  const parent = new Map();
  const found = [];
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = readFileSync(`/proc/${d}/stat`, 'utf8');
        parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('--type=renderer')) found.push(Number(d));
      } catch { /* gone meanwhile */ }
    }
  } catch { /* no /proc */ }
  return found.filter((pid) => {
    for (let p = parent.get(pid), i = 0; p && i < 8; p = parent.get(p), i++) if (p === process.pid) return true;
    return false;
  });
}

// The renderers' CPU seconds, all threads, and their main threads'
// seconds on a CPU and waiting for one (runnable, not running).
function rendererTimes() {
  const r = { cpu: 0, run: 0, wait: 0 };
  for (const pid of renderers()) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      r.cpu += (Number(f[11]) + Number(f[12])) / 100;
      const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
      r.run += run / 1e9;
      r.wait += wait / 1e9;
    } catch { /* gone */ }
  }
  return r;
}

const bufferHas = (src) => {
  const b = window.tether && window.tether.term && window.tether.term.buffer.active;
  if (!b) return false;
  // The last lines only: a scan of the whole scrollback on every poll
  // would take the page's time from the terminal it measures.
  const lines = [];
  for (let i = Math.max(0, b.length - 60); i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return new RegExp(src, 'm').test(lines.join('\n'));
};

// benchRecv, run in a page before its scripts, keeps the time each
// output message reaches the page, for the keystrokes' breakdown: a
// listener beside the page's own, which it does not see.
function benchRecv() {
  const WS = window.WebSocket;
  window.__benchRecv = 0;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => { if (typeof ev.data !== 'string') window.__benchRecv = performance.now(); });
    }
  };
}

// A terminal page in browser br, signed in with cookies.
async function openTerminal(br, cookies) {
  const ctx = await br.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 600 } });
  await ctx.addCookies(cookies);
  const page = await ctx.newPage();
  await page.addInitScript(benchRecv);
  const t0 = Date.now();
  await page.goto(base + '/web/d/' + device);
  await page.waitForFunction(bufferHas, '[#$] $', { timeout: patience, polling: 'raf' });
  return { ctx, page, loadMS: Date.now() - t0 };
}

// openFloor opens the floor's page (TETHER_FLOOR_URL) in browser br,
// at its prompt, with the pointer over the terminal as on Tether's page.
async function openFloor(br) {
  const ctx = await br.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 600 } });
  const page = await ctx.newPage();
  await page.addInitScript(benchRecv);
  await page.goto(process.env.TETHER_FLOOR_URL + '/floor');
  await page.waitForFunction(bufferHas, '[#$] $', { timeout: patience, polling: 'raf' });
  await page.click('#terminal');
  return { ctx, page };
}

// The pause between an echo and the next key, in ms: a fast typist's,
// and a burst's.
const typist = { min: 20, max: 200 };
const burst = { min: 0, max: 17 };

// swallow makes the terminal's tty echo each key as it comes and cat
// swallow it.
async function swallow(page) {
  await page.click('#terminal');
  await page.keyboard.type('stty -icanon; exec cat >/dev/null');
  await page.keyboard.press('Enter');
  await page.waitForTimeout(500);
}

// keystrokes types n keys (after warm unmeasured) into a terminal that
// swallows them, each after a pause drawn at random from pause, and
// returns the times of each (summarize takes their percentiles); with
// frames, the frame interval too.
async function keystrokes(page, n, pause, warm, frames) {
  return page.evaluate(async ({ n, pause, warm, countFrames }) => {
    const term = window.tether.term;
    // The frame interval: a loop of frames, before the keys, so that it
    // takes nothing from them.
    const frames = [];
    if (countFrames) {
      await new Promise((resolve) => {
        let last = 0;
        const frame = (t) => {
          if (last) frames.push(t - last);
          last = t;
          if (frames.length < 120) requestAnimationFrame(frame);
          else resolve();
        };
        requestAnimationFrame(frame);
      });
    }
    const rows = term.element.querySelector('.xterm-rows');
    const painted = [];
    const drawn = [];
    const nowait = [];
    const waits = [];
    const parsed = [];
    const received = [];
    const after = new MessageChannel();
    for (let i = 0; i < n + warm; i++) {
      const ch = String.fromCharCode(97 + (i % 26));
      // A person's keys come at any point of the display's frame, not
      // right after a render as this loop would otherwise send them.
      await new Promise((r) => setTimeout(r, pause.min + Math.random() * (pause.max - pause.min)));
      const b = term.buffer.active;
      const x0 = b.cursorX;
      const y0 = b.cursorY;
      window.__benchRecv = 0;
      const t0 = performance.now();
      let tParsed = 0;
      let tFrame = 0;
      let tDrawn = 0;
      await new Promise((resolve, reject) => {
        const moved = () => term.buffer.active.cursorX !== x0 || term.buffer.active.cursorY !== y0;
        // The character as the DOM renderer drew it in its row: just
        // before the cursor, which it moved.
        const shown = () => {
          const a = term.buffer.active;
          const row = rows.children[a.baseY + a.cursorY - a.viewportY];
          return !!row && row.textContent.charAt(a.cursorX - 1) === ch;
        };
        // Parsed, xterm.js has asked for a frame; a frame asked for now
        // is the same, and its time is when the frame began.
        const p = term.onWriteParsed(() => {
          if (tParsed || !moved()) return;
          tParsed = performance.now();
          requestAnimationFrame((t) => { if (!tFrame) tFrame = t; });
        });
        const stuck = setTimeout(() => reject(new Error(`no echo of key ${i} drawn within 60 s`)), 60000);
        // onRender runs in the frame's animation callbacks; the frame is
        // then laid out and painted, and a message posted now runs after.
        const r = term.onRender(() => {
          if (!moved() || !shown()) return;
          tDrawn = performance.now();
          clearTimeout(stuck);
          p.dispose();
          r.dispose();
          after.port1.onmessage = resolve;
          after.port2.postMessage(0);
        });
        term.input(ch, true);
      });
      if (i >= warm) {
        const now = performance.now();
        const wait = tParsed && tFrame ? Math.max(0, tFrame - tParsed) : 0;
        painted.push(now - t0);
        drawn.push(tDrawn - t0);
        waits.push(wait);
        nowait.push(now - t0 - wait);
        parsed.push((tParsed || now) - t0);
        received.push((window.__benchRecv || now) - t0);
      }
    }
    after.port1.close();
    return { painted, drawn, waits, nowait, parsed, received, frames };
  }, { n, pause, warm, countFrames: !!frames });
}

// summarize takes the percentiles of the keystrokes of several calls of
// keystrokes.
function summarize(runs) {
  const all = (k) => runs.flatMap((r) => r[k]);
  const pct = (a, q) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
  return {
    p50: pct(all('painted'), 0.5), p99: pct(all('painted'), 0.99), drawnP50: pct(all('drawn'), 0.5),
    waitP50: pct(all('waits'), 0.5), nowaitP50: pct(all('nowait'), 0.5), nowaitP99: pct(all('nowait'), 0.99),
    parsedP50: pct(all('parsed'), 0.5), parsedP99: pct(all('parsed'), 0.99),
    receivedP50: pct(all('received'), 0.5), frameP50: pct(all('frames'), 0.5),
  };
}

// Sign in once; each measured page starts in a fresh context (no cache)
// with that session's cookie.
const browser = await launch();
try {
  const signin = await browser.newContext({ ignoreHTTPSErrors: true });
  const sp = await signin.newPage();
  await sp.goto(base + '/web/login');
  await sp.fill('input[name=token]', token);
  await Promise.all([sp.waitForURL(base + '/web/'), sp.click('button[type=submit]')]);
  const cookies = await signin.cookies();
  await signin.close();

  const t = await openTerminal(browser, cookies);
  // An idle terminal, focused, at its prompt: what the page costs while
  // nobody types.
  await t.page.click('#terminal');
  await t.page.waitForTimeout(500);
  const i0 = rendererTimes();
  const idle0 = Date.now();
  await t.page.waitForTimeout(5000);
  const i1 = rendererTimes();
  const idleS = (Date.now() - idle0) / 1000;
  await swallow(t.page);
  // The floor: the same page and keystrokes, echoed by a WebSocket
  // server on loopback (floor.js). Tether's keys and the floor's take
  // turns, a round each, so that both meet the same state of the machine.
  const fl = await openFloor(browser);
  const rounds = 6;
  const latRuns = [];
  const floorRuns = [];
  for (let r = 0; r < rounds; r++) {
    latRuns.push(await keystrokes(t.page, keys / rounds, typist, r === 0 ? 20 : 5, r === 0));
    floorRuns.push(await keystrokes(fl.page, keys / rounds, typist, r === 0 ? 20 : 5, false));
  }
  await fl.ctx.close();
  const lat = summarize(latRuns);
  const floor = summarize(floorRuns);
  const fast = summarize([await keystrokes(t.page, keys, burst, 20, false)]);
  await t.ctx.close();

  // The flood, in a new terminal.
  const f = await openTerminal(browser, cookies);
  const fp = f.page;
  await fp.click('#terminal');
  const lines = 2000000;
  let bytes = 0;
  for (let i = 1; i <= lines; i++) bytes += String(i).length + 2;
  await fp.keyboard.type(`seq 1 ${lines}; echo flood-$((1+1))`);
  const r0 = rendererTimes();
  const f0 = Date.now();
  await fp.keyboard.press('Enter');
  await fp.waitForFunction(bufferHas, '^flood-2', { timeout: 10 * patience, polling: 50 });
  const floodMS = Date.now() - f0;
  const r1 = rendererTimes();
  await f.ctx.close();

  console.log('BENCH ' + JSON.stringify({
    load_ms: t.loadMS, key_p50_ms: lat.p50, key_p99_ms: lat.p99, key_wait_p50_ms: lat.waitP50,
    key_nowait_p50_ms: lat.nowaitP50, key_nowait_p99_ms: lat.nowaitP99,
    burst_p50_ms: fast.p50, burst_p99_ms: fast.p99, burst_wait_p50_ms: fast.waitP50,
    floor_key_p50_ms: floor.p50, floor_key_p99_ms: floor.p99, floor_key_drawn_p50_ms: floor.drawnP50,
    floor_key_received_p50_ms: floor.receivedP50,
    key_drawn_p50_ms: lat.drawnP50, key_parsed_p50_ms: lat.parsedP50, key_parsed_p99_ms: lat.parsedP99, key_received_p50_ms: lat.receivedP50, frame_ms: lat.frameP50,
    flood_mbps: bytes / 1e6 / (floodMS / 1000), flood_bytes: bytes, flood_renderer_cpu_s: r1.cpu - r0.cpu,
    flood_main_run_s: r1.run - r0.run, flood_main_wait_s: r1.wait - r0.wait,
    idle_renderer_cpu_pct: 100 * (i1.cpu - i0.cpu) / idleS, idle_main_run_pct: 100 * (i1.run - i0.run) / idleS,
  }));
} finally {
  await browser.close();
}
