//! The `millrace` command.
//!
//! Layout:
//! - `args`: the command line (flags named as Kafka's console tools name them).
//! - `connect`: picks the backend (Kafka, or the embedded store: held and served by
//!   this process, or reached through the process holding it).
//! - `cmd/`: one file per command (a folder for `dlq`, with its three subcommands).
//! - `log`: log lines on standard error (colour on a terminal only, librdkafka's
//!   repeats folded).
//! - `report`: errors with hints, notes, and a closed pipe as a normal end.
//! - `http/`: the HTTP surface of `millrace run` (/metrics, /healthz, /api, the page).
//! - `bench/`: `millrace bench …`.

mod args;
mod bench;
mod cmd;
mod connect;
mod http;
mod log;
mod report;

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
    log::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // jq evaluation recurses along an expression's chains of operators (up to
        // `expr::MAX_OPERATORS`); tokio's 2 MiB would not hold the longest. Reserved,
        // not used, unless an expression goes that deep.
        .thread_stack_size(16 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => report::exit_on_error(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let result = dispatch(cli).await;
        // A store this process holds is served until the command is done.
        connect::release().await;
        result
    });
    // Blocking readers of stdin must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => {
            log::flush_folded();
            std::process::exit(code)
        }
        Err(e) => report::exit_on_error(&e),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    use connect::DataDir;
    let g = cli.global;
    match cli.command {
        Command::Topics { command } => {
            // Only `topics create` defines something worth a new data directory.
            let dir = match command {
                args::TopicsCommand::Create { .. } => DataDir::Create,
                _ => DataDir::Existing,
            };
            let broker = connect::connect(&g, dir).await?;
            cmd::topics::run(broker.as_ref(), command).await?;
        }
        Command::Groups { command } => {
            let broker = connect::connect(&g, DataDir::Existing).await?;
            cmd::groups::run(broker.as_ref(), command).await?;
        }
        Command::Produce(args) => {
            let extra = cmd::produce::kafka_properties();
            let broker = connect::connect_with_properties(&g, extra, DataDir::Existing).await?;
            cmd::produce::run(broker.as_ref(), args).await?;
        }
        Command::Consume(args) => {
            let broker = connect::connect(&g, DataDir::Existing).await?;
            cmd::consume::run(broker.as_ref(), args).await?;
        }
        Command::Validate { file } => cmd::graph::validate(&file)?,
        Command::Graph { file, format } => cmd::graph::graph(&file, format)?,
        Command::Status { file } => cmd::status::run(&g, file.as_deref()).await?,
        Command::Run(args) => return cmd::run::run(&g, args).await,
        Command::Dlq { command } => cmd::dlq::run(&g, command).await?,
        Command::Bench(args) => cmd::bench::run(&g, args).await?,
        Command::Serve(args) => return cmd::serve::run(&g, args).await,
    }
    Ok(0)
}
