use serde::Deserialize;

use crate::{Error, Event};

impl Event {
    /// Deserializes the event's `data` into `T`. The error names the event,
    /// so a projection can return it as is.
    ///
    /// `T` may borrow strings from the event instead of copying them: a
    /// `Cow<'a, str>` field marked `#[serde(borrow)]` points into the event's
    /// JSON unless the string holds escapes (then it is decoded into a copy),
    /// which spares an allocation per string on the hot path of a replay.
    pub fn data<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        serde_json::from_str(&self.data).map_err(|e| self.describe_error("data", e))
    }

    /// Deserializes the event's `metadata` into `T`.
    ///
    /// `T` may borrow from the event, as with [`Event::data`].
    pub fn metadata<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        serde_json::from_str(&self.metadata).map_err(|e| self.describe_error("metadata", e))
    }

    fn describe_error(&self, field: &str, e: serde_json::Error) -> Error {
        Error::new(format!(
            "event {} ({} on {}): invalid {field}: {e}",
            self.position, self.event_type, self.stream_id
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde::Deserialize;

    use crate::testing::event;

    #[derive(Deserialize)]
    struct Placed<'a> {
        #[serde(borrow)]
        customer: Cow<'a, str>,
        #[serde(borrow)]
        note: Cow<'a, str>,
        quantity: i64,
    }

    #[test]
    fn data_can_borrow_from_the_event() {
        let e = event(
            7,
            "order-1",
            1,
            "OrderPlaced",
            serde_json::json!({
                "customer": "ada", "note": "say \"hi\"", "quantity": 2
            }),
        );
        let p: Placed = e.data().unwrap();
        assert!(matches!(p.customer, Cow::Borrowed("ada")), "a plain string is not copied");
        assert_eq!(p.note, r#"say "hi""#, "escapes are decoded into a copy");
        assert_eq!(p.quantity, 2);
    }

    #[test]
    fn owned_types_still_deserialize_and_errors_name_the_event() {
        #[derive(Deserialize)]
        struct Owned {
            customer: String,
        }
        let good = event(6, "order-1", 1, "OrderPlaced", serde_json::json!({"customer": "ada"}));
        assert_eq!(good.data::<Owned>().unwrap().customer, "ada");
        let e = event(7, "order-1", 1, "OrderPlaced", serde_json::json!({"customer": 1}));
        let err = e.data::<Owned>().err().unwrap();
        assert!(err.message().contains("event 7 (OrderPlaced on order-1): invalid data"), "{err}");
    }
}
