//! Combining one record: its map outputs, each folded into its range's group (a
//! group per combining key), and a range written out as one record per group.

use std::collections::HashMap;

use bytes::Bytes;
use millrace_broker::{ConsumedRecord, Header, ProduceRecord, TopicPartition};
use millrace_pipeline::Val;
use millrace_pipeline::expr::CompiledSelector;

use super::seen::{Seen, SeenTable};
use crate::coordinated::Tally;
use crate::coordinated::key::InlineKey;
use crate::coordinated::reduce::{COMBINED_HEADER, Partial, PartialReduce};
use crate::lineage::{self, LineageTag};
use crate::operator::{Emit, RecordError, derived};
use crate::patterns::map::Map;
use crate::patterns::{value_of, with_vars};

/// Groups a range may hold before it is written out (bounds memory: one record and
/// one accumulator per group).
pub const MAX_GROUPS: usize = 65_536;

/// Input records a range may hold before it is written out. This bounds what a replay
/// reads again, not memory (groups do). Long ranges combine more: the word count's
/// 100 MB take one range per partition, and the stages downstream get ~120 k records
/// (with 131 072 they got ~530 k, and the run took a fifth longer).
pub const MAX_INPUTS: u64 = 1 << 20;

/// What combining does, shared by the threads.
pub(super) struct How {
    pub(super) map: Map,
    /// The reduce's way of taking records: group key, item, accumulators.
    pub(super) reduce: PartialReduce,
    /// The sharders' keys.
    pub(super) route_by: Vec<CompiledSelector>,
    /// Every key is a plain path, so equal outputs (bytes) are in the same group.
    pub(super) by_value: bool,
    /// Whether the reducer reads the item (count does not: its repeats are counted in
    /// the index, see [`Seen`]).
    pub(super) needs_item: bool,
    pub(super) format: millrace_pipeline::Format,
    /// Output partitions of the map's topic.
    pub(super) out_partitions: i32,
    pub(super) batched: bool,
    pub(super) max_groups: usize,
}

/// Buffers reused from record to record.
#[derive(Default)]
pub(super) struct Scratch {
    outputs: Vec<Emit>,
    /// The native path's outputs of one record, and where each ends.
    native: Vec<u8>,
    ends: Vec<usize>,
    /// The combining key being built.
    key: Vec<u8>,
    /// The `by_bytes` hash of each output of a record.
    hashes: Vec<u64>,
}

/// One input partition's open range.
pub(super) struct Range {
    pub(super) tp: TopicPartition,
    /// Its lineage origin (`topic/partition`).
    pub(super) origin: String,
    /// Where a run before this one ended the range (see `How::absorb`).
    pub(super) cut: Option<i64>,
    /// Groups in the last flush.
    pub(super) groups_written: u32,
    pub(super) first: Option<i64>,
    pub(super) last: i64,
    /// Input records in the range, and those of them that had outputs.
    pub(super) inputs: u64,
    pub(super) emitted: u64,
    pub(super) index: HashMap<ComboKey, usize, foldhash::fast::RandomState>,
    /// Outputs seen (record key and bytes) → their group, when `by_value`.
    pub(super) by_bytes: SeenTable,
    pub(super) groups: Vec<(ProduceRecord, Partial)>,
}

/// What absorbing some records gave: outputs with the index of the record that
/// caused each, dead letters, and the tally.
#[derive(Default)]
pub(super) struct Absorbed {
    pub(super) emits: Vec<Emit>,
    /// The lineage of each of `emits`.
    pub(super) tags: Vec<LineageTag>,
    pub(super) dead: Vec<(ConsumedRecord, RecordError)>,
    pub(super) tally: Tally,
}

impl Range {
    /// The range of partition `tp`, empty.
    pub(super) fn new(tp: TopicPartition) -> Range {
        Range {
            origin: lineage::origin_of(&tp.topic, tp.partition),
            tp,
            cut: None,
            groups_written: 0,
            first: None,
            last: -1,
            inputs: 0,
            emitted: 0,
            index: HashMap::default(),
            by_bytes: SeenTable::default(),
            groups: Vec::new(),
        }
    }

    /// Empty, with no record held: after it is written out, or forgotten.
    pub(super) fn reset(&mut self) {
        self.index.clear();
        self.by_bytes.clear();
        self.groups.clear();
        self.first = None;
        self.cut = None;
        self.inputs = 0;
        self.emitted = 0;
    }
}

impl How {
    /// Takes in one record of `range`'s partition.
    pub(super) fn absorb(
        &self,
        range: &mut Range,
        s: &mut Scratch,
        rec: &ConsumedRecord,
        cuts: &HashMap<String, Vec<i64>>,
        out: &mut Absorbed,
    ) {
        if range.first.is_none() {
            // A range that a run before this one wrote out (its outputs are in the
            // lineage) ends where it ended then: the replay writes the same records.
            // (Found offsets are sorted; a tail holds up to 65 536 of them.)
            range.cut = cuts.get(&range.origin).and_then(|found| {
                found
                    .get(found.partition_point(|&o| o < rec.offset))
                    .copied()
            });
        }
        s.native.clear();
        s.ends.clear();
        s.outputs.clear();
        // Outputs are collected first: a record the native path gives up on midway
        // must not have added anything.
        let (native, ends) = (&mut s.native, &mut s.ends);
        let answered = self.map.run_native(rec, &mut |o| {
            native.extend_from_slice(o);
            ends.push(native.len());
        });
        if !answered {
            s.ends.clear();
            if let Err(e) = self.map.run_jaq(rec, &mut s.outputs) {
                out.dead.push((rec.clone(), e));
                out.tally.dead_lettered += 1;
                return;
            }
        }
        let had_outputs = !s.ends.is_empty() || !s.outputs.is_empty();
        let Scratch {
            outputs,
            native,
            ends,
            key,
            hashes,
        } = s;
        let values = || {
            let starts = std::iter::once(0).chain(ends.iter().copied());
            let natives = starts
                .zip(ends.iter())
                .map(|(start, &end)| &native[start..end]);
            natives.chain(outputs.iter().map(|o| &o.record.value[..]))
        };
        key_prefix(key, rec);
        hashes.clear();
        if self.by_value {
            // All of the record's slots first, so their cache misses overlap.
            for value in values() {
                let h = range.by_bytes.hash(key, value);
                range.by_bytes.prefetch(h);
                hashes.push(h);
            }
        }
        for (i, value) in values().enumerate() {
            let hash = hashes.get(i).copied();
            if let Err(e) = self.fold(range, key, rec, value, hash) {
                // What the reduce would have dead-lettered: this output.
                let mut bad = rec.clone();
                bad.value = Bytes::copy_from_slice(value);
                out.dead.push((bad, e));
            }
        }
        range.first.get_or_insert(rec.offset);
        range.last = rec.offset;
        range.inputs += 1;
        range.emitted += u64::from(had_outputs);
        if !self.batched
            || range.groups.len() >= self.max_groups
            || range.inputs >= MAX_INPUTS
            || range.cut.is_some_and(|c| rec.offset >= c)
        {
            out.tally
                .add(self.flush(range, &mut out.emits, &mut out.tags));
        }
    }

    /// Adds one output of `rec` (its JSON) to `range`. `key` holds the record key's
    /// part of the combining key ([`key_prefix`]); `hash` is the output's `by_bytes`
    /// hash when `by_value`.
    fn fold(
        &self,
        range: &mut Range,
        key: &mut Vec<u8>,
        rec: &ConsumedRecord,
        value: &[u8],
        hash: Option<u64>,
    ) -> Result<(), RecordError> {
        let prefix = key.len();
        if let Some(hash) = hash {
            // Equal outputs have equal group keys, items and shard keys: an output
            // seen before goes to its group without picking anything from it again.
            if let Some(seen) = range.by_bytes.get_mut(hash, key, value) {
                let g = seen.group as usize;
                if !self.needs_item {
                    seen.uncounted += 1;
                    if seen.uncounted == u32::MAX {
                        PartialReduce::add_to_count(
                            &mut range.groups[g].1,
                            u64::from(seen.uncounted),
                        );
                        seen.uncounted = 0;
                    }
                    return Ok(());
                }
                let item = self.item(rec, value)?;
                return self.reduce.fold(&mut range.groups[g].1, &item);
            }
        }
        let seen_as = hash.filter(|_| range.by_bytes.len() < self.max_groups);
        let group = self.group_of(range, key, rec, value);
        // The prefix again, for the next output.
        key.truncate(prefix);
        let g = group?;
        if let Some(hash) = seen_as {
            let seen = Seen {
                group: u32::try_from(g).unwrap_or(u32::MAX),
                uncounted: 0,
            };
            range.by_bytes.insert(hash, key, value, seen);
        }
        Ok(())
    }

    /// Adds an output to its group, started if new, and returns the group's index.
    /// Appends the group key and the shard keys to `key`.
    fn group_of(
        &self,
        range: &mut Range,
        key: &mut Vec<u8>,
        rec: &ConsumedRecord,
        value: &[u8],
    ) -> Result<usize, RecordError> {
        let (group, item) = self.key_and_item(rec, value)?;
        key_part(key, &group);
        let mut parsed = None;
        for by in &self.route_by {
            // A plain path is picked from the bytes, as the sharder picks it.
            if let Some(k) = by.picked_key(value) {
                key_part(key, &k);
                continue;
            }
            if parsed.is_none() {
                let read = as_read(rec, value);
                parsed = Some((value_of(&read, self.format)?, read));
            }
            let Some((v, read)) = parsed.as_ref() else {
                continue;
            };
            let k = with_vars(read, |vars| by.selector().key(v, vars)).map_err(RecordError::new)?;
            key_part(key, &k);
        }
        match range.index.get(&ComboKey::new(key)) {
            Some(&g) => {
                self.reduce.fold(&mut range.groups[g].1, &item)?;
                Ok(g)
            }
            None => {
                self.start_group(range, rec, value, key, &item)?;
                Ok(range.groups.len() - 1)
            }
        }
    }

    /// Group key and item of an output, as the reduce takes them.
    fn key_and_item(
        &self,
        rec: &ConsumedRecord,
        value: &[u8],
    ) -> Result<(Vec<u8>, Val), RecordError> {
        match self.reduce.key_and_item_fast(value) {
            Some((group, item)) => Ok((group.into_owned(), item)),
            None => self.reduce.key_and_item_general(&as_read(rec, value)),
        }
    }

    /// The item of an output (checking, as the reduce would, that its group key can
    /// be taken).
    fn item(&self, rec: &ConsumedRecord, value: &[u8]) -> Result<Val, RecordError> {
        self.key_and_item(rec, value).map(|(_, item)| item)
    }

    fn start_group(
        &self,
        range: &mut Range,
        rec: &ConsumedRecord,
        value: &[u8],
        key: &[u8],
        item: &Val,
    ) -> Result<(), RecordError> {
        let partial = self.reduce.start(item)?;
        // Its own bytes: a slice would keep a whole buffer alive.
        let record = derived(rec, Bytes::copy_from_slice(value));
        range.index.insert(ComboKey::new(key), range.groups.len());
        range.groups.push((record, partial));
        Ok(())
    }

    /// Writes out `range`: its combined records go to `emits`, their lineage to `tags`
    /// (named after the range's last record, as a replay of the range names them).
    pub(super) fn flush(
        &self,
        range: &mut Range,
        emits: &mut Vec<Emit>,
        tags: &mut Vec<LineageTag>,
    ) -> Tally {
        let tally = Tally {
            out: range.emitted,
            filtered: range.inputs - range.emitted,
            ..Tally::default()
        };
        for seen in range.by_bytes.values().filter(|s| s.uncounted > 0) {
            let partial = &mut range.groups[seen.group as usize].1;
            PartialReduce::add_to_count(partial, u64::from(seen.uncounted));
        }
        let parts = self.out_partitions.max(1);
        range.groups_written = u32::try_from(range.groups.len()).unwrap_or(u32::MAX);
        for (mut record, partial) in range.groups.drain(..) {
            let acc = PartialReduce::encode(&partial).unwrap_or_default();
            record
                .headers
                .push(Header::new(COMBINED_HEADER, Bytes::from(acc)));
            if record.key.is_none() {
                // As the map would: unkeyed outputs stay with their input partition.
                record.partition = Some(range.tp.partition % parts);
            }
            emits.push(Emit { output: 0, record });
        }
        for i in 0..range.groups_written {
            tags.push(LineageTag::new(range.origin.clone(), range.last, i));
        }
        range.reset();
        tally
    }
}

/// Bytes of a combining key kept inline (most keys: the word count's are ~20).
type ComboKey = InlineKey<39>;

/// The record key's part of a combining key, the same for all outputs of a record.
fn key_prefix(key: &mut Vec<u8>, rec: &ConsumedRecord) {
    key.clear();
    match rec.key.as_deref() {
        None => key.push(0),
        Some(k) => {
            key.push(1);
            key_part(key, k);
        }
    }
}

/// Appends one length-prefixed part to a combining key.
fn key_part(key: &mut Vec<u8>, b: &[u8]) {
    key.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    key.extend_from_slice(b);
}

/// An output as the reduce would read it, for the slow paths.
fn as_read(rec: &ConsumedRecord, value: &[u8]) -> ConsumedRecord {
    ConsumedRecord {
        topic: rec.topic.clone(),
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.clone(),
        value: Bytes::copy_from_slice(value),
        headers: rec.headers.clone(),
        timestamp: rec.timestamp,
    }
}

/// Absorbs `runs` (record index ranges of `batch`, each in one range) into `out`.
pub(super) fn absorb_runs(
    how: &How,
    cuts: &HashMap<String, Vec<i64>>,
    batch: &[ConsumedRecord],
    runs: Vec<(&mut Range, std::ops::Range<usize>)>,
    s: &mut Scratch,
    out: &mut Absorbed,
) {
    for (range, at) in runs {
        for rec in &batch[at] {
            how.absorb(range, s, rec, cuts, out);
        }
    }
}
