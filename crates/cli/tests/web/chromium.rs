//! Headless Chromium for the page tests (driven by `cdp.rs`). The tests never install
//! it: scripts/test.sh does (`apt-get install chromium`). Missing in CI (CI=true)
//! fails the tests; missing elsewhere skips them with a loud notice.

use std::path::PathBuf;

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

/// How the tests run Chromium: headless, no sandbox (tests run as root in CI), and no
/// traffic of its own (updates, sync, field trials) beyond the pages it is sent to.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];
