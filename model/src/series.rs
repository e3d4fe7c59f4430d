use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Layer;

/// What identifies a series: everything about an event except its time and measurements.
///
/// Host is part of the key so that rules can select and group by host (a
/// silent host, a host with a full disk); readers that want a service-wide
/// view merge across hosts, which rollups allow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The layer.
    pub layer: Layer,
    /// The service.
    pub service: String,
    /// The host.
    pub host: String,
    /// The series name.
    pub name: String,
    /// Low-cardinality dimensions, sorted so that equal keys hash alike.
    #[serde(default)]
    pub dims: BTreeMap<String, String>,
}

impl SeriesKey {
    /// The key of a whole-layer rollup: every event of `layer` in a minute,
    /// whatever its service, host or name. Only the layer is set, and such
    /// rollups live apart from the series' own (see the store's
    /// `write_layer_rollups`), so no sum over series can count them twice.
    pub fn whole_layer(layer: Layer) -> SeriesKey {
        SeriesKey {
            layer,
            service: String::new(),
            host: String::new(),
            name: String::new(),
            dims: BTreeMap::new(),
        }
    }

    /// A stable 128-bit identity, as 32 hex digits.
    ///
    /// Stores build deterministic document ids from it, so it must never
    /// change between releases: XXH3 is a fixed specification, and the
    /// input is framed with lengths so that `("ab","c")` and `("a","bc")`
    /// differ.
    pub fn id(&self) -> String {
        format!("{:032x}", self.hash128(&mut Vec::new()))
    }

    /// The number behind [`SeriesKey::id`]; `scratch` is reused between
    /// calls so that hot paths hash without allocating.
    pub fn hash128(&self, scratch: &mut Vec<u8>) -> u128 {
        hash_parts(
            self.layer,
            &self.service,
            &self.host,
            &self.name,
            &self.dims,
            scratch,
        )
    }

    /// The dims as `key=value` strings, the form stores index for filtering.
    pub fn dims_kv(&self) -> Vec<String> {
        self.dims.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// The series hash of borrowed parts, so an event's series can be looked up
/// without building (and allocating) its [`SeriesKey`].
pub(crate) fn hash_parts(
    layer: Layer,
    service: &str,
    host: &str,
    name: &str,
    dims: &BTreeMap<String, String>,
    buf: &mut Vec<u8>,
) -> u128 {
    buf.clear();
    buf.push(layer.code());
    frame(buf, service);
    frame(buf, host);
    frame(buf, name);
    for (k, v) in dims {
        frame(buf, k);
        frame(buf, v);
    }
    xxhash_rust::xxh3::xxh3_128(buf)
}

fn frame(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}@{}",
            self.layer, self.service, self.name, self.host
        )?;
        for (k, v) in &self.dims {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(service: &str, name: &str) -> SeriesKey {
        SeriesKey {
            layer: Layer::Url,
            service: service.into(),
            host: "web1".into(),
            name: name.into(),
            dims: BTreeMap::new(),
        }
    }

    #[test]
    fn id_is_stable_and_framed() {
        // Pinned: a change here would orphan every document already stored.
        assert_eq!(
            key("login", "GET /a").id(),
            "7932aeb6e2d0a728fdfaa22c1cdde652"
        );
        assert_ne!(key("ab", "c").id(), key("a", "bc").id());
        let mut e = crate::Event::new(0, Layer::Url, "login", "web1", "GET /a");
        e.dims.insert("os".into(), "ios".into());
        let mut scratch = Vec::new();
        assert_eq!(
            e.series_hash(&mut scratch),
            e.series_key().hash128(&mut scratch)
        );
        assert_eq!(key("login", "GET /a").id().len(), 32);
    }
}
