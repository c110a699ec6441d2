//! `groups describe`'s tables: the group's state line, and per partition its committed
//! offset, end offset, lag and owner, with Kafka's columns, widths and order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use millrace_broker::{Broker, BrokerError, GroupDescription, MemberDescription, TopicPartition};

/// Kafka's mark for a column without a value.
const MISSING: &str = "-";

/// The columns of `describe`'s partition table, Kafka's.
const OFFSETS_HEADER: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

/// One group: its state line, then its partition table with each partition's end
/// offset from `ends` (fetched for it).
pub(super) fn write_group(
    out: &mut impl Write,
    d: &GroupDescription,
    ends: &EndOffsets,
) -> std::io::Result<()> {
    write_state(out, d)?;
    writeln!(out)?;
    let mut rows = rows(d);
    for r in &mut rows {
        r.end = r.tp.as_ref().and_then(|tp| ends.get(tp));
    }
    write_rows(out, &d.group, &rows)
}

/// GROUP ASSIGNMENT-STRATEGY STATE #MEMBERS, as Kafka's `--describe --state` prints
/// it (less the coordinator: there is one broker, or Kafka's tool to ask).
fn write_state(out: &mut impl Write, d: &GroupDescription) -> std::io::Result<()> {
    let g = d.group.len().max(15);
    let strategy = if d.protocol.is_empty() {
        MISSING
    } else {
        &d.protocol
    };
    let line = |a: &str, b: &str, c: &str, n: &str| format!("{a:<g$} {b:<20} {c:<20} {n}");
    writeln!(
        out,
        "{}",
        line("GROUP", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS")
    )?;
    writeln!(
        out,
        "{}",
        line(
            &d.group,
            strategy,
            d.state.name(),
            &d.members.len().to_string()
        )
    )
}

/// One line of the partition table; `None` prints as `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row<'a> {
    tp: Option<TopicPartition>,
    /// The committed offset (the next the group reads).
    current: Option<i64>,
    end: Option<i64>,
    member: Option<&'a MemberDescription>,
}

impl Row<'_> {
    /// Kafka's LAG: end offset minus committed offset, where both are known.
    fn lag(&self) -> Option<i64> {
        Some(self.end? - self.current?)
    }
}

/// The table's rows in Kafka's order: members by most partitions first, each with its
/// partitions sorted; then committed partitions nobody owns now; then members without
/// partitions (Kafka leaves those out of this view).
fn rows(d: &GroupDescription) -> Vec<Row<'_>> {
    let committed: BTreeMap<&TopicPartition, i64> =
        d.offsets.iter().map(|(tp, o)| (tp, *o)).collect();
    let mut owners: Vec<&MemberDescription> = d
        .members
        .iter()
        .filter(|m| !m.assignment.is_empty())
        .collect();
    owners.sort_by_key(|m| std::cmp::Reverse(m.assignment.len()));
    let mut out = Vec::new();
    for m in owners {
        let mut tps: Vec<&TopicPartition> = m.assignment.iter().collect();
        tps.sort();
        for tp in tps {
            out.push(Row {
                tp: Some(tp.clone()),
                current: committed.get(tp).copied(),
                end: None,
                member: Some(m),
            });
        }
    }
    let owned: Vec<&TopicPartition> = d.members.iter().flat_map(|m| &m.assignment).collect();
    for (tp, o) in &committed {
        if !owned.contains(tp) {
            out.push(Row {
                tp: Some((*tp).clone()),
                current: Some(*o),
                end: None,
                member: None,
            });
        }
    }
    for m in d.members.iter().filter(|m| m.assignment.is_empty()) {
        out.push(Row {
            tp: None,
            current: None,
            end: None,
            member: Some(m),
        });
    }
    out
}

/// GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID,
/// with Kafka's column widths.
fn write_rows(out: &mut impl Write, group: &str, rows: &[Row<'_>]) -> std::io::Result<()> {
    let opt = |v: Option<i64>| v.map_or_else(|| MISSING.to_string(), |v| v.to_string());
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let (id, host, client) = match r.member {
                Some(m) => (m.member_id.clone(), m.host.clone(), m.client_id.clone()),
                None => (MISSING.into(), MISSING.into(), MISSING.into()),
            };
            [
                r.tp.as_ref()
                    .map_or_else(|| MISSING.to_string(), |tp| tp.topic.to_string()),
                r.tp.as_ref()
                    .map_or_else(|| MISSING.to_string(), |tp| tp.partition.to_string()),
                opt(r.current),
                opt(r.end),
                opt(r.lag()),
                id,
                host,
                client,
            ]
        })
        .collect();
    let width = |i: usize| cells.iter().map(|c| c[i].len()).fold(15, usize::max);
    let (g, t, c, h) = (group.len().max(15), width(0), width(5), width(6));
    let line = |f: [&str; 9]| {
        format!(
            "{:<g$} {:<t$} {:<10} {:<15} {:<15} {:<15} {:<c$} {:<h$} {}",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
        )
    };
    writeln!(out, "{}", line(OFFSETS_HEADER).trim_end())?;
    for x in &cells {
        writeln!(
            out,
            "{}",
            line([
                group, &x[0], &x[1], &x[2], &x[3], &x[4], &x[5], &x[6], &x[7]
            ])
            .trim_end()
        )?;
    }
    Ok(())
}

/// How many topics are asked about at once: on Kafka each costs a few round trips, and
/// a cluster may have thousands.
pub const AT_ONCE: usize = 8;

/// Partitions' end offsets, asked for once per topic; a topic that is gone has none.
#[derive(Default)]
pub struct EndOffsets(HashMap<Arc<str>, Option<HashMap<i32, i64>>>);

impl EndOffsets {
    /// Asks for the end offsets of the partitions of every topic in `groups`' rows
    /// (committed or owned) not asked for yet, [`AT_ONCE`] topics at a time.
    pub async fn fetch(
        &mut self,
        broker: &dyn Broker,
        groups: &[GroupDescription],
    ) -> Result<(), BrokerError> {
        let topics: BTreeSet<Arc<str>> = groups
            .iter()
            .flat_map(|d| {
                let owned = d.members.iter().flat_map(|m| &m.assignment);
                d.offsets.iter().map(|(tp, _)| tp).chain(owned)
            })
            .map(|tp| Arc::clone(&tp.topic))
            .filter(|t| !self.0.contains_key(t))
            .collect();
        let answers: Vec<(Arc<str>, Result<_, BrokerError>)> = stream::iter(topics)
            .map(|t| async move {
                let d = broker.describe_topic(&t).await;
                (t, d)
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        for (t, d) in answers {
            let ends = match d {
                Ok(d) => Some(
                    d.partitions
                        .iter()
                        .map(|p| (p.partition, p.end_offset))
                        .collect(),
                ),
                Err(BrokerError::UnknownTopic(_)) => None,
                Err(e) => return Err(e),
            };
            self.0.insert(t, ends);
        }
        Ok(())
    }

    /// The end offset of `tp`, if its topic was fetched and has the partition.
    pub fn get(&self, tp: &TopicPartition) -> Option<i64> {
        self.0
            .get(&tp.topic)
            .and_then(Option::as_ref)
            .and_then(|m| m.get(&tp.partition).copied())
    }
}

/// The group's lag over the partitions it committed for (each at least 0), as
/// `status` shows it; `ends` fetched for it.
pub fn total_lag(d: &GroupDescription, ends: &EndOffsets) -> i64 {
    d.offsets
        .iter()
        .filter_map(|(tp, committed)| Some((ends.get(tp)? - committed).max(0)))
        .fold(0i64, i64::saturating_add)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use millrace_broker::GroupState;

    use super::*;

    fn member(id: &str, tps: &[(&str, i32)]) -> MemberDescription {
        MemberDescription {
            member_id: id.into(),
            instance_id: None,
            client_id: format!("client-{id}"),
            host: "/127.0.0.1".into(),
            assignment: tps
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
        }
    }
    #[test]
    fn rows_put_owners_first_then_unowned_commits_then_idle_members() {
        let d = GroupDescription {
            group: "g".into(),
            state: GroupState::Stable,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![
                member("idle", &[]),
                member("one", &[("t", 2)]),
                member("two", &[("t", 1), ("t", 0)]),
            ],
            offsets: vec![
                (TopicPartition::new("old", 0), 7),
                (TopicPartition::new("t", 0), 5),
            ],
        };
        let got: Vec<(Option<String>, Option<i64>, Option<&str>)> = rows(&d)
            .iter()
            .map(|r| {
                (
                    r.tp.as_ref().map(ToString::to_string),
                    r.current,
                    r.member.map(|m| m.member_id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("t-0".into()), Some(5), Some("two")),
                (Some("t-1".into()), None, Some("two")),
                (Some("t-2".into()), None, Some("one")),
                (Some("old-0".into()), Some(7), None),
                (None, None, Some("idle")),
            ]
        );
    }
    #[test]
    fn the_table_has_kafkas_columns_and_dashes() {
        let m = member("m-1", &[("orders", 0)]);
        let rows = vec![
            Row {
                tp: Some(TopicPartition::new("orders", 0)),
                current: Some(3),
                end: Some(10),
                member: Some(&m),
            },
            Row {
                tp: Some(TopicPartition::new("orders", 1)),
                current: None,
                end: Some(4),
                member: None,
            },
        ];
        let mut out = Vec::new();
        write_rows(&mut out, "g", &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            vec![
                OFFSETS_HEADER.to_vec(),
                vec![
                    "g",
                    "orders",
                    "0",
                    "3",
                    "10",
                    "7",
                    "m-1",
                    "/127.0.0.1",
                    "client-m-1"
                ],
                vec!["g", "orders", "1", "-", "4", "-", "-", "-", "-"],
            ]
        );
        // Kafka's widths: at least 15 for the group, topic, consumer id and host.
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with(&format!("{:<16}{:<16}0", "g", "orders"))
        );
    }
}
