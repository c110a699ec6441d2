//! How a command talks to the person running it on standard error: one `error:` line
//! with indented `hint:` lines under it, notes that can never fail the command, and a
//! closed output pipe (`millrace consume … | head`) taken as a normal end.

use std::io::Write as _;

/// An error with advice on what to do about it, printed as an indented `hint:` line
/// under the `error:` line.
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// An error with a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// Prints `e` and ends the process: status 0 for a closed output pipe (nothing
/// printed), otherwise 1.
pub fn exit_on_error(e: &anyhow::Error) -> ! {
    crate::log::flush_folded();
    if is_broken_pipe(e) {
        std::process::exit(0);
    }
    let mut err = std::io::stderr().lock();
    // A pipeline file's problems are already one block of `file:line:col: error: …`.
    let planned = e
        .chain()
        .find_map(|c| c.downcast_ref::<millrace_pipeline::Diagnostics>());
    let _ = match planned {
        Some(d) => writeln!(err, "{d}"),
        None => writeln!(err, "error: {}", message(e)),
    };
    for h in e.chain().filter_map(|c| c.downcast_ref::<Hinted>()) {
        let _ = writeln!(err, "  hint: {}", h.hint);
    }
    drop(err);
    std::process::exit(1)
}

/// `e` and its causes, joined by `: `, each cause said once: a layer's message that
/// already says its cause (the broker's and the store's do, so a log line reads whole)
/// is not followed by it again.
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.is_empty() {
            text = said;
        } else if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

/// Whether `e` is a write to standard output after its reader has gone. Only
/// standard output's: a worker's or a socket's broken pipe is a real error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<ReaderGone>())
    })
}

/// Standard output for a command's results. A write after the reader has gone fails
/// with an error that [`is_broken_pipe`] recognises.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

pub struct Stdout(std::io::StdoutLock<'static>);

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(reader_gone)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(reader_gone)
    }
}

/// Standard output's reader closed the pipe.
#[derive(Debug)]
struct ReaderGone;

impl std::fmt::Display for ReaderGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for ReaderGone {}

fn reader_gone(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, ReaderGone)
    } else {
        e
    }
}

/// `eprintln!` that cannot panic: a note whose reader has gone is dropped.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
pub(crate) use note;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        let io = || std::io::Error::other("Address already in use");
        // A context over a cause it does not say: both, outermost first.
        let e = anyhow::Error::new(io()).context("cannot listen on 127.0.0.1:9092");
        assert_eq!(
            message(&e),
            "cannot listen on 127.0.0.1:9092: Address already in use"
        );
        // A broker error whose message says its source: said once.
        let listen = std::io::Error::other("Address already in use");
        let e = anyhow::Error::new(millrace_broker::BrokerError::Io {
            doing: "cannot listen on 127.0.0.1:9092".into(),
            source: listen,
        })
        .context("serving the store");
        assert_eq!(
            message(&e),
            "serving the store: cannot listen on 127.0.0.1:9092: Address already in use"
        );
    }

    #[test]
    fn only_standard_outputs_closed_pipe_is_a_normal_end() {
        let broken = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        // A worker's or a socket's broken pipe is a failure to report.
        assert!(!is_broken_pipe(&anyhow::Error::new(broken())));
        let closed = anyhow::Error::new(reader_gone(broken())).context("printing topics");
        assert!(is_broken_pipe(&closed));
        let other = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(!is_broken_pipe(&anyhow::Error::new(reader_gone(other))));
    }
}
