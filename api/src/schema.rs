//! Schema helpers for the parts of the resource that are free-form or embedded.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::PodSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A free-form object kept as written: the API server stores every field of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct FreeForm(pub serde_json::Map<String, serde_json::Value>);

impl FreeForm {
    /// True when the object has no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl JsonSchema for FreeForm {
    fn schema_name() -> Cow<'static, str> {
        "FreeForm".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        preserve_unknown_object()
    }
}

/// The schema of an object whose fields the API server keeps without checking them.
pub(crate) fn preserve_unknown_object() -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A pod spec of which only some fields are given, to be merged into the pods the operator
/// builds; unlike a full pod spec it may leave out `containers`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct EmbeddedPodSpec(pub PodSpec);

impl JsonSchema for EmbeddedPodSpec {
    fn schema_name() -> Cow<'static, str> {
        "EmbeddedPodSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = PodSpec::json_schema(generator);
        if let Some(required) = schema.get_mut("required").and_then(|r| r.as_array_mut()) {
            required.retain(|field| field != "containers");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        schema
    }
}
