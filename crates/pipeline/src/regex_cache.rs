//! jq's regex filters with their patterns compiled once.
//!
//! jaq-std builds `test`, `match`, `capture`, `scan`, `split/2`, `splits`, `sub` and
//! `gsub` on three natives (`matches`, `split_matches`, `split_`) that compile the
//! pattern on every call — once per record in a stage, which made any expression with
//! a regex spend nearly all its time compiling it. These natives replace jaq-std's and
//! keep each thread's recent patterns compiled. What they return is exactly what
//! jaq-std's return (the matching code is adapted from jaq-std 3.0, MIT licensed):
//! the same flags (`g n i m s l x p`), offsets and lengths in characters, named
//! captures, and errors for bad flags or patterns.

use std::cell::RefCell;
use std::rc::Rc;

use bstr::ByteSlice;
use jaq_core::ValT as _;
use jaq_core::native::{Fun, bome, run};
use jaq_core::{Bind, Cv, DataT, Error, ValR};
use jaq_std::ValT;
use regex_bites::bytes::{Regex, RegexBuilder};

/// The natives this module replaces in jaq-std's set.
pub const REPLACED: [&str; 3] = ["matches", "split_matches", "split_"];

/// The replacement natives.
pub fn funs<D: DataT>() -> impl Iterator<Item = Fun<D>>
where
    for<'a> D::V<'a>: ValT,
{
    let vv = || Box::from([Bind::Var(()), Bind::Var(())]);
    let filters: [jaq_core::native::Filter<jaq_core::RunPtr<D>>; 3] = [
        ("matches", vv(), |cv| bome(re(false, true, cv))),
        ("split_matches", vv(), |cv| bome(re(true, true, cv))),
        ("split_", vv(), |cv| bome(re(true, false, cv))),
    ];
    filters.into_iter().map(run)
}

/// Compiled patterns a thread keeps, most recently used last.
const KEPT: usize = 32;

thread_local! {
    static COMPILED: RefCell<Vec<(Flags, String, Rc<Regex>)>> = const { RefCell::new(Vec::new()) };
}

/// `re` compiled with `flags`, from this thread's cache when it was compiled before.
fn compiled(flags: Flags, re: &str) -> Result<Rc<Regex>, regex_bites::Error> {
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(i) = cache.iter().position(|(f, r, _)| *f == flags && r == re) {
            let hit = cache.remove(i);
            let regex = Rc::clone(&hit.2);
            cache.push(hit);
            return Ok(regex);
        }
        let regex = Rc::new(flags.regex(re)?);
        if cache.len() >= KEPT {
            cache.remove(0);
        }
        cache.push((flags, re.to_string(), Rc::clone(&regex)));
        Ok(regex)
    })
}

fn re<'a, D: DataT>(s: bool, m: bool, mut cv: Cv<'a, D>) -> ValR<D::V<'a>>
where
    D::V<'a>: ValT,
{
    let flags = cv.0.pop_var();
    let re = cv.0.pop_var();
    let fail_flag = |e| Error::str(format_args!("invalid regex flag: {e}"));
    let fail_re = |e| Error::str(format_args!("invalid regex: {e}"));
    let flags = Flags::new(as_str(&flags)?).map_err(fail_flag)?;
    let re = compiled(flags, as_str(&re)?).map_err(fail_re)?;
    let out = parts(cv.1.try_as_utf8_bytes()?, &re, flags, (s, m));
    let sub = |s| cv.1.as_sub_str(s);
    out.into_iter()
        .map(|out| match out {
            Part::Matches(ms) => ms
                .into_iter()
                .map(|m| D::V::from_map(m.fields(sub)))
                .collect(),
            Part::Mismatch(s) => Ok(sub(s)),
        })
        .collect()
}

fn as_str<V: ValT>(v: &V) -> Result<&str, Error<V>> {
    v.try_as_utf8_bytes()
        .and_then(|s| std::str::from_utf8(s).map_err(Error::str))
}

#[derive(Copy, Clone, Default, PartialEq, Eq)]
struct Flags {
    g: bool,
    n: bool,
    i: bool,
    m: bool,
    s: bool,
    l: bool,
    x: bool,
}

impl Flags {
    fn new(flags: &str) -> Result<Self, char> {
        let mut out = Self::default();
        for flag in flags.chars() {
            match flag {
                'g' => out.g = true,
                'n' => out.n = true,
                'i' => out.i = true,
                'm' => out.m = true,
                's' => out.s = true,
                'l' => out.l = true,
                'x' => out.x = true,
                'p' => {
                    out.m = true;
                    out.s = true;
                }
                c => return Err(c),
            }
        }
        Ok(out)
    }

    fn regex(self, re: &str) -> Result<Regex, regex_bites::Error> {
        RegexBuilder::new(re)
            .case_insensitive(self.i)
            .multi_line(self.m)
            .dot_matches_new_line(self.s)
            .swap_greed(self.l)
            .ignore_whitespace(self.x)
            .build()
    }
}

/// Character positions of byte offsets, walked forward once per input string.
struct ByteChar<'a>(std::iter::Peekable<std::iter::Enumerate<CharIndices<'a>>>);

type CharIndices<'a> =
    std::iter::Chain<bstr::CharIndices<'a>, std::iter::Once<(usize, usize, char)>>;

impl<'a> ByteChar<'a> {
    fn new(s: &'a [u8]) -> Self {
        let last = std::iter::once((s.len(), 0, '\0'));
        Self(s.char_indices().chain(last).enumerate().peekable())
    }

    fn char_of_byte(&mut self, byte_offset: usize) -> usize {
        while let Some((char_i, (byte_i, _, _))) = self.0.peek() {
            if byte_offset == *byte_i {
                return *char_i;
            }
            self.0.next();
        }
        // Match boundaries are always character boundaries of the input.
        0
    }
}

struct Match<'a> {
    offset: usize,
    length: usize,
    string: &'a [u8],
    name: Option<&'a str>,
}

impl<'a> Match<'a> {
    fn new(bc: &mut ByteChar, m: regex_bites::bytes::Match<'a>, name: Option<&'a str>) -> Self {
        Self {
            offset: bc.char_of_byte(m.start()),
            length: m.as_bytes().chars().count(),
            string: m.as_bytes(),
            name,
        }
    }

    fn fields<T: From<isize> + From<String> + 'a>(
        &self,
        f: impl Fn(&'a [u8]) -> T,
    ) -> impl Iterator<Item = (T, T)> + '_ {
        let n = |x: usize| isize::try_from(x).unwrap_or(isize::MAX);
        [
            ("offset", n(self.offset).into()),
            ("length", n(self.length).into()),
            ("string", f(self.string)),
        ]
        .into_iter()
        .chain(self.name.iter().map(|n| ("name", (*n).to_string().into())))
        .map(|(k, v)| (k.to_string().into(), v))
    }
}

enum Part<'a> {
    Matches(Vec<Match<'a>>),
    Mismatch(&'a [u8]),
}

/// The matches of `re` in `s` and/or the text between them (`sm`: mismatches,
/// matches), as jq's `_match_impl` and `split` need them.
fn parts<'a>(s: &'a [u8], re: &'a Regex, flags: Flags, sm: (bool, bool)) -> Vec<Part<'a>> {
    let (mi, ma) = sm;
    let mut last_byte = 0;
    let mut bc = ByteChar::new(s);
    let mut out = Vec::new();
    for c in re.captures_iter(s) {
        let Some(whole) = c.get(0) else { continue };
        if flags.n && whole.as_bytes().is_empty() {
            continue;
        }
        if mi {
            out.push(Part::Mismatch(&s[last_byte..whole.start()]));
            last_byte = whole.end();
        }
        if ma {
            let named = c.iter().zip(re.capture_names());
            out.push(Part::Matches(
                named
                    .filter_map(|(m, n)| Some(Match::new(&mut bc, m?, n)))
                    .collect(),
            ));
        }
        if !flags.g {
            break;
        }
    }
    if mi {
        out.push(Part::Mismatch(&s[last_byte..]));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, Vars, data};
    use jaq_json::Val;

    type D = data::JustLut<Val>;

    /// Every output (or the error) of `code` on `input`, with jaq-std's regex natives
    /// (`cached` false) or this module's.
    fn run(code: &str, input: &str, cached: bool) -> Vec<String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let std =
            jaq_std::funs::<D>().filter(|(name, ..)| !cached || !super::REPLACED.contains(name));
        let funs = jaq_core::funs()
            .chain(std)
            .chain(super::funs::<D>().filter(|_| cached))
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .unwrap();
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .unwrap();
        let input: Val = serde_json::from_str::<serde_json::Value>(input)
            .map(|v| serde_json::from_value(v).unwrap())
            .unwrap();
        let ctx = Ctx::<D>::new(&filter.lut, Vars::new([]));
        filter
            .id
            .run((ctx, input))
            .map(|r| match r {
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {e:?}"),
            })
            .collect()
    }

    #[test]
    fn cached_regex_filters_give_what_jaq_std_gives() {
        let inputs = [
            r#""The quick brown fox, 2024 — naïve café; x-y z""#,
            r#""""#,
            r#""aaa""#,
            r#""ÄÖü über Straße""#,
        ];
        let programs = [
            r#"test("o")"#,
            r#"test("QUICK"; "i")"#,
            r#"[match("[a-z]+"; "g") | [.offset, .length, .string]]"#,
            r#"[match("(?<w>[a-zé]+)(?<n>[0-9]*)"; "g") | .captures]"#,
            r#"capture("(?<first>\\w+) (?<second>\\w+)")"#,
            r#"[scan("[a-z0-9]+")]"#,
            r#"[scan("a*")]"#,
            r#"[match("a*"; "gn") | .offset]"#,
            r#"[splits("[ ,;]+")]"#,
            r#"split("\\s"; null)"#,
            r#"sub("(?<x>[aeiou])"; "<\(.x)>")"#,
            r#"gsub("[aeiou]"; "_")"#,
            r#"gsub("(?<c>ß)"; "ss"; "g")"#,
            r#"test("(")"#,
            r#"test("a"; "q")"#,
        ];
        // Not vacuous: the filters do match.
        assert_eq!(
            run(r#"[scan("[a-z0-9]+")]"#, r#""ab, 12 c""#, true),
            vec![r#"["ab","12","c"]"#.to_string()]
        );
        assert_eq!(
            run(r#"[match("ü"; "g") | .offset]"#, inputs[3], true),
            vec!["[2,4]".to_string()]
        );
        for input in inputs {
            for p in programs {
                // Twice with the cache: the second run reuses the compiled pattern.
                let want = run(p, input, false);
                assert_eq!(run(p, input, true), want, "{p} on {input}");
                assert_eq!(run(p, input, true), want, "{p} on {input}, cached");
            }
        }
    }
}
