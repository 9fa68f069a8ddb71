//! The two admission decisions, as pure functions of the request: [`mutate`] writes the
//! defaults of `vault_api::default` in, [`validate`] applies `vault_api::validate`.
//!
//! Neither holds a rule of its own: what a default or a problem is lives in the api crate.

use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use kube::Resource;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{DynamicObject, Status};
use serde_json::Value;
use vault_api::{FieldError, Vault};

/// The HTTP-like code of a denial: the object is well formed but not acceptable.
pub const INVALID_CODE: u16 = 422;

/// What the webhook decided, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Admitted unchanged.
    Allowed,
    /// Admitted with a patch that writes defaults in.
    Patched,
    /// Refused.
    Denied,
}

impl Outcome {
    /// The label of the outcome in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
        }
    }
}

/// An answer to a review, with what it amounts to.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The response sent back inside the review.
    pub response: AdmissionResponse,
    /// What the response amounts to.
    pub outcome: Outcome,
}

impl Decision {
    fn allow(request: &AdmissionRequest<DynamicObject>) -> Self {
        Decision {
            response: AdmissionResponse::from(request),
            outcome: Outcome::Allowed,
        }
    }
}

/// Answers the mutating review: a JSON Patch that turns the object into
/// `vault_api::default(object)`, or no patch when the object already has every default.
///
/// Objects it cannot read as a `Vault` are let through unchanged: the validating webhook
/// refuses them with the path of the field at fault.
pub fn mutate(request: &AdmissionRequest<DynamicObject>) -> Decision {
    let Some(object) = admitted_object(request) else {
        return Decision::allow(request);
    };
    let Ok((raw, vault)) = read_vault(object) else {
        return Decision::allow(request);
    };

    let patched = match defaulting_patch(&raw, &vault) {
        Ok(None) => return Decision::allow(request),
        Ok(Some(patch)) => AdmissionResponse::from(request)
            .with_patch(patch)
            .map_err(|e| e.to_string()),
        Err(reason) => Err(reason),
    };
    match patched {
        Ok(response) => Decision {
            response,
            outcome: Outcome::Patched,
        },
        Err(reason) => {
            let warning = format!("defaults were not written: {reason}");
            allow_with_warning(request, &warning)
        }
    }
}

/// Answers the validating review: refuses the object with every problem
/// `vault_api::validate` finds, each with its field and fix, in one message; or admits it
/// with the warnings found. On update the stored object is compared with the new one.
pub fn validate(request: &AdmissionRequest<DynamicObject>) -> Decision {
    let Some(object) = admitted_object(request) else {
        return Decision::allow(request);
    };
    let name = object_name(request);
    let vault = match read_vault(object) {
        Ok((_, vault)) => vault,
        Err(reason) => {
            let error = FieldError {
                path: reason.path,
                problem: reason.problem,
                fix: "write the field as the Vault CustomResourceDefinition describes it".into(),
            };
            return deny(request, &name, &[error]);
        }
    };

    // A stored object that no longer reads (written before a rule existed) must not lock
    // the resource: the comparison is skipped and the user told.
    let mut warnings = Vec::new();
    let old = match request.old_object.as_ref().map(read_vault) {
        Some(Ok((_, old))) => Some(old),
        Some(Err(reason)) => {
            warnings.push(format!(
                "the stored object does not read as a Vault ({reason}); rules comparing it \
                 with the new one were skipped"
            ));
            None
        }
        None => None,
    };

    match vault_api::validate(&vault, old.as_ref()) {
        Ok(found) => {
            warnings.extend(found.iter().map(ToString::to_string));
            let mut response = AdmissionResponse::from(request);
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
            Decision {
                response,
                outcome: Outcome::Allowed,
            }
        }
        Err(errors) => deny(request, &name, &errors),
    }
}

/// The object a CREATE or UPDATE would store, or `None` when the request must be let
/// through untouched: deletions, connections, subresources, and objects already being
/// deleted (their finalizers must still be removable).
fn admitted_object(request: &AdmissionRequest<DynamicObject>) -> Option<&DynamicObject> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return None;
    }
    if request.sub_resource.is_some() {
        return None;
    }
    let object = request.object.as_ref()?;
    if object.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(object)
}

/// Why an object does not read as a `Vault`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unreadable {
    path: String,
    problem: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

/// The object as JSON, as sent, and as a `Vault`.
fn read_vault(object: &DynamicObject) -> Result<(Value, Vault), Unreadable> {
    let raw = serde_json::to_value(object).map_err(|e| Unreadable {
        path: ".".into(),
        problem: e.to_string(),
    })?;
    let vault = serde_path_to_error::deserialize(&raw).map_err(|e| Unreadable {
        path: e.path().to_string(),
        problem: e.inner().to_string(),
    })?;
    Ok((raw, vault))
}

fn object_name(request: &AdmissionRequest<DynamicObject>) -> String {
    let name = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| request.name.clone());
    match request.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name,
    }
}

/// The message the user reads after `denied the request:`.
pub fn denial_message(name: &str, errors: &[FieldError]) -> String {
    let count = match errors.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    let kind = Vault::kind(&());
    let mut message = format!("{kind} {name} is invalid, {count} to fix:");
    for error in errors {
        message.push_str("\n- ");
        message.push_str(&error.to_string());
    }
    message
}

fn deny(request: &AdmissionRequest<DynamicObject>, name: &str, errors: &[FieldError]) -> Decision {
    let causes = errors
        .iter()
        .map(|e| StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!("{}; {}", e.problem, e.fix),
            field: e.path.clone(),
        })
        .collect();
    let details = StatusDetails {
        name: name.rsplit('/').next().unwrap_or(name).to_string(),
        group: Vault::group(&()).into_owned(),
        kind: Vault::kind(&()).into_owned(),
        uid: String::new(),
        causes,
        retry_after_seconds: 0,
    };
    let message = denial_message(name, errors);
    let mut response = AdmissionResponse::from(request).deny(&message);
    response.result = Status::failure(&message, "Invalid")
        .with_code(INVALID_CODE)
        .with_details(details);
    Decision {
        response,
        outcome: Outcome::Denied,
    }
}

fn allow_with_warning(request: &AdmissionRequest<DynamicObject>, warning: &str) -> Decision {
    let mut response = AdmissionResponse::from(request);
    response.warnings = Some(vec![warning.to_string()]);
    Decision {
        response,
        outcome: Outcome::Allowed,
    }
}

/// The JSON Patch that turns `raw` (the object as sent, which reads as `vault`) into
/// `vault_api::default(vault)`, or `None` when nothing would change.
///
/// The patch is the difference between the typed object and its defaulted form, anchored
/// on the object as sent: objects the defaults go into are created first when missing.
/// It is checked by applying it; should that ever fail, the patch replaces `spec` whole.
pub fn defaulting_patch(raw: &Value, vault: &Vault) -> Result<Option<Patch>, String> {
    let defaulted = vault_api::default(vault);
    if defaulted == *vault {
        return Ok(None);
    }

    let to_json = |v: &Vault| serde_json::to_value(v).map_err(|e| e.to_string());
    let (before, after) = (to_json(vault)?, to_json(&defaulted)?);
    let changes = json_patch::diff(&before, &after);

    if let Some(patch) = anchor(raw, &changes.0).filter(|p| yields(raw, p, &defaulted)) {
        return Ok(Some(patch));
    }
    let whole_spec = Patch(vec![PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(["spec"]),
        value: after.get("spec").cloned().unwrap_or(Value::Null),
    })]);
    if yields(raw, &whole_spec, &defaulted) {
        Ok(Some(whole_spec))
    } else {
        Err("the defaulted object could not be expressed as a patch".into())
    }
}

/// True when applying `patch` to `raw` gives an object that reads as `expected`.
fn yields(raw: &Value, patch: &Patch, expected: &Vault) -> bool {
    let mut document = raw.clone();
    json_patch::patch(&mut document, patch).is_ok()
        && serde_json::from_value::<Vault>(document).is_ok_and(|v| v == *expected)
}

/// Rewrites operations computed on the typed object so that they apply to the object as
/// sent: missing (or null) parents are added as empty objects first, a `replace` of a
/// missing member becomes an `add`, and a `remove` of a missing member is dropped.
/// `None` when an operation cannot be anchored.
fn anchor(raw: &Value, changes: &[PatchOperation]) -> Option<Patch> {
    let mut document = raw.clone();
    let mut operations = Vec::with_capacity(changes.len());
    for change in changes {
        let operation = match change {
            PatchOperation::Add(add) => {
                add_parents(&mut document, &add.path, &mut operations)?;
                change.clone()
            }
            PatchOperation::Replace(replace) => {
                add_parents(&mut document, &replace.path, &mut operations)?;
                if is_missing(&document, &replace.path) {
                    PatchOperation::Add(AddOperation {
                        path: replace.path.clone(),
                        value: replace.value.clone(),
                    })
                } else {
                    change.clone()
                }
            }
            PatchOperation::Remove(remove) if document.pointer(remove.path.as_str()).is_none() => {
                continue;
            }
            PatchOperation::Remove(_) => change.clone(),
            _ => return None,
        };
        json_patch::patch(&mut document, std::slice::from_ref(&operation)).ok()?;
        operations.push(operation);
    }
    Some(Patch(operations))
}

fn is_missing(document: &Value, path: &Pointer) -> bool {
    matches!(document.pointer(path.as_str()), None | Some(Value::Null))
}

/// Makes every ancestor of `path` a container the next step can go into: a missing or null
/// one is added as an empty object, and so is one the typed object read as an object
/// though it was sent as something else (`unsealConfig: []` reads as an empty one).
fn add_parents(
    document: &mut Value,
    path: &Pointer,
    operations: &mut Vec<PatchOperation>,
) -> Option<()> {
    let tokens: Vec<_> = path.tokens().collect();
    let mut ancestor = PointerBuf::root();
    for pair in tokens.windows(2) {
        let (token, next) = (&pair[0], &pair[1]);
        ancestor.push_back(token.clone());
        let next_is_index = next.encoded() == "-" || next.encoded().parse::<usize>().is_ok();
        let operation = match document.pointer(ancestor.as_str()) {
            Some(Value::Object(_)) => continue,
            Some(Value::Array(_)) if next_is_index => continue,
            None => PatchOperation::Add(AddOperation {
                path: ancestor.clone(),
                value: Value::Object(Default::default()),
            }),
            Some(_) => PatchOperation::Replace(ReplaceOperation {
                path: ancestor.clone(),
                value: Value::Object(Default::default()),
            }),
        };
        json_patch::patch(document, std::slice::from_ref(&operation)).ok()?;
        operations.push(operation);
    }
    Some(())
}
