use serde::de::DeserializeOwned;

use crate::{Error, Event};

impl Event {
    /// Deserializes the event's `data` into `T`. The error names the event,
    /// so a projection can return it as is.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.data).map_err(|e| self.describe_error("data", e))
    }

    /// Deserializes the event's `metadata` into `T`.
    pub fn metadata<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.metadata).map_err(|e| self.describe_error("metadata", e))
    }

    fn describe_error(&self, field: &str, e: serde_json::Error) -> Error {
        Error::new(format!(
            "event {} ({} on {}): invalid {field}: {e}",
            self.position, self.event_type, self.stream_id
        ))
    }
}
