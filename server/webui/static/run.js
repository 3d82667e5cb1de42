// The run page, live: polls the run's state (GET /runs/{id}/live, JSON
// with an ETag) and applies it to what the page shows: the graph's nodes,
// each stage's state, duration, runner, reason, approval and steps, the
// run's state and the actions that fit it. Text is set with textContent,
// never as HTML.
"use strict";
(function () {
  const root = document.getElementById("run");
  if (!root) return;
  const liveURL = root.dataset.live;
  const note = document.getElementById("live-note");
  // Elements by stage ID, found once (IDs may hold any character, so no
  // selectors are built from them).
  const nodes = new Map();
  const sections = new Map();
  root.querySelectorAll("svg [data-stage]").forEach(function (el) { nodes.set(el.dataset.stage, el); });
  root.querySelectorAll("section.stage[data-stage]").forEach(function (el) { sections.set(el.dataset.stage, el); });

  function setState(el, state) {
    if (!el) return;
    for (const c of Array.from(el.classList)) {
      if (c.startsWith("st-") && c !== "st-" + state) el.classList.remove(c);
    }
    el.classList.add("st-" + state);
  }
  function setText(el, text) {
    if (!el) return;
    text = text || "";
    if (el.textContent !== text) el.textContent = text;
    if (el.hasAttribute("data-field") && (el.dataset.field === "reason" || el.dataset.field === "decision" || el.dataset.field === "error")) {
      el.hidden = text === "";
    }
  }
  function field(scope, name) { return scope.querySelector('[data-field="' + name + '"]'); }
  // optional sets the text of a field the server leaves out when it is
  // empty, making it (make returns the new element, placed) when needed.
  function optional(scope, name, text, make) {
    let el = field(scope, name);
    if (!el && text) {
      el = make();
      el.dataset.field = name;
    }
    setText(el, text);
  }
  function after(ref, tag, cls) {
    const el = document.createElement(tag);
    el.className = cls;
    ref.after(el);
    return el;
  }

  function apply(run) {
    const badge = document.getElementById("run-state");
    setState(badge, run.state);
    setText(badge, run.state);
    setText(document.getElementById("run-duration"), run.duration);
    const err = document.getElementById("run-error");
    setText(err, run.error);
    err.hidden = !run.error;
    root.dataset.done = String(run.done);
    root.querySelectorAll("[data-when]").forEach(function (el) {
      el.hidden = (el.dataset.when === "done") !== run.done;
    });
    for (const st of run.stages) {
      setState(nodes.get(st.id), st.state);
      const sec = sections.get(st.id);
      if (!sec) continue;
      const b = field(sec, "state");
      setState(b, st.state);
      setText(b, st.state);
      setText(field(sec, "duration"), st.duration);
      setText(field(sec, "runner"), st.runner);
      const head = sec.querySelector("h2");
      optional(sec, "reason", st.reason, function () { return after(head, "p", "muted small"); });
      const box = sec.querySelector("[data-approval]");
      if (box) box.hidden = !(st.state === "waiting_approval" && !st.decision);
      optional(sec, "decision", st.decision, function () { return after(box || head, "p", "decision small"); });
      const rows = sec.querySelectorAll("table.steps tbody tr");
      st.steps.forEach(function (step, j) {
        const row = rows[j];
        if (!row) return;
        const sb = field(row, "state");
        setState(sb, step.state);
        setText(sb, step.state);
        setText(field(row, "attempt"), step.attempt ? String(step.attempt) : "");
        setText(field(row, "duration"), step.duration);
        optional(row, "error", step.error, function () {
          const el = document.createElement("div");
          el.className = "error small";
          row.cells[0].append(el);
          return el;
        });
      });
    }
  }

  let failures = 0;
  async function poll() {
    let done = root.dataset.done === "true";
    if (!document.hidden) {
      try {
        const resp = await fetch(liveURL, { credentials: "same-origin", cache: "no-cache", headers: { "Accept": "application/json" } });
        const type = resp.headers.get("Content-Type") || "";
        if (resp.ok && type.startsWith("application/json")) {
          const run = await resp.json();
          apply(run);
          done = run.done;
          failures = 0;
          note.textContent = "";
        } else if (resp.redirected || resp.status === 401) {
          note.textContent = "Your session has ended: reload the page to sign in again.";
          return;
        } else {
          failures++;
        }
      } catch (e) {
        failures++;
      }
      if (failures > 2) note.textContent = "Lost touch with the server; retrying…";
    }
    setTimeout(poll, done ? 10000 : 1500);
  }
  // A page opened at a stage shows it.
  const focus = root.querySelector("section.stage.focus");
  if (focus && !location.hash) focus.scrollIntoView({ block: "start" });
  setTimeout(poll, 1000);
})();
