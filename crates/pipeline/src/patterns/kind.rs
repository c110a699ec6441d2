//! What every stage kind declares ([`Kind`]) and what planning a kind may use
//! ([`Planning`]).

use crate::diagnostics::Diagnostic;
use crate::expr::{Expr, Selector};
use crate::yaml::node::{ExprSrc, Pos, Sp};
use crate::yaml::reader::{Fields, error_at};
use crate::yaml::scalar::position_in_scalar;

/// A stage kind as the pipeline file knows it.
pub struct Kind {
    /// As the file writes it: `kind: filter`.
    pub name: &'static str,
    /// The fields it takes besides `kind`, `from`, `to`, `format` and `batch`.
    pub fields: &'static [&'static str],
    /// How many topics `from` may name.
    pub(crate) reads: Reads,
    /// Where the topics it writes are named.
    pub(crate) writes: Writes,
}

/// How many topics a kind reads.
pub(crate) enum Reads {
    /// Exactly one (a merger combines topics first).
    One,
    /// Any number.
    Any,
    /// Two or more when the stage's fields make it a kind that needs them: who needs
    /// them, as the message names it (`a merger`, `a join by key or zip`).
    TwoOrMore(fn(&Fields<'_>) -> Option<&'static str>),
}

/// Where a kind's output topics are named.
pub(crate) enum Writes {
    /// `to`, exactly one topic (a copier after it writes several).
    One,
    /// `to`, one topic or more.
    Many,
    /// `to`, one topic or more, which may be left out where the kind's own fields
    /// name the topics (a sharder's named shards).
    ManyOrNamed(fn(&Fields<'_>) -> bool),
    /// The kind's own fields only; the hint for a `to` written anyway.
    Named(&'static str),
}

impl Kind {
    /// Whether a `to` may name this kind's outputs.
    pub fn takes_to(&self) -> bool {
        !matches!(self.writes, Writes::Named(_))
    }
}

/// `a sharder`, `an exec`.
pub fn a_kind(kind: &str) -> String {
    match kind.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

/// What planning a stage's kind may use: the stage's place in the file, its `to`, the
/// resolved partition counts, and where problems go.
pub(crate) struct Planning<'a> {
    /// The pipeline file's text, to place errors inside expressions.
    pub file_src: &'a str,
    pub stage: &'a str,
    pub to: &'a [Sp<String>],
    /// Whether `to` was written as a list (`to: [x]`) rather than one topic (`to: x`).
    pub to_is_list: bool,
    pub partitions_of: &'a dyn Fn(&str) -> u32,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Planning<'_> {
    /// Compiles the jq expression of `field` (with `extra` variables besides the
    /// record's); `None` when it does not compile (reported, placed inside it).
    pub fn jq(&mut self, e: &ExprSrc, field: &str, extra: &[&str]) -> Option<Expr> {
        let what = format!("`{field}` of stage `{}`", self.stage);
        compile(self.file_src, e, extra, &what, self.diags)
    }

    /// [`Planning::jq`] for a field that selects a value (a key, an operand).
    pub fn selector(&mut self, e: &ExprSrc, field: &str) -> Option<Selector> {
        self.jq(e, field, &[]).map(Selector::Jq)
    }

    /// Reports an error at `pos`, with a hint.
    pub fn error(&mut self, pos: Pos, message: String, hint: &str) {
        self.diags.push(error_at(pos, message).with_hint(hint));
    }
}

/// Compiles `e`; on failure pushes one diagnostic per compile error, placed inside
/// the expression, with a hint.
fn compile(
    file_src: &str,
    e: &ExprSrc,
    extra_vars: &[&str],
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    match Expr::compile_with(&e.source, extra_vars) {
        Ok(x) => Some(x),
        Err(errs) => {
            for err in errs {
                let pos = position_in_scalar(file_src, e.pos, &e.source, err.offset);
                let mut d = Diagnostic::error(
                    pos.line,
                    pos.col,
                    format!("{what} does not compile: {}", err.message),
                )
                .with_hint(hint_for(&err.message, extra_vars));
                d.offset = pos.byte;
                diags.push(d);
            }
            None
        }
    }
}

fn hint_for(message: &str, extra_vars: &[&str]) -> String {
    if message.contains("undefined variable") {
        let mut vars: Vec<String> = crate::expr::RECORD_VARS
            .iter()
            .map(|v| (*v).to_owned())
            .collect();
        vars.extend(extra_vars.iter().map(|v| format!("${v}")));
        format!("variables available here: {}", vars.join(", "))
    } else if let Some(filter) = message.strip_prefix("undefined filter `") {
        undefined_filter_hint(filter.trim_end_matches('`'))
    } else if message.contains("too large") {
        "a map, filter or reduce per step keeps each expression small".to_owned()
    } else {
        "jq syntax; quote the whole expression in YAML with '…' so YAML leaves it alone".to_owned()
    }
}

/// The hint for an undefined filter, written `name` or `name/arity` (jq's notation).
/// A bare name like `amount` is almost always a field missing its dot; a builtin
/// called with the wrong number of arguments is told how many it takes.
fn undefined_filter_hint(filter: &str) -> String {
    let (name, arity) = match filter.rsplit_once('/') {
        Some((name, n)) => (name, n.parse::<usize>().unwrap_or(0)),
        None => (filter, 0),
    };
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return "check the name and number of arguments against the jq manual".to_owned();
    }
    // The arities jq knows `name` by: compile a call with each (errors only, so rare).
    let call = |n: usize, arg: &str| match n {
        0 => name.to_owned(),
        n => format!("{name}({})", vec![arg; n].join("; ")),
    };
    let defined: Vec<usize> = (0..=3)
        .filter(|&n| n != arity && Expr::compile(&call(n, ".")).is_ok())
        .collect();
    match (arity, defined.as_slice()) {
        (0, []) => format!("to read the field, write `.{name}`"),
        (_, [0]) => {
            format!("`{name}` takes no arguments: it works on its input, as in `.field | {name}`")
        }
        (_, [n]) => format!(
            "`{name}` takes {}: `{}`",
            crate::diagnostics::count(*n, "argument"),
            call(*n, "…")
        ),
        (_, []) => "check the name and number of arguments against the jq manual".to_owned(),
        (_, many) => {
            let forms: Vec<String> = many
                .iter()
                .map(|&n| format!("`{}`", call(n, "…")))
                .collect();
            format!("`{name}` is called as {}", forms.join(" or "))
        }
    }
}
