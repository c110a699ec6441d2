//! How a reduce reads a record: its group key, the group's JSON and the item to
//! aggregate. When `group_by` and `of` are plain paths over JSON values and the reducer
//! is built in, they are picked from the record's bytes in one pass (the fast tier);
//! otherwise, or when the pick gives up on a record, the record is parsed and the
//! expressions run by jaq, which gives the same values and errors.

use std::borrow::Cow;

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{
    CompiledSelector, Picked, PlainPath, Val, key_bytes, pick, val_to_json,
};
use millrace_pipeline::{Format, Reducer, Selector};
use serde_json::Value;

use super::acc::Acc;
use crate::operator::RecordError;
use crate::patterns::{value_of, with_vars};

/// `group_by` and `of` as plain paths, picked from the record bytes without jq.
pub(super) struct FastPaths {
    group_by: Option<PlainPath>,
    of: Option<PlainPath>,
    /// Whether the reducer uses the item at all (count does not).
    needs_item: bool,
    /// `.`, for an absent `of` (the whole value) or `group_by` (not used then).
    whole: PlainPath,
}

/// Key, group value and item of one record.
pub(super) struct Absorbed<'a> {
    pub(super) key: Cow<'a, [u8]>,
    pub(super) group: GroupValue<'a>,
    pub(super) item: Val,
    /// A combined record's accumulator (see `partial`): merged instead of the item.
    pub(super) partial: Option<Acc>,
    /// The batch the record came in (its `millrace.batch` header), when it is an
    /// earlier one than the batch in hand: records an upstream stage released in a
    /// batch whose results this reduce wrote, then died before committing. They are
    /// counted under that batch again, so the replayed results are the ones written
    /// (same batch, same group) instead of a second count in a new batch. `key` is
    /// then prefixed with the batch.
    pub(super) batch: Option<u64>,
}

/// A group's JSON, or where to build it from when the group is new.
pub(super) enum GroupValue<'a> {
    Json(Value),
    Picked(Picked<'a>),
}

/// A reduce's `group_by` and `of`, and the fastest way to read them.
pub(super) struct Items {
    group_by: Option<CompiledSelector>,
    of: Option<CompiledSelector>,
    format: Format,
    pub(super) fast: Option<FastPaths>,
}

impl Items {
    pub(super) fn new(
        group_by: Option<Selector>,
        reducer: &Reducer,
        of: Option<Selector>,
        format: Format,
    ) -> Items {
        let group_by = group_by.map(|s| CompiledSelector::new(s, format));
        let of = of.map(|s| CompiledSelector::new(s, format));
        let plain = |s: &Option<CompiledSelector>| match s {
            None => Some(None),
            Some(s) => s.plain_path().cloned().map(Some),
        };
        let fast = match (format, reducer, plain(&group_by), plain(&of)) {
            (Format::Json, r, Some(group_by), Some(of)) if !matches!(r, Reducer::Custom { .. }) => {
                PlainPath::parse(".").map(|whole| FastPaths {
                    group_by,
                    of,
                    needs_item: !matches!(r, Reducer::Count),
                    whole,
                })
            }
            _ => None,
        };
        Items {
            group_by,
            of,
            format,
            fast,
        }
    }

    /// Key, group and item of a record, by the fastest tier that answers.
    pub(super) fn read<'r>(&self, rec: &'r ConsumedRecord) -> Result<Absorbed<'r>, RecordError> {
        match self.fast(&rec.value) {
            Some(a) => Ok(a),
            None => self.general(rec),
        }
    }

    /// Key, group and item of a record by plain paths, or `None` when the general
    /// path must decide (not strict JSON, too deep, a path jq would fail on, ...).
    pub(super) fn fast<'r>(&self, value: &'r [u8]) -> Option<Absorbed<'r>> {
        let fast = self.fast.as_ref()?;
        let [g, o] = pick(
            value,
            [
                fast.group_by.as_ref().unwrap_or(&fast.whole),
                fast.of.as_ref().unwrap_or(&fast.whole),
            ],
        )?;
        let (key, group) = match fast.group_by {
            Some(_) => (g.key().ok()?, GroupValue::Picked(g)),
            None => (Cow::Borrowed(&[][..]), GroupValue::Json(Value::Null)),
        };
        let item = match fast.needs_item {
            true => o.to_val().ok()?,
            false => Val::Null,
        };
        Some(Absorbed {
            key,
            group,
            item,
            partial: None,
            batch: None,
        })
    }

    /// Key, group and item of a record by parsing it and running the jq filters.
    pub(super) fn general(&self, rec: &ConsumedRecord) -> Result<Absorbed<'static>, RecordError> {
        let v = value_of(rec, self.format)?;
        with_vars(rec, |vars| {
            let (key, group) = match &self.group_by {
                Some(sel) => {
                    let g = sel.selector().select(&v, vars).map_err(RecordError::new)?;
                    (key_bytes(&g), val_to_json(&g).map_err(RecordError::new)?)
                }
                None => (Vec::new(), Value::Null),
            };
            let item = match &self.of {
                Some(sel) => sel.selector().select(&v, vars).map_err(RecordError::new)?,
                None => v.clone(),
            };
            Ok(Absorbed {
                key: Cow::Owned(key),
                group: GroupValue::Json(group),
                item,
                partial: None,
                batch: None,
            })
        })
    }
}
