//! splitter: each record to the first route whose `when` holds (or, with `mode: all`,
//! to every such route); a record no route takes goes to `default`, so nothing is
//! dropped.
//!
//! ```yaml
//! notify:
//!   kind: splitter
//!   from: contacts
//!   mode: all
//!   routes:
//!     - {when: '.notify | index("email")', to: notify-email}
//!     - {when: '.notify | index("sms")', to: notify-sms}
//!   default: notify-none
//! ```

use super::kind::{Kind, Planning, Reads, Writes};
use crate::expr::Predicate;
use crate::yaml::node::{ExprSrc, Pos, Sp, Value};
use crate::yaml::reader::{Fields, Reader, describe};

pub const KIND: Kind = Kind {
    name: "splitter",
    fields: &["mode", "routes", "default"],
    reads: Reads::One,
    writes: Writes::Named(
        "a splitter names its outputs in `routes` (each with `when` and `to`) and `default`",
    ),
};

/// Splitter routing: the first matching route only, or every matching route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SplitMode {
    #[default]
    First,
    All,
}

/// A route as planned: its condition compiled.
#[derive(Clone, Debug)]
pub struct Route {
    pub when: Predicate,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SplitterSpec {
    pub mode: SplitMode,
    pub routes: Vec<RouteSpec>,
    pub default: Sp<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    pub when: ExprSrc,
    pub to: Sp<String>,
}

impl SplitterSpec {
    /// Every topic it writes: the routes', then the default.
    pub fn outputs(&self) -> impl Iterator<Item = &Sp<String>> {
        self.routes
            .iter()
            .map(|r| &r.to)
            .chain(std::iter::once(&self.default))
    }
}

pub(crate) fn read(
    r: &mut Reader<'_>,
    f: &Fields<'_>,
    at: Pos,
    what: &str,
) -> Option<SplitterSpec> {
    let mode = match f.get("mode") {
        None => Some(SplitMode::First),
        Some(n) => match n.as_str() {
            Some("first") => Some(SplitMode::First),
            Some("all") => Some(SplitMode::All),
            _ => {
                r.err(
                    n.pos,
                    format!(
                        "`mode` of a splitter must be first or all, found {}",
                        describe(n)
                    ),
                    "first: the first matching route; all: every matching route",
                );
                None
            }
        },
    };
    let default = r.required(
        f,
        at,
        "default",
        what,
        "a splitter needs a `default` topic for records no route takes, so nothing is dropped",
    );
    let default = default.and_then(|n| r.string(n, "`default`"));
    let routes = r.required(f, at, "routes", what, "routes: [{when: '.x', to: topic}]");
    let routes = routes.and_then(|n| read_routes(r, n));
    Some(SplitterSpec {
        mode: mode?,
        routes: routes?,
        default: default?,
    })
}

fn read_routes(r: &mut Reader<'_>, n: &crate::yaml::node::Node) -> Option<Vec<RouteSpec>> {
    let Value::Seq(items) = &n.value else {
        r.wrong_type(n, "`routes`", "a list of {when, to}");
        return None;
    };
    if items.is_empty() {
        r.err(n.pos, "`routes` is empty", "add a route, or use a copier");
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let route = r
            .fields(item, "a route", &["when", "to"], "a route")
            .and_then(|rf| {
                let w = r.required(
                    &rf,
                    item.pos,
                    "when",
                    "a route",
                    "when: '.notify | index(\"email\")'",
                );
                let t = r.required(
                    &rf,
                    item.pos,
                    "to",
                    "a route",
                    "a route goes to a topic: to: <topic>",
                );
                let when = w.and_then(|w| r.expr(w, "`when`"));
                let to = t.and_then(|t| r.string(t, "`to`"));
                Some(RouteSpec {
                    when: when?,
                    to: to?,
                })
            });
        match route {
            Some(route) => out.push(route),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The routes with their conditions compiled; every route is compiled before giving
/// up, so all errors show.
pub(crate) fn plan(spec: &SplitterSpec, cx: &mut Planning<'_>) -> Option<Vec<Route>> {
    let compiled: Vec<Option<Route>> = spec
        .routes
        .iter()
        .map(|r| {
            cx.jq(&r.when, "when", &[]).map(|e| Route {
                when: Predicate::Jq(e),
                to: r.to.value.clone(),
            })
        })
        .collect();
    compiled.into_iter().collect()
}
