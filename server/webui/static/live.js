// Keeps a server-rendered table current: an element with data-live is
// refilled every few seconds with the fragment that URL returns (HTML the
// server rendered and escaped), while the tab is visible.
"use strict";
(function () {
  const regions = document.querySelectorAll("[data-live]");
  if (regions.length === 0) return;
  const every = 4000;
  async function refresh(el) {
    try {
      const resp = await fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (resp.ok && !resp.redirected) {
        const html = await resp.text();
        if (html !== el.dataset.last) {
          el.innerHTML = html;
          el.dataset.last = html;
        }
      }
    } catch (e) {
      // The server is away for a moment: try again on the next tick.
    }
  }
  function tick() {
    if (!document.hidden) regions.forEach(refresh);
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
})();
