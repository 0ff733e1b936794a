//! What one group commit writes, decided the same way by every backend:
//! each append of the group checked against its own expected version (and
//! its idempotency key), numbered from the next free position, in order. A
//! conflict fails that append only; an append whose key was already used —
//! before this group or earlier in it — writes nothing and reports the
//! first outcome.

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::types::{AppendError, Appended, ExpectedVersion, Idempotency};

/// An event ready to be written: validated, serialized.
pub(crate) struct PreparedEvent {
    pub event_type: String,
    pub data: String,
    pub metadata: String,
    /// The version of its type's schema it was written with.
    pub schema_version: u32,
}

/// One append waiting for a writer.
pub(crate) struct Request {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<PreparedEvent>,
    pub idempotency: Option<Idempotency>,
    pub reply: oneshot::Sender<Result<Outcome, AppendError>>,
}

/// What the writer did with an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The append's positions (for a duplicate: those of the original).
    pub appended: Appended,
    /// `Some(original command id)` when the idempotency key had been used:
    /// nothing was written this time.
    pub duplicate_of: Option<String>,
}

/// Bounds of one group commit.
pub(crate) const MAX_GROUP_REQUESTS: usize = 1024;
pub(crate) const MAX_GROUP_EVENTS: usize = 50_000;

/// An event of a group with its place in the log.
pub(crate) struct EventRow<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event: &'a PreparedEvent,
}

/// An idempotency key to record with the outcome of its append.
pub(crate) struct KeyRow<'a> {
    pub idempotency: &'a Idempotency,
    pub stream_id: &'a str,
    pub appended: Appended,
}

/// What a group writes and answers.
pub(crate) struct Plan<'a> {
    /// One per request of the group, in order.
    pub outcomes: Vec<Result<Outcome, AppendError>>,
    /// The events to insert, in position order.
    pub rows: Vec<EventRow<'a>>,
    /// The keys to insert.
    pub keys: Vec<KeyRow<'a>>,
    /// The next free position after the group.
    pub next: u64,
}

/// Plans `group` from position `next`, reading each stream's current
/// version (None: no stream) with `version` and a key's recorded outcome
/// with `recorded`; both are asked at most once per stream or key.
pub(crate) fn plan<'a, E>(
    group: &'a [Request],
    mut next: u64,
    mut version: impl FnMut(&str) -> Result<Option<u64>, E>,
    mut recorded: impl FnMut(&Idempotency) -> Result<Option<Outcome>, E>,
) -> Result<Plan<'a>, E> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut rows = Vec::with_capacity(group.iter().map(|r| r.events.len()).sum());
    let mut keys = Vec::new();
    // Versions of streams touched earlier in this group.
    let mut touched: HashMap<&str, Option<u64>> = HashMap::new();
    // Keys recorded earlier in this group.
    let mut used: HashMap<(&str, &str), Outcome> = HashMap::new();
    for req in group {
        if let Some(idem) = &req.idempotency {
            let earlier = used.get(&(idem.scope.as_str(), idem.key.as_str())).cloned();
            let found = match earlier {
                Some(o) => Some(o),
                None => recorded(idem)?,
            };
            if let Some(outcome) = found {
                outcomes.push(Ok(outcome));
                continue;
            }
        }
        let current = match touched.get(req.stream_id.as_str()) {
            Some(v) => *v,
            None => version(&req.stream_id)?,
        };
        if !req.expected.admits(current) {
            touched.insert(&req.stream_id, current);
            outcomes.push(Err(AppendError::Conflict {
                stream_id: req.stream_id.clone(),
                expected: req.expected,
                actual: current,
            }));
            continue;
        }
        let base = current.unwrap_or(0);
        let first = next;
        for (i, event) in req.events.iter().enumerate() {
            rows.push(EventRow {
                position: next,
                stream_id: &req.stream_id,
                stream_version: base + i as u64 + 1,
                event,
            });
            next += 1;
        }
        let stream_version = base + req.events.len() as u64;
        if !req.events.is_empty() {
            touched.insert(&req.stream_id, Some(stream_version));
        }
        let appended = Appended { stream_version, first_position: first, last_position: next - 1 };
        if let Some(idem) = &req.idempotency {
            keys.push(KeyRow { idempotency: idem, stream_id: &req.stream_id, appended });
            let original = Outcome { appended, duplicate_of: Some(idem.command_id.clone()) };
            used.insert((idem.scope.as_str(), idem.key.as_str()), original);
        }
        outcomes.push(Ok(Outcome { appended, duplicate_of: None }));
    }
    Ok(Plan { outcomes, rows, keys, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(stream: &str, expected: ExpectedVersion, n: usize, key: Option<&str>) -> Request {
        Request {
            stream_id: stream.into(),
            expected,
            events: (0..n)
                .map(|i| PreparedEvent {
                    event_type: "E".into(),
                    data: i.to_string(),
                    metadata: "{}".into(),
                    schema_version: 1,
                })
                .collect(),
            idempotency: key.map(|k| Idempotency {
                scope: "h".into(),
                key: k.into(),
                command_id: format!("cmd-{k}"),
            }),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn a_key_used_twice_in_one_group_writes_once() {
        let group = [
            request("a", ExpectedVersion::NoStream, 2, Some("k")),
            request("a", ExpectedVersion::Exact(2), 1, Some("k")),
            request("a", ExpectedVersion::Exact(2), 1, None),
            request("b", ExpectedVersion::Any, 0, None),
            request("b", ExpectedVersion::NoStream, 1, None),
        ];
        let p = plan::<()>(&group, 10, |_| Ok(None), |_| Ok(None)).unwrap();
        assert_eq!(p.rows.len(), 4);
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.next, 14);
        let first = p.outcomes[0].clone().unwrap();
        assert_eq!(first.appended, Appended { stream_version: 2, first_position: 10, last_position: 11 });
        let again = p.outcomes[1].clone().unwrap();
        assert_eq!((again.appended, again.duplicate_of.as_deref()), (first.appended, Some("cmd-k")));
        assert_eq!(p.outcomes[2].clone().unwrap().appended.last_position, 12);
        // An empty append does not create its stream.
        assert_eq!(p.outcomes[3].clone().unwrap().appended.stream_version, 0);
        assert_eq!(
            p.outcomes[4].clone().unwrap().appended,
            Appended { stream_version: 1, first_position: 13, last_position: 13 }
        );
    }
}
