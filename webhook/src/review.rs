//! Reading an `AdmissionReview` out of a request body, refusing anything that is not a
//! review of a `Vault` with a reason the caller can act on.

use kube::Resource;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde_json::Value;
use vault_api::Vault;

/// The API version of the reviews the webhook answers.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
/// The kind of the reviews the webhook answers.
pub const REVIEW_KIND: &str = "AdmissionReview";

/// Largest request body read, in bytes. A review carries the object and, on update, the
/// stored one; etcd keeps objects up to 1.5 MiB, so two of them fit with room to spare.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a request body is not a review the webhook can answer: the caller gets it back with
/// status 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    /// The body could not be read whole within [`MAX_BODY_BYTES`] (or the configured limit).
    #[error("the body could not be read within {limit} bytes: {reason}")]
    Unreadable {
        /// The limit, in bytes.
        limit: usize,
        /// What the reader said.
        reason: String,
    },
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("the body is not a JSON object")]
    NotAnObject,
    /// `apiVersion` is not `admission.k8s.io/v1`.
    #[error("apiVersion is {0:?}; this webhook answers {REVIEW_API_VERSION} reviews only")]
    WrongApiVersion(String),
    /// `kind` is not `AdmissionReview`.
    #[error("kind is {0:?}; this webhook answers {REVIEW_KIND} only")]
    WrongKind(String),
    /// There is no `request`.
    #[error("the review has no request")]
    MissingRequest,
    /// The review does not have the shape of an `AdmissionReview`.
    #[error("the review is malformed: {0}")]
    Malformed(String),
    /// The review is about something other than a `Vault`.
    #[error("the review is about {found}; this webhook admits {admitted} only")]
    NotAVault {
        /// The kind reviewed, as `group/version Kind`.
        found: String,
        /// The kind admitted, likewise.
        admitted: String,
    },
    /// A CREATE or UPDATE carries no object.
    #[error("the {0} request carries no object")]
    MissingObject(String),
}

/// Reads the admission request out of a review's body. Never panics, whatever the bytes.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    let document: Value =
        serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;

    let Some(fields) = document.as_object() else {
        return Err(BadReview::NotAnObject);
    };
    let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
    if text("apiVersion") != REVIEW_API_VERSION {
        return Err(BadReview::WrongApiVersion(text("apiVersion").to_string()));
    }
    if text("kind") != REVIEW_KIND {
        return Err(BadReview::WrongKind(text("kind").to_string()));
    }
    if fields.get("request").is_none_or(Value::is_null) {
        return Err(BadReview::MissingRequest);
    }

    // The path of the field that does not fit tells the caller what to fix.
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(document)
        .map_err(|e| BadReview::Malformed(format!("{}: {}", e.path(), e.inner())))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| BadReview::MissingRequest)?;

    // The api crate's type says which kind it is.
    let admitted = (Vault::group(&()), Vault::version(&()), Vault::kind(&()));
    let kind = &request.kind;
    if (
        kind.group.as_str(),
        kind.version.as_str(),
        kind.kind.as_str(),
    ) != (&*admitted.0, &*admitted.1, &*admitted.2)
    {
        return Err(BadReview::NotAVault {
            found: format!("{}/{} {}", kind.group, kind.version, kind.kind),
            admitted: format!("{}/{} {}", admitted.0, admitted.1, admitted.2),
        });
    }
    let changes_object = matches!(request.operation, Operation::Create | Operation::Update);
    if changes_object && request.sub_resource.is_none() && request.object.is_none() {
        return Err(BadReview::MissingObject(operation_name(&request.operation)));
    }
    Ok(request)
}

/// The operation as the API server spells it.
pub fn operation_name(operation: &Operation) -> String {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
    .to_string()
}
