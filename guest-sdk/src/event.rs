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

    #[test]
    fn numbers_are_read_as_the_exact_doubles_their_text_names() {
        #[derive(Deserialize)]
        struct Priced {
            price: f64,
            big: u64,
        }
        // Texts that a parser without `float_roundtrip` reads as the
        // neighbouring double; Python and JavaScript read them exactly.
        for text in
            ["9.600000000000001", "0.30000000000000004", "123.45678901234568", "2.2250738585072014e-308"]
        {
            let mut e = event(1, "s", 1, "T", serde_json::json!({}));
            e.data = format!(r#"{{"price":{text},"big":18446744073709551615}}"#);
            let p: Priced = e.data().unwrap();
            assert_eq!(p.price.to_string(), text.parse::<f64>().unwrap().to_string(), "{text}");
            assert_eq!(p.price.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{text}");
            assert_eq!(p.big, u64::MAX);
        }
    }
}
