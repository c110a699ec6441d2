//! join: the barrier of coordinated batch processing. `mode: barrier` releases a
//! batch once every input has all of it; `mode: key` combines the items with equal
//! keys from every input; `mode: zip` pairs the inputs' items by arrival.
//!
//! ```yaml
//! all-resized: {kind: join, from: resized, to: resized-batches, mode: barrier}
//! orders-with-users:
//!   kind: join
//!   from: [orders, users]
//!   to: enriched
//!   mode: key
//!   key: .user_id
//!   timeout: 30s
//! ```

use std::time::Duration;

use super::kind::{Kind, Planning, Reads, Writes};
use crate::diagnostics::did_you_mean;
use crate::expr::Selector;
use crate::yaml::node::{ExprSrc, Node, Pos, Sp};
use crate::yaml::reader::{Fields, Reader, describe};

pub const KIND: Kind = Kind {
    name: "join",
    fields: &["mode", "key", "timeout", "combine"],
    // A barrier may wait for one topic; joining items needs two or more.
    reads: Reads::TwoOrMore(|f| {
        let joins_items = !matches!(f.get("mode").and_then(Node::as_str), Some("barrier") | None);
        joins_items.then_some("a join by key or zip")
    }),
    writes: Writes::One,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinMode {
    Barrier,
    Key,
    Zip,
}

#[derive(Clone, Debug)]
pub struct Join {
    pub mode: JoinMode,
    /// Required for `Key` mode, absent otherwise.
    pub key: Option<Selector>,
    /// `Key` mode: how long a key may wait for its other parts.
    pub timeout: Option<Duration>,
    /// `Barrier` mode: release one combined item per batch instead of the items.
    pub combine: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JoinSpec {
    pub mode: Sp<JoinMode>,
    pub key: Option<ExprSrc>,
    pub timeout: Option<Duration>,
    pub combine: bool,
}

pub(crate) fn read(r: &mut Reader<'_>, f: &Fields<'_>, at: Pos, what: &str) -> Option<JoinSpec> {
    let mode_node = r.required(f, at, "mode", what, "mode: barrier, key or zip")?;
    let mode = match mode_node.as_str() {
        Some("barrier") => JoinMode::Barrier,
        Some("key") => JoinMode::Key,
        Some("zip") => JoinMode::Zip,
        _ => {
            let hint = match mode_node
                .as_str()
                .and_then(|m| did_you_mean(m, ["barrier", "key", "zip"]))
            {
                Some(s) => format!("did you mean `{s}`?"),
                None => "barrier: release a batch when all inputs are complete; key: combine items with equal keys; zip: pair items by arrival".to_owned(),
            };
            r.err(
                mode_node.pos,
                format!(
                    "join `mode` must be barrier, key or zip, found {}",
                    describe(mode_node)
                ),
                hint,
            );
            return None;
        }
    };
    let key = match (f.get("key"), mode) {
        (Some(n), JoinMode::Key) => Some(r.expr(n, "`key`")?),
        (None, JoinMode::Key) => {
            r.err(
                at,
                format!("{what} joins by key but is missing `key`"),
                "key: '.id'",
            );
            return None;
        }
        (Some(n), _) => {
            r.err(
                n.pos,
                "`key` only applies to `mode: key`",
                "remove it, or set mode: key",
            );
            return None;
        }
        (None, _) => None,
    };
    let timeout = match (f.get("timeout"), mode) {
        (Some(n), JoinMode::Key) => Some(r.duration(n, "`timeout`")?),
        (Some(n), _) => {
            r.err(
                n.pos,
                "`timeout` only applies to `mode: key`",
                "a barrier waits for the batch's end; remove it",
            );
            return None;
        }
        (None, _) => None,
    };
    let combine = match (f.get("combine"), mode) {
        (Some(n), JoinMode::Barrier) => r.bool(n, "`combine`")?,
        (Some(n), _) => {
            r.err(
                n.pos,
                "`combine` only applies to `mode: barrier`",
                "key and zip joins always combine",
            );
            return None;
        }
        (None, _) => false,
    };
    Some(JoinSpec {
        mode: Sp {
            value: mode,
            pos: mode_node.pos,
        },
        key,
        timeout,
        combine,
    })
}

pub(crate) fn plan(spec: &JoinSpec, cx: &mut Planning<'_>) -> Option<Join> {
    let key = match &spec.key {
        Some(e) => Some(cx.selector(e, "key")?),
        None => None,
    };
    Some(Join {
        mode: spec.mode.value,
        key,
        timeout: spec.timeout,
        combine: spec.combine,
    })
}
