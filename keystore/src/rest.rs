//! What the signed REST clients of the cloud key stores share: the HTTP client, the error a
//! store cannot be set up with (both from [`crate::cloud`]), and the wording of a failed call.

use zeroize::Zeroizing;

use crate::KeyStoreError;

pub(crate) use crate::cloud::SetupError;

/// The setting `field` of `store`'s spec, refused when unset or empty.
pub(crate) fn required(
    value: &Option<String>,
    store: &str,
    field: &str,
) -> Result<String, SetupError> {
    value
        .clone()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| SetupError::new(store, format!("{field} is not set")))
}

/// An HTTP client for a cloud API: [`crate::cloud::http_client`], its error in words.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    crate::cloud::http_client().map_err(|error| error.to_string())
}

/// An error answer of a cloud API, in the words a user can search the cloud's docs for.
#[derive(Debug, Default)]
pub(crate) struct Failure {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

impl Failure {
    /// `KMS Encrypt: HTTP 400 SignatureDoesNotMatch: <message> (request id 1A2B)`. The message
    /// is cut short: an API may echo a whole request, and this lands in logs.
    pub(crate) fn describe(&self, call: &str) -> String {
        let mut text = format!("{call}: HTTP {}", self.status);
        if let Some(code) = &self.code {
            text.push(' ');
            text.push_str(code);
        }
        if let Some(message) = &self.message {
            let message: String = message.trim().chars().take(200).collect();
            text.push_str(": ");
            text.push_str(&message);
        }
        if let Some(id) = &self.request_id {
            text.push_str(&format!(" (request id {id})"));
        }
        text
    }
}

/// A cloud API's answer, read whole. The body is wiped after use: it may hold a plaintext.
pub(crate) struct Answer {
    pub status: u16,
    /// The request id the cloud gave in a header.
    pub request_id: Option<String>,
    pub body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// Sends `request` and reads the answer; `call` (such as `KMS Encrypt`) prefixes errors,
    /// which leave the URL out as it may name a key.
    pub(crate) async fn exchange(
        call: &str,
        request: reqwest::RequestBuilder,
        request_id_header: &str,
    ) -> Result<Self, String> {
        let response = request
            .send()
            .await
            .map_err(|error| format!("{call}: {}", error.without_url()))?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get(request_id_header)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("{call}: reading the answer: {}", error.without_url()))?;
        Ok(Self {
            status,
            request_id,
            body: Zeroizing::new(body.to_vec()),
        })
    }

    /// True for a 2xx status.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this answer reports, with the code and message found in its body and the
    /// body's request id, or else the header's.
    pub(crate) fn failure(
        &self,
        code: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
    ) -> Failure {
        Failure {
            status: self.status,
            code,
            message,
            request_id: request_id.or_else(|| self.request_id.clone()),
        }
    }
}

/// A failed call as a key-store error on `key`.
pub(crate) fn backend(
    store: String,
    operation: &'static str,
    key: &str,
    reason: String,
) -> KeyStoreError {
    KeyStoreError::Backend {
        store,
        operation,
        key: key.to_string(),
        reason,
    }
}

/// The `Host` header a request to `url` carries, which both clouds sign.
pub(crate) fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}
