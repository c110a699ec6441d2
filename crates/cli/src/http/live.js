// The live part of the page: polls /api/stats every second and paints the table,
// the stages' count lines and the dead-letter node (with /api/dead-letters' top errors
// and redrive commands when its count changes); starts everything on load.
"use strict";

const fmt = n => (typeof n === "number" ? n.toLocaleString("en-US") : String(n));
// Short counts for the drawing (the table has the exact ones).
function short(n) {
  if (n < 10000) return fmt(n);
  for (const [d, u] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]])
    if (n >= d) return (n / d).toFixed(n / d < 100 ? 1 : 0) + u;
  return fmt(n);
}
function fmtRate(r) {
  if (typeof r !== "number") return "–";
  return r >= 100 ? fmt(Math.round(r)) : r.toFixed(1);
}
const plural = (n, one, many) => `${fmt(n)} ${n === 1 ? one : many}`;

async function refresh() {
  let s;
  try {
    const r = await fetch("/api/stats", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    s = await r.json();
  } catch (e) {
    const c = document.getElementById("conn");
    c.textContent = "not reachable — is millrace run still running?";
    c.className = "meta down";
    return;
  }
  lastStats = s;
  paint(s);
  refreshDeadLetters(s.dead_letter.records);
}

// /api/dead-letters, read again whenever the dead-letter topic's count moves (or the
// server had not read all of it yet); one request at a time.
let deadLetters = null, deadLettersAsked = -1, deadLettersBusy = false;
async function refreshDeadLetters(records) {
  const behind = deadLetters && !deadLetters.complete;
  if (deadLettersBusy || (records === deadLettersAsked && !behind)) return;
  deadLettersBusy = true;
  try {
    const r = await fetch("/api/dead-letters", { cache: "no-store" });
    if (r.ok) {
      deadLetters = await r.json();
      deadLettersAsked = records;
      paintDeadLetters(deadLetters);
    }
  } catch (e) {
    // The stats poll reports a server that is gone.
  } finally {
    deadLettersBusy = false;
  }
}

// The dead-letter panel under the drawing, and the node's tooltip: each stage's top
// errors and the command that sends its dead letters back.
function paintDeadLetters(d) {
  const panel = document.getElementById("dead-letters");
  const list = document.getElementById("dlq-stages");
  list.innerHTML = "";
  panel.hidden = !d.stages.length;
  const tip = [`dead-letter topic ${d.topic}: records no stage could process, with the reason in their headers`];
  for (const st of d.stages) {
    const box = el2("div", { class: "dl-stage", "data-dl-stage": st.stage, "data-count": st.records }, list);
    const head = el2("div", {}, box);
    el2("b", {}, head).textContent = st.stage;
    const errs = st.errors === 1 ? "1 error" : `${fmt(st.errors)} errors`;
    head.append(` · ${plural(st.records, "dead letter", "dead letters")} · ${errs}` +
      (st.errors > st.top.length ? `, the ${st.top.length} most frequent:` : ":"));
    const ol = el2("ol", {}, box);
    tip.push(`${st.stage}: ${plural(st.records, "dead letter", "dead letters")}`);
    for (const e of st.top) {
      const li = el2("li", { "data-count": e.records, title: `last seen ${e.last}` }, ol);
      el2("span", { class: "n" }, li).textContent = `${fmt(e.records)} ×`;
      el2("span", { class: "err" }, li).textContent = e.error;
      if (e.command) li.setAttribute("data-error-command", e.command);
      tip.push(`  ${fmt(e.records)} × ${e.error.length > 80 ? e.error.slice(0, 80) + "…" : e.error}`);
    }
    if (st.command) {
      const row = el2("div", { class: "cmd" }, box);
      const code = el2("code", { "data-command": st.stage }, row);
      code.textContent = st.command;
      const b = el2("button", { type: "button", "data-copy": st.stage, title: "copy the command" }, row);
      b.textContent = "copy";
      b.addEventListener("click", () => copyText(code, b));
      tip.push(`  send back: ${st.command}`);
    } else {
      el2("div", { class: "refusal" }, box).textContent = st.refusal;
      tip.push(`  ${st.refusal}`);
    }
  }
  if (d.unnamed) tip.push(`${plural(d.unnamed, "record names", "records name")} no stage (not written by a stage)`);
  const g = document.querySelector("g.dlq");
  if (g) g.querySelector("title").textContent = tip.join("\n");
}

// Copies a command: the clipboard where the page may write it, else the text selected
// for Ctrl-C.
async function copyText(code, button) {
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "copied";
  } catch (e) {
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    button.textContent = "selected: Ctrl-C";
  }
  setTimeout(() => { button.textContent = "copy"; }, 2000);
}

function paint(s) {
  const conn = document.getElementById("conn");
  conn.textContent = "live · " + new Date().toLocaleTimeString();
  conn.className = "meta";
  document.getElementById("backend").textContent = "backend: " + s.backend;
  const dlq = document.getElementById("dlq");
  const bad = s.dead_letter.records;
  dlq.textContent = `dead letter ${s.dead_letter.topic}: ${plural(bad, "record", "records")}`;
  dlq.setAttribute("data-records", bad);
  dlq.className = "meta" + (bad > 0 ? " bad" : "");
  paintDeadLetter(s);

  const byName = new Map(graph.stages.map(st => [st.name, st]));
  const window_ = `over the last ${Math.max(1, Math.round(s.rate_window_seconds || 0))} s`;
  const body = document.querySelector("#stats tbody");
  body.innerHTML = "";
  for (const st of s.stages) {
    const c = st.counters;
    const v = byName.has(st.name) ? variant(byName.get(st.name)) : st.kind;
    const rate = st.rates ? st.rates.records_in : null;
    const tr = el2("tr", { "data-stage": st.name }, body);
    const cells = [
      ["stage", st.name], ["pattern", variantLabel(v)], ["in", c.records_in], ["out", c.out],
      ["filtered", c.filtered], ["dead_lettered", c.dead_lettered], ["in_flight", c.in_flight],
      ["emitted", c.emitted], ["rate", rate], ["lag", st.lag],
    ];
    const named = { out: "out", filtered: "filtered", in_flight: "inFlight", emitted: "emitted" };
    for (const [col, val] of cells) {
      const td = el2("td", { "data-col": col }, tr);
      if (typeof val === "number") td.setAttribute("data-value", val);
      td.textContent = col === "rate" ? fmtRate(val) : fmt(val);
      if (named[col] && TERMS[v] && TERMS[v][named[col]]) {
        const [word, meaning] = TERMS[v][named[col]];
        td.setAttribute("data-term", word);
        td.title = `${word}: ${meaning}`;
      }
      if (col === "rate") td.title = `records read per second, ${window_}`;
      if (col === "dead_lettered" && val > 0) td.className = "bad";
      else if (col === "lag" && val > 0) td.className = "warn";
      else if (val === 0 || (col === "rate" && !val)) td.className = "zero";
    }
    const b = st.barrier;
    const bar = el2("td", { "data-col": "barrier" }, tr);
    if (b) {
      bar.setAttribute("data-batch", b.batch);
      bar.setAttribute("data-done", b.done);
      bar.setAttribute("data-of", b.of);
      bar.setAttribute("data-released", b.released);
      bar.textContent = `batch ${b.batch}: ${b.done}/${b.of} · ${fmt(b.released)} released`;
      if (b.done < b.of) bar.className = "warn";
    } else {
      bar.textContent = "–";
      bar.className = "zero";
    }
    paintStage(st, v, rate);
  }
}

// A stage's node: its rate and lag, then its counts in its pattern's words.
function paintStage(st, v, rate) {
  const g = document.querySelector(`g.stage[data-stage="${CSS.escape(st.name)}"]`);
  if (!g) return;
  const c = st.counters, b = st.barrier;
  const w = +g.querySelector(".box").getAttribute("width") - 20;
  setText(g.querySelector('[data-line="rate"]'), `${fmtRate(rate)} /s in · lag ${short(st.lag)}`, w);
  const counts = [`in ${short(c.records_in)}`, `${term(v, "out")[0]} ${short(c.out)}`];
  if (c.emitted !== c.out) counts.push(`${term(v, "emitted")[0]} ${short(c.emitted)}`);
  setText(g.querySelector('[data-line="counts"]'), counts.join(" · "), w);
  const more = [];
  if (c.filtered) more.push(`${term(v, "filtered")[0]} ${short(c.filtered)}`);
  if (c.in_flight) more.push(`${term(v, "inFlight")[0]} ${short(c.in_flight)}`);
  if (c.dead_lettered) more.push(`✕ ${short(c.dead_lettered)} dead`);
  const line = g.querySelector('[data-line="more"]');
  const icon = g.querySelector(".barrier-icon");
  if (icon) icon.remove();
  if (b) {
    more.unshift(`${b.done}/${b.of} of batch ${b.batch}`);
    hourglass(g, 10, 88 - 8.5);
    line.setAttribute("x", 22);
  } else line.setAttribute("x", 10);
  setText(line, more.join(" · "), w - (b ? 12 : 0));
  line.setAttribute("class", "stat" + (c.dead_lettered > 0 ? " bad" : b && b.done < b.of ? " warn" : ""));
  g.classList.toggle("dead", c.dead_lettered > 0);
}

// The dead-letter node: what the topic holds, and which stages of this run sent
// records to it, most first.
function paintDeadLetter(s) {
  const g = document.querySelector("g.dlq");
  if (!g) return;
  const bad = s.dead_letter.records;
  g.setAttribute("data-records", bad);
  const w = +g.querySelector("path.body").getBBox().width - 20;
  const sub = g.querySelector("[data-dlq-label]");
  setText(sub, plural(bad, "record", "records"), w);
  sub.setAttribute("class", "sub" + (bad > 0 ? " bad" : ""));
  const senders = s.stages.filter(st => st.counters.dead_lettered > 0)
    .sort((a, b) => b.counters.dead_lettered - a.counters.dead_lettered);
  const lines = [...g.querySelectorAll("[data-dlq-line]")];
  lines.forEach(t => { t.textContent = ""; t.removeAttribute("data-dlq-stage"); t.removeAttribute("data-count"); });
  if (!senders.length) {
    lines[0].textContent = "none from this run";
    return;
  }
  const shown = senders.length > lines.length ? lines.length - 1 : senders.length;
  senders.slice(0, shown).forEach((st, i) => {
    lines[i].setAttribute("data-dlq-stage", st.name);
    lines[i].setAttribute("data-count", st.counters.dead_lettered);
    setText(lines[i], `✕ ${short(st.counters.dead_lettered)} from ${st.name}`, w);
  });
  if (shown < senders.length) {
    const rest = senders.slice(shown).reduce((n, st) => n + st.counters.dead_lettered, 0);
    setText(lines[shown], `✕ ${short(rest)} from ${senders.length - shown} more (see the table)`, w);
  }
}

function el2(name, attrs, parent) {
  const e = document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent.appendChild(e);
  return e;
}

(async () => {
  try {
    graph = await (await fetch("/api/graph", { cache: "no-store" })).json();
  } catch (e) {
    document.getElementById("conn").textContent = "cannot read /api/graph";
    document.getElementById("conn").className = "meta down";
    return;
  }
  document.getElementById("title").textContent = "millrace · " + graph.pipeline;
  document.title = graph.pipeline + " · millrace";
  draw();
  describePatterns();
  document.getElementById("fit").addEventListener("click", () => {
    fitAll = !fitAll;
    scaleTo(+document.getElementById("dag").dataset.fitScale);
  });
  document.getElementById("dag").addEventListener("click", ev => {
    if (ev.target.closest && ev.target.closest("g.dlq") && deadLetters && deadLetters.stages.length)
      document.getElementById("dead-letters").scrollIntoView({ behavior: "smooth", block: "start" });
  });
  let resizing = null;
  window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(draw, 150); });
  await refresh();
  document.body.setAttribute("data-ready", "1");
  setInterval(refresh, 1000);
})();
