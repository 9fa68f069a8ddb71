//! What the key stores' tests share.

/// The message of `result`'s error, empty when it succeeded.
pub fn error_text<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    result
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}
