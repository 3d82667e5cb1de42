// Sluice's shared page script: the CSRF token every POST carries, and a
// helper for the pages' actions. Each page adds its own small script.
"use strict";
window.sluice = (function () {
  const meta = document.querySelector('meta[name="sluice-csrf"]');
  const csrf = meta ? meta.content : "";
  // post sends a form-encoded POST with the session's CSRF token and
  // returns the response.
  async function post(url, fields) {
    const body = new URLSearchParams(fields || {});
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Sluice-CSRF": csrf, "Content-Type": "application/x-www-form-urlencoded" },
      body: body,
    });
  }
  return { csrf: csrf, post: post };
})();
