// The files page's upload: the file goes as the body of a PUT, with the
// session's CSRF token, and its progress, then the answer (the bytes and
// the SHA-256 the device checked) or the refusal, shows under the form.
// XMLHttpRequest, unlike fetch, reports an upload's progress; its
// requests are CORS-mode, so the browser sends the page's Origin, which
// the edge requires, whatever the page's referrer policy.
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
  function upload(f, q) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', '/web/upload?' + q);
      xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.upload.onprogress = (ev) => {
        if (ev.lengthComputable && ev.total > 0) {
          show('Uploading ' + f.name + ': ' + Math.floor(100 * ev.loaded / ev.total) + ' % of ' + ev.total + ' bytes…', false);
        }
      };
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error('the connection to the edge failed'));
      xhr.onabort = () => reject(new Error('aborted'));
      xhr.send(f);
    });
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
      const xhr = await upload(f, q);
      if (xhr.status !== 200) {
        show('Upload refused (' + xhr.status + '): ' + xhr.responseText.trim(), true);
        return;
      }
      const r = JSON.parse(xhr.responseText);
      show('Uploaded ' + f.name + ' (' + r.bytes + ' bytes) to ' + r.path + (r.sha256 ? ', SHA-256 ' + r.sha256 : '') + '.', false);
    } catch (e) {
      show('Upload failed: ' + e.message, true);
    } finally {
      button.disabled = false;
    }
  });
})();
