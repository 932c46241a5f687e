//! A string that never prints.

use std::fmt;

/// A secret such as an API key. `Debug` and `Display` redact it, so it cannot leak
/// through logs, error messages or `{:?}` of a config struct.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Read straight into a `Secret` from the config file: the raw config structs,
/// which derive `Debug`, never hold a key as a plain string.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"**redacted**\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_read_from_toml_never_prints() {
        #[derive(Debug, serde::Deserialize)]
        struct Raw {
            #[allow(dead_code)]
            api_key: Option<Secret>,
        }
        let raw: Raw = toml::from_str("api_key = \"sk-from-the-file\"\n").unwrap();
        assert!(!format!("{raw:?}").contains("from-the-file"));
    }

    #[test]
    fn never_prints() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?} {s}").contains("very-secret"));
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
