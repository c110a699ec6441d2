//! Conditions (`where`, `when`) over plain paths, evaluated without jaq's interpreter.
//!
//! A filter's or splitter's condition is most often a comparison of a few fields with
//! literals: `.region == "eu"`, `.n % 2 == 0`, `.total >= 100 and .paid`. Run by jaq,
//! even on a projection of the record ([`super::Projection`]), that is about a
//! microsecond per record, mostly the interpreter's own work. Conditions within the
//! grammar below are compiled to a small tree whose operators are jaq's own
//! ([`jaq_core::ops::Math`], [`jaq_core::ops::Cmp`] on [`Val`]), evaluated on the
//! paths' values picked from the record's bytes ([`pick`]):
//!
//! - `or`, then `and`, then one comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`; a chain
//!   of them is left to jaq), then `+`, `-`, then `*`, `/`, then `%`, each
//!   left-associative, as jaq binds them (jaq's `%` binds tighter than `*` and `/`);
//! - operands: plain paths (`.a`, `.a.b`), numbers, strings without escapes, `true`,
//!   `false`, `null`, and parenthesised expressions.
//!
//! Literals are evaluated by jaq when the condition is compiled, so they are exactly
//! jaq's values. Whenever a record takes the evaluation where jaq would fail (an
//! arithmetic error, such as a string minus a number) or the pick gives up (not strict
//! JSON), the answer is `None` and the caller runs jaq, which gives the result or the
//! error jq would. Anything outside the grammar (unary minus, functions, variables,
//! pipes, `.` alone) is not compiled.

use jaq_core::ops::{Cmp, Math};

use super::{Expr, PlainPath, RecordVars, Val, pick};

/// Conditions that read the record only through a few plain paths, sharing one pick
/// of those paths (a splitter's routes).
#[derive(Debug)]
pub struct NativePredicates {
    paths: Vec<PlainPath>,
    conditions: Vec<Node>,
}

/// Paths picked at most (more, and the condition is not compiled).
const MAX_PATHS: usize = 4;

#[derive(Debug)]
enum Node {
    /// Index into the picked paths.
    Path(usize),
    Literal(Val),
    Math(Box<Node>, Math, Box<Node>),
    Cmp(Box<Node>, Cmp, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

impl NativePredicates {
    /// The native form of every condition in `sources`, or `None` unless all qualify.
    pub fn compile<'a>(sources: impl IntoIterator<Item = &'a str>) -> Option<NativePredicates> {
        let mut paths = Vec::new();
        let mut conditions = Vec::new();
        for src in sources {
            let mut p = Parser {
                s: src.as_bytes(),
                i: 0,
                paths: &mut paths,
                depth: 0,
            };
            let node = p.or()?;
            p.ws();
            if p.i != p.s.len() {
                return None;
            }
            conditions.push(node);
        }
        if paths.is_empty() || paths.len() > MAX_PATHS || conditions.is_empty() {
            return None;
        }
        Some(NativePredicates { paths, conditions })
    }

    /// The paths' values in a record's JSON, for [`NativePredicates::test`]; `None`
    /// when jaq must read the record.
    pub fn pick(&self, json: &[u8]) -> Option<Vec<Val>> {
        let p = &self.paths;
        let picked = match p.len() {
            1 => pick(json, [&p[0]])?.to_vec(),
            2 => pick(json, [&p[0], &p[1]])?.to_vec(),
            3 => pick(json, [&p[0], &p[1], &p[2]])?.to_vec(),
            4 => pick(json, [&p[0], &p[1], &p[2], &p[3]])?.to_vec(),
            _ => return None,
        };
        picked.iter().map(|v| v.to_val().ok()).collect()
    }

    /// Whether condition `i` holds (its value is neither `false` nor `null`, as jq's
    /// `select` decides); `None` when jaq must decide.
    pub fn test(&self, i: usize, values: &[Val]) -> Option<bool> {
        let v = eval(self.conditions.get(i)?, values)?;
        Some(truthy(&v))
    }
}

fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Null | Val::Bool(false))
}

fn eval(node: &Node, values: &[Val]) -> Option<Val> {
    Some(match node {
        Node::Path(i) => values.get(*i)?.clone(),
        Node::Literal(v) => v.clone(),
        Node::Math(l, op, r) => op.run(eval(l, values)?, eval(r, values)?).ok()?,
        Node::Cmp(l, op, r) => Val::Bool(op.run(&eval(l, values)?, &eval(r, values)?)),
        // jq's `and`/`or` look at the right side only when the left does not decide.
        Node::And(l, r) => Val::Bool(truthy(&eval(l, values)?) && truthy(&eval(r, values)?)),
        Node::Or(l, r) => Val::Bool(truthy(&eval(l, values)?) || truthy(&eval(r, values)?)),
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    paths: &'a mut Vec<PlainPath>,
    /// Parentheses open around the operand being read.
    depth: usize,
}

/// jaq's arithmetic operators by precedence, loosest first. `%` binds tighter than `*`
/// and `/` in jaq: `a / b % c` is `a / (b % c)`.
const MATH_LEVELS: [&[(u8, Math)]; 3] = [
    &[(b'+', Math::Add), (b'-', Math::Sub)],
    &[(b'*', Math::Mul), (b'/', Math::Div)],
    &[(b'%', Math::Rem)],
];

/// Parentheses nested deeper than this are jaq's to read (the parser recurses).
const MAX_DEPTH: usize = 32;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    /// Consumes keyword `kw` when it stands alone (not the start of a longer name).
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let end = self.i + kw.len();
        let is_kw = self.s.get(self.i..end) == Some(kw.as_bytes())
            && !self
                .s
                .get(end)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if is_kw {
            self.i = end;
        }
        is_kw
    }

    fn or(&mut self) -> Option<Node> {
        let mut l = self.and()?;
        while self.keyword("or") {
            l = Node::Or(Box::new(l), Box::new(self.and()?));
        }
        Some(l)
    }

    fn and(&mut self) -> Option<Node> {
        let mut l = self.cmp()?;
        while self.keyword("and") {
            l = Node::And(Box::new(l), Box::new(self.cmp()?));
        }
        Some(l)
    }

    fn cmp(&mut self) -> Option<Node> {
        let l = self.math(0)?;
        self.ws();
        let rest = &self.s[self.i..];
        let (op, len) = match rest {
            [b'=', b'=', ..] => (Cmp::Eq, 2),
            [b'!', b'=', ..] => (Cmp::Ne, 2),
            [b'<', b'=', ..] => (Cmp::Le, 2),
            [b'>', b'=', ..] => (Cmp::Ge, 2),
            [b'<', ..] => (Cmp::Lt, 1),
            [b'>', ..] => (Cmp::Gt, 1),
            _ => return Some(l),
        };
        self.i += len;
        let r = self.math(0)?;
        // Comparisons do not chain in jq: leave `a < b < c` to jaq (a compile error).
        self.ws();
        if matches!(self.s.get(self.i), Some(b'=' | b'!' | b'<' | b'>')) {
            return None;
        }
        Some(Node::Cmp(Box::new(l), op, Box::new(r)))
    }

    /// Arithmetic at `level` of [`MATH_LEVELS`] and tighter, left-associative.
    fn math(&mut self, level: usize) -> Option<Node> {
        let Some(ops) = MATH_LEVELS.get(level) else {
            return self.operand();
        };
        let mut l = self.math(level + 1)?;
        loop {
            self.ws();
            let at = self.s.get(self.i);
            let Some(&(_, op)) = ops.iter().find(|(c, _)| Some(c) == at) else {
                return Some(l);
            };
            // `//` is the alternative operator.
            if op == Math::Div && self.s.get(self.i + 1) == Some(&b'/') {
                return Some(l);
            }
            self.i += 1;
            // `+=`, `-=`, … are updates.
            if self.s.get(self.i) == Some(&b'=') {
                return None;
            }
            l = Node::Math(Box::new(l), op, Box::new(self.math(level + 1)?));
        }
    }

    fn operand(&mut self) -> Option<Node> {
        self.ws();
        let start = self.i;
        match *self.s.get(self.i)? {
            b'(' => {
                self.i += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let inner = self.or()?;
                self.depth -= 1;
                self.ws();
                (self.s.get(self.i) == Some(&b')')).then_some(())?;
                self.i += 1;
                Some(inner)
            }
            b'.' => {
                while self.s.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    let ident = self.i;
                    while self
                        .s
                        .get(self.i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        self.i += 1;
                    }
                    // `.` alone, `.[…]`, `.1`: not a plain path here.
                    if self.i == ident || self.s[ident].is_ascii_digit() {
                        return None;
                    }
                }
                let src = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                let path = PlainPath::parse(src)?;
                let at = match self.paths.iter().position(|p| *p == path) {
                    Some(at) => at,
                    None => {
                        self.paths.push(path);
                        self.paths.len() - 1
                    }
                };
                Some(Node::Path(at))
            }
            b'"' => {
                let len = self.s[self.i + 1..].iter().position(|&c| c == b'"')?;
                let inner = &self.s[self.i + 1..self.i + 1 + len];
                // Escapes (and with them interpolation) are jaq's to read.
                if inner.contains(&b'\\') {
                    return None;
                }
                self.i += len + 2;
                self.literal(start)
            }
            b'0'..=b'9' => {
                let digits = |p: &mut Self| {
                    let from = p.i;
                    while p.s.get(p.i).is_some_and(u8::is_ascii_digit) {
                        p.i += 1;
                    }
                    p.i > from
                };
                digits(self);
                if self.s.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    digits(self).then_some(())?;
                }
                if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
                    self.i += 1;
                    if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                    digits(self).then_some(())?;
                }
                // `1a`, `1.e5`…: not a number as written here.
                if self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.'))
                {
                    return None;
                }
                self.literal(start)
            }
            _ => {
                for kw in ["true", "false", "null"] {
                    if self.keyword(kw) {
                        return self.literal(start);
                    }
                }
                None
            }
        }
    }

    /// The literal `s[start..i]` as jaq evaluates it.
    fn literal(&self, start: usize) -> Option<Node> {
        let src = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let expr = Expr::compile(src).ok()?;
        let v = expr.first(Val::Null, &RecordVars::new("", 0)).ok()??;
        Some(Node::Literal(v))
    }
}

#[cfg(test)]
mod tests;
