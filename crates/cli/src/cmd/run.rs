//! `millrace run FILE [--batch]`: validates the file, opens the backend (on the
//! embedded store, holding and serving it or reaching its holder), serves HTTP, and
//! runs the stages until the batch is done or SIGINT/SIGTERM arrives.

use std::sync::Arc;

use anyhow::Context;
use millrace_runtime::{RunOptions, Runtime};
use tokio::sync::watch;

use crate::args::{Global, RunArgs};
use crate::connect::DataDir;
use crate::http;
use crate::report::note;

pub async fn run(g: &Global, args: RunArgs) -> anyhow::Result<i32> {
    let plan = super::graph::load(&args.file)?;
    // Every warning of `validate`, except that a barrier never released in a
    // continuous run is no concern of a `--batch` run.
    super::graph::print_warnings(&args.file, &plan, |w| {
        !(args.batch && w.code == Some(millrace_pipeline::diagnostics::NO_BATCH_END))
    });
    let graph = Arc::new(millrace_pipeline::graph::to_json(&plan));
    let spec = millrace_runtime::build::from_plan(&plan)
        .with_context(|| format!("cannot start {}", args.file.display()))?;
    let dead_letter = spec.dead_letter.clone();
    let redrive = redrive_help(g, &args.file, &plan);
    let runtime = Runtime::new(spec);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(watch_signals(stop_tx.clone()));

    // Kafka when asked for (flag, env, or the file's backend); otherwise the embedded
    // store: held by this process and served to the other terminals, or reached
    // through the process that holds it (`connect`).
    let (g, file_props) = crate::connect::for_plan(g, &plan);
    let g = &g;
    let broker = crate::connect::connect_with_properties(g, file_props, DataDir::Create).await?;

    // A topic that conflicts with the file stops the run before it says it serves.
    runtime.ensure_topics(broker.as_ref()).await?;

    if !args.no_http {
        let state = http::AppState::new(graph, runtime.state(), broker.clone(), dead_letter)
            .with_redrive(redrive);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut stop = stop_rx.clone();
        let addr = args.http.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = http::serve(&addr, state, tx, shutdown).await {
                tracing::warn!("{e:#}");
            }
        });
        if let Ok(addr) = rx.await {
            note!("millrace: serving http://{addr}/ (metrics at /metrics)");
        }
    }

    let opts = RunOptions {
        batch: args.batch,
        ..RunOptions::default()
    };
    let result = runtime.run(broker, opts, stop_rx).await;
    let _ = stop_tx.send(true);
    let summary = result?;
    print_summary(&summary);
    Ok(0)
}

/// How the page tells a user to redrive each stage's dead letters: the command with the
/// backend flags this run was given, and the stages that cannot take them.
fn redrive_help(
    g: &Global,
    file: &std::path::Path,
    plan: &millrace_pipeline::Plan,
) -> http::Redrive {
    use crate::cmd::dlq::{refusal, shell_word};
    let file = file.display().to_string();
    let mut command = vec!["millrace".to_string(), "dlq".into(), "redrive".into()];
    command.push(shell_word(&file));
    if let Some(b) = &g.bootstrap_server {
        command.extend(["--bootstrap-server".into(), shell_word(b)]);
    }
    if let Some(c) = &g.command_config {
        command.extend([
            "--command-config".into(),
            shell_word(&c.display().to_string()),
        ]);
    }
    if g.bootstrap_server.is_none() && g.data != std::path::Path::new(crate::args::DEFAULT_DATA) {
        command.extend(["--data".into(), shell_word(&g.data.display().to_string())]);
    }
    http::Redrive {
        command: command.join(" "),
        stages: plan
            .stages
            .iter()
            .map(|s| (s.name.clone(), refusal(plan, &s.name, &file)))
            .collect(),
    }
}

fn print_summary(s: &millrace_runtime::RunSummary) {
    note!(
        "{:<24} {:<9} {:>10} {:>10} {:>10} {:>13} {:>10}",
        "stage",
        "pattern",
        "in",
        "out",
        "filtered",
        "dead-lettered",
        "emitted"
    );
    for st in &s.stages {
        let c = &st.counters;
        note!(
            "{:<24} {:<9} {:>10} {:>10} {:>10} {:>13} {:>10}",
            st.name,
            st.kind,
            c.records_in,
            c.out,
            c.filtered,
            c.dead_lettered,
            c.emitted
        );
    }
}

/// SIGINT or SIGTERM: stop reading, finish the batch in hand, commit it, exit 0.
async fn watch_signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    note!("millrace: stopping (finishing the batch in hand)");
    let _ = stop.send(true);
}
