//! A topic: its config and its partitions, and the `topic.json` that describes it on disk.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::error::StoreError;
use crate::murmur2::partition_for_key;
use crate::partition::Partition;
use crate::recovery::{self, RecoveryReport};
use crate::segment;
use crate::store::Ctx;

pub struct Topic {
    name: String,
    config: RwLock<TopicConfig>,
    /// Settings kept for clients but not acted on (see [`Topic::extra_config`]).
    extra: RwLock<BTreeMap<String, String>>,
    /// Shared with the `Topic` that replaces this one when partitions are added.
    partitions: Vec<Arc<Partition>>,
}

/// The most partitions a topic may have; more would be a typo, not a plan.
pub const MAX_PARTITIONS: u32 = 10_000;

impl Topic {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }

    /// The topic's config as it is now (it can be altered while the store runs).
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Settings the topic was given that the store keeps and reports but does not act
    /// on — Kafka's `cleanup.policy` and the like, which a Kafka client sets and later
    /// reads back. Which keys are accepted is the caller's decision.
    pub fn extra_config(&self) -> BTreeMap<String, String> {
        self.extra.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn partition(&self, p: u32) -> Result<&Partition, StoreError> {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .map(|p| &**p)
            .ok_or_else(|| StoreError::UnknownPartition {
                topic: self.name.clone(),
                partition: p,
                count: self.partition_count(),
            })
    }

    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// The partition the Java Kafka client would pick for `key`.
    pub fn partition_for_key(&self, key: &[u8]) -> u32 {
        partition_for_key(key, self.partition_count())
    }

    pub(crate) fn close(&self) {
        for p in &self.partitions {
            p.close();
        }
    }

    /// Applies an altered config and extra settings (already written to `topic.json`).
    pub(crate) fn set_config(&self, config: TopicConfig, extra: BTreeMap<String, String>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        *self.extra.write().unwrap_or_else(|e| e.into_inner()) = extra;
        for p in &self.partitions {
            p.set_config(config.clone());
        }
    }

    /// This topic with `partitions` partitions: its own, shared, and new ones opened
    /// from `dir` (which `add_partition_dirs` made).
    pub(crate) fn grown(
        &self,
        ctx: &Arc<Ctx>,
        dir: &Path,
        partitions: u32,
    ) -> Result<Topic, StoreError> {
        let config = self.config();
        let mut all = self.partitions.clone();
        let mut report = RecoveryReport::default();
        for p in self.partition_count()..partitions {
            all.push(Arc::new(recovery::open_partition(
                ctx,
                &self.name,
                p,
                dir.join(p.to_string()),
                &config,
                &mut report,
            )?));
        }
        Ok(Topic {
            name: self.name.clone(),
            config: RwLock::new(config),
            extra: RwLock::new(self.extra_config()),
            partitions: all,
        })
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("partitions", &self.partitions.len())
            .field("config", &self.config())
            .finish()
    }
}

/// `topic.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMeta {
    version: u32,
    partitions: u32,
    config: BTreeMap<String, String>,
    /// Settings kept but not acted on ([`Topic::extra_config`]); absent when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, String>,
}

/// Rewrites `dir/topic.json` whole (see `log_start::replace_file`).
pub(crate) fn write_meta(
    ctx: &Ctx,
    dir: &Path,
    partitions: u32,
    config: &TopicConfig,
    extra: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let meta = TopicMeta {
        version: 1,
        partitions,
        config: config.to_pairs(),
        extra: extra.clone(),
    };
    let json =
        serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
    crate::log_start::replace_file(&*ctx.storage, dir, "topic.json", &json)
}

/// Makes the directories of partitions `from..to` of the topic in `dir`, each with its
/// empty first segment, durably. A directory left by an earlier attempt that crashed
/// before `topic.json` counted it is not part of the topic: it is made anew.
pub(crate) fn add_partition_dirs(
    ctx: &Ctx,
    dir: &Path,
    from: u32,
    to: u32,
) -> Result<(), StoreError> {
    let storage = &ctx.storage;
    for p in from..to {
        let pdir = dir.join(p.to_string());
        if pdir.exists() {
            std::fs::remove_dir_all(&pdir).map_err(|e| StoreError::io_at(&pdir, e))?;
        }
        mkdir(&pdir)?;
        let seg = pdir.join(segment::log_file_name(0));
        storage
            .open(&seg, true)
            .map_err(|e| StoreError::io_at(&seg, e))?;
        storage
            .sync_dir(&pdir)
            .map_err(|e| StoreError::io_at(&pdir, e))?;
    }
    storage.sync_dir(dir).map_err(|e| StoreError::io_at(dir, e))
}

/// Kafka's topic name rules: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`. They also keep
/// names safe as directory names.
pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name.len() > 249 {
        return bad("must be 1 to 249 characters");
    }
    if name == "." || name == ".." {
        return bad("cannot be '.' or '..'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

pub(crate) fn mkdir(path: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| StoreError::io_at(path, e))
}

/// Creates a topic's directory tree under a temporary name, makes every piece durable,
/// then renames it into place, so a crash leaves either no topic or a whole one.
pub(crate) fn create(
    ctx: &Arc<Ctx>,
    topics_dir: &Path,
    name: &str,
    partitions: u32,
    config: TopicConfig,
    extra: BTreeMap<String, String>,
) -> Result<Topic, StoreError> {
    let storage = &ctx.storage;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| StoreError::io_at(p, e)
    };
    let tmp = topics_dir.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    mkdir(&tmp)?;
    let meta = TopicMeta {
        version: 1,
        partitions,
        config: config.to_pairs(),
        extra,
    };
    let json =
        serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
    let meta_path = tmp.join("topic.json");
    let f = storage.open(&meta_path, true).map_err(io(&meta_path))?;
    f.write_at(&json, 0).map_err(io(&meta_path))?;
    f.sync_data().map_err(io(&meta_path))?;
    for p in 0..partitions {
        let pdir = tmp.join(p.to_string());
        mkdir(&pdir)?;
        let seg = pdir.join(segment::log_file_name(0));
        storage.open(&seg, true).map_err(io(&seg))?;
        storage.sync_dir(&pdir).map_err(io(&pdir))?;
    }
    storage.sync_dir(&tmp).map_err(io(&tmp))?;
    let dir = topics_dir.join(name);
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    storage.sync_dir(topics_dir).map_err(io(topics_dir))?;
    let mut report = RecoveryReport::default();
    load(ctx, &dir, name, &mut report)
}

/// Opens an existing topic directory, recovering each partition.
pub(crate) fn load(
    ctx: &Arc<Ctx>,
    dir: &Path,
    name: &str,
    report: &mut RecoveryReport,
) -> Result<Topic, StoreError> {
    let meta_path = dir.join("topic.json");
    let bytes = std::fs::read(&meta_path).map_err(|e| StoreError::io_at(&meta_path, e))?;
    let meta: TopicMeta = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::corrupt(&meta_path, 0, format!("unreadable topic.json: {e}")))?;
    if meta.version != 1 || meta.partitions == 0 || meta.partitions > MAX_PARTITIONS {
        return Err(StoreError::corrupt(
            &meta_path,
            0,
            "unsupported version or partition count",
        ));
    }
    let config = TopicConfig::from_pairs(&meta.config)?;
    let partitions = (0..meta.partitions)
        .map(|p| {
            recovery::open_partition(ctx, name, p, dir.join(p.to_string()), &config, report)
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic {
        name: name.to_string(),
        config: RwLock::new(config),
        extra: RwLock::new(meta.extra),
        partitions,
    })
}

/// The directory of a topic.
pub(crate) fn topic_dir(topics_dir: &Path, name: &str) -> PathBuf {
    topics_dir.join(name)
}
