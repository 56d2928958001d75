// Sends the sign-in and sign-out forms with fetch. The pages' referrer
// policy is no-referrer, under which a browser sends "Origin: null" with a
// plain form POST; the edge accepts a state-changing request only with its
// own origin, which fetch sends when asked for a same-origin referrer.
(function () {
  'use strict';
  function bind() {
    document.querySelectorAll('form[method="post"]').forEach((form) => {
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const resp = await fetch(form.action, {
          method: 'POST', body: new URLSearchParams(new FormData(form)),
          credentials: 'same-origin', referrerPolicy: 'same-origin',
        });
        if (resp.redirected) {
          location.assign(resp.url);
          return;
        }
        // An answer that is not a redirect is a page to show: the form
        // again with what went wrong; or a refusal in plain text, to
        // alert. A body can be read once.
        const text = await resp.text();
        const doc = new DOMParser().parseFromString(text, 'text/html');
        if (doc.body && doc.body.children.length) {
          document.body.replaceWith(document.importNode(doc.body, true));
          bind();
        } else {
          alert(text || ('the edge answered ' + resp.status));
        }
      });
    });
  }
  bind();
})();
