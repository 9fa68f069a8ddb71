//! [`Secret`]: a key share, a token or any other value that must never be shown.

use std::fmt;

use zeroize::Zeroizing;

/// A secret text such as an unseal key share or a root token. Its memory is wiped when it
/// is dropped, and its `Debug` form is `Secret(***)`, so it cannot leak through a log line,
/// an error message or a panic. It has no `Display`: reading it takes [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value; the caller's `String` moves in and is wiped with the `Secret`.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// Takes a value from bytes, which are wiped whether or not they are UTF-8.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        match String::from_utf8(bytes) {
            Ok(value) => Some(Self::new(value)),
            Err(error) => {
                drop(Zeroizing::new(error.into_bytes()));
                None
            }
        }
    }

    /// The value itself, for the one call that has to send or store it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Zeroizing::<String>::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from("s.hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(
            format!("{:?}", Some(vec![secret.clone()])),
            "Some([Secret(***)])"
        );
        assert_eq!(secret.expose(), "s.hunter2");
    }

    #[test]
    fn bytes_that_are_not_text_are_refused() {
        assert!(Secret::from_bytes(vec![0xff, 0xfe]).is_none());
        assert_eq!(
            Secret::from_bytes(b"abc".to_vec()).map(|s| s.expose().to_string()),
            Some("abc".to_string())
        );
    }
}
