//! One worker process: spawning, one request/reply exchange, and stopping it.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::ExecConfig;
use super::protocol::{Reply, parse_reply, preview};

/// How long to wait for a worker that closed its stdout to report its exit status, and
/// for its last stderr lines to be read, so a crash reason can say what happened.
const EXIT_REPORT_WAIT: Duration = Duration::from_millis(300);

/// Longest stderr line forwarded to tracing; the rest of the line is dropped so a
/// worker spewing binary to stderr cannot grow our memory.
const MAX_STDERR_LINE: usize = 8 * 1024;

/// The outcome of sending one item to one worker once.
#[derive(Debug)]
pub(crate) enum Attempt {
    Out(Vec<Value>),
    /// Worker-reported record error: final, not retried.
    Error(String),
    /// Crash, garbage or oversize reply: the worker must be replaced and the item retried.
    Fault(String),
}

pub(crate) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    index: usize,
    started: Instant,
    stderr_task: Option<JoinHandle<()>>,
    last_stderr: Arc<Mutex<Option<String>>>,
    line: Vec<u8>,
}

impl Worker {
    /// Starts one worker process for slot `index`. Needs a tokio runtime.
    pub(crate) fn spawn(cfg: &ExecConfig, index: usize) -> io::Result<Worker> {
        let (program, args) = cfg
            .command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            // Set before the user's env so the user can override them. Python block-buffers
            // a piped stdout; unbuffered saves every Python worker from a forgotten flush.
            .env("MILLRACE_WORKER_INDEX", index.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A pool dropped without shutdown() must not leave workers behind.
            .kill_on_drop(true);
        // Own process group: a Ctrl-C in the terminal goes to millrace, which shuts the
        // workers down in order, instead of killing every worker mid-item at once.
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(cwd) = &cfg.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("worker pipes missing"));
        };
        let last_stderr = Arc::new(Mutex::new(None));
        let stderr_task = tokio::spawn(forward_stderr(
            BufReader::new(stderr),
            index,
            pid,
            Arc::clone(&last_stderr),
        ));
        tracing::debug!(worker = index, pid, "exec worker started");
        Ok(Worker {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            pid,
            index,
            started: Instant::now(),
            stderr_task: Some(stderr_task),
            last_stderr,
            line: Vec::new(),
        })
    }

    /// How long this process has been running.
    pub(crate) fn age(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// True if the process has exited (e.g. died while idle), so the next item goes to
    /// a fresh worker instead of spending one of its attempts on a corpse.
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends one request line and reads the reply line for `id`. No deadline here: the
    /// caller wraps this in the per-item timeout and kills the worker if it fires.
    pub(crate) async fn exchange(&mut self, id: u64, request: &[u8], max_line: usize) -> Attempt {
        let Some(stdin) = self.stdin.as_mut() else {
            return Attempt::Fault("worker stdin already closed".into());
        };
        let written = match stdin.write_all(request).await {
            Ok(()) => stdin.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return Attempt::Fault(
                self.death_reason(&format!("cannot write to worker: {e}"))
                    .await,
            );
        }
        loop {
            self.line.clear();
            match read_line_bounded(&mut self.stdout, &mut self.line, max_line).await {
                Ok(LineRead::Line) => {}
                Ok(LineRead::TooLong) => {
                    return Attempt::Fault(format!(
                        "worker reply line longer than max_line_bytes ({max_line})"
                    ));
                }
                Ok(LineRead::Eof) => {
                    return Attempt::Fault(self.death_reason("worker closed its stdout").await);
                }
                Err(e) => {
                    return Attempt::Fault(format!("cannot read from worker: {e}"));
                }
            }
            // Blank lines carry nothing (e.g. a stray print()); skipping them is harmless.
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return match parse_reply(id, &self.line) {
                Reply::Out(values) => Attempt::Out(values),
                Reply::Error(reason) => Attempt::Error(reason),
                Reply::Garbage(reason) => Attempt::Fault(format!("garbage from worker: {reason}")),
            };
        }
    }

    /// Why the worker went away: its exit status and last stderr line if we can get them
    /// quickly — the dead-letter reason is where a user first looks.
    async fn death_reason(&mut self, what: &str) -> String {
        let status = tokio::time::timeout(EXIT_REPORT_WAIT, self.child.wait()).await;
        if let Some(task) = self.stderr_task.as_mut() {
            let _ = tokio::time::timeout(EXIT_REPORT_WAIT, task).await;
        }
        let mut reason = match status {
            Ok(Ok(status)) => format!("{what}: worker exited ({})", describe(status)),
            _ => what.to_string(),
        };
        if let Some(last) = self.last_stderr.lock().ok().and_then(|l| l.clone()) {
            reason.push_str("; last stderr: ");
            reason.push_str(&last);
        }
        reason
    }

    /// Kills the worker at once (hung, crashed or babbling) and reaps it.
    pub(crate) async fn kill(mut self) {
        tracing::debug!(worker = self.index, pid = self.pid, "killing exec worker");
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(EXIT_REPORT_WAIT, self.child.wait()).await;
    }

    /// Graceful stop: close stdin (the worker's signal to finish and exit), wait up to
    /// `grace`, then kill.
    pub(crate) async fn close(mut self, grace: Duration) {
        drop(self.stdin.take());
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => {
                // Let the last stderr lines reach the log before the forwarder is aborted.
                if let Some(task) = self.stderr_task.as_mut() {
                    let _ = tokio::time::timeout(EXIT_REPORT_WAIT, task).await;
                }
            }
            Err(_) => {
                tracing::warn!(
                    worker = self.index,
                    pid = self.pid,
                    "exec worker did not exit after stdin was closed; killing it"
                );
                self.kill().await;
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A grandchild may still hold stderr open; don't leave a forwarder per restart.
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(),
    }
}

async fn forward_stderr<R: AsyncBufRead + Unpin>(
    mut stderr: R,
    index: usize,
    pid: u32,
    last: Arc<Mutex<Option<String>>>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let truncated = match read_line_bounded(&mut stderr, &mut line, MAX_STDERR_LINE).await {
            Ok(LineRead::Line) => false,
            Ok(LineRead::TooLong) => match skip_line(&mut stderr).await {
                Ok(_) => true,
                Err(_) => return,
            },
            Ok(LineRead::Eof) | Err(_) => {
                if line.is_empty() {
                    return;
                }
                false
            }
        };
        if line.is_empty() && !truncated {
            continue;
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if truncated {
            text.push_str(" …(truncated)");
        }
        tracing::info!(target: "millrace::exec::worker", worker = index, pid, "{text}");
        if let Ok(mut l) = last.lock() {
            *l = Some(preview(text.as_bytes()));
        }
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum LineRead {
    /// `buf` holds one line, without its `\n` (and without a trailing `\r`).
    Line,
    /// The line is longer than the limit; `buf` holds a prefix and the reader is
    /// positioned somewhere inside the line.
    TooLong,
    /// End of stream; `buf` holds any unterminated tail.
    Eof,
}

/// Reads one line of at most `max` bytes into `buf`, never buffering more than `max`
/// (plus the reader's own fixed buffer): a worker writing a gigabyte line costs us
/// nothing but the time to notice.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (avail.len(), false),
        };
        if buf.len() + chunk > max {
            let room = max - buf.len().min(max);
            buf.extend_from_slice(&avail[..room]);
            r.consume(room);
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(&avail[..chunk]);
        r.consume(if found { chunk + 1 } else { chunk });
        if found {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(LineRead::Line);
        }
    }
}

/// Discards input up to and including the next `\n`. Returns false at end of stream.
async fn skip_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<bool> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(false);
        }
        if let Some(pos) = avail.iter().position(|&b| b == b'\n') {
            r.consume(pos + 1);
            return Ok(true);
        }
        let n = avail.len();
        r.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(LineRead, Vec<u8>)> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let res = read_line_bounded(&mut r, &mut buf, max)
                .await
                .expect("read");
            let done = res != LineRead::Line;
            out.push((res, buf));
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn bounded_lines() {
        assert_eq!(
            lines(b"ab\r\ncdefg\n", 5).await,
            vec![
                (LineRead::Line, b"ab".to_vec()),
                (LineRead::Line, b"cdefg".to_vec()),
                (LineRead::Eof, vec![]),
            ]
        );
        let got = lines(b"ab\ncdefgh\n", 5).await;
        assert_eq!(got[1].0, LineRead::TooLong);
        assert!(got[1].1.len() <= 5);
        assert_eq!(
            lines(b"tail", 10).await,
            vec![(LineRead::Eof, b"tail".to_vec())]
        );
    }

    #[tokio::test]
    async fn skip_then_continue() {
        let mut r = BufReader::with_capacity(3, &b"0123456789\nok\n"[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).await.expect("read"),
            LineRead::TooLong
        );
        assert!(skip_line(&mut r).await.expect("skip"));
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).await.expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"ok");
    }
}
