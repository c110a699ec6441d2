// The drawing of the pipeline: a layered layout of topics and stages, cut into
// bands so that the whole pipeline fits the window, and the nodes' shapes. The
// live numbers are painted in by live.js.
"use strict";

const NS = "http://www.w3.org/2000/svg";
// Node sizes: widths fit the text (between the bounds), so a long chain stays as
// narrow as its names allow; longer names are shortened with an ellipsis.
const STAGE_H = 96, TOPIC_H = 46, DLQ_H = 92;
const GAP_X = 44, GAP_Y = 16, BAND_GAP = 44, PAD = 22;
const STAGE_W = [160, 232], TOPIC_W = [100, 190];
// At most this many bands: beyond it a chain reads better scrolled than cut up.
const MAX_BANDS = 8;
let fitAll = true;
let graph = null, L = null, lastStats = null;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
// Text that fits `width`: shortened with an ellipsis, the full string as a tooltip.
function text(parent, x, y, cls, s, width) {
  const t = el("text", { x, y, class: cls }, parent);
  setText(t, s, width);
  return t;
}
function setText(t, s, width) {
  t.textContent = s;
  if (width && t.getComputedTextLength && t.getComputedTextLength() > width) {
    let n = s.length;
    while (n > 1 && t.getComputedTextLength() > width) t.textContent = s.slice(0, --n) + "…";
    el("title", {}, t).textContent = s;
  }
}
// Layered drawing: each node's column is its longest path from a source (a source
// topic sits just before its first reader), nodes in a column are ordered to cut
// crossings (barycenter sweeps), and an edge longer than one column passes through
// invisible waypoints so it never runs through a box. Where the columns go on the
// page (bands) is decided by place().
function layout(g) {
  const nodes = new Map();
  const add = (id, n) => { if (!nodes.has(id)) nodes.set(id, Object.assign({ id, ins: [], outs: [] }, n)); };
  for (const t of g.topics) if (t.role !== "dead_letter")
    add("topic:" + t.name, { type: "topic", name: t.name, partitions: t.partitions, role: t.role, h: TOPIC_H });
  for (const s of g.stages)
    add("stage:" + s.name, { type: "stage", name: s.name, pattern: s.kind, variant: variant(s), detail: s.detail, h: STAGE_H });
  for (const n of nodes.values()) n.w = nodeWidth(n);
  const edges = [];
  for (const e of g.edges) {
    for (const id of [e.from, e.to]) if (!nodes.has(id)) {
      const [type, name] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
      const n = type === "topic" ? { type, name, partitions: "?", role: "internal", h: TOPIC_H }
                                 : { type, name, pattern: "?", variant: "?", h: STAGE_H };
      add(id, n);
      nodes.get(id).w = nodeWidth(nodes.get(id));
    }
    edges.push({ from: e.from, to: e.to, label: e.label || null });
    nodes.get(e.from).outs.push(e.to); nodes.get(e.to).ins.push(e.from);
  }
  const col = new Map();
  const depth = (id, seen) => {
    if (col.has(id)) return col.get(id);
    if (seen.has(id)) return 0; // a cycle cannot pass the planner; guard anyway
    seen.add(id);
    const n = nodes.get(id);
    const d = n.ins.length ? Math.max(...n.ins.map(i => depth(i, seen))) + 1 : 0;
    col.set(id, d);
    return d;
  };
  for (const id of nodes.keys()) depth(id, new Set());
  for (const [id, n] of nodes)
    if (!n.ins.length && n.outs.length) col.set(id, Math.max(0, Math.min(...n.outs.map(o => col.get(o))) - 1));
  // Waypoints for long edges.
  const segs = [];
  let vid = 0;
  for (const e of edges) {
    let prev = e.from;
    const chain = [e.from];
    for (let c = col.get(e.from) + 1; c < col.get(e.to); c++) {
      const id = "v" + vid++;
      nodes.set(id, { id, type: "virtual", ins: [], outs: [], w: 0, h: 10 });
      col.set(id, c);
      segs.push([prev, id]);
      chain.push(id);
      prev = id;
    }
    segs.push([prev, e.to]);
    chain.push(e.to);
    e.chain = chain;
  }
  const up = new Map(), down = new Map();
  for (const id of nodes.keys()) { up.set(id, []); down.set(id, []); }
  for (const [a, b] of segs) { down.get(a).push(b); up.get(b).push(a); }
  const cols = [];
  for (const [id, c] of col) (cols[c] = cols[c] || []).push(id);
  for (let c = 0; c < cols.length; c++) cols[c] = cols[c] || [];
  const order = new Map();
  cols.forEach(ids => ids.forEach((id, i) => order.set(id, i)));
  const sweep = (range, nb) => {
    for (const c of range) {
      const bary = id => { const ns = nb.get(id); return ns.length ? ns.reduce((s, x) => s + order.get(x), 0) / ns.length : order.get(id); };
      cols[c].sort((a, b) => bary(a) - bary(b));
      cols[c].forEach((id, i) => order.set(id, i));
    }
  };
  const fwd = [...cols.keys()].slice(1), back = [...cols.keys()].reverse().slice(1);
  for (let i = 0; i < 6; i++) { sweep(fwd, up); sweep(back, down); }
  sweep(fwd, up);
  const colW = cols.map(ids => Math.max(24, ...ids.map(id => nodes.get(id).w)));
  const colH = cols.map(ids => ids.reduce((s, id) => s + nodes.get(id).h + GAP_Y, -GAP_Y));
  return { nodes, edges, cols, colW, colH };
}

// Columns cut into `bands` runs of about equal width, in order.
function splitColumns(colW, bands) {
  const total = colW.reduce((s, w) => s + w + GAP_X, -GAP_X);
  const target = total / bands;
  const runs = [];
  let start = 0, width = -GAP_X;
  for (let c = 0; c < colW.length; c++) {
    const wider = width + GAP_X + colW[c];
    if (c > start && runs.length < bands - 1 && wider > target && wider - target > target - width) {
      runs.push([start, c - 1]);
      start = c;
      width = colW[c];
    } else width = wider;
  }
  runs.push([start, colW.length - 1]);
  return runs;
}

// Coordinates for one way of cutting the columns into bands: bands stacked top to
// bottom, columns centred vertically in their band, and the dead-letter topic beside
// the last band when it has room, else under it.
function place(L, runs, dlNode) {
  const colX = [], colY = [], bandOf = [];
  const bands = [];
  let y = PAD, W = 0;
  runs.forEach(([c0, c1], b) => {
    let x = PAD, h = 0;
    for (let c = c0; c <= c1; c++) {
      colX[c] = x; bandOf[c] = b;
      x += L.colW[c] + GAP_X;
      h = Math.max(h, L.colH[c]);
    }
    for (let c = c0; c <= c1; c++) colY[c] = y + (h - L.colH[c]) / 2;
    bands.push({ y, h, right: x - GAP_X });
    W = Math.max(W, x - GAP_X + PAD);
    y += h + BAND_GAP;
  });
  let H = y - BAND_GAP + PAD;
  let dlq = null;
  if (dlNode) {
    const last = bands[bands.length - 1];
    W = Math.max(W, dlNode.w + 2 * PAD);
    if (last && last.right + GAP_X + dlNode.w + PAD <= W) {
      const top = last.y + Math.max(0, (last.h - DLQ_H) / 2);
      dlq = { x: W - PAD - dlNode.w, y: top };
      H = Math.max(H, top + DLQ_H + PAD);
    } else {
      dlq = { x: W - PAD - dlNode.w, y: H - PAD + GAP_Y };
      H += GAP_Y + DLQ_H;
    }
  }
  const pos = new Map();
  L.cols.forEach((ids, c) => {
    let yy = colY[c];
    for (const id of ids) {
      const n = L.nodes.get(id);
      pos.set(id, { x: colX[c] + (L.colW[c] - n.w) / 2, y: yy, cx: colX[c] + L.colW[c] / 2, cy: yy + n.h / 2, c });
      yy += n.h + GAP_Y;
    }
  });
  return { pos, colX, bandOf, bands, W, H, dlq };
}

// The number of bands that shows the pipeline largest in `availW`×`availH` (fewer
// bands on a tie: a cut costs the reader a jump).
function bestPlacement(L, dlNode, availW, availH) {
  let best = null;
  for (let b = 1; b <= Math.min(MAX_BANDS, L.cols.length); b++) {
    const P = place(L, splitColumns(L.colW, b), dlNode);
    P.scale = Math.min(1, availW / P.W, availH / P.H);
    if (!best || P.scale > best.scale + 0.01) best = P;
  }
  return best;
}

// Where an edge leaves or enters a node: spread over the node's side in the order of
// the nodes at the other end, so parallel edges do not sit on top of each other.
function ports(L, P) {
  const outY = new Map(), inY = new Map();
  const key = id => { const p = P.pos.get(id); return P.bandOf[p.c] * 1e6 + p.cy; };
  const spread = (id, others, map, side) => {
    const p = P.pos.get(id), n = L.nodes.get(id);
    const sorted = others.slice().sort((a, b) => key(a) - key(b));
    sorted.forEach((o, i) => map.set(id + "|" + o + "|" + side,
      n.type !== "virtual" ? p.y + n.h * (sorted.length === 1 ? 0.5 : 0.25 + 0.5 * i / (sorted.length - 1)) : p.cy));
  };
  for (const id of L.nodes.keys()) {
    spread(id, L.edges.filter(e => e.chain[0] === id).map(e => e.chain[1]), outY, "out");
    spread(id, L.edges.filter(e => e.chain[e.chain.length - 1] === id).map(e => e.chain[e.chain.length - 2]), inY, "in");
  }
  return { outY, inY };
}

// An orthogonal path through `pts` with rounded corners.
function rounded(pts, r) {
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let i = 1; i < pts.length - 1; i++) {
    const [x0, y0] = pts[i - 1], [x, y] = pts[i], [x1, y1] = pts[i + 1];
    const k = Math.min(r, Math.hypot(x - x0, y - y0) / 2, Math.hypot(x1 - x, y1 - y) / 2);
    const a = [x - Math.sign(x - x0) * k, y - Math.sign(y - y0) * k];
    const b = [x + Math.sign(x1 - x) * k, y + Math.sign(y1 - y) * k];
    d += ` L${a[0]},${a[1]} Q${x},${y} ${b[0]},${b[1]}`;
  }
  const [xe, ye] = pts[pts.length - 1];
  return d + ` L${xe},${ye}`;
}

function draw() {
  const svg = document.getElementById("dag");
  svg.innerHTML = "";
  L = layout(graph);
  const dl = graph.topics.find(t => t.role === "dead_letter");
  const dlNode = dl && { name: dl.name, partitions: dl.partitions, role: "dead_letter", dlq: true, type: "topic" };
  if (dlNode) dlNode.w = nodeWidth(dlNode);
  const wrap = document.getElementById("dag-wrap");
  const availW = wrap.clientWidth - 2;
  const availH = Math.max(240, window.innerHeight - (wrap.getBoundingClientRect().top + window.scrollY) - 10);
  const P = bestPlacement(L, dlNode, availW, availH);
  svg.setAttribute("viewBox", `0 0 ${P.W} ${P.H}`);
  svg.dataset.w = P.W; svg.dataset.h = P.H; svg.dataset.bands = P.bands.length;
  svg.dataset.fitScale = P.scale.toFixed(3);
  scaleTo(P.scale);
  const PT = ports(L, P);
  const defs = el("defs", {}, svg);
  const m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa5b1" }, m);
  const edgeLayer = el("g", { class: "edges" }, svg);
  const labelLayer = el("g", { class: "edge-labels" }, svg);
  // Edges that wrap from one band to the next each get their own lane.
  const lanes = new Map();
  for (const e of L.edges) {
    const pts = e.chain.map((id, i) => {
      const p = P.pos.get(id), n = L.nodes.get(id);
      if (i === 0) return [p.x + n.w, PT.outY.get(id + "|" + e.chain[1] + "|out")];
      if (i === e.chain.length - 1) return [p.x, PT.inY.get(id + "|" + e.chain[i - 1] + "|in")];
      return [p.cx, p.cy];
    });
    let d = `M${pts[0][0]},${pts[0][1]}`;
    for (let i = 1; i < pts.length; i++) {
      const [x1, y1] = pts[i - 1], [x2, y2] = pts[i];
      const c1 = P.pos.get(e.chain[i - 1]).c, c2 = P.pos.get(e.chain[i]).c;
      if (P.bandOf[c1] === P.bandOf[c2]) {
        const k = Math.max(20, (x2 - x1) / 2);
        d += ` C${x1 + k},${y1} ${x2 - k},${y2} ${x2},${y2}`;
        continue;
      }
      // Down the gap after the column, back along the space between the bands, and
      // into the next band from its left.
      const band = P.bands[P.bandOf[c1]];
      const lane = lanes.get(band) || 0;
      lanes.set(band, lane + 1);
      const xr = P.colX[c1] + L.colW[c1] + 12 + 5 * lane;
      const yl = band.y + band.h + BAND_GAP / 2 - 8 + 5 * lane;
      const xl = P.colX[c2] - 12 - 5 * lane;
      d += " " + rounded([[x1, y1], [xr, y1], [xr, yl], [xl, yl], [xl, y2], [x2, y2]], 8).replace(/^M[^ ]+/, "");
    }
    el("path", { class: "edge" + (e.label === "default" ? " default" : ""), d, "marker-end": "url(#arrow)",
                 "data-from": e.from, "data-to": e.to }, edgeLayer);
    if (e.label) {
      // By the stage's end of the edge, under it: the fan of a splitter's routes is
      // above the default's port when the default is drawn lowest, as it usually is.
      const [x1, y1] = pts[0];
      text(labelLayer, x1 + 8, y1 + 13, "elabel", e.label);
    }
  }
  for (const [id, n] of L.nodes) {
    if (n.type === "virtual") continue;
    const p = P.pos.get(id);
    if (n.type === "stage") drawStage(svg, n, p); else drawTopic(svg, n, p);
  }
  // The dead-letter topic has no drawn edges (any stage may write it): it names the
  // stages that sent records to it instead.
  if (dlNode) drawDeadLetter(svg, dlNode, P.dlq);
  if (lastStats) paint(lastStats);
  if (typeof deadLetters !== "undefined" && deadLetters) paintDeadLetters(deadLetters);
}

// The drawing at `fitScale` (the whole pipeline in the window) or, when the reader asks
// for it, at 100 % with scroll bars.
function scaleTo(fitScale) {
  const svg = document.getElementById("dag");
  const W = +svg.dataset.w, H = +svg.dataset.h;
  const scale = fitAll ? fitScale : 1;
  svg.setAttribute("width", Math.floor(W * scale));
  svg.setAttribute("height", Math.floor(H * scale));
  const btn = document.getElementById("fit");
  btn.hidden = fitScale > 0.99;
  btn.textContent = fitAll ? "show at 100 %" : "fit the window";
}

// Text width in the drawing's fonts, measured off-screen in the SVG itself.
function measure(s, cls) {
  const svg = document.getElementById("dag");
  const g = el("g", { class: cls.split(" ")[0] }, svg);
  const t = el("text", { class: cls.split(" ")[1] || "" }, g);
  t.textContent = s;
  const w = t.getComputedTextLength ? t.getComputedTextLength() : s.length * 7.5;
  g.remove();
  return w;
}
function nodeWidth(n) {
  const clamp = (v, [lo, hi]) => Math.max(lo, Math.min(hi, Math.ceil(v)));
  if (n.type === "stage") {
    const label = (n.detail ? `${n.pattern} · ${n.detail}` : n.pattern).toUpperCase();
    const [out, filtered] = [term(n.variant, "out")[0], term(n.variant, "filtered")[0]];
    return clamp(Math.max(measure(n.name, "stage name"), measure(label, "stage kind") * 1.1,
                          measure(`in 99.9k · ${out} 99.9k`, "stage stat"),
                          measure(`${filtered} 99.9k · ✕ 99 dead`, "stage stat")) + 22, STAGE_W);
  }
  if (n.dlq) return clamp(Math.max(measure(n.name, "topic name"), measure("✕ 99.9k from a-stage-name", "topic sub")) + 22, TOPIC_W);
  return clamp(Math.max(measure(n.name, "topic name"), measure(topicSub(n), "topic sub")) + 22, TOPIC_W);
}
function topicSub(n) {
  const parts = n.partitions === 1 ? "1 partition" : `${n.partitions} partitions`;
  const role = n.role === "internal" ? "" : n.role;
  return role ? `${parts} · ${role}` : parts;
}

// A cylinder: the drawing the graph's other formats (dot, mermaid) give a topic.
function cylinder(g, w, h) {
  const r = 6;
  el("path", { class: "body", d: `M0,${r} V${h - r} A${w / 2},${r} 0 0 0 ${w},${h - r} V${r}` }, g);
  el("ellipse", { class: "lid", cx: w / 2, cy: r, rx: w / 2, ry: r }, g);
}

function drawTopic(svg, n, p) {
  const g = el("g", { class: "node topic", "data-topic": n.name, "data-role": n.role, transform: `translate(${p.x},${p.y})` }, svg);
  el("title", {}, g).textContent = `topic ${n.name}`;
  cylinder(g, n.w, TOPIC_H);
  text(g, 10, 27, "name", n.name, n.w - 20);
  text(g, 10, 41, "sub", topicSub(n), n.w - 20);
}

function drawDeadLetter(svg, n, p) {
  const g = el("g", { class: "node topic dlq", "data-topic": n.name, "data-role": "dead_letter", "data-records": 0,
                      transform: `translate(${p.x},${p.y})` }, svg);
  el("title", {}, g).textContent = `dead-letter topic ${n.name}: records no stage could process, with the reason in their headers`;
  cylinder(g, n.w, DLQ_H);
  text(g, 10, 27, "name", n.name, n.w - 20);
  const sub = text(g, 10, 42, "sub", "dead letter", n.w - 20);
  sub.setAttribute("data-dlq-label", "1");
  for (let i = 0; i < 3; i++) el("text", { x: 10, y: 58 + 14 * i, class: "sub", "data-dlq-line": i }, g);
}

function drawStage(svg, n, p) {
  const fam = (PATTERNS[n.pattern] || ["route"])[0];
  const g = el("g", { class: "node stage", "data-stage": n.name, "data-pattern": n.pattern, "data-variant": n.variant,
                      "data-family": fam, transform: `translate(${p.x},${p.y})` }, svg);
  const counts = ["out", "filtered", "inFlight", "emitted"].map(c => term(n.variant, c));
  el("title", {}, g).textContent = `${n.pattern} stage ${n.name}` + (PATTERNS[n.pattern] ? ` — ${PATTERNS[n.pattern][1]}` : "")
    + "\n" + counts.map(([w, m]) => `${w}: ${m}`).join("\n");
  const w = n.w;
  el("rect", { class: "box", width: w, height: STAGE_H, rx: 8 }, g);
  el("path", { class: "band", d: `M0,8 A8,8 0 0 1 8,0 H${w - 8} A8,8 0 0 1 ${w},8 V20 H0 Z` }, g);
  const label = n.detail ? `${n.pattern} · ${n.detail}` : n.pattern;
  text(g, 10, 14.5, "kind", label.toUpperCase(), w - 20).setAttribute("data-pattern-label", n.pattern);
  text(g, 10, 38, "name", n.name, w - 20);
  el("text", { x: 10, y: 56, class: "stat", "data-line": "rate" }, g).textContent = "– /s in · lag –";
  el("text", { x: 10, y: 72, class: "stat", "data-line": "counts" }, g);
  el("text", { x: 10, y: 88, class: "stat", "data-line": "more" }, g);
}

// The hourglass of a barrier, drawn (no font in the test machines has one).
function hourglass(parent, x, y) {
  const g = el("g", { class: "barrier-icon", transform: `translate(${x},${y})` }, parent);
  el("path", { class: "hourglass", d: "M0,0 H8 L4,4.5 Z M0,9 H8 L4,4.5 Z" }, g);
  return g;
}
