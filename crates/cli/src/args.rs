//! Command-line arguments. Flags are named as Kafka's console tools name them so the
//! book's commands carry over (`--topic`, `--partitions`, `--from-beginning`, …).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// The embedded store's data directory unless told otherwise.
pub const DEFAULT_DATA: &str = "./millrace-data";

#[derive(Parser, Debug)]
#[command(
    name = "millrace",
    version,
    about = "Event-driven and coordinated batch processing over topics",
    long_about = "Event-driven and coordinated batch processing over topics.\n\n\
        Without --bootstrap-server every command works on the embedded store in --data \
        (no set-up); with it, on an Apache Kafka cluster."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory of the embedded store.
    #[arg(long, global = true, env = "MILLRACE_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// Kafka bootstrap servers (HOST:PORT[,HOST:PORT]); selects the Kafka backend.
    #[arg(long = "bootstrap-server", global = true, env = "MILLRACE_BOOTSTRAP")]
    pub bootstrap_server: Option<String>,
    /// Kafka client properties file (security.protocol, sasl.*, ssl.*, …).
    #[arg(long = "command-config", global = true)]
    pub command_config: Option<PathBuf>,
    /// How long to wait for an unreachable broker before giving up.
    #[arg(long = "connect-timeout-ms", global = true, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list, describe and delete topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// List, describe, reset the offsets of, and delete consumer groups.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Produce one record per line of standard input (or of --file).
    Produce(ProduceArgs),
    /// Print the records of a topic, one value per line.
    Consume(ConsumeArgs),
    /// Run a pipeline file.
    Run(RunArgs),
    /// Check a pipeline file and report every error in it.
    Validate { file: PathBuf },
    /// Draw a pipeline's DAG.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Topics with their offsets and, for a pipeline file, each stage's lag.
    Status {
        /// A pipeline file: show its stages' consumer groups and lag.
        file: Option<PathBuf>,
    },
    /// Dead letters: list them, show them, send them back to the stage that failed them.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Measure throughput against a baseline measured in the same run.
    Bench(BenchArgs),
    /// Serve the embedded store as a single-node Kafka broker.
    Serve(ServeArgs),
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// The dead letters grouped by stage and error: counts, first and last seen, a sample.
    List(DlqListArgs),
    /// The dead letters themselves with all their headers, one JSON object per line.
    Show(DlqShowArgs),
    /// Send dead letters back to the stage that failed them, and to it alone.
    Redrive(DlqRedriveArgs),
}

/// Which dead letters a `dlq` command reads.
#[derive(Args, Debug, Clone)]
pub struct DlqSelect {
    /// Only those of this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only those whose error contains this text.
    #[arg(long)]
    pub error: Option<String>,
    /// Only dead letters at this offset of the dead-letter topic or after.
    #[arg(long = "from-offset")]
    pub from_offset: Option<i64>,
    /// Only dead letters at this offset of the dead-letter topic or before.
    #[arg(long = "to-offset")]
    pub to_offset: Option<i64>,
}

/// Where `dlq list` and `dlq show` find the dead letters.
#[derive(Args, Debug)]
pub struct DlqTopic {
    /// The pipeline file (its dead-letter topic, its stages and its backend).
    pub file: Option<PathBuf>,
    /// Read this dead-letter topic instead of a pipeline file's.
    #[arg(long = "dead-letter-topic")]
    pub dead_letter_topic: Option<String>,
}

#[derive(Args, Debug)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub from: DlqTopic,
    #[command(flatten)]
    pub select: DlqSelect,
    /// One JSON object per group and line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DlqShowArgs {
    #[command(flatten)]
    pub from: DlqTopic,
    #[command(flatten)]
    pub select: DlqSelect,
    /// Exit after this many records.
    #[arg(long = "max-messages")]
    pub max_messages: Option<u64>,
}

#[derive(Args, Debug)]
pub struct DlqRedriveArgs {
    /// The pipeline file.
    pub file: PathBuf,
    #[command(flatten)]
    pub select: DlqSelect,
    /// Say what would be sent, and send nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long = "replication-factor", default_value_t = 1)]
        replication_factor: i16,
        /// Topic config as key=value (repeatable), e.g. durability=none.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Succeed when the topic already exists.
        #[arg(long = "if-not-exists")]
        if_not_exists: bool,
    },
    /// List topic names, one per line.
    List,
    /// Show a topic's partitions, offsets and config.
    Describe {
        #[arg(long)]
        topic: String,
    },
    /// Delete a topic and its data.
    Delete {
        #[arg(long)]
        topic: String,
    },
}

/// `millrace groups …`: what Kafka's kafka-consumer-groups does, with its flags.
#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// List consumer groups, one per line.
    List {
        /// Show each group's state; given states (Stable,Empty,…) list only those.
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "STATES")]
        state: Option<String>,
    },
    /// Show groups' state and members, and per partition the committed offset, end
    /// offset and lag.
    Describe {
        /// The group to describe (default: every group).
        #[arg(long)]
        group: Option<String>,
    },
    /// Move a group's committed offsets on a topic: a dry run unless --execute.
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets.
    Delete {
        #[arg(long)]
        group: String,
    },
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("to")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "shift_by"])
))]
pub struct ResetOffsetsArgs {
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub topic: String,
    /// To each partition's first stored offset.
    #[arg(long = "to-earliest")]
    pub to_earliest: bool,
    /// To each partition's end (skip everything not read yet).
    #[arg(long = "to-latest")]
    pub to_latest: bool,
    /// To this offset on every partition (kept within each partition's offsets).
    #[arg(long = "to-offset", value_name = "N")]
    pub to_offset: Option<i64>,
    /// Move each committed offset by N (negative: back).
    #[arg(long = "shift-by", value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (without it, only print them).
    #[arg(long)]
    pub execute: bool,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[arg(long)]
    pub topic: String,
    /// Reader properties: parse.key=true, key.separator=: (as kafka-console-producer).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Read records from this file instead of standard input (shows progress).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Send this partition instead of choosing by key.
    #[arg(long)]
    pub partition: Option<i32>,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub topic: String,
    /// Start from the oldest record when the group has no committed offset.
    #[arg(long = "from-beginning")]
    pub from_beginning: bool,
    /// Consumer group: commit offsets so the next run continues where this one stopped.
    #[arg(long)]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(long = "max-messages")]
    pub max_messages: Option<u64>,
    /// Exit after this long without a record.
    #[arg(long = "timeout-ms")]
    pub timeout_ms: Option<u64>,
    /// Formatter properties: print.key=true, print.partition=true, print.offset=true,
    /// print.headers=true, key.separator=<sep>.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// With --partition: start at this offset.
    #[arg(long, requires = "partition")]
    pub offset: Option<i64>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    pub file: PathBuf,
    /// Process everything up to the end offsets seen at start, then exit.
    #[arg(long)]
    pub batch: bool,
    /// Serve /metrics, /healthz, /api/graph and the pipeline page on this address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: String,
    /// Do not serve HTTP.
    #[arg(long = "no-http")]
    pub no_http: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address Kafka clients connect to.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: String,
    /// Users for SASL/SCRAM-SHA-256, one `name:password` per line (mode 600).
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Serve on an address other than loopback without authentication.
    #[arg(long)]
    pub insecure: bool,
    /// On loopback, accept clients of any local user, not only the data directory's
    /// owner.
    #[arg(long = "allow-any-user")]
    pub allow_any_user: bool,
    /// Serve /metrics (Prometheus: offsets, consumer group lag, connections, requests),
    /// /api/stats and /healthz on this address, e.g. 127.0.0.1:9308 (port 0 picks a
    /// free one). Without it, no HTTP is served.
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Kafka's group.initial.rebalance.delay.ms: how long a new consumer group's first
    /// rebalance waits for more members to join. Kafka's default is 3000; test brokers
    /// often set 0, so a lone consumer starts at once.
    #[arg(
        long = "group-initial-rebalance-delay-ms",
        value_name = "MS",
        default_value_t = 3000
    )]
    pub group_initial_rebalance_delay_ms: u64,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub which: BenchKind,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Scratch directory (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BenchKind {
    /// The embedded store's append and read rates.
    Log,
    /// Produce and consume through the Kafka backend vs librdkafka (needs
    /// --bootstrap-server).
    Kafka,
    /// The patterns as pipelines on the embedded store; with --bootstrap-server, the
    /// copier on Kafka against the Kafka produce rate.
    Pipeline,
    /// Word count, reduce and join pipelines on the embedded store.
    Coordinated,
    /// The Kafka client path against what a user runs instead: `produce --file` against
    /// kcat, and a 1000-record `run --batch` copier start to exit (needs
    /// --bootstrap-server, and kcat on the PATH).
    Peers,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    Json,
}

/// Splits `key=value`; used for --config and --property.
pub fn parse_pair(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => anyhow::bail!("'{s}' is not KEY=VALUE"),
    }
}
