//! A whole API response page (`{"results":[…]}`, `{"entities":[…]}`) read element by
//! element: each record is handed on as soon as serde has it, and the rest of the envelope
//! is skipped unread, so a page costs one record of memory, not its size.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::normalize::Api;

/// The member of a page that holds its records.
pub(super) fn records_key(api: Api) -> &'static str {
    match api {
        Api::Legacy | Api::Cloud => "results",
        Api::Auditing | Api::File => "entities",
        Api::Organization => "data",
    }
}

/// Reads one JSON object; if it has the records array, calls `on_record` with each element.
/// Deserializes to whether the array was there (`false`: an object, but not a page).
pub(super) struct PageSeed<'a> {
    pub(super) key: &'static str,
    pub(super) on_record: &'a mut dyn FnMut(&str),
    /// Reset before each element (the reader counts its bytes against the record limit).
    pub(super) element_bytes: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an API page: an object with a `{}` array", self.key)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == self.key && !found {
                map.next_value_seed(Elements {
                    on_record: &mut *self.on_record,
                    element_bytes: self.element_bytes,
                })?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// The records array: each element to `on_record`, one at a time.
struct Elements<'a> {
    on_record: &'a mut dyn FnMut(&str),
    element_bytes: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.element_bytes.set(0);
            match seq.next_element::<Box<RawValue>>()? {
                Some(raw) => (self.on_record)(raw.get()),
                None => return Ok(()),
            }
        }
    }
}
