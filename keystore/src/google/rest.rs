//! A small client for the Google calls the store makes: Cloud KMS `encrypt` and `decrypt`,
//! the Cloud Storage JSON API's upload, download, list and bucket get, and the OAuth2 token
//! they need.
//!
//! Why not Google's crates (google-cloud-kms-v1, google-cloud-storage, google-cloud-auth):
//! they need Rust 1.91 where the workspace promises 1.89; their default features build
//! aws-lc, which we keep out of the build; and google-cloud-storage lists objects only
//! through its gRPC `StorageControl` client, which pulls in tonic and prost and which the
//! Cloud Storage emulator our tests run (JSON API only) cannot answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Secret;
use crate::cloud::{ApiErrorBody, TokenCache, failure_text, shorten};

/// OAuth2 scope of both Cloud KMS and Cloud Storage.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Lifetime asked for a service account's signed assertion; Google caps it at an hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// How the store authenticates to Google.
#[derive(Clone, Debug)]
pub enum GoogleCredentials {
    /// A service account's JSON key, exchanged for access tokens at its `token_uri`.
    ServiceAccount(ServiceAccountKey),
    /// The metadata server of the node (GKE workload identity, Compute Engine), at this
    /// host and port.
    MetadataServer(String),
}

/// The fields of a service account's JSON key file that the token exchange needs.
#[derive(Clone, Debug, Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account` for a service account's key; other kinds are refused.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account, the issuer of the signed assertion.
    pub client_email: String,
    /// The PKCS#8 RSA key in PEM, which signs the assertion.
    pub private_key: Secret,
    /// Where the assertion is exchanged for a token.
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_string()
}

/// The access token part of an OAuth2 token response, from the token endpoint or the
/// metadata server.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// What a failed call returns: the HTTP status, when there was one, and a text for errors.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: Option<StatusCode>,
    pub(super) reason: String,
}

impl Failure {
    fn local(reason: impl Into<String>) -> Self {
        Self {
            status: None,
            reason: reason.into(),
        }
    }

    fn sending(error: reqwest::Error) -> Self {
        // Without the URL: it is ours, and the caller's error names the bucket and key.
        Self::local(error.without_url().to_string())
    }

    async fn from_response(response: reqwest::Response) -> Self {
        let status = response.status();
        let reason = match response.text().await {
            Ok(body) => match serde_json::from_str::<ApiErrorBody>(&body) {
                Ok(error) => error.describe(&status.to_string()),
                Err(_) if body.trim().is_empty() => status.to_string(),
                Err(_) => format!("{status}: {}", shorten(&body)),
            },
            Err(_) => status.to_string(),
        };
        Self {
            status: Some(status),
            reason,
        }
    }
}

/// The Cloud KMS and Cloud Storage endpoints, and the credentials for both.
pub(super) struct GoogleClient {
    http: reqwest::Client,
    storage: Url,
    kms: Url,
    credentials: GoogleCredentials,
    tokens: TokenCache,
}

impl GoogleClient {
    pub(super) fn new(
        http: reqwest::Client,
        storage: Url,
        kms: Url,
        credentials: GoogleCredentials,
    ) -> Self {
        Self {
            http,
            storage,
            kms,
            credentials,
            tokens: TokenCache::default(),
        }
    }

    /// An access token, from the cache or fetched.
    async fn token(&self) -> Result<Secret, Failure> {
        if let Some(token) = self.tokens.current() {
            return Ok(token);
        }

        let request = match &self.credentials {
            GoogleCredentials::ServiceAccount(key) => {
                let assertion = signed_assertion(key, SystemTime::now())?;
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ];
                self.http.post(&key.token_uri).form(&form)
            }
            GoogleCredentials::MetadataServer(host) => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                self.http.get(url).header("Metadata-Flavor", "Google")
            }
        };
        let response = request.send().await.map_err(Failure::sending)?;
        if !response.status().is_success() {
            // The token endpoint's errors (`invalid_grant`, ...) hold no secret.
            let reason = format!("getting an access token: {}", failure_text(response).await);
            return Err(Failure::local(reason));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|error| Failure::local(format!("reading the access token: {error}")))?;

        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        self.tokens.keep(token.access_token.clone(), lifetime);
        Ok(token.access_token)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let token = self.token().await?;
        let response = request
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(Failure::sending)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(Failure::from_response(response).await)
        }
    }

    /// `plaintext` encrypted with the KMS key `key_name`, as the raw ciphertext.
    pub(super) async fn encrypt(
        &self,
        key_name: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        #[derive(Deserialize)]
        struct Encrypted {
            ciphertext: String,
        }

        #[derive(Serialize)]
        struct Encrypt<'a> {
            plaintext: &'a str,
        }

        let plaintext = Zeroizing::new(STANDARD.encode(plaintext));
        let body = Encrypt {
            plaintext: &plaintext,
        };
        let url = kms_url(&self.kms, key_name, "encrypt")?;
        let response = self.send(self.http.post(url).json(&body)).await?;
        let encrypted: Encrypted = response
            .json()
            .await
            .map_err(|error| Failure::local(format!("reading the KMS response: {error}")))?;
        STANDARD
            .decode(encrypted.ciphertext)
            .map_err(|error| Failure::local(format!("the KMS ciphertext is not base64: {error}")))
    }

    /// The plaintext of `ciphertext`, decrypted with the KMS key `key_name`.
    pub(super) async fn decrypt(
        &self,
        key_name: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        #[derive(Deserialize)]
        struct Decrypted {
            plaintext: Zeroizing<String>,
        }

        let body = serde_json::json!({ "ciphertext": STANDARD.encode(ciphertext) });
        let url = kms_url(&self.kms, key_name, "decrypt")?;
        let response = self.send(self.http.post(url).json(&body)).await?;
        let bytes = Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(|error| Failure::local(format!("reading the KMS response: {error}")))?
                .to_vec(),
        );
        let decrypted: Decrypted = serde_json::from_slice(&bytes)
            .map_err(|_| Failure::local("the KMS response is not a decrypt response"))?;
        STANDARD
            .decode(decrypted.plaintext.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| Failure::local("the KMS plaintext is not base64"))
    }

    /// Writes object `name` of `bucket`, replacing any object there.
    pub(super) async fn upload(
        &self,
        bucket: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), Failure> {
        let mut url = storage_url(
            &self.storage,
            &["upload", "storage", "v1", "b", bucket, "o"],
        )?;
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", name);
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.send(request).await.map(drop)
    }

    /// The content of object `name` of `bucket`, or `None` when there is no such object or
    /// no such bucket (both answer 404; [`GoogleClient::bucket_exists`] tells them apart).
    pub(super) async fn download(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let mut url = storage_url(&self.storage, &["storage", "v1", "b", bucket, "o", name])?;
        url.query_pairs_mut().append_pair("alt", "media");
        match self.send(self.http.get(url)).await {
            Ok(response) => {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|error| Failure::local(format!("reading the object: {error}")))?;
                Ok(Some(bytes.to_vec()))
            }
            Err(failure) if failure.status == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// True when `bucket` exists and we may read it.
    pub(super) async fn bucket_exists(&self, bucket: &str) -> Result<bool, Failure> {
        let url = storage_url(&self.storage, &["storage", "v1", "b", bucket])?;
        match self.send(self.http.get(url)).await {
            Ok(_) => Ok(true),
            Err(failure) if failure.status == Some(StatusCode::NOT_FOUND) => Ok(false),
            Err(failure) => Err(failure),
        }
    }

    /// The names of every object in `bucket`, following the pages of the listing.
    pub(super) async fn list(&self, bucket: &str) -> Result<Vec<String>, Failure> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<Item>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Item {
            name: String,
        }

        let mut names = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = storage_url(&self.storage, &["storage", "v1", "b", bucket, "o"])?;
            if let Some(token) = &page_token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let page: Page = self
                .send(self.http.get(url))
                .await?
                .json()
                .await
                .map_err(|error| Failure::local(format!("reading the listing: {error}")))?;
            names.extend(page.items.into_iter().map(|item| item.name));
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(names),
            }
        }
    }
}

/// `base` with `segments` appended, each percent-encoded.
fn storage_url(base: &Url, segments: &[&str]) -> Result<Url, Failure> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| Failure::local(format!("{base} cannot take a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The URL of `method` (`encrypt` or `decrypt`) on KMS key `key_name`
/// (`projects/../cryptoKeys/..`).
fn kms_url(base: &Url, key_name: &str, method: &str) -> Result<Url, Failure> {
    let mut segments: Vec<&str> = vec!["v1"];
    segments.extend(key_name.split('/'));
    let last = format!("{}:{method}", segments.pop().unwrap_or_default());
    segments.push(&last);
    storage_url(base, &segments)
}

/// The JWT a service account signs to ask for an access token (RFC 7523), valid from `now`.
fn signed_assertion(
    key: &ServiceAccountKey,
    now: SystemTime,
) -> Result<Zeroizing<String>, Failure> {
    let issued = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Failure::local("the clock is before 1970"))?
        .as_secs();
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME.as_secs(),
    });
    let signed_part = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );

    let der = pem_to_der(key.private_key.expose())
        .ok_or_else(|| Failure::local("the service account's private_key is not a PEM key"))?;
    let key_pair = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|error| {
        Failure::local(format!(
            "the service account's private_key is refused: {error}"
        ))
    })?;
    let mut signature = vec![0; key_pair.public().modulus_len()];
    key_pair
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed_part.as_bytes(),
            &mut signature,
        )
        .map_err(|_| Failure::local("signing the token request failed"))?;
    Ok(Zeroizing::new(format!(
        "{signed_part}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )))
}

/// The DER bytes of the first PEM block in `pem`.
fn pem_to_der(pem: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body: Zeroizing<String> = Zeroizing::new(
        pem.lines()
            .map(str::trim)
            .skip_while(|line| !line.starts_with("-----BEGIN "))
            .skip(1)
            .take_while(|line| !line.starts_with("-----END "))
            .collect(),
    );
    if body.is_empty() {
        return None;
    }
    STANDARD.decode(body.as_bytes()).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_urls_name_the_key_and_method() -> Result<(), Failure> {
        let base = Url::parse("https://cloudkms.googleapis.com")
            .map_err(|e| Failure::local(e.to_string()))?;
        let url = kms_url(
            &base,
            "projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "encrypt",
        )?;
        assert_eq!(
            url.as_str(),
            "https://cloudkms.googleapis.com/v1/projects/p/locations/global/keyRings/r/\
             cryptoKeys/k:encrypt"
        );
        Ok(())
    }

    #[test]
    fn object_names_are_escaped() -> Result<(), Failure> {
        let base = Url::parse("http://127.0.0.1:1/").map_err(|e| Failure::local(e.to_string()))?;
        let url = storage_url(&base, &["storage", "v1", "b", "bkt", "o", "a/b c"])?;
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/storage/v1/b/bkt/o/a%2Fb%20c"
        );
        Ok(())
    }

    #[test]
    fn pem_bodies_are_decoded() {
        let pem = "junk\n-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            pem_to_der(pem).map(|der| der.to_vec()),
            Some(vec![0, 1, 2, 3])
        );
        assert!(pem_to_der("no key here").is_none());
    }
}
