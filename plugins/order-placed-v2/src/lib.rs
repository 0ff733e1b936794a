//! `order-placed-v2`: the upcaster of `OrderPlaced` from version 1, where
//! `customer` was one string, to version 2, where it is `{ "id", "name" }`.
//! Version 1 had no separate name, so the string becomes both. Every other
//! member is kept as it was, its bytes untouched: the data is read as a map
//! of raw JSON values, so only `customer` is parsed — replays go through
//! this for every old event.

use std::collections::BTreeMap;

use refract_sdk::{Upcaster, UpcasterDescription};
use serde_json::value::RawValue;

/// The members of an event's data, each as its JSON text.
pub type Members = BTreeMap<String, Box<RawValue>>;

/// The upcaster.
pub struct OrderPlacedV2;

impl Upcaster for OrderPlacedV2 {
    type Old = Members;
    type New = Members;

    fn describe() -> UpcasterDescription {
        UpcasterDescription::new("order-placed-v2", env!("CARGO_PKG_VERSION"), "OrderPlaced", 1)
    }

    fn upcast(mut data: Members) -> Result<Members, String> {
        let customer = data.get("customer").ok_or("missing field `customer`")?;
        let id: String = serde_json::from_str(customer.get())
            .map_err(|_| "invalid type for `customer`: expected a string (version 1)".to_owned())?;
        let both = serde_json::to_string(&id).map_err(|e| e.to_string())?;
        let object =
            RawValue::from_string(format!(r#"{{"id":{both},"name":{both}}}"#)).map_err(|e| e.to_string())?;
        data.insert("customer".into(), object);
        Ok(data)
    }
}

refract_sdk::export_upcaster!(OrderPlacedV2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customer_string_becomes_id_and_name_and_the_rest_is_kept() {
        let out = refract_sdk::upcast_all::<OrderPlacedV2>(&[
            r#"{"customer":"ada \"the\" first","items":[{"product_id":"p","quantity":1,"price":2.50}]}"#
                .into(),
        ])
        .unwrap();
        assert_eq!(
            out[0],
            r#"{"customer":{"id":"ada \"the\" first","name":"ada \"the\" first"},"items":[{"product_id":"p","quantity":1,"price":2.50}]}"#
        );
    }

    #[test]
    fn data_without_a_customer_string_is_refused_with_its_index() {
        let err = refract_sdk::upcast_all::<OrderPlacedV2>(&[
            r#"{"customer":"a"}"#.into(),
            r#"{"customer":{"id":"b"}}"#.into(),
        ])
        .unwrap_err();
        assert_eq!(err.0, 1);
        assert!(refract_sdk::upcast_all::<OrderPlacedV2>(&[r#"{"items":[]}"#.into()]).is_err());
    }
}
