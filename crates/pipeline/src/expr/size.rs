//! A bound on how large an expression may be: jaq recurses along it.

use super::CompileError;

/// Operators, brackets and keywords an expression may hold. jaq's parser, compiler
/// and interpreter recurse along chains of them (`a | a | …`, `1 + 1 + …`, `((…))`):
/// about 4000 overflowed the main thread's stack when compiled, which aborts the
/// process, so a pipeline file with such an expression is refused with an error
/// instead. Compiling runs on a thread with a large stack, and evaluating on the
/// runtime's threads (16 MiB stacks) handles chains of this length. Expressions in
/// pipeline files hold tens of them.
pub const MAX_OPERATORS: usize = 1000;

/// Counts what [`MAX_OPERATORS`] bounds, outside string literals and comments.
pub(super) fn check_size(source: &str) -> Result<(), Vec<CompileError>> {
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
