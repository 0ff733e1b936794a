//! The subject an event is published on, from a template such as
//! `refract.{stream_id}.{type}`.

use crate::log::RecordedEvent;

/// A subject template: text with `{stream_id}`, `{type}` and `{position}`
/// in it. The values are made safe as subject tokens: NATS splits subjects
/// at `.`, treats `*` and `>` as wildcards and refuses whitespace, so every
/// character but ASCII letters, digits, `-` and `_` is written `%XX` (its
/// UTF-8 bytes in hex). `order.1` becomes `order%2E1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    StreamId,
    Type,
    Position,
}

impl Template {
    /// Parses `text`; an unknown `{…}` or a wildcard is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close =
                rest[open..].find('}').ok_or_else(|| format!("unclosed {{ in subject template {text:?}"))?;
            parts.push(match &rest[open + 1..open + close] {
                "stream_id" => Part::StreamId,
                "type" => Part::Type,
                "position" => Part::Position,
                other => {
                    return Err(format!(
                        "unknown {{{other}}} in subject template {text:?}; use {{stream_id}}, {{type}} or {{position}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let literal: String = parts
            .iter()
            .filter_map(|p| if let Part::Text(t) = p { Some(t.as_str()) } else { None })
            .collect();
        if literal.contains(['*', '>']) || literal.chars().any(char::is_whitespace) || text.is_empty() {
            return Err(format!(
                "subject template {text:?} must be a subject without wildcards or whitespace"
            ));
        }
        Ok(Template { parts })
    }

    /// A template without placeholders.
    pub fn fixed(subject: &str) -> Template {
        Template { parts: vec![Part::Text(subject.to_owned())] }
    }

    /// The subject of `e`.
    pub fn render(&self, e: &RecordedEvent) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::StreamId => escape(&e.stream_id, &mut out),
                Part::Type => escape(&e.event_type, &mut out),
                Part::Position => out.push_str(&e.position.to_string()),
            }
        }
        out
    }

    /// The subjects a stream must capture to hold every subject rendered:
    /// the text before the first placeholder, then `>` (or the subject
    /// itself, without placeholders).
    pub fn capture(&self) -> String {
        match self.parts.first() {
            Some(Part::Text(t)) if self.parts.len() == 1 => t.clone(),
            Some(Part::Text(t)) if t.ends_with('.') => format!("{t}>"),
            _ => ">".to_owned(),
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(t)?,
                Part::StreamId => f.write_str("{stream_id}")?,
                Part::Type => f.write_str("{type}")?,
                Part::Position => f.write_str("{position}")?,
            }
        }
        Ok(())
    }
}

fn escape(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, ty: &str) -> RecordedEvent {
        RecordedEvent {
            position: 42,
            stream_id: stream.into(),
            stream_version: 1,
            event_type: ty.into(),
            data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
            metadata: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            recorded_at: 0,
            schema_version: 1,
        }
    }

    #[test]
    fn values_become_safe_tokens() {
        let t = Template::parse("refract.{stream_id}.{type}").unwrap();
        assert_eq!(t.render(&event("order-1", "OrderPlaced")), "refract.order-1.OrderPlaced");
        assert_eq!(t.render(&event("a.b *>c é", "T")), "refract.a%2Eb%20%2A%3Ec%20%C3%A9.T");
        assert_eq!(t.capture(), "refract.>");
        assert_eq!(t.to_string(), "refract.{stream_id}.{type}");
        assert_eq!(Template::parse("evts.{position}").unwrap().render(&event("s", "T")), "evts.42");
        assert_eq!(Template::parse("all-events").unwrap().capture(), "all-events");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["refract.{stream}", "refract.*", "refract.>", "a b.{type}", "refract.{type", ""] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
