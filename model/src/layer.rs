use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the five layers a series lives in, from the business down to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Business events: logins, payments, registrations.
    Business,
    /// Routes of the service's own HTTP API.
    Url,
    /// Outbound calls to dependencies.
    Call,
    /// Base components: MySQL, Redis and the like.
    Component,
    /// Hosts: CPU, memory, disk, network, liveness.
    Infra,
}

impl Layer {
    /// All layers, top (closest to the user) first, the order the dashboard shows them.
    pub const ALL: [Layer; 5] = [
        Layer::Business,
        Layer::Url,
        Layer::Call,
        Layer::Component,
        Layer::Infra,
    ];

    /// The lowercase name used in URLs, documents and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Business => "business",
            Layer::Url => "url",
            Layer::Call => "call",
            Layer::Component => "component",
            Layer::Infra => "infra",
        }
    }

    /// Compact code used by the binary wire encoding.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Layer::code`]; `None` for codes no release has assigned.
    pub fn from_code(code: u8) -> Option<Layer> {
        Layer::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A layer name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layer {0:?}: expected one of business, url, call, component, infra")]
pub struct ParseLayerError(pub String);

impl FromStr for Layer {
    type Err = ParseLayerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layer::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| ParseLayerError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for layer in Layer::ALL {
            assert_eq!(layer.as_str().parse::<Layer>(), Ok(layer));
            assert_eq!(Layer::from_code(layer.code()), Some(layer));
        }
        assert!("URL".parse::<Layer>().is_err());
        assert_eq!(Layer::from_code(5), None);
    }
}
