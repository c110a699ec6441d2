//! The `millrace` command.
//!
//! Layout:
//! - `args`: the command line (flags named as Kafka's console tools name them).
//! - `connect`: picks the backend (Kafka, the embedded store, or a store held by a
//!   running pipeline).
//! - `cmd/`: one file per command (a folder for `dlq`, with its three subcommands).
//! - `http/`: the HTTP surface of `millrace run` (/metrics, /healthz, /api, the page).
//! - `bench/`: `millrace bench …`.

mod args;
mod bench;
mod cmd;
mod connect;
mod http;

use clap::Parser;

use args::{Cli, Command};

/// mimalloc instead of the system allocator: stage tasks allocate and free records on
/// different threads at millions per second, where glibc's malloc spends a fifth of
/// the time (arena locks, consolidation, returning and re-faulting pages). Built
/// without transparent huge pages (`no_thp`): zeroing a fresh 2 MiB page for each
/// batch-sized allocation cost a copier a tenth of its time. It also replaces C's
/// `malloc` in the whole binary (`override`): librdkafka allocates several blocks per
/// message (the message, its header list and each header, fetch ops) on one thread
/// and frees them on another: glibc's malloc and free were a sixth of a Kafka copier's
/// client CPU, mimalloc's take about half that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
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
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .without_time(),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // jq evaluation recurses along an expression's chains of operators (up to
        // `expr::MAX_OPERATORS`); tokio's 2 MiB would not hold the longest. Reserved,
        // not used, unless an expression goes that deep.
        .thread_stack_size(16 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(dispatch(cli));
    // Blocking readers of stdin must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                // `millrace consume … | head` closing the pipe is a normal end.
                std::process::exit(0);
            }
            fail(&e)
        }
    }
}

fn fail(e: &anyhow::Error) -> ! {
    eprintln!("error: {e:#}");
    std::process::exit(1)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = cli.global;
    match cli.command {
        Command::Topics { command } => {
            let broker = connect::connect(&g).await?;
            cmd::topics::run(broker.as_ref(), command).await?;
        }
        Command::Produce(args) => {
            let broker = connect::connect(&g).await?;
            cmd::produce::run(broker.as_ref(), args).await?;
        }
        Command::Consume(args) => {
            let broker = connect::connect(&g).await?;
            cmd::consume::run(broker.as_ref(), args).await?;
        }
        Command::Validate { file } => cmd::graph::validate(&file)?,
        Command::Graph { file, format } => cmd::graph::graph(&file, format)?,
        Command::Status { file } => {
            let broker = connect::connect(&g).await?;
            cmd::status::run(broker.as_ref(), file.as_deref()).await?;
        }
        Command::Run(args) => return cmd::run::run(&g, args).await,
        Command::Dlq { command } => cmd::dlq::run(&g, command).await?,
        Command::Bench(args) => cmd::bench::run(&g, args).await?,
    }
    Ok(0)
}
