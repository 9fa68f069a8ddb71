//! OSS `PutObject`, `GetObject` and `ListObjects` (V1), signed with
//! [`super::sign::oss_signature`].

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::sign::{OssRequest, oss_signature, oss_string_to_sign};
use super::{AlibabaCredentials, ErrorBody};
use crate::rest::{Answer, host_header};

/// In an object's path, `/` stays as it is.
const OBJECT_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// One bucket behind an OSS endpoint.
pub(super) struct Bucket {
    /// The endpoint, such as `https://oss-cn-hangzhou.aliyuncs.com`.
    pub endpoint: Url,
    pub name: String,
}

/// An object's content, or `None` for an object that does not exist.
pub(super) type Content = Option<Vec<u8>>;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListBucketResult {
    is_truncated: bool,
    next_marker: Option<String>,
    contents: Vec<ListedObject>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListedObject {
    key: String,
}

impl Bucket {
    /// Writes `content` to `object`.
    pub async fn put(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        object: &str,
        content: Vec<u8>,
    ) -> Result<(), String> {
        self.send(http, credentials, Method::PUT, Some(object), "", content)
            .await
            .map(|_| ())
    }

    /// The content of `object`, or `None` when OSS answers `NoSuchKey`.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        object: &str,
    ) -> Result<Content, String> {
        self.send(http, credentials, Method::GET, Some(object), "", Vec::new())
            .await
    }

    /// The names of every object whose name starts with `prefix`.
    pub async fn list(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        prefix: &str,
    ) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = format!("max-keys=1000&prefix={}", encode(prefix));
            if !marker.is_empty() {
                query.push_str(&format!("&marker={}", encode(&marker)));
            }
            let body = self
                .send(http, credentials, Method::GET, None, &query, Vec::new())
                .await?
                .unwrap_or_default();
            let page: ListBucketResult = quick_xml::de::from_reader(body.as_slice())
                .map_err(|error| format!("OSS ListObjects: unexpected answer: {error}"))?;
            names.extend(page.contents.into_iter().map(|object| object.key));

            // A truncated page names where the next starts; without one, the last key does.
            let next = page
                .next_marker
                .filter(|next| !next.is_empty())
                .or_else(|| names.last().cloned());
            match next {
                Some(next) if page.is_truncated && next != marker => marker = next,
                _ => return Ok(names),
            }
        }
    }

    /// Sends a signed request for `object` (the bucket itself when `None`) and returns the
    /// body of a 2xx answer, or `None` for a missing object.
    async fn send(
        &self,
        http: &reqwest::Client,
        credentials: &AlibabaCredentials,
        method: Method,
        object: Option<&str>,
        query: &str,
        content: Vec<u8>,
    ) -> Result<Content, String> {
        let call = match (&method, object) {
            (&Method::PUT, _) => "OSS PutObject",
            (_, Some(_)) => "OSS GetObject",
            (_, None) => "OSS ListObjects",
        };
        let url = self.url(object.unwrap_or_default(), query)?;
        let resource = format!("/{}/{}", self.name, object.unwrap_or_default());
        let date = httpdate::fmt_http_date(SystemTime::now());
        let (content_md5, content_type) = if method == Method::PUT {
            (
                STANDARD.encode(Md5::digest(&content)),
                "application/octet-stream",
            )
        } else {
            (String::new(), "")
        };
        let token = credentials
            .security_token
            .as_ref()
            .map(|token| token.expose());
        let oss_headers: Vec<(&str, &str)> = token
            .map(|token| ("x-oss-security-token", token))
            .into_iter()
            .collect();
        let string_to_sign = oss_string_to_sign(&OssRequest {
            verb: method.as_str(),
            content_md5: &content_md5,
            content_type,
            date: &date,
            oss_headers: &oss_headers,
            resource: &resource,
        });
        let signature = oss_signature(credentials.access_key_secret.expose(), &string_to_sign);

        let mut request = http
            .request(method.clone(), url.clone())
            .header("host", host_header(&url))
            .header("date", &date)
            .header(
                "authorization",
                format!("OSS {}:{signature}", credentials.access_key_id),
            );
        for (name, value) in &oss_headers {
            request = request.header(*name, *value);
        }
        if method == Method::PUT {
            request = request
                .header("content-md5", &content_md5)
                .header("content-type", content_type)
                .body(content);
        }
        let answer = Answer::exchange(call, request, "x-oss-request-id").await?;
        if answer.is_success() {
            return Ok(Some(answer.body.to_vec()));
        }

        let error: ErrorBody =
            quick_xml::de::from_reader(answer.body.as_slice()).unwrap_or_default();
        if answer.status == 404 && error.code.as_deref() == Some("NoSuchKey") {
            return Ok(None);
        }
        Err(answer
            .failure(error.code, error.message, error.request_id)
            .describe(call))
    }

    /// The URL of `object` with `query`: the bucket as a subdomain of the endpoint, as OSS
    /// wants, or as the first path segment when the endpoint is an IP address or `localhost`
    /// (a local OSS-compatible server), as the OSS SDKs do.
    fn url(&self, object: &str, query: &str) -> Result<Url, String> {
        let scheme = self.endpoint.scheme();
        let host = self.endpoint.host_str().unwrap_or_default();
        let port = self
            .endpoint
            .port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        let path_style = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
        let object = utf8_percent_encode(object, OBJECT_PATH);
        let mut url = if path_style {
            format!("{scheme}://{host}{port}/{}/{object}", self.name)
        } else {
            format!("{scheme}://{}.{host}{port}/{object}", self.name)
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        Url::parse(&url).map_err(|error| format!("OSS URL {url:?}: {error}"))
    }
}

fn encode(text: &str) -> String {
    super::sign::percent_encode(text)
}
