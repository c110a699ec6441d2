//! Log lines on standard error: colour only on a terminal, and librdkafka's repeated
//! lines folded into one line per condition.
//!
//! librdkafka reports a broker it cannot reach again on every reconnect attempt: a
//! closed port gives hundreds of identical lines in ten seconds, which bury the one
//! error that explains them. [`Fold`] lets the first line of each condition through,
//! counts its repeats, and reports the counts in one line ([`flush_folded`], at exit,
//! and at most once a minute while they go on).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// librdkafka's lines arrive under this target (the Kafka backend's log context).
const LIBRDKAFKA: &str = "librdkafka";

/// A condition not seen for this long is news again: its next line is printed in full.
const QUIET: Duration = Duration::from_secs(60);

/// While repeats go on, their counts are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Whether to colour what goes to standard error: only on a terminal, and never when
/// `NO_COLOR` is set to anything (<https://no-color.org>) or the terminal is `dumb`.
pub fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Installs the log subscriber: `MILLRACE_LOG` (default `warn`) picks what is logged.
pub fn init() {
    // Global filters, not per-layer ones: only global filters give `log`'s bridge a
    // level limit, without which rdkafka's per-message `trace!` records are each
    // built and then dropped (a few % of a Kafka copier's CPU).
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("MILLRACE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with(tracing_subscriber::filter::filter_fn(|m| {
            // rdkafka's consumer `Drop` closes the consumer again and logs that it was
            // closed already (millrace closes it first, without rdkafka's 100 ms poll
            // steps: see the Kafka consumer's `close_blocking`). That is the only
            // error this module of rdkafka logs.
            !(m.target() == "rdkafka::consumer::base_consumer"
                && *m.level() == tracing::Level::ERROR)
        }))
        .with(Fold)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour_on_stderr())
                .without_time(),
        )
        .init();
}

/// Reports the repeats folded so far, in one line. Called before the process exits.
pub fn flush_folded() {
    let summary = match STATE.lock() {
        Ok(mut s) => s.take_summary(Instant::now()),
        Err(_) => None,
    };
    emit(summary);
}

/// One condition of librdkafka's: its kind of line, and the broker thread it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Condition {
    /// The facility (`FAIL`, `REQTMOUT`, …) or, for a client error, its code
    /// (`AllBrokersDown`, `BrokerTransportFailure`, …).
    what: String,
    /// `127.0.0.1:9092/1` from `[thrd:127.0.0.1:9092/1]`, when the line names one.
    thread: String,
}

impl Condition {
    fn of(message: &str) -> Condition {
        let rest = message.strip_prefix("Global error: ").unwrap_or(message);
        let what = rest
            .split([' ', ':', '('])
            .next()
            .unwrap_or_default()
            .to_owned();
        let thread = message
            .split_once("[thrd:")
            .and_then(|(_, t)| t.split_once(']'))
            .map(|(t, _)| t.to_owned())
            .unwrap_or_default();
        Condition { what, thread }
    }
}

struct Seen {
    last: Instant,
    /// Lines held back since the last report.
    repeats: u64,
}

#[derive(Default)]
struct State {
    seen: BTreeMap<Condition, Seen>,
    /// When the repeats being counted began (the first held-back line since a report).
    since: Option<Instant>,
}

impl State {
    /// Whether a line of `c` is printed; a repeat is counted instead.
    fn admit(&mut self, c: Condition, now: Instant) -> bool {
        match self.seen.get_mut(&c) {
            Some(s) if now.duration_since(s.last) < QUIET => {
                s.last = now;
                s.repeats += 1;
                self.since.get_or_insert(now);
                false
            }
            Some(s) => {
                s.last = now;
                true
            }
            None => {
                self.seen.insert(
                    c,
                    Seen {
                        last: now,
                        repeats: 0,
                    },
                );
                true
            }
        }
    }

    fn report_due(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|s| now.duration_since(s) >= REPORT_EVERY)
    }

    /// `repeated and not shown: AllBrokersDown 391 times, FAIL 1 time (over 10.0 s)`; the
    /// counts start again from zero.
    fn take_summary(&mut self, now: Instant) -> Option<String> {
        let since = self.since.take()?;
        let mut by_what: BTreeMap<&str, u64> = BTreeMap::new();
        for (c, s) in &mut self.seen {
            if s.repeats > 0 {
                *by_what.entry(&c.what).or_default() += std::mem::take(&mut s.repeats);
            }
        }
        let mut counts: Vec<(&str, u64)> = by_what.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = counts
            .iter()
            .map(|(what, n)| {
                format!(
                    "{what} {}",
                    millrace_pipeline::diagnostics::count(*n, "time")
                )
            })
            .collect();
        let secs = now.duration_since(since).as_secs_f64().max(0.1);
        Some(format!(
            "repeated and not shown: {} (over {secs:.1} s)",
            parts.join(", ")
        ))
    }
}

static STATE: Mutex<State> = Mutex::new(State {
    seen: BTreeMap::new(),
    since: None,
});

thread_local! {
    /// Set while [`emit`] logs a summary, so that [`Fold`] lets it through.
    static EMITTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn emit(summary: Option<String>) {
    if let Some(line) = summary {
        EMITTING.with(|e| e.set(true));
        tracing::warn!(target: LIBRDKAFKA, "{line}");
        EMITTING.with(|e| e.set(false));
    }
}

/// The layer that folds librdkafka's repeated lines (see the module's comment).
struct Fold;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Fold {
    fn event_enabled(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) -> bool {
        if event.metadata().target() != LIBRDKAFKA || EMITTING.with(|e| e.get()) {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let now = Instant::now();
        let (admit, summary) = match STATE.lock() {
            Ok(mut s) => {
                let admit = s.admit(Condition::of(&message.0), now);
                let summary = if s.report_due(now) {
                    s.take_summary(now)
                } else {
                    None
                };
                (admit, summary)
            }
            Err(_) => (true, None),
        };
        // Logged outside the lock: the summary comes back through this layer.
        emit(summary);
        admit
    }
}

/// The `message` field of an event, as formatted.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_the_facility_or_the_error_code_and_the_thread() {
        let fail = Condition::of(
            "FAIL: [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
        );
        assert_eq!(fail.what, "FAIL");
        assert_eq!(fail.thread, "127.0.0.1:1/bootstrap");
        let down = Condition::of(
            "Global error: AllBrokersDown (Local: All broker connections are down): 1/1 brokers are down",
        );
        assert_eq!(down.what, "AllBrokersDown");
        assert_eq!(down.thread, "");
        assert_eq!(
            down,
            Condition::of(
                "Global error: AllBrokersDown (Local: All broker connections are down): 0/1 brokers are down"
            )
        );
    }

    #[test]
    fn repeats_are_held_back_counted_and_news_again_after_a_quiet_spell() {
        let mut s = State::default();
        let t0 = Instant::now();
        let c = || Condition::of("Global error: AllBrokersDown (…): 1/1 brokers are down");
        assert!(s.admit(c(), t0));
        for i in 1..=391 {
            assert!(!s.admit(c(), t0 + Duration::from_millis(i * 25)));
        }
        assert!(s.admit(Condition::of("FAIL: [thrd:a/1]: refused"), t0));
        assert!(!s.admit(Condition::of("FAIL: [thrd:a/1]: refused"), t0));
        let summary = s.take_summary(t0 + Duration::from_secs(10));
        assert_eq!(
            summary.as_deref(),
            Some("repeated and not shown: AllBrokersDown 391 times, FAIL 1 time (over 10.0 s)")
        );
        assert_eq!(s.take_summary(t0 + Duration::from_secs(11)), None);
        let later = t0 + Duration::from_secs(10) + QUIET;
        assert!(s.admit(c(), later));
    }
}
