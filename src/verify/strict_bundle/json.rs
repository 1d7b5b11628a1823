//! A walk over any JSON that refuses a key written twice.

/// Refuses JSON with a key written twice in any object, at any depth: Go's
/// and Python's parsers keep the last copy, serde the first, so such a
/// document reads two ways. For the payloads sigil reads after a signature
/// verifies (in-toto Statements, simple-signing payloads).
pub fn unique_keys(json: &[u8]) -> Result<(), String> {
    use serde::de::DeserializeSeed;
    let mut d = serde_json::Deserializer::from_slice(json);
    Unique.deserialize(&mut d).map_err(|e| e.to_string())?;
    d.end().map_err(|e| e.to_string())
}

/// Walks any JSON value, refusing a repeated key.
struct Unique;

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} is written twice"
                )));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_twice_is_refused_at_any_depth() {
        assert!(unique_keys(br#"{"a":1,"b":[{"c":2}]}"#).is_ok());
        for twice in [
            r#"{"a":1,"a":2}"#,
            r#"{"s":[{"digest":{"sha256":"aa","sha256":"bb"}}]}"#,
            r#"{"a":{"b":{"c":{"d":1,"d":1}}}}"#,
        ] {
            let e = unique_keys(twice.as_bytes()).unwrap_err();
            assert!(e.contains("written twice"), "{twice}: {e}");
        }
        assert!(unique_keys(b"{} trailing").is_err());
    }
}
