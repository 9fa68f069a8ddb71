//! Alibaba Cloud KMS `Encrypt` and `Decrypt` (API version 2016-01-20), RPC style: a form
//! POSTed to the endpoint's `/`, signed with [`super::sign::rpc_signature`].

use std::time::SystemTime;

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::sign::{canonical_query, rpc_signature, rpc_string_to_sign};
use super::{AlibabaCredentials, ErrorBody};
use crate::Secret;
use crate::rest::Answer;

const API_VERSION: &str = "2016-01-20";

/// A KMS client for one key.
pub(super) struct Kms {
    pub endpoint: Url,
    pub key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Encrypted {
    ciphertext_blob: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Decrypted {
    plaintext: Secret,
}

impl Kms {
    /// The ciphertext blob (base64 text) of `plaintext`, sent as it is, as Bank-Vaults does.
    pub async fn encrypt(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        plaintext: &Secret,
    ) -> Result<String, String> {
        let params = vec![
            ("KeyId".to_string(), self.key_id.clone()),
            ("Plaintext".to_string(), plaintext.expose().to_string()),
        ];
        let answer: Encrypted = self.call(http, credentials, "Encrypt", params).await?;
        Ok(answer.ciphertext_blob)
    }

    /// The plaintext of `ciphertext_blob`.
    pub async fn decrypt(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        ciphertext_blob: &str,
    ) -> Result<Secret, String> {
        let params = vec![("CiphertextBlob".to_string(), ciphertext_blob.to_string())];
        let answer: Decrypted = self.call(http, credentials, "Decrypt", params).await?;
        Ok(answer.plaintext)
    }

    /// POSTs `action` with `params` and the common parameters, signed, and parses a 2xx
    /// answer's JSON.
    async fn call<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        action: &str,
        params: Vec<(String, String)>,
    ) -> Result<T, String> {
        let call = format!("KMS {action}");
        let mut params = Zeroizing::new(params);
        params.extend(common_params(credentials, action));
        let string_to_sign = Zeroizing::new(rpc_string_to_sign("POST", &params));
        let signature = rpc_signature(credentials.access_key_secret.expose(), &string_to_sign);
        params.push(("Signature".to_string(), signature));
        let form = Zeroizing::new(canonical_query(&params));

        let request = http
            .post(self.endpoint.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.as_bytes().to_vec());
        let answer = Answer::exchange(&call, request, "x-acs-request-id").await?;
        if answer.is_success() {
            return serde_json::from_slice(&answer.body).map_err(|error| {
                format!("{call}: unexpected answer: {}", crate::json_error(&error))
            });
        }

        let error: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
        Err(answer
            .failure(error.code, error.message, error.request_id)
            .describe(&call))
    }
}

/// The parameters every RPC call carries: the action, the credentials' id, a fresh nonce and
/// the time.
fn common_params(credentials: &AlibabaCredentials, action: &str) -> Vec<(String, String)> {
    let mut params = vec![
        ("Action", action.to_string()),
        ("Version", API_VERSION.to_string()),
        ("Format", "JSON".to_string()),
        ("AccessKeyId", credentials.access_key_id.clone()),
        ("SignatureMethod", "HMAC-SHA1".to_string()),
        ("SignatureVersion", "1.0".to_string()),
        ("SignatureNonce", format!("{:032x}", rand::random::<u128>())),
        ("Timestamp", timestamp(SystemTime::now())),
    ];
    if let Some(token) = &credentials.security_token {
        params.push(("SecurityToken", token.expose().to_string()));
    }
    params
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

/// ISO 8601 in UTC to the second, as the RPC `Timestamp` wants: `2016-02-23T12:46:24Z`.
fn timestamp(now: SystemTime) -> String {
    let now = OffsetDateTime::from(now);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn timestamps_are_utc_to_the_second() {
        let when = UNIX_EPOCH + Duration::from_secs(1_456_231_584);
        assert_eq!(timestamp(when), "2016-02-23T12:46:24Z");
    }
}
