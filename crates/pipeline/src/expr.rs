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
pub use jaq_json::Val;
pub use native::NativeMap;
pub use not_json::{not_json, not_json_because};
pub use path::{Picked, PlainPath, pick};
pub use predicate::NativePredicates;
pub use projection::Projection;

mod native;
mod not_json;
mod path;
mod predicate;
mod projection;

/// The filter type jaq compiles to when values are [`Val`] and the only global data
/// is the look-up table.
type JqFilter = jaq_core::Filter<data::JustLut<Val>>;

/// The record variables every expression can use, in the order they are bound.
pub const RECORD_VARS: [&str; 6] = [
    "$key",
    "$headers",
    "$topic",
    "$partition",
    "$offset",
    "$timestamp",
];

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

/// Where the record headers come from. Implemented for slices of pairs and for
/// closures, so a caller with its own header type can pass
/// `&|f: &mut dyn FnMut(&str, &[u8])| for h in &headers { f(&h.key, &h.value) }`
/// without building anything unless the expression uses `$headers`.
pub trait HeaderSource {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8]));
}

impl<F: Fn(&mut dyn FnMut(&str, &[u8]))> HeaderSource for F {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self(f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> HeaderSource for [(N, V)] {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (n, v) in self {
            f(n.as_ref(), v.as_ref())
        }
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> HeaderSource for Vec<(N, V)> {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self.as_slice().for_each_header(f)
    }
}

/// The record's metadata, borrowed for one evaluation.
#[derive(Clone, Copy)]
pub struct RecordVars<'a> {
    pub key: Option<&'a [u8]>,
    pub headers: &'a dyn HeaderSource,
    pub topic: &'a str,
    pub partition: u32,
    pub offset: Option<u64>,
    pub timestamp: Option<i64>,
}

/// No headers at all.
struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn for_each_header(&self, _f: &mut dyn FnMut(&str, &[u8])) {}
}

impl Default for RecordVars<'_> {
    fn default() -> Self {
        RecordVars {
            key: None,
            headers: &NoHeaders,
            topic: "",
            partition: 0,
            offset: None,
            timestamp: None,
        }
    }
}

impl fmt::Debug for RecordVars<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordVars")
            .field("key", &self.key.map(String::from_utf8_lossy))
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl<'a> RecordVars<'a> {
    /// Variables of a record read from `topic`/`partition`, with no key or headers yet.
    pub fn new(topic: &'a str, partition: u32) -> Self {
        RecordVars {
            topic,
            partition,
            ..RecordVars::default()
        }
    }
    pub fn key(mut self, key: Option<&'a [u8]>) -> Self {
        self.key = key;
        self
    }
    pub fn headers(mut self, headers: &'a dyn HeaderSource) -> Self {
        self.headers = headers;
        self
    }
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Which record variables an expression names; only those are built per record.
#[derive(Clone, Copy, Debug, Default)]
struct UsedVars([bool; 6]);

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

/// Operators, brackets and keywords an expression may hold. jaq's parser, compiler
/// and interpreter recurse along chains of them (`a | a | …`, `1 + 1 + …`, `((…))`):
/// about 4000 overflowed the main thread's stack when compiled, which aborts the
/// process, so a pipeline file with such an expression is refused with an error
/// instead. Compiling runs on a thread with a large stack, and evaluating on the
/// runtime's threads (16 MiB stacks) handles chains of this length. Expressions in
/// pipeline files hold tens of them.
pub const MAX_OPERATORS: usize = 1000;

/// Stack of the thread that compiles an expression (reserved, touched only as deep as
/// the compiler goes).
const COMPILE_STACK: usize = 64 << 20;

/// Counts what [`MAX_OPERATORS`] bounds, outside string literals and comments.
fn check_size(source: &str) -> Result<(), Vec<CompileError>> {
    let b = source.as_bytes();
    // Open strings (`"`) and parentheses (`(`, also a string's `\(` interpolation, which
    // returns to the string at its `)`).
    let mut open: Vec<u8> = Vec::new();
    let mut n = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let mut step = 1;
        if open.last() == Some(&b'"') {
            match (c, b.get(i + 1)) {
                (b'\\', Some(b'(')) => {
                    open.push(b'(');
                    n += 1;
                    step = 2;
                }
                (b'\\', _) => step = 2,
                (b'"', _) => {
                    open.pop();
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => open.push(b'"'),
                b'#' => {
                    while i + step < b.len() && b[i + step] != b'\n' {
                        step += 1;
                    }
                }
                b'(' => {
                    open.push(b'(');
                    n += 1;
                }
                b')' => {
                    open.pop();
                }
                // (`:` and `;` separate, they do not chain.)
                b'[' | b'{' | b'|' | b',' | b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'<'
                | b'>' | b'?' => n += 1,
                c if c.is_ascii_alphabetic() => {
                    while b
                        .get(i + step)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        step += 1;
                    }
                    let word = &source[i..i + step];
                    let keyword = matches!(
                        word,
                        "and"
                            | "or"
                            | "if"
                            | "elif"
                            | "reduce"
                            | "foreach"
                            | "def"
                            | "try"
                            | "label"
                            | "as"
                    );
                    // A path's field (`.and`) or a variable (`$or`) is not a keyword.
                    let named = i > 0 && matches!(b[i - 1], b'.' | b'$');
                    n += usize::from(keyword && !named);
                }
                _ => {}
            }
        }
        if n > MAX_OPERATORS {
            return Err(vec![CompileError {
                offset: i,
                message: format!(
                    "expression too large: more than {MAX_OPERATORS} operators, brackets and \
                     keywords (jq would recurse too deep); split the work across stages"
                ),
            }]);
        }
        i += step;
    }
    Ok(())
}

/// Does `source` name `$var` as a whole identifier (`$key` but not `$keys`)?
/// A false positive only costs building one unused variable.
fn mentions_var(source: &str, var: &str) -> bool {
    source.match_indices(var).any(|(i, _)| {
        let next = source[i + var.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn record_vals<'v>(used: UsedVars, vars: &RecordVars<'v>) -> impl Iterator<Item = Val> + use<'v> {
    let vars = *vars;
    (0..RECORD_VARS.len()).map(move |i| {
        if !used.0[i] {
            return Val::Null;
        }
        match i {
            0 => vars.key.map_or(Val::Null, bytes_to_str),
            1 => {
                let mut map = jaq_json::Map::default();
                vars.headers.for_each_header(&mut |name, value| {
                    map.insert(Val::from(name.to_owned()), bytes_to_str(value));
                });
                Val::obj(map)
            }
            2 => Val::from(vars.topic.to_owned()),
            3 => Val::from(vars.partition as usize),
            4 => vars.offset.map_or(Val::Null, |o| int_val(o as i128)),
            _ => vars.timestamp.map_or(Val::Null, |t| int_val(t as i128)),
        }
    })
}

fn int_val(i: i128) -> Val {
    Val::Num(jaq_json::Num::from_integral(i))
}

fn bytes_to_str(bytes: &[u8]) -> Val {
    Val::utf8_str(bytes.to_vec())
}

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

/// Parse record value bytes once for evaluation. Not JSON (in `Format::Json`) is a
/// record error, never a panic.
pub fn parse_value(bytes: &[u8], format: Format) -> Result<Val, ExprError> {
    match format {
        Format::Json => {
            // jaq's reader (and dropping its values) recurses once per level: a hostile
            // `[[[[…` record would overflow the stack and abort the process.
            check_json_depth(bytes)?;
            // JSON text is UTF-8; jaq would carry invalid bytes inside strings through to
            // the outputs, so they are refused here as a record error.
            if let Err(e) = std::str::from_utf8(bytes) {
                return Err(ExprError::NotJson(format!(
                    "not UTF-8 at byte {}",
                    e.valid_up_to()
                )));
            }
            jaq_json::read::parse_single(bytes).map_err(|e| not_json(bytes, &e))
        }
        Format::Text => Ok(bytes_to_str(bytes)),
    }
}

/// Deepest nesting of arrays and objects a JSON record value may have (serde_json's
/// default limit is 128; this is more generous and still far from the stack's limit).
pub const MAX_JSON_DEPTH: usize = 512;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`], in one pass that skips strings.
fn check_json_depth(bytes: &[u8]) -> Result<(), ExprError> {
    // Each level opens with a byte of its own: a document this short cannot be too
    // deep, and most records are (the pass costs a fifth of a small record's parse).
    if bytes.len() <= MAX_JSON_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (at, &b) in bytes.iter().enumerate() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ExprError::NotJson(format!(
                        "nested more than {MAX_JSON_DEPTH} levels deep at byte {at}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Serialize a value as compact JSON, the bytes a stage writes for an output value.
pub fn to_json_bytes(v: &Val) -> Vec<u8> {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = jaq_json::write::write(&mut buf, &jaq_json::write::Pp::default(), 0, v);
    buf
}

/// The bytes a value stands for as a key (shard key, join key, group key): a string's
/// own bytes, any other value's compact JSON.
pub fn key_bytes(v: &Val) -> Vec<u8> {
    match v {
        Val::TStr(b) | Val::BStr(b) => b.to_vec(),
        other => to_json_bytes(other),
    }
}

/// Convert JSON to a jaq value.
pub fn json_to_val(v: &serde_json::Value) -> Val {
    use serde_json::Value as J;
    match v {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                int_val(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                int_val(i128::from(u))
            } else {
                Val::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Val::from(s.clone()),
        J::Array(a) => a.iter().map(json_to_val).collect(),
        J::Object(o) => {
            let map = o
                .iter()
                .map(|(k, v)| (Val::from(k.clone()), json_to_val(v)))
                .collect();
            Val::obj(map)
        }
    }
}

/// Convert a jaq value to JSON. Values JSON cannot hold (NaN, byte strings that are not
/// UTF-8, non-string object keys) are converted as jq prints them or reported.
pub fn val_to_json(v: &Val) -> Result<serde_json::Value, ExprError> {
    use serde_json::Value as J;
    Ok(match v {
        Val::Null => J::Null,
        Val::Bool(b) => J::Bool(*b),
        Val::Num(n) => {
            if let Some(i) = n.as_isize() {
                J::from(i as i64)
            } else {
                // Big integers, decimals and floats: go through their text form.
                let text = n.to_string();
                serde_json::from_str(&text).unwrap_or(J::Null)
            }
        }
        Val::TStr(b) | Val::BStr(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(a) => J::Array(a.iter().map(val_to_json).collect::<Result<_, _>>()?),
        Val::Obj(o) => {
            let mut map = serde_json::Map::new();
            for (k, v) in o.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => {
                        return Err(ExprError::Runtime(format!(
                            "object key {other} is not a string"
                        )));
                    }
                };
                map.insert(key, val_to_json(v)?);
            }
            J::Object(map)
        }
    })
}

#[cfg(test)]
mod tests;
