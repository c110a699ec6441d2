//! Stage logic as a plan carries it: a jq expression from the pipeline file, or a
//! closure from a pipeline built in Rust. Running it on a record's bytes by the
//! fastest tier is [`super::compiled`]'s part.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::{Expr, ExprError, PlainPath, RecordVars, Val, json_to_val, key_bytes, val_to_json};

/// A closure over the JSON value, for pipelines built in Rust.
pub type PredicateFn = Arc<dyn Fn(&Value) -> bool + Send + Sync>;
pub type MapperFn = Arc<dyn Fn(&Value) -> Vec<Value> + Send + Sync>;
pub type SelectorFn = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A yes/no question about a record: a filter's `where`, a route's `when`.
#[derive(Clone)]
pub enum Predicate {
    Jq(Expr),
    Fn(PredicateFn),
}

/// A record → 0..n records function: a map stage.
#[derive(Clone)]
pub enum Mapper {
    Jq(Expr),
    Fn(MapperFn),
}

/// Picks one value out of a record: a shard key, join key, group key or reduce operand.
#[derive(Clone)]
pub enum Selector {
    Jq(Expr),
    Fn(SelectorFn),
}

impl Predicate {
    /// The jq source, or `None` for a closure.
    pub fn source(&self) -> Option<&str> {
        match self {
            Predicate::Jq(e) => Some(e.source()),
            Predicate::Fn(_) => None,
        }
    }

    /// Evaluate on a parsed record value.
    pub fn test(&self, value: &Val, vars: &RecordVars<'_>) -> Result<bool, ExprError> {
        match self {
            Predicate::Jq(e) => e.eval_bool(value, vars),
            Predicate::Fn(f) => Ok(f(&val_to_json(value)?)),
        }
    }
}

impl Mapper {
    /// Call `out` with every output for `value`.
    pub fn apply(
        &self,
        value: Val,
        vars: &RecordVars<'_>,
        mut out: impl FnMut(Val),
    ) -> Result<(), ExprError> {
        match self {
            Mapper::Jq(e) => e.run_with(value, vars, &[], out),
            Mapper::Fn(f) => {
                for v in f(&val_to_json(&value)?) {
                    out(json_to_val(&v));
                }
                Ok(())
            }
        }
    }
}

impl Selector {
    /// The selected value (a jq expression's first output; no output is an error).
    pub fn select(&self, value: &Val, vars: &RecordVars<'_>) -> Result<Val, ExprError> {
        match self {
            Selector::Jq(e) => e.first(value.clone(), vars)?.ok_or(ExprError::NoOutput),
            Selector::Fn(f) => Ok(json_to_val(&f(&val_to_json(value)?))),
        }
    }

    /// The selected value as key bytes: a string's bytes, else its compact JSON.
    pub fn key(&self, value: &Val, vars: &RecordVars<'_>) -> Result<Vec<u8>, ExprError> {
        self.select(value, vars).map(|v| key_bytes(&v))
    }

    /// The jq source, or `None` for a closure.
    pub fn source(&self) -> Option<&str> {
        match self {
            Selector::Jq(e) => Some(e.source()),
            Selector::Fn(_) => None,
        }
    }

    /// The plain path (`.`, `.user`, `.a.b`) this selector is, if it is one: such a
    /// selector can be picked from a record's bytes with [`super::pick`].
    pub fn as_plain_path(&self) -> Option<PlainPath> {
        self.source().and_then(PlainPath::parse)
    }
}

macro_rules! debug_logic {
    ($t:ty) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::Jq(e) => write!(f, "jq({:?})", e.source()),
                    Self::Fn(_) => f.write_str("<closure>"),
                }
            }
        }
    };
}
debug_logic!(Predicate);
debug_logic!(Mapper);
debug_logic!(Selector);
