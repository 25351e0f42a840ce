//! Every key of the config schema, read from the serde derives themselves: a deserializer that
//! answers each `deserialize_struct` by visiting every field the struct declares, so a field
//! added to `src/config/file*.rs` shows up here without anyone listing it.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::value::{Error, MapDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

/// The keys of a schema: leaves as dotted paths (`upstreams.health_check.interval`), arrays of
/// tables flattened (`sites.routes.prefix`), free-form tables (`add_response_headers`) as one
/// leaf.
#[derive(Debug, Default)]
pub struct Keys {
    /// Every key that holds a value rather than a section.
    pub leaves: BTreeSet<String>,
    /// Keys holding a table of free names (headers).
    pub maps: BTreeSet<String>,
}

/// The keys of `T`, each under `prefix`.
pub fn keys_of<T: serde::de::DeserializeOwned>(prefix: &str, keys: &mut Keys) {
    let cell = RefCell::new(std::mem::take(keys));
    T::deserialize(Walker {
        path: prefix.to_owned(),
        keys: &cell,
    })
    .expect("the schema walker fills every field");
    *keys = cell.into_inner();
}

struct Walker<'a> {
    path: String,
    keys: &'a RefCell<Keys>,
}

impl Walker<'_> {
    fn leaf(&self) {
        self.keys.borrow_mut().leaves.insert(self.path.clone());
    }
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = Error;

    /// Untagged enums and durations ask for anything: a string fits both.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_str("1s")
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_bool(true)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_u64(1)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_f64(1.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(One(Some(self)))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        self.keys.borrow_mut().maps.insert(self.path.clone());
        let empty: Vec<(&str, &str)> = Vec::new();
        visitor.visit_map(MapDeserializer::new(empty.into_iter()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            walker: self,
            fields,
            next: 0,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.leaf();
        let first: StrDeserializer<'_, Error> = variants[0].into_deserializer();
        visitor.visit_enum(first)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 char str string bytes byte_buf unit unit_struct newtype_struct
        tuple tuple_struct identifier ignored_any
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }
}

/// A sequence of one element, walked at the sequence's own path.
struct One<'a>(Option<Walker<'a>>);

impl<'de> de::SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|w| seed.deserialize(w)).transpose()
    }
}

/// Every field of a struct, each walked at `path.field`.
struct Fields<'a> {
    walker: Walker<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, Error> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        let path = if self.walker.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.walker.path)
        };
        seed.deserialize(Walker {
            path,
            keys: self.walker.keys,
        })
    }
}

/// The keys set in a TOML document, in the same form as [`Keys::leaves`] (`maps` of the
/// schema are one key, not walked into).
pub fn keys_in_toml(table: &toml::Table, schema: &Keys) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    walk_toml(table, "", schema, &mut found);
    found
}

fn walk_toml(table: &toml::Table, prefix: &str, schema: &Keys, found: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if schema.maps.contains(&path) {
            found.insert(path);
            continue;
        }
        match value {
            toml::Value::Table(inner) => walk_toml(inner, &path, schema, found),
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::Table(inner) => walk_toml(inner, &path, schema, found),
                        _ => {
                            found.insert(path.clone());
                        }
                    }
                }
                if items.is_empty() {
                    found.insert(path);
                }
            }
            _ => {
                found.insert(path);
            }
        }
    }
}
