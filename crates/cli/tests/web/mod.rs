//! Helpers for the HTTP tests: a `millrace run` child serving HTTP on 127.0.0.1, a
//! plain HTTP/1.1 client over `std::net::TcpStream` (no client crate: the tests speak
//! the wire themselves), headless Chromium in `chromium.rs` (driven over the DevTools
//! protocol by `cdp.rs`), and the Prometheus parser in `prometheus.rs`. The tests of
//! `/metrics` and of the page are `metrics.rs` and `page.rs`; of the page's dead
//! letters, `dead_letters.rs`; of `millrace serve --http`, `serve.rs`.
#![allow(dead_code)]

pub mod cdp;
pub mod chromium;
mod dead_letters;
mod metrics;
mod page;
pub mod prometheus;
mod serve;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Backend;

pub fn write_pipeline(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pipeline");
    p
}

/// Waits until the running pipeline has created its topics and serves the store.
pub fn wait_for_topic(b: &Backend, topic: &str) {
    wait_until(
        &format!("topic {topic} through the running pipeline"),
        Duration::from_secs(30),
        || {
            let o = b.run(&["topics", "describe", "--topic", topic], b"");
            o.status.success().then_some(())
        },
    );
}

/// The page at `url` once its first stats are drawn, as HTML.
pub fn page_dom(browser: &mut cdp::Browser, url: &str) -> String {
    browser.goto(url);
    browser.wait_for(
        "document.body && document.body.dataset.ready === '1'",
        "the page's first refresh",
        Duration::from_secs(30),
    );
    browser
        .eval("document.documentElement.outerHTML")
        .as_str()
        .expect("the page's HTML")
        .to_owned()
}

/// `millrace run FILE ARGS…` on a backend, or `millrace serve`, with its HTTP address
/// parsed from the line it prints. Dropping it sends SIGTERM (then SIGKILL if it does not stop).
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

const SERVING: &str = "millrace: serving http://";

impl Server {
    pub fn start(b: &Backend, file: &Path, args: &[&str]) -> Server {
        Server::start_in(b, file, args, None)
    }

    /// As `start`, in a working directory (the examples name their workers relative
    /// to the repository root).
    pub fn start_in(b: &Backend, file: &Path, args: &[&str], cwd: Option<&Path>) -> Server {
        let mut c = b.cmd();
        c.arg("run").arg(file).args(args);
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        Server::spawn(c)
    }

    /// `millrace serve --data DATA ARGS…` (ARGS with `--http`).
    pub fn serve(data: &Path, args: &[&str]) -> Server {
        let mut c = std::process::Command::new(crate::common::bin());
        c.env_remove("MILLRACE_BOOTSTRAP")
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(args);
        Server::spawn(c)
    }

    /// Spawns `c` and waits for the HTTP address it prints.
    fn spawn(mut c: std::process::Command) -> Server {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn millrace");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix(SERVING) {
                    let addr = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
                let mut l = log.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => break a,
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!(
                        "no '{SERVING}' line within 30s; stderr:\n{}",
                        stderr.lock().expect("log")
                    );
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "millrace exited ({status}) before serving; stderr:\n{}",
                            stderr.lock().expect("log")
                        );
                    }
                }
            }
        };
        let addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("printed address {addr:?} is not ip:port: {e}"));
        Server {
            child,
            addr,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("log").clone()
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
    }

    /// SIGTERM, then waits for a clean exit; returns everything it printed on stderr.
    pub fn stop(mut self) -> String {
        let status = self.terminate();
        let log = self.stderr();
        assert!(
            status.is_some_and(|s| s.success()),
            "exit {status:?}; stderr:\n{log}"
        );
        log
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

/// Sends a signal with kill(1): the workspace forbids `unsafe`, so no libc::kill.
pub fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One GET over a fresh TCP connection (`Connection: close`, so the body ends at EOF
/// unless it is chunked).
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stage named `name` in an `/api/stats` answer.
pub fn stage<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name} in {stats}"))
}

/// A counter of a stage in an `/api/stats` answer.
pub fn counter(stats: &serde_json::Value, name: &str, which: &str) -> u64 {
    stage(stats, name)["counters"][which]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {which} of {name} in {stats}"))
}

/// True when every stage has read `expected_in` (by name) and holds nothing in flight.
pub fn settled(stats: &serde_json::Value, expected_in: &[(&str, u64)]) -> bool {
    expected_in
        .iter()
        .all(|(s, n)| counter(stats, s, "records_in") == *n)
        && stats["stages"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s["counters"]["in_flight"] == 0))
}
