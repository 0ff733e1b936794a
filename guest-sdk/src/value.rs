//! Conversions between Rust values and SQL values.

use crate::Error;

/// A value bound to an SQL parameter or read from a column: SQLite's storage
/// classes (`Null`, `Integer`, `Real`, `Text`, `Blob`).
pub use crate::__private::bindings::refract::plugin::types::Value;

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Integer(i64::from(v))
            }
        }
    )*};
}
from_integer!(i8, i16, i32, i64, u8, u16, u32, bool);

impl From<u64> for Value {
    /// Values above `i64::MAX` do not fit SQLite's integers and are stored as
    /// REAL.
    fn from(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Real(v as f64),
        }
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Real(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<std::borrow::Cow<'_, str>> for Value {
    fn from(v: std::borrow::Cow<'_, str>) -> Self {
        Value::Text(v.into_owned())
    }
}

impl From<&std::borrow::Cow<'_, str>> for Value {
    fn from(v: &std::borrow::Cow<'_, str>) -> Self {
        Value::Text(v.as_ref().to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list for [`Db::execute`](crate::Db::execute) and
/// [`Db::query`](crate::Db::query): `params![id, name, 3.5]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::Value::from($v)),+] as &[$crate::Value] };
}

/// Reads a Rust value out of a column [`Value`].
pub trait FromValue: Sized {
    /// Converts, or says what was found instead.
    fn from_value(value: &Value) -> Result<Self, Error>;
}

fn mismatch(expected: &str, found: &Value) -> Error {
    Error::new(format!("expected {expected}, found {found:?}"))
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Integer(i) => Ok(*i),
            other => Err(mismatch("an integer", other)),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Real(r) => Ok(*r),
            Value::Integer(i) => Ok(*i as f64),
            other => Err(mismatch("a number", other)),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(mismatch("a blob", other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, Error> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}
