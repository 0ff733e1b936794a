//! Server-sent event frames, and which events a subscriber wants.

use axum::body::Bytes;

use crate::log::RecordedEvent;

/// Which events a subscriber wants: of some types, of one stream, of the
/// streams whose id starts with a prefix; all of them when none is set.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub types: Option<Vec<String>>,
    pub stream: Option<String>,
    pub stream_prefix: Option<String>,
}

impl Filter {
    /// Whether an event of `stream_id` and `event_type` passes.
    pub fn admits(&self, stream_id: &str, event_type: &str) -> bool {
        self.types.as_ref().is_none_or(|t| t.iter().any(|t| t == event_type))
            && self.stream.as_ref().is_none_or(|s| s == stream_id)
            && self.stream_prefix.as_ref().is_none_or(|p| stream_id.starts_with(p.as_str()))
    }
}

/// Appends `data` as `data:` lines: one per line of the text (SSE ends a
/// field at a line break; a client joins the lines with `\n`).
fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

/// `id: <position>`, `event: <type>`, `data: <the event as JSON>` — its
/// data and metadata the bytes appended (a line break inside their JSON
/// whitespace comes back as `\n`).
pub fn event_frame(e: &RecordedEvent) -> Bytes {
    let json = serde_json::to_vec(e).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + e.event_type.len() + 40);
    out.extend_from_slice(format!("id: {}\nevent: {}\n", e.position, e.event_type).as_bytes());
    push_data(&mut out, &json);
    out.push(b'\n');
    out.into()
}

/// The end of the history: the subscriber has every event up to
/// `position`; live events follow.
pub fn caught_up_frame(position: u64) -> Bytes {
    format!("id: {position}\nevent: caught-up\ndata: {{\"position\":{position}}}\n\n").into()
}

/// The last frame to a subscriber that could not keep up: reconnect with
/// `Last-Event-ID: <resume_after>` (or `after=`) to go on.
pub fn fell_behind_frame(resume_after: u64) -> Bytes {
    format!("id: {resume_after}\nevent: fell-behind\ndata: {{\"resume_after\":{resume_after}}}\n\n").into()
}

/// A heartbeat: a comment carrying the log's head.
pub fn head_comment(head: u64) -> Bytes {
    format!(": head {head}\n\n").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_carry_the_event_and_rejoin_to_its_bytes() {
        let e = RecordedEvent {
            position: 7,
            stream_id: "s".into(),
            stream_version: 1,
            event_type: "T".into(),
            data: serde_json::value::RawValue::from_string("{\n  \"a\": 1\n}".into()).unwrap(),
            metadata: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            recorded_at: 5,
            schema_version: 1,
        };
        let frame = String::from_utf8(event_frame(&e).to_vec()).unwrap();
        assert!(frame.starts_with("id: 7\nevent: T\ndata: "), "{frame}");
        assert!(frame.ends_with("\n\n"));
        let data: Vec<&str> = frame.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        let joined = data.join("\n");
        let v: serde_json::Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(v["position"], 7);
        assert!(joined.contains("{\n  \"a\": 1\n}"), "{joined}");
    }

    #[test]
    fn filters_combine() {
        let f = Filter { types: Some(vec!["A".into()]), stream: None, stream_prefix: Some("order-".into()) };
        assert!(f.admits("order-1", "A"));
        assert!(!f.admits("order-1", "B"));
        assert!(!f.admits("cart-1", "A"));
        assert!(Filter::default().admits("x", "y"));
    }
}
