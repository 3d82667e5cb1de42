// The log view (templates/log.html): one step's log, live.
//
// The lines the log has when the page opens come in one response (the
// backlog), the rest as server-sent events, as server/weblog.go describes:
// each one the HTML of a line that the server escaped and coloured
// (package ansi), with its line number as the event's id, so that the
// EventSource resumes where it was after a reconnect. A line still being
// written comes as a "partial" event and shows until the complete line
// replaces it.
//
// Only the rows in view, and a few around them, exist in the page: every
// row is LINE_HEIGHT high, a sizer gives the box the height of all of
// them, and the rows are redrawn (at most once a frame) when the box
// scrolls or lines come. A log of 100,000 lines costs its strings and no
// more DOM than one of 100.
"use strict";
(function () {
  const page = document.getElementById("log-page");
  if (!page) return;
  const LINE_HEIGHT = 18; // px: .log-row in log.css
  const OVERSCAN = 30; // rows drawn above and below the view
  const MAX_RETRY = 30000; // ms between reconnects, at most

  const view = document.getElementById("log-view");
  const sizer = view.querySelector(".log-sizer");
  const rows = document.getElementById("log-rows");
  const stateEl = document.getElementById("log-state");
  const countEl = document.getElementById("log-count");
  const followBtn = document.getElementById("log-follow");
  const topBtn = document.getElementById("log-top");

  const lines = []; // lines[i] is the HTML of line i+1, complete
  let partial = null; // the HTML of the line being written
  let done = false; // the log is complete: no more lines
  let follow = true; // keep the newest line in view
  let sel = null; // highlighted lines {from, to, anchor}, from the hash
  let seek = 0; // a line to scroll to once it has come
  let frame = 0; // a redraw is due
  let drawn = ""; // what the rows show, to skip redraws that change nothing
  let firstShown = false;
  let endShown = false;

  // The server escapes every line; this only guards against a server that
  // did not: a line with any tag but package ansi's spans shows as text.
  const onlySpans = /<(?!span(?: (?:class|data-fg|data-bg)="[^"<>]*")*>|\/span>)/;
  function checked(html) {
    if (!onlySpans.test(html)) return html;
    const t = document.createElement("span");
    t.textContent = html;
    return t.innerHTML;
  }

  function count() {
    return lines.length + (partial === null ? 0 : 1);
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function draw() {
    frame = 0;
    const n = count();
    sizer.style.height = n * LINE_HEIGHT + "px";
    if (seek && (lines.length >= seek || done)) {
      const target = Math.min(seek, Math.max(n, 1));
      view.scrollTop = Math.max(0, (target - 1) * LINE_HEIGHT - Math.floor(view.clientHeight / 3));
      seek = 0;
    } else if (follow && view.scrollTop + view.clientHeight < view.scrollHeight) {
      view.scrollTop = view.scrollHeight;
    }
    const top = view.scrollTop;
    const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + view.clientHeight) / LINE_HEIGHT) + OVERSCAN);
    countEl.textContent = lines.length.toLocaleString("en") + (lines.length === 1 ? " line" : " lines");
    const key = first + ":" + last + ":" + Math.min(lines.length, last) + ":" +
      (sel ? sel.from + "-" + sel.to : "") + ":" + (partial !== null && last > lines.length ? partial : "");
    if (key !== drawn) {
      drawn = key;
      drawRows(first, last);
    }
    // For the speed figures (docs/benchmarks.md): when the first lines and
    // the log's end were first on the screen.
    if (!firstShown && lines.length > 0) {
      firstShown = true;
      performance.mark("sluice-log-first");
    }
    if (!endShown && done && last === n && n > 0 && top + view.clientHeight >= n * LINE_HEIGHT - 1) {
      endShown = true;
      performance.mark("sluice-log-end");
    }
  }

  // drawRows makes the rows first to last (from 0) the box's content.
  function drawRows(first, last) {
    let html = "";
    for (let i = first; i < last; i++) {
      const k = i + 1;
      let cls = "log-row";
      if (i >= lines.length) cls += " partial";
      if (sel && k >= sel.from && k <= sel.to) cls += " hl";
      html += '<div class="' + cls + '" data-line="' + k + '"><a class="log-n" href="#L' + k +
        '" data-n="' + k + '"></a><span class="log-t">' + (i < lines.length ? lines[i] : partial) + "</span></div>";
    }
    rows.style.transform = "translateY(" + first * LINE_HEIGHT + "px)";
    rows.innerHTML = html;
    // Colours beyond the 16 of the style sheet come as hex digits: the
    // page's Content-Security-Policy ignores style attributes, not styles
    // set from here.
    for (const el of rows.querySelectorAll("[data-fg],[data-bg]")) {
      if (hex.test(el.dataset.fg)) el.style.color = "#" + el.dataset.fg;
      if (hex.test(el.dataset.bg)) el.style.backgroundColor = "#" + el.dataset.bg;
    }
  }
  const hex = /^[0-9a-f]{6}$/;

  function setState(name, text) {
    stateEl.className = "log-state " + name;
    stateEl.textContent = text;
  }

  function setFollow(on) {
    follow = on;
    followBtn.setAttribute("aria-pressed", String(on));
  }

  // The reader scrolling up (wheel, keys, touch, the scrollbar) stops
  // following; reaching the bottom follows again. What moves the view is
  // not enough to tell: a smooth scroll still under way moves it back
  // after the view jumped to a new line.
  let upAt = -1e9; // when the reader last scrolled up
  function up() {
    upAt = performance.now();
    setFollow(false);
  }
  function atBottom() {
    if (view.scrollTop + view.clientHeight < view.scrollHeight - 2) return;
    const wait = upAt + 300 - performance.now();
    if (wait > 0) setTimeout(atBottom, wait + 1);
    else setFollow(true);
  }
  view.addEventListener("scroll", function () {
    atBottom();
    schedule();
  }, { passive: true });
  view.addEventListener("wheel", function (e) {
    if (e.deltaY < 0) up();
  }, { passive: true });
  view.addEventListener("keydown", function (e) {
    if (e.key === "ArrowUp" || e.key === "PageUp" || e.key === "Home" || (e.key === " " && e.shiftKey)) up();
  });
  view.addEventListener("pointerdown", function (e) {
    if (e.target === view || e.button === 1) up(); // the scrollbar; autoscroll
  });
  let touchY = 0;
  view.addEventListener("touchstart", function (e) {
    touchY = e.touches[0].clientY;
  }, { passive: true });
  view.addEventListener("touchmove", function (e) {
    if (e.touches[0].clientY > touchY) up();
    touchY = e.touches[0].clientY;
  }, { passive: true });
  followBtn.addEventListener("click", function () {
    setFollow(!follow);
    if (follow) seek = 0;
    schedule();
  });
  topBtn.addEventListener("click", function () {
    up();
    view.scrollTop = 0;
  });

  // Line anchors: #L12 and #L10-L20. A click on a line's number selects
  // it, a shift-click the lines from the last one clicked.
  function parseHash(h) {
    const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(h);
    if (!m) return null;
    let from = parseInt(m[1], 10);
    let to = m[2] ? parseInt(m[2], 10) : from;
    if (from > to) [from, to] = [to, from];
    if (from < 1) return null;
    return { from: from, to: to, anchor: from };
  }
  function hashOf(s) {
    return s.from === s.to ? "#L" + s.from : "#L" + s.from + "-L" + s.to;
  }
  function goToHash() {
    const s = parseHash(location.hash);
    if (!s) return;
    sel = s;
    seek = s.from;
    setFollow(false);
    schedule();
  }
  rows.addEventListener("mousedown", function (e) {
    // A shift-click selects lines, not text.
    if (e.shiftKey && e.target.closest("a.log-n")) e.preventDefault();
  });
  rows.addEventListener("click", function (e) {
    const a = e.target.closest("a.log-n");
    if (!a) return;
    e.preventDefault();
    const k = parseInt(a.dataset.n, 10);
    if (e.shiftKey && sel) {
      sel = { from: Math.min(sel.anchor, k), to: Math.max(sel.anchor, k), anchor: sel.anchor };
    } else {
      sel = { from: k, to: k, anchor: k };
    }
    history.replaceState(null, "", hashOf(sel));
    setFollow(false);
    schedule();
  });
  window.addEventListener("hashchange", goToHash);

  // The stream. The EventSource reconnects by itself after a cut and sends
  // the last line's number; a stream that failed for good (the server
  // refused it) is started again, after a growing pause, from the lines
  // the page has, unless the session has ended.
  let retry = 1000;
  let state = "";
  function live() {
    if (state !== "live" && !done) {
      state = "live";
      setState("live", "live");
    }
  }
  function connect() {
    const url = page.dataset.events + (lines.length > 0 ? "&after=" + lines.length : "");
    const es = new EventSource(url);
    es.onopen = function () {
      retry = 1000;
      live();
    };
    es.onmessage = function (e) {
      const k = parseInt(e.lastEventId, 10);
      if (k === lines.length + 1) {
        lines.push(checked(e.data));
        partial = null;
      } else if (!(k <= lines.length)) {
        // A gap, which the server never makes: ask again from here.
        es.close();
        reconnect();
        return;
      }
      live();
      schedule();
    };
    es.addEventListener("partial", function (e) {
      partial = checked(e.data);
      live();
      schedule();
    });
    es.addEventListener("waiting", function () {
      state = "waiting";
      setState("waiting", "waiting for the step to start");
    });
    es.addEventListener("end", function () {
      es.close();
      done = true;
      partial = null;
      state = "complete";
      setState("complete", "complete");
      schedule();
    });
    es.onerror = function () {
      if (done) return;
      state = "reconnecting";
      setState("reconnecting", "reconnecting…");
      if (es.readyState === EventSource.CLOSED) reconnect();
    };
  }
  let pending = false;
  async function reconnect() {
    if (pending) return;
    pending = true;
    try {
      const res = await fetch(page.dataset.lines, { method: "HEAD", credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) {
        signedOut();
        return;
      }
    } catch (err) {
      // The server is away: again later.
    }
    setTimeout(function () {
      pending = false;
      connect();
    }, retry);
    retry = Math.min(retry * 2, MAX_RETRY);
  }
  function signedOut() {
    state = "signed-out";
    setState("reconnecting", "");
    const a = document.createElement("a");
    a.href = "/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash);
    a.textContent = "signed out: sign in again";
    stateEl.appendChild(a);
  }

  // The backlog, drawn as it comes; then the events from the line after
  // it. A backlog that fails is no loss: the events carry every line.
  async function start() {
    try {
      const res = await fetch(page.dataset.lines, { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) throw new Error("backlog: HTTP " + res.status);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let rest = "";
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        const parts = (rest + value).split("\n");
        rest = parts.pop();
        for (const p of parts) lines.push(checked(p));
        schedule();
      }
    } catch (err) {
      console.warn("sluice: reading the log's backlog:", err);
    }
    connect();
  }

  // The box fills the window below the page's head.
  function fit() {
    const top = view.getBoundingClientRect().top + window.scrollY;
    view.style.height = Math.max(200, window.innerHeight - top - 20) + "px";
    schedule();
  }
  window.addEventListener("resize", fit);

  // For tests and the curious: what the view holds.
  window.sluiceLog = {
    lines: function () { return lines.length; },
    done: function () { return done; },
    following: function () { return follow; },
    text: function (k) {
      const html = k === lines.length + 1 && partial !== null ? partial : lines[k - 1];
      if (html === undefined) return null;
      const t = document.createElement("template");
      t.innerHTML = html;
      return t.content.textContent;
    },
  };

  fit();
  goToHash();
  start();
})();
