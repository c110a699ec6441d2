//! Runs a pipeline: makes sure its topics exist, starts one task per stage, and in
//! `--batch` runs stops once every stage has processed the batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use millrace_broker::{Broker, BrokerError, NewTopic};
use serde::Serialize;
use tokio::sync::watch;

use crate::batch;
use crate::coordinated::Coordinated;
use crate::coordinated::task::CoordinatedTask;
use crate::counters::{BarrierProgress, CounterSnapshot, StageCounters};
use crate::engine::Stage;
use crate::error::{RuntimeError, SetupError};
use crate::operator::Operator;
use crate::redrive;
use crate::task::StageTask;

/// A topic the pipeline declares (or that the planner derived).
#[derive(Clone, Debug)]
pub struct TopicDef {
    pub name: String,
    pub partitions: i32,
    pub config: BTreeMap<String, String>,
    /// Declared by the pipeline, rather than derived from the stage that writes it.
    pub declared: bool,
}

/// A stage ready to run.
pub struct StageDef {
    pub name: String,
    /// The pattern's name, for reports ("copier", "filter", …).
    pub kind: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub logic: StageLogic,
}

/// What a stage runs: an event-driven pattern (one record at a time), or a
/// coordinated one that holds records until their batch is complete.
pub enum StageLogic {
    Event(Box<dyn Operator>),
    Coordinated(Box<dyn Coordinated>),
}

/// Everything needed to run a pipeline.
pub struct RunSpec {
    pub pipeline: String,
    /// How a continuous run cuts batches at its sources (`batch:` on a source stage);
    /// `None`: a continuous run has no batches (joins and reduces release in `--batch`
    /// runs only).
    pub batch_policy: Option<millrace_pipeline::BatchPolicy>,
    pub dead_letter: String,
    pub topics: Vec<TopicDef>,
    pub stages: Vec<StageDef>,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Process everything up to the source end offsets seen at start, then stop.
    pub batch: bool,
    /// Records per stage batch: the bound on in-flight work.
    pub max_batch: usize,
    /// Copiers and mergers move records as stored where the backend offers it (the
    /// embedded store). Off: they decode and re-encode each record like every other
    /// pattern — for comparing the two paths in tests and benchmarks.
    pub forward_encoded: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch: false,
            max_batch: 4096,
            forward_encoded: true,
        }
    }
}

/// Live view of a run: what `/metrics`, `/api` and the summary read.
pub struct RunState {
    pub pipeline: String,
    pub stages: Vec<StageState>,
}

pub struct StageState {
    pub name: String,
    pub kind: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub counters: Arc<StageCounters>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    pub name: String,
    pub kind: String,
    #[serde(flatten)]
    pub counters: CounterSnapshot,
    /// Join and reduce stages: where the barrier of the batch in hand stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub barrier: Option<BarrierProgress>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub pipeline: String,
    pub stages: Vec<StageSummary>,
}

impl RunState {
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            pipeline: self.pipeline.clone(),
            stages: self
                .stages
                .iter()
                .map(|s| StageSummary {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    counters: s.counters.snapshot(),
                    barrier: s.counters.barrier(),
                })
                .collect(),
        }
    }
}

pub struct Runtime {
    spec: RunSpec,
    state: Arc<RunState>,
    counters: Vec<Arc<StageCounters>>,
    /// Whether [`Runtime::ensure_topics`] has made the topics already: `run` then does
    /// not look them all up again (on Kafka, a round of requests at every start).
    topics_ensured: std::sync::atomic::AtomicBool,
}

impl Runtime {
    pub fn new(spec: RunSpec) -> Runtime {
        let counters: Vec<Arc<StageCounters>> = spec
            .stages
            .iter()
            .map(|_| Arc::new(StageCounters::default()))
            .collect();
        let state = Arc::new(RunState {
            pipeline: spec.pipeline.clone(),
            stages: spec
                .stages
                .iter()
                .zip(&counters)
                .map(|(s, c)| StageState {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    inputs: s.inputs.clone(),
                    outputs: s.outputs.clone(),
                    counters: c.clone(),
                })
                .collect(),
        });
        Runtime {
            topics_ensured: std::sync::atomic::AtomicBool::new(false),
            spec,
            state,
            counters,
        }
    }

    pub fn state(&self) -> Arc<RunState> {
        self.state.clone()
    }

    /// Creates the declared topics that do not exist yet; a declared topic that exists
    /// with another partition count is an error (nothing is started then). `run`, given
    /// the same broker, does not look them up again.
    pub async fn ensure_topics(&self, broker: &dyn Broker) -> Result<(), RuntimeError> {
        let redrive = redrive::topic(&self.spec.pipeline);
        ensure_topics(&self.spec.topics, &self.spec.dead_letter, &redrive, broker).await?;
        self.topics_ensured
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Runs until every stage is done (`--batch`) or `stop` turns true, then returns the
    /// per-stage summary. The first stage that fails stops the others; its error is
    /// returned, with nothing committed past what was durable.
    pub async fn run(
        self,
        broker: Arc<dyn Broker>,
        opts: RunOptions,
        stop: watch::Receiver<bool>,
    ) -> Result<RunSummary, RuntimeError> {
        let Runtime {
            spec,
            state,
            counters,
            topics_ensured,
        } = self;
        let redrive = redrive::topic(&spec.pipeline);
        if let Some(s) = spec
            .stages
            .iter()
            .find(|s| s.inputs.contains(&redrive) || s.outputs.contains(&redrive))
        {
            return Err(RuntimeError::setup(
                &s.name,
                SetupError::RedriveTopic { topic: redrive },
            ));
        }
        if !topics_ensured.into_inner() {
            ensure_topics(&spec.topics, &spec.dead_letter, &redrive, broker.as_ref()).await?;
        }
        let mut writers: HashMap<String, Vec<String>> = HashMap::new();
        for s in &spec.stages {
            for o in &s.outputs {
                writers.entry(o.clone()).or_default().push(s.name.clone());
            }
        }
        let mut sources: Vec<String> = spec
            .stages
            .iter()
            .flat_map(|s| s.inputs.iter())
            .filter(|t| !writers.contains_key(*t))
            .cloned()
            .collect();
        // Every event-driven stage reads the redrive topic too: a --batch run takes in
        // what was redriven before it started.
        let reads_redrive = |logic: &StageLogic| matches!(logic, StageLogic::Event(_));
        if spec.stages.iter().any(|s| reads_redrive(&s.logic)) {
            sources.push(redrive.clone());
        }
        sources.sort();
        sources.dedup();
        // Joins and reduces finish per instance; a zip keeps unpaired items held, so its
        // own finish is the most that can be waited for.
        let global: HashMap<String, (String, Vec<String>)> = spec
            .stages
            .iter()
            .filter(|s| matches!(&s.logic, StageLogic::Coordinated(op) if op.commits_at_finish()))
            .map(|s| {
                (
                    s.name.clone(),
                    (format!("{}.{}", spec.pipeline, s.name), s.inputs.clone()),
                )
            })
            .collect();
        let completion = if opts.batch {
            Some(batch::start(broker.clone(), writers.clone(), &sources, global.clone()).await?)
        } else {
            None
        };
        // Continuous runs with a batch policy run one batch after another: each stage
        // gets the batches through its own channel from the batch cutter below.
        let micro = !opts.batch && spec.batch_policy.is_some();
        let mut batch_txs = Vec::new();
        // A stage failure stops the others through this channel, as does the caller.
        let (inner_stop_tx, inner_stop) = watch::channel(false);
        let mut outer = stop.clone();
        let forward = inner_stop_tx.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                if *outer.borrow() {
                    let _ = forward.send(true);
                    return;
                }
                if outer.changed().await.is_err() {
                    return;
                }
            }
        });

        let coordinated = spec
            .stages
            .iter()
            .any(|s| matches!(s.logic, StageLogic::Coordinated(_)));
        let mut handles = Vec::new();
        for (stage, counters) in spec.stages.into_iter().zip(counters) {
            let group = format!("{}.{}", spec.pipeline, stage.name);
            let mut inputs = stage.inputs.clone();
            if reads_redrive(&stage.logic) && !inputs.contains(&redrive) {
                inputs.push(redrive.clone());
            }
            let completion = completion
                .as_ref()
                .map(|c| c.for_stage(group.clone(), inputs.clone()));
            let batches = if micro {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                batch_txs.push((tx, group, inputs.clone()));
                Some(rx)
            } else {
                None
            };
            let name = stage.name.clone();
            let stopper = inner_stop_tx.clone();
            // A coordinated stage does not read the redrive topic: its inputs are its own.
            let io = Stage {
                pipeline: spec.pipeline.clone(),
                name: stage.name,
                completion,
                batches,
                inputs,
                outputs: stage.outputs,
                dead_letter: spec.dead_letter.clone(),
                counters,
                broker: broker.clone(),
                max_batch: opts.max_batch,
                stop: inner_stop.clone(),
            };
            let fut: std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), RuntimeError>> + Send>,
            > = match stage.logic {
                StageLogic::Event(operator) => Box::pin(
                    StageTask {
                        stage: io,
                        redrive: Some(redrive.clone()),
                        operator,
                        stamp_batch: coordinated,
                        forward_encoded: opts.forward_encoded,
                    }
                    .run(),
                ),
                StageLogic::Coordinated(mut op) => Box::pin({
                    op.batched(opts.batch || micro);
                    CoordinatedTask { stage: io, op }.run()
                }),
            };
            let task = tokio::spawn({
                let name = name.clone();
                async move {
                    let r = fut.await;
                    if r.is_err() {
                        let _ = stopper.send(true);
                    }
                    r.map_err(|e| RuntimeError::StageFailed {
                        stage: name,
                        source: Box::new(e),
                    })
                }
            });
            handles.push((name, task));
        }
        let cutter = match (micro, spec.batch_policy) {
            (true, Some(policy)) => Some(tokio::spawn(cut_batches(
                broker.clone(),
                policy,
                writers.clone(),
                sources.clone(),
                global,
                batch_txs,
                inner_stop.clone(),
            ))),
            _ => None,
        };
        let mut first_error = None;
        for (stage, h) in handles {
            let r = h.await.unwrap_or_else(|source| {
                Err(RuntimeError::Panicked {
                    stage,
                    what: "task",
                    source,
                })
            });
            if let Err(e) = r
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        forwarder.abort();
        if let Some(c) = cutter {
            c.abort();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(state.summary()),
        }
    }
}

/// Creates the pipeline's topics (and the dead-letter and redrive topics) that do not
/// exist yet; a topic that exists with another partition count than the pipeline's is
/// an error.
async fn ensure_topics(
    topics: &[TopicDef],
    dead_letter: &str,
    redrive: &str,
    broker: &dyn Broker,
) -> Result<(), RuntimeError> {
    let mut wanted = topics.to_vec();
    for name in [dead_letter, redrive] {
        if !wanted.iter().any(|t| t.name == name) {
            wanted.push(TopicDef {
                name: name.to_string(),
                partitions: 1,
                config: BTreeMap::new(),
                declared: false,
            });
        }
    }
    // The topics are looked up side by side, then the missing ones made side by side:
    // on Kafka each is a few round trips, and a start-up does little else. A topic with
    // the wrong partition count stops the run before anything is made.
    let found = futures::future::join_all(wanted.iter().map(|t| broker.partitions(&t.name))).await;
    let mut missing = Vec::new();
    for (t, d) in wanted.iter().zip(found) {
        match d {
            Ok(d) => {
                // Dead letters and redriven records need no particular partitioning:
                // one made beforehand with any count will do, unless the pipeline
                // declares one.
                let any_count = (t.name == dead_letter || t.name == redrive) && !t.declared;
                if !any_count && usize::try_from(t.partitions).ok() != Some(d.len()) {
                    return Err(RuntimeError::PartitionMismatch {
                        topic: t.name.clone(),
                        wanted: t.partitions,
                        actual: d.len(),
                        declared: t.declared,
                    });
                }
            }
            Err(BrokerError::UnknownTopic(_)) => {
                let mut new = NewTopic::new(t.name.clone(), t.partitions);
                new.config = t.config.clone();
                missing.push(new);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let made = futures::future::join_all(missing.iter().map(|t| broker.create_topic(t))).await;
    for r in made {
        match r {
            Ok(()) | Err(BrokerError::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Cuts the batches of a continuous run: when the policy says so (every T, or once N
/// records wait at the sources), snapshots the sources' end offsets as the next batch
/// and hands it to every stage; the next batch is cut only once every stage is done
/// with this one. Batches are numbered by the number of source records up to their
/// snapshot, as `--batch` runs are, so a restarted pipeline continues the numbering.
async fn cut_batches(
    broker: Arc<dyn Broker>,
    policy: millrace_pipeline::BatchPolicy,
    writers: HashMap<String, Vec<String>>,
    sources: Vec<String>,
    global: HashMap<String, (String, Vec<String>)>,
    stages: Vec<(
        tokio::sync::mpsc::UnboundedSender<batch::Completion>,
        String,
        Vec<String>,
    )>,
    stop: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    use std::time::{Duration, Instant};
    let tick = Duration::from_millis(100);
    // Where the previous batch ended: the start of the next one.
    let mut cut: Option<u64> = None;
    let mut last_cut = Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let mut pending_total = 0u64;
        for t in &sources {
            if let Ok(d) = broker.partitions(t).await {
                pending_total += d
                    .iter()
                    .map(|p| u64::try_from(p.end_offset).unwrap_or(0))
                    .sum::<u64>();
            }
        }
        // Records at the sources that no batch has covered yet (before the first cut,
        // every record counts: the stages skip what their groups committed).
        let waiting = pending_total.saturating_sub(cut.unwrap_or(0));
        let due = match policy {
            millrace_pipeline::BatchPolicy::Records(n) => waiting >= n.max(1),
            millrace_pipeline::BatchPolicy::Every(d) => waiting > 0 && last_cut.elapsed() >= d,
        };
        if !due {
            tokio::time::sleep(tick).await;
            continue;
        }
        let root = batch::start(broker.clone(), writers.clone(), &sources, global.clone()).await?;
        let mut handed = Vec::new();
        for (tx, group, inputs) in &stages {
            let c = root.for_stage(group.clone(), inputs.clone());
            handed.push(c.clone());
            if tx.send(c).is_err() {
                return Ok(());
            }
        }
        cut = Some(
            handed
                .first()
                .map(|c| c.batch_id())
                .unwrap_or(pending_total),
        );
        last_cut = Instant::now();
        tracing::info!("batch {} cut", cut.unwrap_or(0));
        // The next batch starts once every stage is done with this one.
        while !root.all_done(stages.len()) {
            if *stop.borrow() {
                return Ok(());
            }
            tokio::time::sleep(tick).await;
        }
    }
}
