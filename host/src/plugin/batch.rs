//! A projection's batch of events, packed the way it crosses into a plugin
//! (`event-batch` in `wit/projection.wit`): a few flat lists and one string,
//! built straight from the log's rows, so a batch costs a handful of
//! allocations instead of several per event.

use super::bindings::exports::refract::plugin::projector::EventBatch;
use super::bindings::refract::plugin::types::Event;

/// Events in log order, packed, with the schema version of each (which
/// stays with the host: a plugin sees events at the versions it declared).
#[derive(Debug, Clone)]
pub struct Batch(pub(super) EventBatch, pub(super) Vec<u32>);

/// One event of a [`Batch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Global position in the log.
    pub position: u64,
    /// The stream it belongs to.
    pub stream_id: &'a str,
    /// Its version within the stream.
    pub stream_version: u64,
    /// Its type name.
    pub event_type: &'a str,
    /// Payload (JSON text).
    pub data: &'a str,
    /// Metadata (JSON object text).
    pub metadata: &'a str,
    /// Unix milliseconds at which it was recorded.
    pub recorded_at: i64,
    /// The version of its type's schema its data follows.
    pub schema_version: u32,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event {
            position: self.position,
            stream_id: self.stream_id.to_owned(),
            stream_version: self.stream_version,
            event_type: self.event_type.to_owned(),
            data: self.data.to_owned(),
            metadata: self.metadata.to_owned(),
            recorded_at: self.recorded_at,
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl Batch {
    /// An empty batch with room for `events` events and `text` bytes of
    /// strings.
    pub fn with_capacity(events: usize, text: usize) -> Self {
        Batch(
            EventBatch {
                positions: Vec::with_capacity(events),
                stream_versions: Vec::with_capacity(events),
                recorded_at: Vec::with_capacity(events),
                lengths: Vec::with_capacity(4 * events),
                text: String::with_capacity(text),
            },
            Vec::with_capacity(events),
        )
    }

    /// Appends an event; it must come after every event already in the
    /// batch.
    pub fn push(&mut self, e: EventRef<'_>) {
        let b = &mut self.0;
        b.positions.push(e.position);
        b.stream_versions.push(e.stream_version);
        b.recorded_at.push(e.recorded_at);
        self.1.push(e.schema_version);
        for s in [e.stream_id, e.event_type, e.data, e.metadata] {
            // Event strings are far below 4 GiB: the log caps them.
            b.lengths.push(u32::try_from(s.len()).unwrap_or(u32::MAX));
            b.text.push_str(s);
        }
    }

    /// Bytes of the events' strings, together.
    pub fn text_len(&self) -> usize {
        self.0.text.len()
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.0.positions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.positions.is_empty()
    }

    /// The events' positions, in order.
    pub fn positions(&self) -> &[u64] {
        &self.0.positions
    }

    /// The position of the first event.
    pub fn first_position(&self) -> Option<u64> {
        self.0.positions.first().copied()
    }

    /// The position of the last event.
    pub fn last_position(&self) -> Option<u64> {
        self.0.positions.last().copied()
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = EventRef<'_>> {
        let b = &self.0;
        let versions = &self.1;
        let mut rest = b.text.as_str();
        let mut take = move |len: u32| {
            // `push` laid the strings out back to back at char boundaries.
            let (s, tail) = rest.split_at(len as usize);
            rest = tail;
            s
        };
        b.lengths.chunks_exact(4).enumerate().map(move |(i, l)| EventRef {
            position: b.positions[i],
            stream_id: take(l[0]),
            stream_version: b.stream_versions[i],
            event_type: take(l[1]),
            data: take(l[2]),
            metadata: take(l[3]),
            recorded_at: b.recorded_at[i],
            schema_version: versions[i],
        })
    }

    /// The first event.
    pub fn first(&self) -> Option<EventRef<'_>> {
        self.iter().next()
    }

    /// The events `keep` says yes to, in order.
    pub fn filtered(&self, mut keep: impl FnMut(&EventRef<'_>) -> bool) -> Batch {
        let mut out = Batch::with_capacity(self.len(), self.0.text.len());
        for e in self.iter().filter(|e| keep(e)) {
            out.push(e);
        }
        out
    }
}

impl<'a> FromIterator<EventRef<'a>> for Batch {
    fn from_iter<I: IntoIterator<Item = EventRef<'a>>>(iter: I) -> Self {
        let mut b = Batch::default();
        for e in iter {
            b.push(e);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(position: u64, stream_id: &'a str, data: &'a str) -> EventRef<'a> {
        EventRef {
            position,
            stream_id,
            stream_version: position + 10,
            event_type: "T",
            data,
            metadata: "{}",
            recorded_at: -1,
            schema_version: 1,
        }
    }

    #[test]
    fn push_lays_out_every_field_as_the_wit_says_and_iter_reads_it_back() {
        let events = [event(1, "a", "[1]"), event(2, "bé", "{}")];
        let batch: Batch = events.iter().copied().collect();
        let b = &batch.0;
        assert_eq!(b.positions, [1, 2]);
        assert_eq!(b.stream_versions, [11, 12]);
        assert_eq!(b.recorded_at, [-1, -1]);
        assert_eq!(b.lengths, [1, 1, 3, 2, 3, 1, 2, 2]);
        assert_eq!(b.text, "aT[1]{}béT{}{}");
        assert_eq!(batch.iter().collect::<Vec<_>>(), events);
        assert_eq!((batch.len(), batch.positions()), (2, &[1, 2][..]));
        assert_eq!(batch.first().map(|e| e.to_event().stream_id), Some("a".to_owned()));
    }

    #[test]
    fn filtered_keeps_the_chosen_events_in_order() {
        let batch: Batch = [event(1, "a", "1"), event(2, "b", "2"), event(3, "c", "3")].into_iter().collect();
        let odd = batch.filtered(|e| e.position % 2 == 1);
        assert_eq!(odd.iter().map(|e| e.data).collect::<Vec<_>>(), ["1", "3"]);
        assert!(batch.filtered(|_| false).is_empty());
    }
}
