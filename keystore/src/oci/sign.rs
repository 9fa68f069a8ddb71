//! OCI's request signature, version 1
//! (<https://docs.oracle.com/en-us/iaas/Content/API/Concepts/signingrequests.htm>): an
//! HTTP signature after draft-cavage-http-signatures-08, RSA-SHA256 with the user's API key,
//! in `Authorization: Signature version="1",keyId="<tenancy>/<user>/<fingerprint>",...`.
//! Every request signs `date (request-target) host`; one with a body (PUT, POST) also signs
//! `content-length content-type x-content-sha256`, which Object Storage's PUT accepts too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, Url};
use rsa::PrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::{Digest, Sha256};

use crate::rest::host_header;

/// Signs requests for one API key.
pub(crate) struct RequestSigner {
    key_id: String,
    key: SigningKey<Sha256>,
}

/// A request body and its media type.
pub(crate) struct Body<'a> {
    pub content_type: &'a str,
    pub content: &'a [u8],
}

impl RequestSigner {
    /// A signer for the key `<tenancy>/<user>/<fingerprint>`.
    pub fn new(tenancy: &str, user: &str, fingerprint: &str, key: PrivateKey) -> Self {
        Self {
            key_id: format!("{tenancy}/{user}/{fingerprint}"),
            key: SigningKey::new(key),
        }
    }

    /// The headers that sign a request to `url` sent at `date` (an HTTP date) with `body`:
    /// those the signature covers, then `authorization`.
    pub fn headers(
        &self,
        method: &Method,
        url: &Url,
        date: &str,
        body: Option<&Body<'_>>,
    ) -> Vec<(&'static str, String)> {
        let mut target = format!("{} {}", method.as_str().to_lowercase(), url.path());
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let mut signed = vec![
            ("date", date.to_string()),
            ("(request-target)", target),
            ("host", host_header(url)),
        ];
        if let Some(body) = body {
            signed.push(("content-length", body.content.len().to_string()));
            signed.push(("content-type", body.content_type.to_string()));
            signed.push((
                "x-content-sha256",
                STANDARD.encode(Sha256::digest(body.content)),
            ));
        }

        let names: Vec<&str> = signed.iter().map(|(name, _)| *name).collect();
        let signature =
            STANDARD.encode(self.key.sign(signing_string(&signed).as_bytes()).to_bytes());
        let authorization = format!(
            "Signature version=\"1\",keyId=\"{}\",algorithm=\"rsa-sha256\",headers=\"{}\",\
             signature=\"{signature}\"",
            self.key_id,
            names.join(" ")
        );
        signed.retain(|(name, _)| *name != "(request-target)");
        signed.push(("authorization", authorization));
        signed
    }
}

/// The text signed: each header as `name: value`, one a line, in the order given.
fn signing_string(headers: &[(&str, String)]) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use rsa::pkcs1::DecodeRsaPrivateKey;

    use super::*;

    // Oracle's published test vector: the sample API key, OCIDs and requests of the "Request
    // Signatures" page, as the OCI Go SDK's `common/http_signer_test.go` also uses them. The
    // key is public test data, not a credential.
    const TEST_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXgIBAAKBgQDCFENGw33yGihy92pDjZQhl0C36rPJj+CvfSC8+q28hxA161QF
NUd13wuCTUcq0Qd2qsBe/2hFyc2DCJJg0h1L78+6Z4UMR7EOcpfdUE9Hf3m/hs+F
UR45uBJeDK1HSFHD8bHKD6kv8FPGfJTotc+2xjJwoYi+1hqp1fIekaxsyQIDAQAB
AoGBAJR8ZkCUvx5kzv+utdl7T5MnordT1TvoXXJGXK7ZZ+UuvMNUCdN2QPc4sBiA
QWvLw1cSKt5DsKZ8UETpYPy8pPYnnDEz2dDYiaew9+xEpubyeW2oH4Zx71wqBtOK
kqwrXa/pzdpiucRRjk6vE6YY7EBBs/g7uanVpGibOVAEsqH1AkEA7DkjVH28WDUg
f1nqvfn2Kj6CT7nIcE3jGJsZZ7zlZmBmHFDONMLUrXR/Zm3pR5m0tCmBqa5RK95u
412jt1dPIwJBANJT3v8pnkth48bQo/fKel6uEYyboRtA5/uHuHkZ6FQF7OUkGogc
mSJluOdc5t6hI1VsLn0QZEjQZMEOWr+wKSMCQQCC4kXJEsHAve77oP6HtG/IiEn7
kpyUXRNvFsDE0czpJJBvL/aRFUJxuRK91jhjC68sA7NsKMGg5OXb5I5Jj36xAkEA
gIT7aFOYBFwGgQAQkWNKLvySgKbAZRTeLBacpHMuQdl1DfdntvAyqpAZ0lY0RKmW
G6aFKaqQfOXKCyWoUiVknQJAXrlgySFci/2ueKlIE1QqIiLSZ8V8OlpFLRnb1pzI
7U1yQXnTAEFYM560yJlzUpOb1V4cScGd365tiSMvxLOvTA==
-----END RSA PRIVATE KEY-----";
    const TENANCY: &str =
        "ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq";
    const USER: &str =
        "ocid1.user.oc1..aaaaaaaat5nvwcna5j6aqzjcaty5eqbb6qt2jvpkanghtgdaqedqw3rynjq";
    const FINGERPRINT: &str = "20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34";
    const DATE: &str = "Thu, 05 Jan 2014 21:31:40 GMT";
    const COMPARTMENT: &str =
        "ocid1.compartment.oc1..aaaaaaaam3we6vgnherjq5q2idnccdflvjsnog7mlr6rtdb25gilchfeyjxa";
    const INSTANCE: &str =
        "ocid1.instance.oc1.phx.abuw4ljrlsfiqw6vzzxb43vyypt4pkodawglp3wqxjqofakrwvou52gb6s5a";
    const VOLUME: &str =
        "ocid1.volume.oc1.phx.abyhqljrgvttnlx73nmrwfaux7kcvzfs3s66izvxf2h4lgvyndsdsnoiwr5q";

    fn signer() -> Result<RequestSigner, rsa::pkcs1::Error> {
        let key = PrivateKey::from_pkcs1_pem(TEST_KEY)?;
        Ok(RequestSigner::new(TENANCY, USER, FINGERPRINT, key))
    }

    fn header<'a>(headers: &'a [(&str, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    fn signature(authorization: &str) -> &str {
        authorization
            .split("signature=\"")
            .nth(1)
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_default()
    }

    #[test]
    fn a_get_matches_oracles_example() -> Result<(), Box<dyn std::error::Error>> {
        let url = Url::parse(&format!(
            "https://iaas.us-phoenix-1.oraclecloud.com/20160918/instances\
             ?availabilityDomain=Pjwf%3A%20PHX-AD-1&compartmentId={COMPARTMENT}\
             &displayName=TeamXInstances&volumeId={VOLUME}"
        ))?;
        let headers = signer()?.headers(&Method::GET, &url, DATE, None);
        let authorization = header(&headers, "authorization");
        assert!(authorization.starts_with(&format!(
            "Signature version=\"1\",keyId=\"{TENANCY}/{USER}/{FINGERPRINT}\",\
             algorithm=\"rsa-sha256\",headers=\"date (request-target) host\","
        )));
        assert_eq!(
            signature(authorization),
            "GBas7grhyrhSKHP6AVIj/h5/Vp8bd/peM79H9Wv8kjoaCivujVXlpbKLjMPeDUhxkFIWtTtLBj3sUzaFj34\
             XE6YZAHc9r2DmE4pMwOAy/kiITcZxa1oHPOeRheC0jP2dqbTll8fmTZVwKZOKHYPtrLJIJQHJjNvxFWeH\
             QjMaR7M="
        );
        assert_eq!(
            header(&headers, "host"),
            "iaas.us-phoenix-1.oraclecloud.com"
        );
        Ok(())
    }

    #[test]
    fn a_post_matches_oracles_example() -> Result<(), Box<dyn std::error::Error>> {
        let url =
            Url::parse("https://iaas.us-phoenix-1.oraclecloud.com/20160918/volumeAttachments")?;
        let content = [
            "{".to_string(),
            format!("    \"compartmentId\": \"{COMPARTMENT}\","),
            format!("    \"instanceId\": \"{INSTANCE}\","),
            format!("    \"volumeId\": \"{VOLUME}\""),
            "}".to_string(),
        ]
        .join("\n");
        let body = Body {
            content_type: "application/json",
            content: content.as_bytes(),
        };
        let headers = signer()?.headers(&Method::POST, &url, DATE, Some(&body));
        assert_eq!(header(&headers, "content-length"), "316");
        assert_eq!(
            header(&headers, "x-content-sha256"),
            "V9Z20UJTvkvpJ50flBzKE32+6m2zJjweHpDMX/U4Uy0="
        );
        let authorization = header(&headers, "authorization");
        assert!(authorization.contains(
            "headers=\"date (request-target) host content-length content-type x-content-sha256\""
        ));
        assert_eq!(
            signature(authorization),
            "Mje8vIDPlwIHmD/cTDwRxE7HaAvBg16JnVcsuqaNRim23fFPgQfLoOOxae6WqKb1uPjYEl0qIdazWaBy/\
             Ml8DRhqlocMwoSXv0fbukP8J5N80LCmzT/FFBvIvTB91XuXI3hYfP9Zt1l7S6ieVadHUfqBedWH0itrtPJ\
             BgKmrWso="
        );
        Ok(())
    }
}
