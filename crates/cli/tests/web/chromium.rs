//! Headless Chromium for the page test. The tests never install it: scripts/test.sh
//! does (`apt-get install chromium`). Missing in CI (CI=true) fails the test; missing
//! elsewhere skips it with a loud notice.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Chromium binary: /usr/bin/chromium, or `chromium` / `chromium-browser` on PATH.
pub fn find() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but Chromium is not installed (no /usr/bin/chromium, no chromium on PATH): \
             the browser test must run; scripts/test.sh installs it (apt-get install chromium)"
        );
    }
    eprintln!(
        "\n********************************************************************\n\
         * NOTICE: Chromium not found; the browser test of the pipeline page  *\n\
         * was NOT run. Install it (apt-get install chromium) or use          *\n\
         * scripts/test.sh.                                                   *\n\
         ********************************************************************\n"
    );
    None
}

/// A headless Chromium with its own throwaway profile and no background traffic.
pub struct Chromium {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

impl Chromium {
    pub fn new(bin: PathBuf) -> Chromium {
        Chromium {
            bin,
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    fn command(&self, budget_ms: u32) -> Command {
        let mut c = Command::new(&self.bin);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"));
        c
    }

    /// The DOM after the page's scripts ran for `budget_ms` of virtual time.
    pub fn dump_dom(&self, url: &str, budget_ms: u32) -> String {
        let mut c = self.command(budget_ms);
        c.arg("--dump-dom").arg(url);
        let out = run(c);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A PNG of the page at `width`×`height`.
    pub fn screenshot(&self, url: &str, file: &Path, width: u32, height: u32, budget_ms: u32) {
        let mut c = self.command(budget_ms);
        c.arg(format!("--screenshot={}", file.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(url);
        run(c);
    }
}

/// Runs Chromium with a 90 s limit; panics with its stderr if it fails. Output is read
/// while it runs (a large DOM would otherwise fill the pipe and stall it).
fn run(mut c: Command) -> std::process::Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.expect("chromium output"),
        Err(_) => {
            super::signal(pid, "KILL");
            panic!("chromium did not finish within 90s");
        }
    };
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
