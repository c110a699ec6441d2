//! Stage logic compiled for one stage's records: the fastest tier that can answer is
//! picked once, when the stage is built, and every pattern runs its logic through
//! these types.
//!
//! | tier       | runs                                                  | takes                               |
//! |------------|-------------------------------------------------------|-------------------------------------|
//! | native     | a few steps on values picked from the record's bytes  | see [`NativePredicates`], [`NativeMap`], plain paths ([`pick`]) |
//! | projection | jaq on an object of just the paths the expression reads | conditions within [`Projection`]'s grammar |
//! | jaq        | jaq (or the closure) on the whole parsed record       | everything                          |
//!
//! Only JSON records have the faster tiers (a text record is a string to jq). A faster
//! tier may give up on one record (not strict JSON, an arithmetic error jq must
//! report): that record then takes the next tier, which gives the result or the
//! error jq would, so which tier ran never shows in a stage's outputs.

use std::borrow::Cow;

use super::{
    ExprError, Format, Mapper, NativeMap, NativePredicates, PlainPath, Predicate, Projection,
    RecordVars, Selector, Val, parse_value, pick, val_to_json,
};

/// Conditions on a record, tested in order: a filter's `where` (one), a splitter's
/// routes' `when` (several, sharing one pick of the paths they read).
#[derive(Debug)]
pub struct CompiledConditions {
    conditions: Vec<Predicate>,
    format: Format,
    native: Option<NativePredicates>,
    projection: Option<Projection>,
}

impl CompiledConditions {
    pub fn new(conditions: Vec<Predicate>, format: Format) -> Self {
        // The faster tiers read jq sources over JSON values; a closure has none.
        let sources: Option<Vec<&str>> = match format {
            Format::Json => conditions.iter().map(Predicate::source).collect(),
            Format::Text => None,
        };
        let native = sources
            .as_ref()
            .and_then(|s| NativePredicates::compile(s.iter().copied()));
        let projection = sources.and_then(Projection::of_all);
        CompiledConditions {
            conditions,
            format,
            native,
            projection,
        }
    }

    /// Whether the native tier answers these conditions (for records it can read).
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// The first condition that holds for a record's value, if any.
    pub fn first(&self, value: &[u8], vars: &RecordVars<'_>) -> Result<Option<usize>, ExprError> {
        let mut found = None;
        self.holding(value, vars, true, &mut found)?;
        Ok(found)
    }

    /// Every condition that holds for a record's value, in order, into `out`.
    pub fn all(
        &self,
        value: &[u8],
        vars: &RecordVars<'_>,
        out: &mut Vec<usize>,
    ) -> Result<(), ExprError> {
        self.holding(value, vars, false, out)
    }

    fn holding(
        &self,
        value: &[u8],
        vars: &RecordVars<'_>,
        first_only: bool,
        hits: &mut impl Hits,
    ) -> Result<(), ExprError> {
        hits.clear();
        if let Some(n) = &self.native
            && let Some(values) = n.pick(value)
        {
            // `None` from a test: jaq must decide this record (`NativePredicates::test`).
            let native = self.scan(first_only, hits, |i| n.test(i, &values).ok_or(()));
            if native.is_ok() {
                return Ok(());
            }
            hits.clear();
        }
        // The value is parsed, and closures' JSON made, once for all conditions.
        let v = match self.projection.as_ref().and_then(|p| p.project(value)) {
            Some(v) => v,
            None => parse_value(value, self.format)?,
        };
        let mut json = None;
        self.scan(first_only, hits, |i| match &self.conditions[i] {
            p @ Predicate::Jq(_) => p.test(&v, vars),
            Predicate::Fn(f) => {
                if json.is_none() {
                    json = Some(val_to_json(&v)?);
                }
                Ok(json.as_ref().is_some_and(|j| f(j)))
            }
        })
    }

    /// Tests the conditions in order, noting each that holds; after the first one
    /// when `first_only`. Stops at the first error.
    fn scan<E>(
        &self,
        first_only: bool,
        hits: &mut impl Hits,
        mut test: impl FnMut(usize) -> Result<bool, E>,
    ) -> Result<(), E> {
        for i in 0..self.conditions.len() {
            if test(i)? {
                hits.hit(i);
                if first_only {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Where [`CompiledConditions`] notes the conditions that hold.
trait Hits {
    fn clear(&mut self);
    fn hit(&mut self, i: usize);
}

impl Hits for Option<usize> {
    fn clear(&mut self) {
        *self = None;
    }
    fn hit(&mut self, i: usize) {
        self.get_or_insert(i);
    }
}

impl Hits for Vec<usize> {
    fn clear(&mut self) {
        Vec::clear(self);
    }
    fn hit(&mut self, i: usize) {
        self.push(i);
    }
}

/// A value picked out of a record: a shard key, join key, group key or reduce operand.
/// A plain path (`.user`) over JSON records is read from the record's bytes.
#[derive(Clone, Debug)]
pub struct CompiledSelector {
    selector: Selector,
    format: Format,
    path: Option<PlainPath>,
}

impl CompiledSelector {
    pub fn new(selector: Selector, format: Format) -> Self {
        let path = match format {
            Format::Json => selector.as_plain_path(),
            Format::Text => None,
        };
        CompiledSelector {
            selector,
            format,
            path,
        }
    }

    /// The selector on a parsed value (jaq's tier), for a caller that parses a
    /// record once for several selectors.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The plain path it reads from the bytes of JSON records, if it is one: a caller
    /// picking several such paths does so in one pass ([`pick`]).
    pub fn plain_path(&self) -> Option<&PlainPath> {
        self.path.as_ref()
    }

    /// The key from the record's bytes alone, or `None` when jaq must decide.
    pub fn picked_key<'v>(&self, value: &'v [u8]) -> Option<Cow<'v, [u8]>> {
        let [picked] = pick(value, [self.path.as_ref()?])?;
        picked.key().ok()
    }

    /// The selected value as key bytes: a string's bytes, else its compact JSON.
    pub fn key(&self, value: &[u8], vars: &RecordVars<'_>) -> Result<Vec<u8>, ExprError> {
        if let Some(key) = self.picked_key(value) {
            return Ok(key.into_owned());
        }
        let v = parse_value(value, self.format)?;
        self.selector.key(&v, vars)
    }
}

/// A map's record → 0..n outputs.
#[derive(Debug)]
pub struct CompiledMapper {
    mapper: Mapper,
    format: Format,
    native: Option<NativeMap>,
}

impl CompiledMapper {
    pub fn new(mapper: Mapper, format: Format) -> Self {
        let native = match &mapper {
            Mapper::Jq(e) => NativeMap::compile(e.source()),
            Mapper::Fn(_) => None,
        };
        CompiledMapper {
            mapper,
            format,
            native,
        }
    }

    /// Runs the native tier on a record's value, handing each output's JSON to `out`;
    /// `false` when there is none or the record needs jaq (the outputs given must then
    /// be dropped).
    pub fn run_native(&self, value: &[u8], out: &mut dyn FnMut(&[u8])) -> bool {
        self.native
            .as_ref()
            .is_some_and(|n| n.run(value, self.format, out).is_some())
    }

    /// The outputs by jaq (or the closure).
    pub fn run_jaq(
        &self,
        value: &[u8],
        vars: &RecordVars<'_>,
        out: impl FnMut(Val),
    ) -> Result<(), ExprError> {
        let v = parse_value(value, self.format)?;
        self.mapper.apply(v, vars, out)
    }
}

#[cfg(test)]
mod tests;
