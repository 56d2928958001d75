// Plays one recording with asciinema-player. The cast comes from the
// edge's own origin with the session cookie: no credential in the URL.
(function () {
  'use strict';
  const url = document.querySelector('meta[name="tether-cast"]').content;
  const el = document.getElementById('player');
  const player = AsciinemaPlayer.create(url, el, {
    autoPlay: true, fit: 'both', idleTimeLimit: 2, preload: true, controls: true,
  });
  el.dataset.state = 'loading';
  player.addEventListener('playing', () => { el.dataset.state = 'playing'; });
  player.addEventListener('ended', () => { el.dataset.state = 'ended'; });
  window.tetherPlayer = player;
})();
