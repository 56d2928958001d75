// The terminal page: a ticket for the device, then the WebSocket, which
// carries keystrokes and output as binary messages and control as JSON
// text. Output is acknowledged once xterm.js has rendered it, so the edge
// never runs far ahead of the page; keystrokes run at most inputMax ahead
// of the device, and the rest of a large paste waits here. Once the shell
// or its connection ends, Enter starts a new shell in the same page.
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
  // xterm.js's DOM renderer gives a cell a colour of its own (a 24-bit
  // colour, the selection's, one raised to the minimum contrast) with a
  // style attribute, which the CSP refuses: the colour would be lost, and
  // each such cell logged as a violation. Through the CSSOM, which the
  // CSP leaves to scripts, it applies.
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (name === 'style' && this.style) {
      this.style.cssText = value;
      return;
    }
    setAttribute.call(this, name, value);
  };
  const state = document.getElementById('state');
  // A passing note beside the state, such as a copy the browser refused.
  const note = document.getElementById('note');
  let noteTimer = 0;
  const showNote = (msg) => {
    note.textContent = msg;
    clearTimeout(noteTimer);
    noteTimer = setTimeout(() => { note.textContent = ''; }, 5000);
  };
  // An idle moment, where the browser tells (not Safari): otherwise the
  // next task.
  const onIdle = window.requestIdleCallback ? (f) => requestIdleCallback(f, { timeout: 100 }) : (f) => setTimeout(f, 0);
  const cancelIdle = window.cancelIdleCallback ? (h) => cancelIdleCallback(h) : (h) => clearTimeout(h);
  // A steady cursor: xterm.js blinks it with a CSS animation, which keeps
  // the browser making frames, 60 a second, while the terminal sits idle.
  // That costs the tab about 8 % of a core, and makes each echo wait for
  // the animation's next frame instead of drawing at once.
  const term = new Terminal({ cursorBlink: false, scrollback: 5000, fontFamily: 'monospace' });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  // URLs in the output (http and https) open in a new tab on Ctrl+click
  // (Cmd+click on macOS), as in desktop terminals; a plain click selects,
  // as everywhere else in the terminal. The tab gets no referrer and no
  // handle on this page.
  term.loadAddon(new WebLinksAddon.WebLinksAddon((ev, uri) => {
    if (ev.ctrlKey || ev.metaKey) window.open(uri, '_blank', 'noopener,noreferrer');
  }));
  term.open(document.getElementById('terminal'));
  fit.fit();
  window.tether = { term: term, exited: null };
  // The shell's title (OSC 0 or 2, as a prompt often sets it) names the
  // tab, beside the device; the page's own title otherwise.
  const pageTitle = document.title;
  const showTitle = (t) => {
    t = String(t).slice(0, 200).trim();
    document.title = t ? t + ' · ' + device + ' · Tether' : pageTitle;
  };
  term.onTitleChange(showTitle);
  const enc = new TextEncoder();

  // The terminal's connection: its WebSocket and what it sends. A new
  // shell, after one ended, gets a new connection.
  let conn = null;
  // ended: the shell or its connection ended, and Enter starts a new
  // shell (a new ticket, a new WebSocket), as a terminal tab offers.
  let ended = false;

  function fail(msg) {
    state.textContent = msg;
    term.write('\r\n[' + msg + ']\r\n');
  }

  function finish(c) {
    if (c !== conn || ended) return;
    ended = true;
    conn = null;
    term.write('\r\nPress Enter for a new shell.\r\n');
  }

  async function connect() {
    const c = { ws: null, inflight: 0, pending: [] };
    conn = c;
    ended = false;
    window.tether.exited = null;
    state.textContent = 'connecting';
    showTitle('');
    const resp = await fetch('/web/ticket?device=' + encodeURIComponent(device), {
      method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf },
    });
    if (!resp.ok) {
      fail('no ticket: ' + (await resp.text()).trim());
      finish(c);
      return;
    }
    const ticket = (await resp.json()).ticket;
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/web/ws');
    c.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      ws.send(JSON.stringify({ ticket: ticket, device: device, cols: term.cols, rows: term.rows, term: 'xterm-256color' }));
    };
    // Acks: the messages that xterm.js renders in one go are acknowledged
    // together, once it yields, and at least every ackEvery bytes. Less
    // than ackSoon (an echo, a prompt) frees little of the edge's 1 MiB
    // and waits for an idle moment, at most 100 ms: sent at once, it would
    // compete with drawing the echo it acknowledges.
    let unacked = 0;
    let ackTimer = 0;
    let ackIdle = 0;
    const ackEvery = 256 << 10;
    const ackSoon = 16 << 10;
    const ack = () => {
      if (ackTimer) clearTimeout(ackTimer);
      if (ackIdle) cancelIdle(ackIdle);
      ackTimer = 0;
      ackIdle = 0;
      if (unacked > 0 && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: 'ack', n: unacked }));
      unacked = 0;
    };
    const rendered = (n) => {
      unacked += n;
      if (unacked >= ackEvery) ack();
      else if (unacked >= ackSoon) { if (!ackTimer) ackTimer = setTimeout(ack, 0); }
      else if (!ackTimer && !ackIdle) ackIdle = onIdle(ack);
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
          c.inflight -= m.n;
          pump(c);
        } else if (m.t === 'error') {
          fail(m.msg);
        }
        return;
      }
      const b = new Uint8Array(ev.data);
      term.write(b, () => rendered(b.length));
    };
    ws.onclose = () => {
      if (state.textContent === 'connected' || state.textContent === 'connecting') {
        state.textContent = 'disconnected';
        term.write('\r\n[disconnected]\r\n');
      }
      // After the output that came before the close.
      term.write('', () => finish(c));
    };
  }

  // A paste comes as one piece of any size; the edge takes messages of at
  // most 64 KiB, and ends the terminal on a larger one. It reports the
  // keystrokes it wrote to the device (taken); at most inputMax may be on
  // their way, as the edge holds them while the device is not reading.
  const inputMax = 1 << 20;
  const pump = (c) => {
    while (c.pending.length > 0 && c.inflight + c.pending[0].length <= inputMax && c.ws.readyState === WebSocket.OPEN) {
      const b = c.pending.shift();
      c.inflight += b.length;
      c.ws.send(b);
    }
  };
  const sendKeys = (b) => {
    const c = conn;
    if (!c || !c.ws || c.ws.readyState !== WebSocket.OPEN) return;
    for (let i = 0; i < b.length; i += 32 << 10) c.pending.push(b.subarray(i, i + (32 << 10)));
    pump(c);
  };
  const start = () => connect().catch((e) => { fail(String(e)); finish(conn); });
  term.onData((d) => {
    if (ended) {
      if (d === '\r') {
        term.write('\r\n');
        start();
      }
      return;
    }
    sendKeys(enc.encode(d));
  });
  term.onBinary((d) => {
    if (ended) return;
    const b = new Uint8Array(d.length);
    for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
    sendKeys(b);
  });
  term.onResize((sz) => {
    const ws = conn && conn.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: 'resize', cols: sz.cols, rows: sz.rows }));
  });

  // Find in the scrollback: Ctrl+Shift+F opens the find bar, which finds
  // as one types; Enter finds the match above, Shift+Enter the one below,
  // and Escape closes it. xterm.js's search add-on loads the first time.
  const findBar = document.getElementById('find');
  const findText = document.getElementById('find-text');
  const findState = document.getElementById('find-state');
  let searchAddon = null;
  const loadSearch = () => searchAddon || (searchAddon = new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = '/web/static/addon-search.js';
    s.onload = () => {
      const a = new SearchAddon.SearchAddon();
      term.loadAddon(a);
      resolve(a);
    };
    s.onerror = () => {
      searchAddon = null;
      reject(new Error('the search add-on did not load; reload the page'));
    };
    document.head.appendChild(s);
  }));
  const find = (down, incremental) => loadSearch().then((a) => {
    const q = findText.value;
    if (!q) {
      findState.textContent = '';
      return;
    }
    const found = down ? a.findNext(q, { incremental }) : a.findPrevious(q, { incremental });
    findState.textContent = found ? '' : 'not found';
  }, (e) => { findState.textContent = e.message; });
  const openFind = () => {
    findBar.hidden = false;
    findText.focus();
    findText.select();
    find(false, true);
  };
  const closeFind = () => {
    findBar.hidden = true;
    findState.textContent = '';
    term.focus();
  };
  findText.addEventListener('input', () => find(false, true));
  findText.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      find(ev.shiftKey, false);
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      closeFind();
    }
  });

  // The terminal's own keys, which xterm.js would send to the shell
  // otherwise. Copy and paste as desktop terminals do on Linux and
  // Windows: Ctrl+Shift+C and Ctrl+Insert copy the selection, Ctrl+Shift+V
  // and Shift+Insert paste (the browser's own paste, which xterm.js takes
  // as a paste). Ctrl+C interrupts, selection or not. On macOS, Cmd+C and
  // Cmd+V copy and paste through the browser already. Ctrl+Shift+F finds.
  const letter = (ev) => (/^[a-z]$/i.test(ev.key) ? ev.key.toLowerCase() : /^Key[A-Z]$/.test(ev.code) ? ev.code.slice(3).toLowerCase() : '');
  const only = (ev, ctrl, shift) => ev.ctrlKey === ctrl && ev.shiftKey === shift && !ev.altKey && !ev.metaKey;
  term.attachCustomKeyEventHandler((ev) => {
    if (only(ev, true, true) && letter(ev) === 'f') {
      ev.preventDefault();
      if (ev.type === 'keydown') openFind();
      return false;
    }
    const copy = (only(ev, true, true) && letter(ev) === 'c') || (only(ev, true, false) && ev.key === 'Insert');
    const paste = (only(ev, true, true) && letter(ev) === 'v') || (only(ev, false, true) && ev.key === 'Insert');
    if (copy) {
      // Not the browser's: Ctrl+Shift+C opens its inspector.
      ev.preventDefault();
      if (ev.type === 'keydown' && term.hasSelection() && navigator.clipboard) {
        navigator.clipboard.writeText(term.getSelection()).catch((e) => showNote('copy failed: ' + e.message));
      }
      return false;
    }
    return !paste;
  });

  // Leaving the page hangs up its shell: while one runs, the browser asks
  // first (once the page has had a key or a click, as browsers require).
  window.addEventListener('beforeunload', (ev) => {
    if (conn && !ended) {
      ev.preventDefault();
      ev.returnValue = '';
    }
  });

  window.addEventListener('resize', () => fit.fit());
  term.focus();
  start();
})();
