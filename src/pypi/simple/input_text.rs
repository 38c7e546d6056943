//! Strings read from a page borrowed from its bytes where they can be, for values the model
//! does not keep as they are (hash names and digests, which it copies into its own form).
//!
//! serde's `Cow<str>` always deserializes as an owned `String`: borrowing needs a visitor that
//! takes the input's own `&str`, which serde_json gives for every string without escapes.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// A string of the input: borrowed, or owned when it had escapes.
pub struct InputText<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for InputText<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = InputText<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<InputText<'de>, E> {
        Ok(InputText(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<InputText<'de>, E> {
        Ok(InputText(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<InputText<'de>, E> {
        Ok(InputText(Cow::Owned(text)))
    }
}

/// A JSON value that is most often a string: the string borrowed, anything else as a value.
pub enum TextOrValue<'de> {
    Text(Cow<'de, str>),
    Value(serde_json::Value),
}

impl<'de> Deserialize<'de> for TextOrValue<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextOrValueVisitor)
    }
}

struct TextOrValueVisitor;

impl<'de> Visitor<'de> for TextOrValueVisitor {
    type Value = TextOrValue<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Text(Cow::Owned(text)))
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Value(flag.into()))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Value(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Value(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Value(n.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<TextOrValue<'de>, E> {
        Ok(TextOrValue::Value(serde_json::Value::Null))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<TextOrValue<'de>, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(TextOrValue::Value(value))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<TextOrValue<'de>, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(TextOrValue::Value(value))
    }
}

impl TextOrValue<'_> {
    pub fn into_value(self) -> serde_json::Value {
        match self {
            TextOrValue::Text(text) => serde_json::Value::String(text.into_owned()),
            TextOrValue::Value(value) => value,
        }
    }
}
