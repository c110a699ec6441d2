//! Helpers shared by the store's integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use millrace_store::{
    Durability, Header, Record, RecoveryReport, Store, StoreOptions, TopicConfig,
};

pub fn open(dir: &Path) -> (Store, RecoveryReport) {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

pub fn config(durability: Durability, segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        durability,
        segment_bytes,
        ..TopicConfig::default()
    }
}

pub fn config_pairs(kv: &[(&str, &str)]) -> TopicConfig {
    let m: BTreeMap<String, String> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TopicConfig::from_pairs(&m).expect("valid config")
}

/// A record whose content says which one it is.
pub fn rec(i: u64) -> Record {
    Record {
        key: if i % 3 == 0 {
            None
        } else {
            Some(Bytes::from(format!("k{i}")))
        },
        value: Bytes::from(format!("value-{i}")),
        headers: if i % 2 == 0 {
            vec![Header::new("h", "1"), Header::new("h", format!("{i}"))]
        } else {
            Vec::new()
        },
        timestamp: 1_000 + i as i64,
    }
}
