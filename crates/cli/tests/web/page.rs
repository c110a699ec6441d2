//! The pipeline page in a real headless Chromium at 1280×800, driven over the DevTools
//! protocol: for every example pipeline, everything `/api/graph` names is drawn inside
//! the window on first load (each node's and edge's bounding box, as the browser laid
//! it out), nothing overlaps, rates show on the very first poll, the counts are named
//! in each pattern's words, and every character on the page is one the installed fonts
//! have. A screenshot of each is kept with any failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cdp::Browser;
use super::{Server, chromium, wait_for_topic, wait_until, write_pipeline};
use crate::common::{Backend, repo_root};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

/// Below this the drawing's 13 px names would be under 7 px: not readable.
const MIN_SCALE: f64 = 0.55;

/// Records, before the page's scripts run, what the table and the nodes show when the
/// first stats are drawn (`data-ready` set), whatever time the test looks later.
const FIRST_POLL: &str = r##"
window.__firstPoll = null;
new MutationObserver((_, obs) => {
  if (!window.__firstPoll && document.body && document.body.dataset.ready === "1") {
    const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent : null; };
    window.__firstPoll = {
      rows: [...document.querySelectorAll("#stats tbody tr")]
        .map(tr => ({ stage: tr.dataset.stage, rate: text(tr, '[data-col="rate"]') })),
      nodes: [...document.querySelectorAll("g.stage")]
        .map(g => ({ stage: g.dataset.stage, rate: text(g, '[data-line="rate"]') })),
    };
    obs.disconnect();
  }
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-ready"] });
"##;

/// What is drawn, as the browser laid it out: each node and edge of the graph with its
/// bounding box in the viewport (null when missing), the drawing's scale, each stage
/// node's lines, the pattern legend, and every character of text on the page.
const PROBE: &str = r##"
(() => {
  const g = JSON.parse(GRAPH);
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const one = sel => document.querySelectorAll(sel).length === 1 ? document.querySelector(sel) : null;
  const nodes = {};
  for (const t of g.topics) nodes["topic:" + t.name] = box(one(`g.topic[data-topic="${CSS.escape(t.name)}"]`));
  for (const s of g.stages) nodes["stage:" + s.name] = box(one(`g.stage[data-stage="${CSS.escape(s.name)}"]`));
  const edges = g.edges.map(e => ({ from: e.from, to: e.to,
    box: box(one(`path.edge[data-from="${CSS.escape(e.from)}"][data-to="${CSS.escape(e.to)}"]`)) }));
  const svg = document.getElementById("dag");
  const lines = {};
  for (const n of document.querySelectorAll("g.stage")) {
    const line = k => (n.querySelector(`[data-line="${k}"]`) || {}).textContent;
    lines[n.dataset.stage] = { variant: n.dataset.variant, rate: line("rate"), counts: line("counts"),
                               more: line("more"), tooltip: n.querySelector(":scope > title").textContent };
  }
  const legend = {};
  for (const d of document.querySelectorAll("#patterns [data-variant]")) legend[d.dataset.variant] = d.textContent;
  const chars = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const p = walk.currentNode.parentElement;
    if (p && p.closest("script, style")) continue;
    for (const c of walk.currentNode.textContent) if (c.codePointAt(0) > 126) chars.add(c);
  }
  return {
    viewport: [innerWidth, innerHeight],
    drawn: document.querySelectorAll("g.node").length,
    paths: document.querySelectorAll("path.edge").length,
    scale: svg.getBoundingClientRect().width / svg.viewBox.baseVal.width,
    nodes, edges, lines, legend, chars: [...chars],
  };
})()
"##;

/// The word each pattern's node uses for its `out` count (its variant, as the page
/// names it: join by mode, a map that combines for a reduce apart).
const OUT_WORDS: &[(&str, &str)] = &[
    ("copier", "copied"),
    ("filter", "kept"),
    ("splitter", "routed"),
    ("sharder", "sharded"),
    ("merger", "merged"),
    ("map", "mapped"),
    ("map:combine", "written"),
    ("exec", "done"),
    ("join:key", "paired"),
    ("join:zip", "paired"),
    ("join:barrier", "released"),
    ("reduce", "reduced"),
];

fn variant(stage: &Value) -> String {
    let kind = stage["kind"].as_str().unwrap_or_default();
    let detail = stage["detail"].as_str().unwrap_or_default();
    match kind {
        "join" => format!("join:{detail}"),
        "map" if detail.starts_with("combines") => "map:combine".into(),
        _ => kind.into(),
    }
}

fn out_word(variant: &str) -> &'static str {
    OUT_WORDS
        .iter()
        .find(|(v, _)| *v == variant)
        .map(|(_, w)| *w)
        .unwrap_or_else(|| panic!("no word known for {variant}: add it to OUT_WORDS"))
}

/// The examples' pipeline files, sorted.
fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "examples/*.yaml: {files:?}");
    files
}

/// Characters no installed font has (fontconfig's answer, the list Chromium draws from).
fn missing_glyphs(chars: &[Value]) -> Vec<String> {
    chars
        .iter()
        .filter_map(Value::as_str)
        .filter(|c| {
            let code = c.chars().next().map_or(0, u32::from);
            let out = Command::new("fc-list")
                .arg(format!(":charset={code:x}"))
                .arg("family")
                .output()
                .expect("fc-list (fontconfig, installed with Chromium)");
            String::from_utf8_lossy(&out.stdout).trim().is_empty()
        })
        .map(|c| format!("{c} (U+{:04X})", c.chars().next().map_or(0, u32::from)))
        .collect()
}

fn inside(b: &[f64], vw: f64, vh: f64) -> bool {
    b.len() == 4 && b[0] >= -0.5 && b[1] >= -0.5 && b[2] <= vw + 0.5 && b[3] <= vh + 0.5
}

fn overlap(a: &[f64], b: &[f64]) -> bool {
    a[0] < b[2] - 0.5 && b[0] < a[2] - 0.5 && a[1] < b[3] - 0.5 && b[1] < a[3] - 0.5
}

fn boxes(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Loads the page of a running pipeline and returns what the first poll showed and
/// what is drawn, with a screenshot of it at `png`.
fn load(browser: &mut Browser, server: &Server, png: &Path) -> (Value, Value) {
    let graph = server.get("/api/graph").body;
    browser.goto(&server.url("/"));
    let first = browser.wait_for(
        "window.__firstPoll",
        "the page's first stats",
        Duration::from_secs(30),
    );
    let probe = PROBE.replace("GRAPH", &serde_json::to_string(&graph).expect("graph"));
    let drawn = browser.eval(&probe);
    browser.screenshot(png);
    (first, drawn)
}

/// Everything wrong with one example's page, in words.
fn check(name: &str, graph: &Value, first: &Value, drawn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let (vw, vh) = (
        drawn["viewport"][0].as_f64().unwrap_or(0.0),
        drawn["viewport"][1].as_f64().unwrap_or(0.0),
    );
    if (vw, vh) != (f64::from(WIDTH), f64::from(HEIGHT)) {
        bad.push(format!("viewport is {vw}×{vh}"));
    }
    let topics = graph["topics"].as_array().map_or(0, Vec::len);
    let stages = graph["stages"].as_array().map_or(0, Vec::len);
    let edges = graph["edges"].as_array().map_or(0, Vec::len);
    if drawn["drawn"] != topics + stages {
        bad.push(format!(
            "{} nodes drawn, the graph has {topics} topics and {stages} stages",
            drawn["drawn"]
        ));
    }
    if drawn["paths"] != edges {
        bad.push(format!(
            "{} edges drawn, the graph has {edges}",
            drawn["paths"]
        ));
    }
    let nodes = drawn["nodes"].as_object().cloned().unwrap_or_default();
    for (id, b) in &nodes {
        let b = boxes(b);
        if b.is_empty() {
            bad.push(format!("{id} is not drawn (or drawn twice)"));
        } else if !inside(&b, vw, vh) {
            bad.push(format!("{id} is outside the window: {b:?}"));
        }
    }
    let placed: Vec<(&String, Vec<f64>)> = nodes
        .iter()
        .map(|(id, b)| (id, boxes(b)))
        .filter(|(_, b)| b.len() == 4)
        .collect();
    for (i, (a, ab)) in placed.iter().enumerate() {
        for (b, bb) in &placed[i + 1..] {
            if overlap(ab, bb) {
                bad.push(format!("{a} and {b} overlap: {ab:?} {bb:?}"));
            }
        }
    }
    for e in drawn["edges"].as_array().into_iter().flatten() {
        let b = boxes(&e["box"]);
        if b.is_empty() {
            bad.push(format!("edge {} -> {} is not drawn", e["from"], e["to"]));
        } else if !inside(&b, vw, vh) {
            bad.push(format!(
                "edge {} -> {} leaves the window: {b:?}",
                e["from"], e["to"]
            ));
        }
    }
    let scale = drawn["scale"].as_f64().unwrap_or(0.0);
    if scale < MIN_SCALE {
        bad.push(format!("drawn at scale {scale:.2}: too small to read"));
    }
    // Rates from the first poll: a number, in the table and on each node.
    let is_rate = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
    for (list, key) in [("rows", "rate"), ("nodes", "rate")] {
        let got = first[list].as_array().cloned().unwrap_or_default();
        if got.len() != stages {
            bad.push(format!(
                "first poll: {} {list} for {stages} stages",
                got.len()
            ));
        }
        for r in got {
            let text = r[key].as_str().unwrap_or("");
            if !is_rate(text) {
                bad.push(format!(
                    "first poll: {list} of {} shows rate {text:?}",
                    r["stage"]
                ));
            }
        }
    }
    // Counts in the pattern's words, explained on the node and in the legend.
    for s in graph["stages"].as_array().into_iter().flatten() {
        let stage = s["name"].as_str().unwrap_or_default();
        let v = variant(s);
        let word = out_word(&v);
        let lines = &drawn["lines"][stage];
        if lines["variant"] != v.as_str() {
            bad.push(format!("{stage}: variant {} (want {v})", lines["variant"]));
        }
        let counts = lines["counts"].as_str().unwrap_or("");
        if !counts.starts_with("in ") || !counts.contains(&format!(" · {word} ")) {
            bad.push(format!(
                "{stage} ({v}): counts line {counts:?} lacks '{word}'"
            ));
        }
        let tooltip = lines["tooltip"].as_str().unwrap_or("");
        if !tooltip.contains(&format!("\n{word}: ")) {
            bad.push(format!(
                "{stage} ({v}): tooltip does not explain '{word}': {tooltip:?}"
            ));
        }
        let legend = drawn["legend"][v.as_str()].as_str().unwrap_or("");
        if !legend.contains(word) {
            bad.push(format!(
                "legend of {v} does not explain '{word}': {legend:?}"
            ));
        }
    }
    let missing = missing_glyphs(drawn["chars"].as_array().map_or(&[], Vec::as_slice));
    if !missing.is_empty() {
        bad.push(format!("no installed font draws {missing:?}"));
    }
    bad.into_iter().map(|b| format!("{name}: {b}")).collect()
}

/// Feeds `topic` one record every 100 ms from a `millrace produce` process until
/// dropped, so a rate is measured whenever the page looks.
struct Trickle {
    child: std::process::Child,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start(b: &Backend, topic: &str) -> Trickle {
        let mut child = b
            .cmd()
            .args(["produce", "--topic", topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn millrace produce");
        let mut stdin = child.stdin.take().expect("stdin");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut i = 0u32;
            let until = Instant::now() + Duration::from_secs(120);
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                i += 1;
                if writeln!(stdin, "{{\"photo\":{i}}}")
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Trickle {
            child,
            stop,
            writer: Some(writer),
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn every_example_fits_the_window_with_rates_and_the_patterns_words() {
    let Some(bin) = chromium::find() else {
        return;
    };
    let root = repo_root();
    let shots = tempfile::Builder::new()
        .prefix("millrace-page-")
        .tempdir()
        .expect("screenshot dir")
        .keep();
    let mut browser = Browser::launch(&bin, WIDTH, HEIGHT);
    browser.before_each_document(FIRST_POLL);
    let mut failures = Vec::new();
    for file in examples() {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("example")
            .to_owned();
        let b = Backend::embedded();
        let server = Server::start_in(&b, &file, &["--http", "127.0.0.1:0"], Some(&root));
        let graph = server.json("/api/graph");
        // The copier example is fed while the page loads: its first poll has a rate > 0.
        let trickle = (name == "copier").then(|| {
            wait_for_topic(&b, "photos-topic");
            let t = Trickle::start(&b, "photos-topic");
            wait_until("records copied", Duration::from_secs(30), || {
                let s = server.json("/api/stats");
                (super::counter(&s, "copy", "records_in") > 0).then_some(())
            });
            t
        });
        let png = shots.join(format!("{name}.png"));
        let (first, drawn) = load(&mut browser, &server, &png);
        let mut bad = check(&name, &graph, &first, &drawn);
        if trickle.is_some() {
            let rate = first["rows"][0]["rate"].as_str().unwrap_or("");
            if rate.parse::<f64>().map_or(true, |r| r <= 0.0) {
                bad.push(format!(
                    "{name}: records flowing, yet the first poll's rate is {rate:?}"
                ));
            }
        }
        if !bad.is_empty() {
            bad.push(format!("{name}: screenshot {}", png.display()));
        }
        failures.extend(bad);
        drop(trickle);
        server.stop();
    }
    assert!(
        failures.is_empty(),
        "the page at {WIDTH}×{HEIGHT}:\n{}\n(screenshots in {})",
        failures.join("\n"),
        shots.display()
    );
    // MILLRACE_KEEP_SCREENSHOTS=1 keeps them for a look (their folder is printed).
    if std::env::var_os("MILLRACE_KEEP_SCREENSHOTS").is_some() {
        eprintln!("screenshots of the examples' pages in {}", shots.display());
    } else {
        let _ = std::fs::remove_dir_all(&shots);
    }
}

/// The counts a user asked about, with records behind them: a key join names its
/// replaced part and its waiting one, and the stage after a barrier reads what the
/// barrier says it emitted.
#[test]
fn counts_are_named_in_each_patterns_words() {
    let Some(bin) = chromium::find() else {
        return;
    };
    let b = Backend::embedded();
    // The metrics test's pipeline, and a copier after the join.
    let yaml = format!(
        "{}  archive: {{ kind: copier, from: paid, to: [paid-archive, paid-audit] }}\n",
        super::metrics::KNOWN
    );
    let file = write_pipeline(b.data_dir(), "terms.yaml", &yaml);
    let server = Server::start(&b, &file, &["--http", "127.0.0.1:0"]);
    wait_for_topic(&b, "payments");
    // Two payments for order 1 before the order: the second replaces the first.
    b.ok(
        &["produce", "--topic", "payments"],
        b"{\"id\":1,\"n\":1}\n{\"id\":1,\"n\":2}\n{\"id\":2,\"n\":1}\n",
    );
    wait_until("the payments read", Duration::from_secs(30), || {
        let s = server.json("/api/stats");
        (super::counter(&s, "with-payment", "records_in") == 3).then_some(())
    });
    b.ok(
        &["produce", "--topic", "orders"],
        b"{\"id\":1,\"region\":\"eu\"}\n{\"id\":2,\"region\":\"eu\"}\n{\"id\":3,\"region\":\"us\"}\n{\"id\":4,\"region\":\"eu\"}\n",
    );
    wait_until(
        "two pairs joined and copied",
        Duration::from_secs(30),
        || {
            let s = server.json("/api/stats");
            (super::counter(&s, "with-payment", "records_in") == 6
                && super::counter(&s, "archive", "emitted") == 4)
                .then_some(())
        },
    );
    let shots = tempfile::tempdir().expect("tempdir");
    let png = shots.path().join("terms.png");
    let mut browser = Browser::launch(&bin, WIDTH, HEIGHT);
    browser.before_each_document(FIRST_POLL);
    let (_, drawn) = load(&mut browser, &server, &png);
    let lines = |stage: &str, which: &str| {
        drawn["lines"][stage][which]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let shot = png.display();
    assert_eq!(
        lines("with-payment", "counts"),
        "in 6 · paired 4 · joined 2",
        "{shot}"
    );
    assert_eq!(
        lines("with-payment", "more"),
        "replaced 1 · waiting 1",
        "{shot}"
    );
    assert_eq!(lines("keep-eu", "counts"), "in 4 · kept 3", "{shot}");
    assert_eq!(lines("keep-eu", "more"), "filtered 1", "{shot}");
    assert_eq!(
        lines("archive", "counts"),
        "in 2 · copied 2 · copies 4",
        "{shot}"
    );
    let legend = drawn["legend"]["join:key"].as_str().unwrap_or_default();
    for word in ["paired", "replaced", "waiting", "joined"] {
        assert!(legend.contains(word), "{legend}");
    }
    let tooltip = lines("with-payment", "tooltip");
    assert!(
        tooltip.contains("replaced: parts superseded by a newer copy"),
        "{tooltip}"
    );
    server.stop();
}
