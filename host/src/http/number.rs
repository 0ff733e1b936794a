//! Whole numbers in requests, read as JSON Schema reads an `integer`: `3`
//! and `3.0` are the same number, and the document says `format: int64`,
//! so values past 2^63 - 1 are refused rather than taken silently. Used for
//! every integer of a query string or a body.

use serde::de::{self, Deserializer, Visitor};

/// The largest whole number accepted: what SQLite (and the document's
/// `int64`) can hold.
pub const MAX: u64 = i64::MAX as u64;

/// Parses a query-string value as a non-negative whole number.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let n = match text.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => text.parse::<f64>().ok().and_then(from_f64),
    };
    match n {
        Some(n) if n <= MAX => Ok(n),
        Some(_) => Err(format!("{text} is past the largest accepted value, {MAX}")),
        None => Err(format!("{text:?} is not a non-negative whole number")),
    }
}

/// `v` if it is a whole number from 0 to [`MAX`].
fn from_f64(v: f64) -> Option<u64> {
    (v.is_finite() && v.fract() == 0.0 && (0.0..=MAX as f64).contains(&v)).then_some(v as u64)
}

struct Whole;

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a whole number from 0 to {MAX}")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v <= MAX {
            Ok(v)
        } else {
            Err(E::custom(format!("{v} is past the largest accepted value, {MAX}")))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("{v} is negative; expected a whole number from 0 to {MAX}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        from_f64(v).ok_or_else(|| E::custom(format!("{v} is not a whole number from 0 to {MAX}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).map_err(E::custom)
    }
}

/// `#[serde(deserialize_with = "number::whole")]` for a `u64`.
pub fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole)
}

/// `#[serde(default, deserialize_with = "number::optional")]` for an
/// `Option<u64>`.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Maybe;
    impl<'de> Visitor<'de> for Maybe {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a whole number from 0 to {MAX}, or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            whole(d).map(Some)
        }
    }
    d.deserialize_option(Maybe)
}

/// [`whole`] for a `u32` (a number past 2^32 - 1 is refused).
pub fn whole_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(d)?;
    u32::try_from(n)
        .map_err(|_| de::Error::custom(format!("{n} is past the largest accepted value, {}", u32::MAX)))
}

/// [`optional`] for an `Option<u32>`.
pub fn optional_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match optional(d)? {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{n} is past the largest accepted value, {}", u32::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Q {
        #[serde(default, deserialize_with = "optional")]
        n: Option<u64>,
    }

    #[test]
    fn whole_numbers_in_any_spelling_and_nothing_else() {
        for (text, n) in [("3", 3), ("3.0", 3), ("0", 0), ("9223372036854775807", MAX), ("1e3", 1000)] {
            assert_eq!(parse(text), Ok(n), "{text}");
        }
        for text in ["-1", "3.5", "9223372036854775808", "abc", "", "NaN", "inf"] {
            assert!(parse(text).is_err(), "{text}");
        }
        let q: Q = serde_json::from_str(r#"{"n": 346.0}"#).unwrap();
        assert_eq!(q.n, Some(346));
        let q: Q = serde_json::from_str(r#"{"n": null}"#).unwrap();
        assert_eq!(q.n, None);
        let q: Q = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(q.n, None);
        assert!(serde_json::from_str::<Q>(r#"{"n": 9223372036854775808}"#).is_err());
        assert!(serde_json::from_str::<Q>(r#"{"n": -2}"#).is_err());
        let q: Q = serde_urlencoded_like("n=12");
        assert_eq!(q.n, Some(12));
        #[derive(serde::Deserialize)]
        struct V {
            #[serde(default, deserialize_with = "optional_u32")]
            v: Option<u32>,
        }
        assert_eq!(serde_json::from_str::<V>(r#"{"v": 657.0}"#).unwrap().v, Some(657));
        assert!(serde_json::from_str::<V>(r#"{"v": 4294967296}"#).is_err());
    }

    /// A query string as axum's `Query` reads it.
    fn serde_urlencoded_like(query: &str) -> Q {
        let uri: axum::http::Uri = format!("/x?{query}").parse().unwrap();
        axum::extract::Query::<Q>::try_from_uri(&uri).unwrap().0
    }
}
