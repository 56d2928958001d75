// The terminal page: a ticket for the device, then the WebSocket, which
// carries keystrokes and output as binary messages and control as JSON
// text. Output is acknowledged once xterm.js has rendered it, so the edge
// never runs far ahead of the page; keystrokes run at most inputMax ahead
// of the device, and the rest of a large paste waits here.
(function () {
  'use strict';
  const meta = (n) => document.querySelector('meta[name="' + n + '"]').content;
  const device = meta('tether-device');
  const csrf = meta('tether-csrf');
  // xterm.js sizes and colours the terminal with style elements of its
  // own; the page's CSP admits those that carry this response's nonce.
  const styleNonce = meta('tether-style-nonce');
  const createElement = document.createElement.bind(document);
  document.createElement = function (tag, opts) {
    const el = createElement(tag, opts);
    if (String(tag).toLowerCase() === 'style') el.setAttribute('nonce', styleNonce);
    return el;
  };
  const state = document.getElementById('state');
  // A steady cursor: xterm.js blinks it with a CSS animation, which keeps
  // the browser making frames, 60 a second, while the terminal sits idle.
  // That costs the tab about 8 % of a core, and makes each echo wait for
  // the animation's next frame instead of drawing at once.
  const term = new Terminal({ cursorBlink: false, scrollback: 5000, fontFamily: 'monospace' });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById('terminal'));
  fit.fit();
  window.tether = { term: term, exited: null };
  const enc = new TextEncoder();

  function fail(msg) {
    state.textContent = msg;
    term.write('\r\n[' + msg + ']\r\n');
  }

  async function connect() {
    const resp = await fetch('/web/ticket?device=' + encodeURIComponent(device), {
      method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf },
    });
    if (!resp.ok) {
      fail('no ticket: ' + (await resp.text()).trim());
      return;
    }
    const ticket = (await resp.json()).ticket;
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/web/ws');
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      ws.send(JSON.stringify({ ticket: ticket, device: device, cols: term.cols, rows: term.rows, term: 'xterm-256color' }));
    };
    // Acks: the messages that xterm.js renders in one go are acknowledged
    // together, once it yields, and at least every ackEvery bytes.
    let unacked = 0;
    let ackTimer = 0;
    const ackEvery = 256 << 10;
    const ack = () => {
      if (ackTimer) clearTimeout(ackTimer);
      ackTimer = 0;
      if (unacked > 0 && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: 'ack', n: unacked }));
      unacked = 0;
    };
    const rendered = (n) => {
      unacked += n;
      if (unacked >= ackEvery) ack();
      else if (!ackTimer) ackTimer = setTimeout(ack, 0);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') {
        const m = JSON.parse(ev.data);
        if (m.t === 'open') {
          state.textContent = 'connected';
        } else if (m.t === 'exit') {
          window.tether.exited = m.code;
          term.write('\r\n[exited ' + (m.signal ? m.signal : m.code) + ']\r\n');
          state.textContent = 'exited';
        } else if (m.t === 'taken') {
          inflight -= m.n;
          pump();
        } else if (m.t === 'error') {
          fail(m.msg);
        }
        return;
      }
      const b = new Uint8Array(ev.data);
      term.write(b, () => rendered(b.length));
    };
    ws.onclose = () => {
      if (state.textContent === 'connected') state.textContent = 'disconnected';
    };
    // A paste comes as one piece of any size; the edge takes messages of
    // at most 64 KiB, and ends the terminal on a larger one. It reports
    // the keystrokes it wrote to the device (taken); at most inputMax may
    // be on their way, as the edge holds them while the device is not
    // reading.
    const inputMax = 1 << 20;
    let inflight = 0;
    const pending = [];
    const pump = () => {
      while (pending.length > 0 && inflight + pending[0].length <= inputMax && ws.readyState === WebSocket.OPEN) {
        const b = pending.shift();
        inflight += b.length;
        ws.send(b);
      }
    };
    const sendKeys = (b) => {
      for (let i = 0; i < b.length; i += 32 << 10) pending.push(b.subarray(i, i + (32 << 10)));
      pump();
    };
    term.onData((d) => { if (ws.readyState === WebSocket.OPEN) sendKeys(enc.encode(d)); });
    term.onBinary((d) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const b = new Uint8Array(d.length);
      for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
      sendKeys(b);
    });
    term.onResize((sz) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: 'resize', cols: sz.cols, rows: sz.rows }));
    });
  }

  window.addEventListener('resize', () => fit.fit());
  term.focus();
  connect().catch((e) => fail(String(e)));
})();
