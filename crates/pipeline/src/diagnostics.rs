//! Errors and warnings about a pipeline, each at a file:line:column with a hint.
//!
//! The planner never stops at the first problem: it gathers every one into
//! [`Diagnostics`], which prints one block per problem:
//!
//! ```text
//! signup.yaml:12:11: error: unknown stage kind `shader`
//!   hint: did you mean `sharder`?
//! ```

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem at one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based; 0 when the place is unknown (e.g. a pipeline built in code).
    pub line: u32,
    pub col: u32,
    /// Byte offset into the file, when known (for source snippets).
    pub offset: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
    /// Names the kind of problem for callers that treat one kind apart (e.g.
    /// [`NO_BATCH_END`]); most have none.
    pub code: Option<&'static str>,
}

/// The warning about a reduce or barrier join that a continuous run never releases
/// (no stage sets `batch:`): of no concern to `millrace run --batch`.
pub const NO_BATCH_END: &str = "no-batch-end";

impl Diagnostic {
    pub fn error(line: u32, col: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            line,
            col,
            offset: None,
            message: message.into(),
            hint: None,
            code: None,
        }
    }

    pub fn warning(line: u32, col: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(line, col, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Print as `file:line:col: error: message` plus an indented hint line.
    pub fn display<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        DisplayOne { file, d: self }
    }
}

struct DisplayOne<'a> {
    file: &'a str,
    d: &'a Diagnostic,
}

impl fmt::Display for DisplayOne<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.d;
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        // Line 0: no place in the file (it could not be read at all).
        if d.line == 0 {
            write!(f, "{}: {sev}: {}", self.file, d.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {sev}: {}",
                self.file, d.line, d.col, d.message
            )?;
        }
        if let Some(h) = &d.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pipeline file, sorted by place.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    pub file: String,
    /// The file's text, for snippets in miette reports.
    pub source: Option<Arc<str>>,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>) -> Self {
        Diagnostics {
            file: file.into(),
            source: None,
            items: Vec::new(),
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Order by place, errors before warnings at one place, and drop exact repeats.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (a.line, a.col, a.severity, &a.message).cmp(&(b.line, b.col, b.severity, &b.message))
        });
        self.items.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{}", d.display(&self.file))?;
        }
        let errors = self.errors().count();
        let warnings = self.items.len() - errors;
        write!(f, "{}: {}", self.file, count(errors, "error"))?;
        if warnings > 0 {
            write!(f, ", {}", count(warnings, "warning"))?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// `n` and the noun, plural unless `n` is 1: `1 partition`, `3 partitions`. For the
/// nouns millrace counts, all of which take a plain `s`.
pub fn count<N: fmt::Display + PartialEq + From<u8>>(n: N, noun: &str) -> String {
    if n == N::from(1) {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a
/// likely typo (at most a third of the word's length, and at least 1 edit allowed).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = if len < 3 { 0 } else { (len / 3).max(1) };
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos() {
        let kinds = ["copier", "filter", "sharder", "splitter"];
        assert_eq!(did_you_mean("shader", kinds), Some("sharder"));
        assert_eq!(did_you_mean("filtre", kinds), Some("filter"));
        assert_eq!(did_you_mean("xyz", kinds), None);
    }

    #[test]
    fn display_leaves_out_a_place_it_does_not_have() {
        let mut d = Diagnostics::new("gone.yaml");
        d.push(Diagnostic::error(
            0,
            0,
            "cannot read the pipeline file: not found",
        ));
        assert_eq!(
            d.to_string(),
            "gone.yaml: error: cannot read the pipeline file: not found\ngone.yaml: 1 error"
        );
    }

    #[test]
    fn display_has_file_line_col_and_hint() {
        let mut d = Diagnostics::new("p.yaml");
        d.push(Diagnostic::error(3, 7, "unknown field `were`").with_hint("did you mean `where`?"));
        assert_eq!(
            d.to_string(),
            "p.yaml:3:7: error: unknown field `were`\n  hint: did you mean `where`?\np.yaml: 1 error"
        );
    }
}
