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
        None => writeln!(err, "error: {e:#}"),
    };
    for h in e.chain().filter_map(|c| c.downcast_ref::<Hinted>()) {
        let _ = writeln!(err, "  hint: {}", h.hint);
    }
    drop(err);
    std::process::exit(1)
}

/// Whether `e` is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `eprintln!` that cannot panic: a note whose reader has gone is dropped.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
pub(crate) use note;
