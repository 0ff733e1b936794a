//! `__NAME__`: a refract upcaster. `Happened` version 1 called its number
//! `amount`; version 2 calls it `quantity`. Plugins that declare they read
//! `Happened` at version 2 get old events rewritten by this on the way in;
//! the log keeps what was appended. Build it with
//! `cargo build --release --target wasm32-wasip2` and drop the `.wasm` into
//! the plugins directory, or run `refract dev`.

use refract_sdk::{Upcaster, UpcasterDescription};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `Happened` at version 1.
#[derive(Deserialize)]
pub struct V1 {
    /// Something to count.
    pub amount: i64,
    /// Every other member, kept as it is.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `Happened` at version 2.
#[derive(Serialize)]
pub struct V2 {
    /// What version 1 called `amount`.
    pub quantity: i64,
    /// Every other member of version 1.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The upcaster. It must be deterministic: read models are rebuilt
/// through it.
pub struct Template;

impl Upcaster for Template {
    type Old = V1;
    type New = V2;

    fn describe() -> UpcasterDescription {
        UpcasterDescription::new("__NAME__", env!("CARGO_PKG_VERSION"), "Happened", 1)
    }

    fn upcast(old: V1) -> Result<V2, String> {
        Ok(V2 { quantity: old.amount, rest: old.rest })
    }
}

refract_sdk::export_upcaster!(Template);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_becomes_quantity_and_the_rest_is_kept() {
        let out = refract_sdk::upcast_all::<Template>(&[r#"{"amount":3,"note":"x"}"#.into()]).unwrap();
        let v2: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(v2, serde_json::json!({ "quantity": 3, "note": "x" }));
        // Data without an amount is refused, naming which.
        let err = refract_sdk::upcast_all::<Template>(&[out[0].clone(), "{}".into()]).unwrap_err();
        assert_eq!(err.0, 0, "version 2 data is not version 1: {err:?}");
    }
}
