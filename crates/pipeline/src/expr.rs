//! jq expressions (the `jaq` crates): compiled once per stage, run once per record.
//!
//! Every expression sees the record value as `.` and these variables:
//!
//! | variable     | value                                                        |
//! |--------------|--------------------------------------------------------------|
//! | `$key`       | the record key as a string (lossy UTF-8), or `null`          |
//! | `$headers`   | object header name → value string; on duplicates the last wins |
//! | `$topic`     | the topic the record was read from                           |
//! | `$partition` | its partition number                                         |
//! | `$offset`    | its offset, or `null` before it was written                  |
//! | `$timestamp` | its timestamp in milliseconds since the Unix epoch, or `null` |
//!
//! Custom reducers additionally see `$item` (in `update`) and `$other` (in `merge`);
//! those are declared with [`Expr::compile_with`].
//!
//! Speed: an [`Expr`] is compiled once and shared (`Arc`); evaluating it allocates only
//! the variables the expression actually names, so `.region == "eu"` pays for no
//! header or key conversion. Parse a record once with [`parse_value`] and evaluate
//! several expressions on the same [`Val`].

use std::fmt;
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};

use crate::regex_cache;
pub use compiled::{CompiledConditions, CompiledMapper, CompiledSelector};
pub use jaq_json::Val;
pub use logic::{Mapper, MapperFn, Predicate, PredicateFn, Selector, SelectorFn};
pub use native::NativeMap;
pub use not_json::{not_json, not_json_because};
pub use path::{Picked, PlainPath, pick};
pub use predicate::NativePredicates;
pub use projection::Projection;
pub use size::MAX_OPERATORS;
pub use value::{MAX_JSON_DEPTH, json_to_val, key_bytes, parse_value, to_json_bytes, val_to_json};
pub use vars::{HeaderSource, RECORD_VARS, RecordVars};

use size::check_size;
use vars::{UsedVars, mentions_var, record_vals};

mod compiled;
mod logic;
mod native;
mod not_json;
mod path;
mod predicate;
mod projection;
mod size;
mod value;
mod vars;

/// The filter type jaq compiles to when values are [`Val`] and the only global data
/// is the look-up table.
type JqFilter = jaq_core::Filter<data::JustLut<Val>>;

/// How a stage reads a record value before handing it to jq.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// The value is one JSON document (the default). Not JSON is a record error.
    #[default]
    Json,
    /// The value is handed to jq as a string (lossy UTF-8), e.g. plain text lines.
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
        }
    }
}

/// An expression failed to compile. `offset` is a byte offset into the expression
/// source; the planner turns it into a file line:column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub offset: usize,
    pub message: String,
}

/// A record-level failure: the value is not what the stage needs, or jq failed on it.
/// These go to the dead-letter topic; they never stop the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    #[error("value is not JSON: {0}")]
    NotJson(String),
    #[error("jq error: {0}")]
    Runtime(String),
    #[error("jq halted with exit code {0}")]
    Halt(i32),
    #[error("expression produced no output")]
    NoOutput,
}

struct Inner {
    filter: JqFilter,
    source: String,
    used: UsedVars,
    /// Extra variables (e.g. `$item`) bound after the record variables.
    extra: Vec<String>,
}

/// A compiled jq filter: `Send + Sync`, cheap to clone, compiled once and run per record.
#[derive(Clone)]
pub struct Expr(Arc<Inner>);

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.0.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source && self.0.extra == other.0.extra
    }
}

impl Expr {
    /// Compile `source` with the record variables in scope.
    pub fn compile(source: &str) -> Result<Expr, Vec<CompileError>> {
        Self::compile_with(source, &[])
    }

    /// Compile `source` with the record variables and `extra` ones (names without `$`),
    /// which [`Expr::run_with`] binds in the same order.
    pub fn compile_with(source: &str, extra: &[&str]) -> Result<Expr, Vec<CompileError>> {
        check_size(source)?;
        // jaq's loader and compiler recurse along the expression: on a thread of their
        // own with a large stack, whichever thread asks (a test's has 2 MiB).
        std::thread::scope(|scope| {
            let compiling = std::thread::Builder::new()
                .name("jq-compile".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, || Self::compile_here(source, extra));
            match compiling {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: compile here.
                Err(_) => Self::compile_here(source, extra),
            }
        })
    }

    fn compile_here(source: &str, extra: &[&str]) -> Result<Expr, Vec<CompileError>> {
        let extra_names: Vec<String> = extra.iter().map(|x| format!("${x}")).collect();
        let globals: Vec<&str> = RECORD_VARS
            .iter()
            .copied()
            .chain(extra_names.iter().map(String::as_str))
            .collect();

        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs().filter(|(name, ..)| !regex_cache::REPLACED.contains(name)))
            .chain(regex_cache::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let program = File {
            code: source,
            path: (),
        };
        let modules = Loader::new(defs)
            .load(&arena, program)
            .map_err(|errs| load_errors(source, errs))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(globals.iter().copied())
            .compile(modules)
            .map_err(|errs| {
                errs.into_iter()
                    .flat_map(|(_file, errs)| errs)
                    .map(|(name, undefined)| CompileError {
                        offset: offset_in(source, name),
                        message: match undefined {
                            // jq's notation for a filter taking arguments: `f/1`.
                            jaq_core::compile::Undefined::Filter(arity) if arity > 0 => {
                                format!("undefined filter `{name}/{arity}`")
                            }
                            other => format!("undefined {} `{name}`", other.as_str()),
                        },
                    })
                    .collect::<Vec<_>>()
            })?;

        let mut used = UsedVars::default();
        for (i, name) in RECORD_VARS.iter().enumerate() {
            used.0[i] = mentions_var(source, name);
        }
        Ok(Expr(Arc::new(Inner {
            filter,
            source: source.to_owned(),
            used,
            extra: extra_names,
        })))
    }

    /// The jq source text.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Run on a parsed value, calling `out` for each output. Stops at the first error.
    /// This is the fast path: no `Vec`, no JSON conversion.
    pub fn run_with(
        &self,
        input: Val,
        vars: &RecordVars<'_>,
        extra: &[Val],
        mut out: impl FnMut(Val),
    ) -> Result<(), ExprError> {
        let inner = &*self.0;
        let values = record_vals(inner.used, vars).chain(extra.iter().cloned());
        let ctx = Ctx::<data::JustLut<Val>>::new(&inner.filter.lut, Vars::new(values));
        for item in inner.filter.id.run((ctx, input)) {
            out(item.map_err(exn_to_error)?);
        }
        Ok(())
    }

    /// All outputs for `input` as jaq values.
    pub fn eval_val(&self, input: Val, vars: &RecordVars<'_>) -> Result<Vec<Val>, ExprError> {
        let mut outs = Vec::new();
        self.run_with(input, vars, &[], |v| outs.push(v))?;
        Ok(outs)
    }

    /// All outputs for `input` as JSON (the convenient, slower path).
    pub fn eval(
        &self,
        input: &serde_json::Value,
        vars: &RecordVars<'_>,
    ) -> Result<Vec<serde_json::Value>, ExprError> {
        let outs = self.eval_val(json_to_val(input), vars)?;
        outs.iter().map(val_to_json).collect()
    }

    /// The first output, or `None` when there is none. Later outputs are not computed.
    pub fn first(&self, input: Val, vars: &RecordVars<'_>) -> Result<Option<Val>, ExprError> {
        let inner = &*self.0;
        let values = record_vals(inner.used, vars);
        let ctx = Ctx::<data::JustLut<Val>>::new(&inner.filter.lut, Vars::new(values));
        inner
            .filter
            .id
            .run((ctx, input))
            .next()
            .transpose()
            .map_err(exn_to_error)
    }

    /// A predicate: true when the first output is truthy (neither `false` nor `null`),
    /// as jq's `select` decides. No output counts as false.
    pub fn eval_bool(&self, input: &Val, vars: &RecordVars<'_>) -> Result<bool, ExprError> {
        Ok(self
            .first(input.clone(), vars)?
            .is_some_and(|v| !matches!(v, Val::Null | Val::Bool(false))))
    }

    /// [`Expr::eval_bool`] on a JSON value.
    pub fn eval_bool_json(
        &self,
        input: &serde_json::Value,
        vars: &RecordVars<'_>,
    ) -> Result<bool, ExprError> {
        self.eval_bool(&json_to_val(input), vars)
    }
}

/// Stack of the thread that compiles an expression (reserved, touched only as deep as
/// the compiler goes).
const COMPILE_STACK: usize = 64 << 20;

fn exn_to_error(e: jaq_core::Exn<'_, Val>) -> ExprError {
    match e.get_err() {
        Ok(err) => ExprError::Runtime(err.to_string()),
        Err(e) => match e.get_halt() {
            Ok(code) => ExprError::Halt(code),
            Err(_) => ExprError::Runtime("unexpected control flow (break outside label?)".into()),
        },
    }
}

/// Byte offset of `part` inside `whole`, when `part` is a sub-slice of it.
fn offset_in(whole: &str, part: &str) -> usize {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    if p >= w && p <= w + whole.len() {
        p - w
    } else {
        0
    }
}

fn load_errors(source: &str, errs: jaq_core::load::Errors<&str, ()>) -> Vec<CompileError> {
    use jaq_core::load::Error;
    let mut out = Vec::new();
    for (_file, err) in errs {
        match err {
            Error::Io(errs) => out.extend(errs.into_iter().map(|(path, msg)| CompileError {
                offset: offset_in(source, path),
                message: msg,
            })),
            Error::Lex(errs) => out.extend(errs.into_iter().map(|(expect, at)| CompileError {
                offset: offset_in(source, at),
                message: format!("expected {}", expect.as_str()),
            })),
            Error::Parse(errs) => out.extend(errs.into_iter().map(|(expect, found)| {
                let found_desc = if found.is_empty() {
                    "end of expression".to_owned()
                } else {
                    format!("`{found}`")
                };
                CompileError {
                    offset: offset_in(source, found),
                    message: format!("expected {}, found {found_desc}", expect.as_str()),
                }
            })),
        }
    }
    out
}

#[cfg(test)]
mod tests;
