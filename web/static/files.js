// The files page's upload: the file goes as the body of a PUT, with the
// session's CSRF token, and the answer (the bytes and the SHA-256 the
// device checked) or the refusal is shown under the form. fetch is asked
// for a same-origin referrer so that it sends the page's Origin, which the
// edge requires (the pages' referrer policy is no-referrer).
(function () {
  'use strict';
  const form = document.getElementById('upload');
  const file = document.getElementById('upload-file');
  const dest = document.getElementById('upload-path');
  const state = document.getElementById('upload-state');
  const csrf = document.querySelector('meta[name="tether-csrf"]').content;
  function show(text, error) {
    state.textContent = text;
    state.className = error ? 'error' : '';
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f) {
      return;
    }
    const q = new URLSearchParams({ device: form.dataset.device, path: dest.value.trim(), name: f.name });
    const button = form.querySelector('button');
    button.disabled = true;
    show('Uploading ' + f.name + ' (' + f.size + ' bytes)…', false);
    try {
      const resp = await fetch('/web/upload?' + q, {
        method: 'PUT', body: f, headers: { 'X-CSRF-Token': csrf },
        credentials: 'same-origin', referrerPolicy: 'same-origin',
      });
      const text = await resp.text();
      if (!resp.ok) {
        show('Upload refused (' + resp.status + '): ' + text.trim(), true);
        return;
      }
      const r = JSON.parse(text);
      show('Uploaded ' + f.name + ' (' + r.bytes + ' bytes) to ' + r.path + (r.sha256 ? ', SHA-256 ' + r.sha256 : '') + '.', false);
    } catch (e) {
      show('Upload failed: ' + e.message, true);
    } finally {
      button.disabled = false;
    }
  });
})();
