//! Every key is known: a key the forwarder does not read is an error, with the closest key
//! it does read ("did you mean `batch_max_events`?").
//!
//! It exists because serde cannot refuse unknown keys through `#[serde(flatten)]` (every
//! sink kind is flattened into `[[sink]]`), so a typo in a sink silently kept a default in
//! force. The check walks the file's tree (environment overrides included) against the
//! field lists of the very structs the file is read into, taken from their `Deserialize`
//! implementations, so the list of valid keys cannot drift from the code.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// What a key holds, as far as key checking cares.
pub enum Shape {
    /// A value, or a table whose keys are not ours (librdkafka properties).
    Open,
    /// A table with exactly these keys; some are tables themselves.
    Table {
        keys: &'static [&'static str],
        nested: Vec<(&'static str, Shape)>,
    },
    /// An array of tables of one shape (`[[source]]`).
    Tables(Box<Shape>),
    /// `[[sink]]`: the keys every sink has plus those of its `type`.
    Sinks,
}

impl Shape {
    /// The shape of a struct read with `#[derive(Deserialize)]`.
    pub fn of<'de, T: Deserialize<'de>>(nested: Vec<(&'static str, Shape)>) -> Shape {
        Shape::Table {
            keys: fields_of::<T>(),
            nested,
        }
    }
}

/// An unknown key: its path and the closest valid key, if one is close.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownKey {
    pub path: String,
    pub problem: String,
}

/// The first key in `tree` that `shape` does not know.
pub fn check(tree: &serde_json::Value, shape: &Shape) -> Result<(), UnknownKey> {
    walk("", tree, shape)
}

fn walk(path: &str, value: &serde_json::Value, shape: &Shape) -> Result<(), UnknownKey> {
    match (shape, value) {
        (Shape::Table { keys, nested }, serde_json::Value::Object(map)) => {
            for (k, v) in map {
                let here = join(path, k);
                if !keys.contains(&k.as_str()) {
                    return Err(unknown(here, k, keys.iter().copied()));
                }
                if let Some((_, inner)) = nested.iter().find(|(n, _)| *n == k) {
                    walk(&here, v, inner)?;
                }
            }
            Ok(())
        }
        (Shape::Tables(inner), serde_json::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{path}[{i}]"), item, inner)?;
            }
            Ok(())
        }
        (Shape::Tables(inner), serde_json::Value::Object(_)) => {
            walk(&format!("{path}[0]"), value, inner)
        }
        (Shape::Sinks, serde_json::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_sink(&format!("{path}[{i}]"), item)?;
            }
            Ok(())
        }
        (Shape::Sinks, serde_json::Value::Object(_)) => check_sink(&format!("{path}[0]"), value),
        // Wrong types are the typed reading's to report, with the expected type.
        _ => Ok(()),
    }
}

fn check_sink(path: &str, value: &serde_json::Value) -> Result<(), UnknownKey> {
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Ok(()); // "missing field `type`" comes from the typed reading
    };
    let Some(shape) = crate::sink::SinkKind::shape_of(kind) else {
        return Err(UnknownKey {
            path: join(path, "type"),
            problem: format!(
                "unknown sink type {kind:?}{}; expected one of {}",
                suggestion(kind, crate::sink::SinkKind::TYPES.iter().copied()),
                crate::sink::SinkKind::TYPES.join(", ")
            ),
        });
    };
    let Shape::Table { keys, nested } = shape else {
        return Ok(());
    };
    let common = crate::sink::SinkConfig::COMMON_KEYS;
    let map = value.as_object().expect("a sink with a type is a table");
    for (k, v) in map {
        let here = join(path, k);
        if common.contains(&k.as_str()) {
            continue;
        }
        if !keys.contains(&k.as_str()) {
            return Err(unknown(here, k, keys.iter().chain(common).copied()));
        }
        if let Some((_, inner)) = nested.iter().find(|(n, _)| *n == k) {
            walk(&here, v, inner)?;
        }
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn unknown<'a>(path: String, key: &str, valid: impl Iterator<Item = &'a str>) -> UnknownKey {
    UnknownKey {
        problem: format!("unknown key{}", suggestion(key, valid)),
        path,
    }
}

/// `"; did you mean `x`?"` when a valid key is within a few edits of `key`.
pub fn suggestion<'a>(key: &str, valid: impl Iterator<Item = &'a str>) -> String {
    let best = valid
        .map(|v| (strsim::damerau_levenshtein(key, v), v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(2))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, v)) => format!(" (did you mean `{v}`?)"),
        None => String::new(),
    }
}

/// Where each key path of a TOML text is, as (line, column), both from 1.
pub fn positions(text: &str) -> HashMap<String, (usize, usize)> {
    let mut out = HashMap::new();
    // What parses of a file with a syntax error still has positions.
    let (table, _) = toml::de::DeTable::parse_recoverable(text);
    record_table("", table.get_ref(), &line_starts(text), &mut out);
    out
}

fn record_table(
    path: &str,
    table: &toml::de::DeTable<'_>,
    starts: &[usize],
    out: &mut HashMap<String, (usize, usize)>,
) {
    for (k, v) in table.iter() {
        let here = join(path, k.get_ref());
        out.entry(here.clone())
            .or_insert_with(|| line_col(starts, k.span().start));
        record_value(&here, v.get_ref(), starts, out);
    }
}

fn record_value(
    path: &str,
    value: &toml::de::DeValue<'_>,
    starts: &[usize],
    out: &mut HashMap<String, (usize, usize)>,
) {
    match value {
        toml::de::DeValue::Table(t) => record_table(path, t, starts, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}[{i}]");
                out.entry(here.clone())
                    .or_insert_with(|| line_col(starts, item.span().start));
                record_value(&here, item.get_ref(), starts, out);
            }
        }
        _ => {}
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// (line, column) of a byte offset, both from 1.
pub fn line_col(starts: &[usize], offset: usize) -> (usize, usize) {
    let line = starts.partition_point(|s| *s <= offset).max(1);
    (line, offset - starts[line - 1] + 1)
}

/// (line, column) of a byte offset in `text`.
pub fn position_of(text: &str, offset: usize) -> (usize, usize) {
    line_col(&line_starts(text), offset)
}

/// The field names a derived `Deserialize` asks for: it hands them to
/// `deserialize_struct`, which is all this deserializer answers.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(Probed(fields)) => fields,
        Ok(_) => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
struct Probed(&'static [&'static str]);

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Probed(&[])
    }
}

impl<'de> de::Deserializer<'de> for FieldProbe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Example {
        batch_max_events: usize,
        #[serde(rename = "type")]
        kind: String,
    }

    #[test]
    fn field_lists_come_from_the_struct() {
        assert_eq!(fields_of::<Example>(), &["batch_max_events", "type"]);
    }

    #[test]
    fn close_keys_are_suggested() {
        let valid = ["batch_max_events", "flush_interval", "max_backoff"];
        assert_eq!(
            suggestion("batch_max_event", valid.iter().copied()),
            " (did you mean `batch_max_events`?)"
        );
        assert_eq!(
            suggestion("flush_intervall", valid.iter().copied()),
            " (did you mean `flush_interval`?)"
        );
        assert_eq!(suggestion("colour", valid.iter().copied()), "");
    }

    #[test]
    fn positions_name_lines_and_columns() {
        let text = "[[sink]]\nname = \"a\"\n  path = \"x\"\n[[sink]]\nname = \"b\"\n";
        let p = positions(text);
        assert_eq!(p["sink[0].path"], (3, 3));
        assert_eq!(p["sink[1].name"], (5, 1));
    }
}
