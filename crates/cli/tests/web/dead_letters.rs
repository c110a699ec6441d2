//! The page's dead letters in a real headless Chromium: under the drawing, each stage's
//! most frequent errors with their counts and the `millrace dlq redrive` command to
//! copy (for a reduce, why there is none), the same in the dead-letter node's tooltip —
//! and the copied command, run in a shell, does what it says.

use std::time::Duration;

use serde_json::Value;

use super::{Server, chromium, page_dom, wait_for_topic, wait_until, write_pipeline};
use crate::common::{Backend, bin, stderr, stdout};

/// A filter and a reduce on the same orders: both dead-letter what is not JSON.
const SHOP: &str = r#"pipeline: shop
topics:
  orders: { partitions: 1 }
stages:
  only-eu:
    kind: filter
    from: orders
    where: '.region == "eu"'
    to: eu-orders
  total:
    kind: reduce
    from: orders
    to: totals
    reducer: sum
    of: .total
"#;

/// Three lines of one mistake, one of another, and two good orders.
const ORDERS: &[u8] =
    b"oops\n{\"region\":\"eu\",\"total\":3}\noops\n{bad\noops\n{\"region\":\"us\",\"total\":4}\n";

/// What the panel shows, read by the page's own DOM.
const PANEL: &str = r#"
(() => {
  const panel = document.getElementById("dead-letters");
  if (!panel || panel.hidden) return null;
  return [...panel.querySelectorAll("[data-dl-stage]")].map(s => ({
    stage: s.dataset.dlStage,
    count: +s.dataset.count,
    errors: [...s.querySelectorAll("li")].map(li => [+li.dataset.count, li.querySelector(".err").textContent]),
    command: (s.querySelector("code[data-command]") || {}).textContent || null,
    refusal: (s.querySelector(".refusal") || {}).textContent || null,
  }));
})()
"#;

#[test]
fn the_page_shows_each_stages_top_errors_and_the_command_to_send_them_back() {
    let Some(chrome) = chromium::find() else {
        return;
    };
    let b = Backend::embedded();
    let file = write_pipeline(b.data_dir(), "shop.yaml", SHOP);
    let server = Server::start(&b, &file, &["--http", "127.0.0.1:0"]);
    wait_for_topic(&b, "orders");
    b.ok(&["produce", "--topic", "orders"], ORDERS);
    wait_until("8 dead letters", Duration::from_secs(60), || {
        let s = server.json("/api/stats");
        (s["dead_letter"]["records"] == 8).then_some(())
    });

    let mut browser = super::cdp::Browser::launch(&chrome, 1280, 800);
    page_dom(&mut browser, &server.url("/"));
    let panel = browser.wait_for(
        &format!("(() => {{ const p = {PANEL}; return p && p.reduce((n, s) => n + s.count, 0) === 8 ? p : null; }})()"),
        "the dead-letter panel",
        Duration::from_secs(30),
    );
    let stages = panel.as_array().expect("stages");
    assert_eq!(stages.len(), 2, "{panel}");
    let filter = &stages[0];
    assert_eq!(
        filter["stage"], "only-eu",
        "in the pipeline's order: {panel}"
    );
    assert_eq!(filter["count"], 4);
    let errors = filter["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{panel}");
    assert_eq!(errors[0][0], 3, "the most frequent first: {panel}");
    assert!(
        errors[0][1] == "value is not JSON: expected value at byte 0",
        "{panel}"
    );
    assert_eq!(errors[1][0], 1, "{panel}");
    let command = filter["command"]
        .as_str()
        .expect("a command for the filter");
    let data = b.data_dir().display().to_string();
    assert_eq!(
        command,
        format!(
            "millrace dlq redrive {} --data {data} --stage only-eu",
            file.display()
        ),
        "{panel}"
    );
    let reduce = &stages[1];
    assert_eq!(reduce["stage"], "total");
    assert_eq!(reduce["command"], Value::Null, "{panel}");
    assert!(
        reduce["refusal"]
            .as_str()
            .is_some_and(|r| r.contains("is a reduce") && r.contains("Rerun the batch")),
        "{panel}"
    );

    // The node's tooltip says the same.
    let tip = browser.eval(r#"document.querySelector("g.dlq title").textContent"#);
    let tip = tip.as_str().unwrap_or_default();
    assert!(
        tip.contains("only-eu: 4 dead letters") && tip.contains(&format!("send back: {command}")),
        "{tip}"
    );

    // Copy: the clipboard where the page may write it, else the command selected.
    browser.eval(r#"document.querySelector('button[data-copy="only-eu"]').click()"#);
    let said = browser.wait_for(
        r#"(() => { const t = document.querySelector('button[data-copy="only-eu"]').textContent; return t === "copy" ? null : t; })()"#,
        "the copy button's answer",
        Duration::from_secs(10),
    );
    if said != "copied" {
        assert_eq!(said, "selected: Ctrl-C");
        let selected = browser.eval("window.getSelection().toString()");
        assert_eq!(selected, command);
    }

    // The command as copied, in a shell: it finds the dead letters it names.
    let dir = bin().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} --dry-run"))
        .env("PATH", path)
        .env_remove("MILLRACE_DATA")
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would send 4, skip 0 as already redriven, leave 0"),
        "{}",
        stdout(&out)
    );
    server.stop();
}
