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
}

impl Diagnostic {
    pub fn error(line: u32, col: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            line,
            col,
            offset: None,
            message: message.into(),
            hint: None,
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
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, d.line, d.col, d.message
        )?;
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
        write!(
            f,
            "{}: {errors} error{}",
            self.file,
            if errors == 1 { "" } else { "s" }
        )?;
        if warnings > 0 {
            write!(f, ", {warnings} warning{}", if warnings == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
