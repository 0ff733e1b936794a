//! An upcaster of `OrderPlaced` from version 1 that behaves like
//! `order-placed-v2` except for three customers: `trap` panics, `loop`
//! never returns, `nameless` writes a customer without the name version 2
//! requires. The host must contain each and say which upcaster failed at
//! which event.

use refract_sdk::{Upcaster, UpcasterDescription};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version 1.
#[derive(Deserialize)]
pub struct V1 {
    customer: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Version 2.
#[derive(Serialize)]
pub struct V2 {
    customer: Value,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// The upcaster.
pub struct BadUpcaster;

impl Upcaster for BadUpcaster {
    type Old = V1;
    type New = V2;

    fn describe() -> UpcasterDescription {
        UpcasterDescription::new("bad-upcaster", "1", "OrderPlaced", 1)
    }

    fn upcast(old: V1) -> Result<V2, String> {
        match old.customer.as_str() {
            "trap" => panic!("the customer is a trap"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "nameless" => Ok(V2 { customer: serde_json::json!({ "id": old.customer }), rest: old.rest }),
            _ => Ok(V2 {
                customer: serde_json::json!({ "id": old.customer, "name": old.customer }),
                rest: old.rest,
            }),
        }
    }
}

refract_sdk::export_upcaster!(BadUpcaster);
