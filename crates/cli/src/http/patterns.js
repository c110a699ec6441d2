// The patterns as the page names them: what each does, in the book's words, and
// what its counts are called on its nodes, in its tooltip and in the legend.
"use strict";

// What each pattern does, in the book's words (design section 2); shown for the
// patterns this pipeline uses.
const PATTERNS = {
  copier: ["route", "every record to every output"],
  filter: ["route", "keeps records whose predicate holds; the rest are counted as filtered"],
  splitter: ["route", "each record to the first (or, mode all, every) matching route; the default route takes the rest"],
  sharder: ["route", "the same shard key always lands in the same shard"],
  merger: ["route", "all records of all inputs, order kept per input partition"],
  map: ["work", "a jq expression per record, 0..n outputs each"],
  exec: ["work", "worker processes do the work; timeout, retry, then dead letter"],
  join: ["coord", "waits for its inputs: barrier (a whole batch), key (matching keys) or zip (arrival order)"],
  reduce: ["coord", "incremental merge of the records of a batch"],
};
// What the counters mean in each pattern, as [word, meaning]: `out` (input records
// that gave output), `filtered` (input records that gave none), `inFlight` (read, not
// done) and `emitted` (output records). A pattern without its own word for a count
// uses the generic one. Joins differ by mode and a map that combines for a reduce
// differs from one that does not: see variant().
const GENERIC = {
  out: ["out", "input records that gave output"],
  filtered: ["filtered", "input records that gave no output"],
  inFlight: ["in flight", "records read and not yet done"],
  emitted: ["emitted", "output records written"],
};
const TERMS = {
  copier: { out: ["copied", "records copied to every output topic"], emitted: ["copies", "records written, one per output topic"] },
  filter: { out: ["kept", "records whose predicate held"], filtered: ["filtered", "records whose predicate was false, dropped"] },
  splitter: { out: ["routed", "records sent to a route or the default"], filtered: ["unrouted", "records that matched no route, with no default to take them"] },
  sharder: { out: ["sharded", "records sent to their key's shard"] },
  merger: { out: ["merged", "records passed on to the output"] },
  map: { out: ["mapped", "records the expression gave output for"], filtered: ["no output", "records the expression gave nothing for"] },
  "map:combine": {
    out: ["written", "records whose output went out, carrying its group's combined count"],
    filtered: ["combined", "records whose output was folded into another record of the same group"],
    inFlight: ["held", "records of a range whose combined records are not written yet"],
    emitted: ["combined", "combined records written"],
  },
  exec: { out: ["done", "records a worker answered with output"], filtered: ["no output", "records a worker answered with nothing"] },
  "join:key": {
    out: ["paired", "parts combined into a joined record"],
    filtered: ["replaced", "parts superseded by a newer copy with the same key from the same input"],
    inFlight: ["waiting", "parts waiting for their match from the other inputs"],
    emitted: ["joined", "joined records written"],
  },
  "join:zip": {
    out: ["paired", "items combined into a pair"],
    inFlight: ["waiting", "items waiting for a partner from the other inputs"],
    emitted: ["pairs", "pairs written"],
  },
  "join:barrier": {
    out: ["released", "records released once their whole batch was there"],
    inFlight: ["held", "records held until every input partition reaches the batch's end"],
    emitted: ["released", "records written when their batch was released"],
  },
  reduce: {
    out: ["reduced", "records folded into their batch's final result"],
    inFlight: ["held", "records of the batch in hand, folded in but not final"],
    emitted: ["results", "partial and final results written"],
  },
};
function variant(s) {
  if (s.kind === "join" && TERMS["join:" + s.detail]) return "join:" + s.detail;
  if (s.kind === "map" && /^combines/.test(s.detail || "")) return "map:combine";
  return s.kind;
}
function term(v, count) {
  return (TERMS[v] && TERMS[v][count]) || GENERIC[count];
}
function variantLabel(v) {
  const [kind, mode] = v.split(":");
  return mode ? `${kind} · ${mode}` : kind;
}

// One line per pattern (and join mode) this pipeline uses: what it does, and what its
// counts are called on its nodes.
function describePatterns() {
  const used = [...new Set(graph.stages.map(variant))];
  const box = document.getElementById("patterns");
  for (const v of used) {
    const kind = v.split(":")[0];
    if (!PATTERNS[kind]) continue;
    const d = document.createElement("div");
    d.setAttribute("data-pattern", kind);
    d.setAttribute("data-variant", v);
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.setAttribute("data-family", PATTERNS[kind][0]);
    chip.textContent = variantLabel(v);
    d.append(chip, PATTERNS[kind][1]);
    const own = Object.values(TERMS[v] || {});
    own.forEach(([word, meaning], i) => {
      const b = document.createElement("b");
      b.textContent = word;
      d.append(i ? "; " : " — ", b, " " + meaning);
    });
    box.appendChild(d);
  }
  if (!graph.stages.some(s => s.kind === "join" || s.kind === "reduce"))
    document.getElementById("legend-barrier").hidden = true;
}
