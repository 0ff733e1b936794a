//! `order-placed-v2`: the upcaster of `OrderPlaced` from version 1, where
//! `customer` was one string, to version 2, where it is `{ "id", "name" }`.
//! Version 1 had no separate name, so the string becomes both. Every other
//! field is kept as it was, whatever it holds.

use refract_sdk::{Upcaster, UpcasterDescription};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `OrderPlaced` version 1.
#[derive(Debug, Deserialize)]
pub struct V1 {
    /// Who placed it.
    pub customer: String,
    /// The rest (items, ...), kept.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Who placed an order, in version 2.
#[derive(Debug, Serialize)]
pub struct Customer {
    /// A stable identifier.
    pub id: String,
    /// The name to show.
    pub name: String,
}

/// `OrderPlaced` version 2.
#[derive(Debug, Serialize)]
pub struct V2 {
    /// Who placed it.
    pub customer: Customer,
    /// The rest, as it was.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The upcaster.
pub struct OrderPlacedV2;

impl Upcaster for OrderPlacedV2 {
    type Old = V1;
    type New = V2;

    fn describe() -> UpcasterDescription {
        UpcasterDescription::new("order-placed-v2", env!("CARGO_PKG_VERSION"), "OrderPlaced", 1)
    }

    fn upcast(old: V1) -> Result<V2, String> {
        Ok(V2 { customer: Customer { name: old.customer.clone(), id: old.customer }, rest: old.rest })
    }
}

refract_sdk::export_upcaster!(OrderPlacedV2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customer_string_becomes_id_and_name_and_the_rest_is_kept() {
        let out = refract_sdk::upcast_all::<OrderPlacedV2>(&[
            r#"{"customer":"ada","items":[{"product_id":"p","quantity":1,"price":2.5}]}"#.into(),
        ])
        .unwrap();
        let v: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(v["customer"], serde_json::json!({"id": "ada", "name": "ada"}));
        assert_eq!(v["items"][0]["price"], 2.5);
    }

    #[test]
    fn data_without_a_customer_string_is_refused_with_its_index() {
        let err = refract_sdk::upcast_all::<OrderPlacedV2>(&[
            r#"{"customer":"a"}"#.into(),
            r#"{"customer":{"id":"b"}}"#.into(),
        ])
        .unwrap_err();
        assert_eq!(err.0, 1);
    }
}
