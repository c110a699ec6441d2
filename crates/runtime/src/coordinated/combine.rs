//! A map that combines for a reduce downstream (`combine: true` on the reduce): the
//! map's outputs are aggregated per group, as the reduce would aggregate them, and one
//! record per group goes out for each range of input records instead of one per
//! output. The record is the group's first output, with the group's accumulator in
//! the `millrace.combined` header; the reduce merges it.
//!
//! It is a coordinated pattern because it holds its inputs: a range's records are
//! committed only once the range's combined records are durable. Ranges are cut
//! where a replay cuts them too, so a replay writes the very records the lineage
//! finds written: each input partition's range starts at its committed offset and
//! ends after the record that brings it to [`MAX_GROUPS`] groups or [`fold::MAX_INPUTS`]
//! records, at the batch's end, or where the lineage shows a run before this one
//! ended it (that run's batch ended earlier). Every combined record is named after
//! its range's last record. (Continuous runs without batches have no batch end to
//! wait for: each record is its own range.)
//!
//! Outputs combine when the record key, the group key and the shard keys of the
//! sharders on the way are all equal, so a combined record lands where each of its
//! parts would have. When the group key, the item and the shard keys are plain paths
//! (read from the value alone), equal outputs (same key, same bytes) are in the same
//! group: nothing is picked from an output already seen.
//!
//! `fold` combines one record's outputs; this file holds a partition's range per
//! input partition and spreads a poll's partitions over two threads.

use std::collections::HashMap;

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, TopicPartition};
use millrace_pipeline::Combine;
use millrace_pipeline::expr::CompiledSelector;

use self::fold::{Absorbed, How, Range, Scratch, absorb_runs};
use super::reduce::PartialReduce;
use super::{Coordinated, FinishContext, Progress, Tally};
use crate::error::RuntimeError;
use crate::lineage::LineageTag;
use crate::operator::{Emit, RecordError};
use crate::patterns::map::Map;

pub use fold::{MAX_GROUPS, MAX_INPUTS};

mod fold;
mod seen;

/// A poll with at least this many records, from several partitions, is combined on
/// two threads (partitions' ranges are independent).
const PARALLEL_FROM: usize = 256;

pub struct Combiner {
    how: How,
    /// Offsets found written per origin when partitions were (re)gained.
    cuts: HashMap<String, Vec<i64>>,
    ranges: Vec<Range>,
    /// One per thread.
    scratch: [Scratch; 2],
    /// The lineage of the last `finish`'s emits.
    finished: Vec<LineageTag>,
}

impl Combiner {
    pub fn new(map: Map, c: &Combine) -> Combiner {
        let route_by: Vec<CompiledSelector> = c
            .route_by
            .iter()
            .map(|s| CompiledSelector::new(s.clone(), c.format))
            .collect();
        let reduce = PartialReduce::new(
            c.group_by.clone(),
            c.reducer.clone(),
            c.of.clone(),
            c.format,
        );
        Combiner {
            how: How {
                map,
                by_value: reduce.is_fast() && route_by.iter().all(|s| s.plain_path().is_some()),
                reduce,
                route_by,
                needs_item: !matches!(c.reducer, millrace_pipeline::Reducer::Count),
                format: c.format,
                out_partitions: 1,
                batched: true,
                max_groups: MAX_GROUPS,
            },
            cuts: HashMap::new(),
            ranges: Vec::new(),
            scratch: Default::default(),
            finished: Vec::new(),
        }
    }

    /// Sets the group limit of a range (tests use small ones).
    pub fn with_max_groups(mut self, n: usize) -> Self {
        self.how.max_groups = n.max(1);
        self
    }

    fn range(&mut self, tp: (&std::sync::Arc<str>, i32)) -> usize {
        let is = |r: &Range| r.tp.partition == tp.1 && r.tp.topic == *tp.0;
        match self.ranges.iter().position(is) {
            Some(i) => i,
            None => {
                self.ranges
                    .push(Range::new(TopicPartition::new(tp.0.clone(), tp.1)));
                self.ranges.sort_by(|a, b| a.tp.cmp(&b.tp));
                self.ranges.iter().position(is).unwrap_or(0)
            }
        }
    }
}

#[async_trait]
impl Coordinated for Combiner {
    fn prepare(&mut self, outputs: &[(String, i32)]) {
        self.how.out_partitions = outputs.first().map_or(1, |o| o.1);
    }

    fn batched(&mut self, batched: bool) {
        self.how.batched = batched;
    }

    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        _progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let r = self.range((&rec.topic, rec.partition));
        let mut out = Absorbed::default();
        self.how.absorb(
            &mut self.ranges[r],
            &mut self.scratch[0],
            rec,
            &self.cuts,
            &mut out,
        );
        emits.append(&mut out.emits);
        dead.append(&mut out.dead);
        out.tally
    }

    fn absorb_all(
        &mut self,
        batch: &[ConsumedRecord],
        _progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
        tags: &mut Vec<LineageTag>,
    ) -> Option<Tally> {
        // Runs of one partition (a poll returns each partition's records together).
        let mut runs: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        let mut start = 0;
        for k in 0..batch.len() {
            let ends = batch
                .get(k + 1)
                .is_none_or(|n| n.partition != batch[k].partition || n.topic != batch[k].topic);
            if ends {
                let r = self.range((&batch[k].topic, batch[k].partition));
                runs.push((r, start..k + 1));
                start = k + 1;
            }
        }
        // Each range to one of two threads, alternately.
        let mut lanes: [Vec<(&mut Range, std::ops::Range<usize>)>; 2] = Default::default();
        let mut ranges: Vec<Option<&mut Range>> = self.ranges.iter_mut().map(Some).collect();
        let mut lane_of: HashMap<usize, usize> = HashMap::new();
        for (r, at) in runs {
            let lanes_used = lane_of.len();
            let lane = *lane_of.entry(r).or_insert(lanes_used % 2);
            // A partition met twice in one poll (not how polls come): one at a time.
            let range = ranges[r].take()?;
            lanes[lane].push((range, at));
        }
        let [first, second] = lanes;
        let (how, cuts) = (&self.how, &self.cuts);
        let [s0, s1] = &mut self.scratch;
        let mut a = Absorbed::default();
        let mut b = Absorbed::default();
        if second.is_empty() || batch.len() < PARALLEL_FROM {
            absorb_runs(how, cuts, batch, first, s0, &mut a);
            absorb_runs(how, cuts, batch, second, s1, &mut b);
        } else {
            std::thread::scope(|scope| {
                scope.spawn(|| absorb_runs(how, cuts, batch, second, s1, &mut b));
                absorb_runs(how, cuts, batch, first, s0, &mut a);
            });
        }
        let mut tally = Tally::default();
        for mut x in [a, b] {
            emits.append(&mut x.emits);
            tags.append(&mut x.tags);
            dead.append(&mut x.dead);
            tally.add(x.tally);
        }
        Some(tally)
    }

    async fn finish(
        &mut self,
        _progress: Progress,
        _ctx: &FinishContext<'_>,
        emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        let mut t = Tally::default();
        self.finished.clear();
        for range in &mut self.ranges {
            if range.first.is_none() {
                continue;
            }
            t.add(self.how.flush(range, emits, &mut self.finished));
        }
        Ok(t)
    }

    fn finish_tags(&mut self) -> Option<Vec<LineageTag>> {
        Some(std::mem::take(&mut self.finished))
    }

    fn recovered(&mut self, lineage: &crate::lineage::Lineage) {
        self.cuts = lineage.found_offsets();
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.ranges
            .iter()
            .find(|r| r.tp == *tp)
            .and_then(|r| r.first)
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for r in self.ranges.iter_mut().filter(|r| tps.contains(&r.tp)) {
            forgotten += r.inputs;
            r.reset();
        }
        forgotten
    }
}

#[cfg(test)]
mod tests;
