// The floor of bench.mjs's keystrokes: the terminal page's own work and
// nothing of Tether's. The same page layout, xterm.js, addons and options
// as web/static/term.js, keystrokes out and output in on a WebSocket as
// binary messages, output acknowledged as term.js does; the server
// (e2e's floor, in Go, on loopback with TLS) echoes each keystroke at
// once, with no edge, agent or PTY behind it.
(function () {
  'use strict';
  const term = new Terminal({ cursorBlink: false, scrollback: 5000, fontFamily: 'monospace' });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new WebLinksAddon.WebLinksAddon(() => {}));
  term.open(document.getElementById('terminal'));
  fit.fit();
  window.tether = { term: term, exited: null };
  const enc = new TextEncoder();
  const ws = new WebSocket('wss://' + location.host + '/ws');
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { document.getElementById('state').textContent = 'connected'; };
  let unacked = 0;
  let ackIdle = 0;
  const ack = () => {
    ackIdle = 0;
    if (unacked > 0 && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: 'ack', n: unacked }));
    unacked = 0;
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') return;
    const b = new Uint8Array(ev.data);
    term.write(b, () => {
      unacked += b.length;
      if (!ackIdle) ackIdle = requestIdleCallback(ack, { timeout: 100 });
    });
  };
  term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
  window.addEventListener('resize', () => fit.fit());
  term.focus();
})();
