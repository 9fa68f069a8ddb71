//! A container's environment and the expansion of `$(VAR)` in its command, args and env.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// The environment every container gets before its own: enough for in-cluster clients to
/// find the API server, and nothing of the host's.
pub fn base(pod: &Pod, hostname: &str, home: &str) -> Vec<(String, String)> {
    let _ = pod;
    let api = crate::GATEWAY;
    let port = "443";
    vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), hostname.into()),
        ("HOME".into(), home.into()),
        ("KUBERNETES_SERVICE_HOST".into(), api.into()),
        ("KUBERNETES_SERVICE_PORT".into(), port.into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.into()),
        ("KUBERNETES_PORT".into(), format!("tcp://{api}:{port}")),
        (
            "KUBERNETES_PORT_443_TCP".into(),
            format!("tcp://{api}:{port}"),
        ),
        ("KUBERNETES_PORT_443_TCP_PROTO".into(), "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR".into(), api.into()),
        ("KUBERNETES_PORT_443_TCP_PORT".into(), port.into()),
    ]
}

/// Resolves a `fieldRef` against the pod, as the downward API does.
pub fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        map?.get(key).cloned()
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec?.node_name.clone(),
        "spec.serviceAccountName" => spec?.service_account_name.clone(),
        "status.podIP" => status?.pod_ip.clone(),
        "status.hostIP" => status?.host_ip.clone(),
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref())),
    }
}

/// The Secrets and ConfigMaps a container's env refers to, read before it starts.
#[derive(Debug, Default)]
pub struct Sources {
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl Sources {
    /// Reads every Secret and ConfigMap that the container's `env` and `envFrom` name.
    /// Missing ones are left out; the variables that need them are then reported.
    pub async fn fetch(client: &kube::Client, pod: &Pod, container: &Container) -> Self {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut secret_names = Vec::new();
        let mut config_names = Vec::new();
        for var in container.env.iter().flatten() {
            let from = var.value_from.as_ref();
            if let Some(s) = from.and_then(|f| f.secret_key_ref.as_ref()) {
                secret_names.push(s.name.clone());
            }
            if let Some(c) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
                config_names.push(c.name.clone());
            }
        }
        for source in container.env_from.iter().flatten() {
            if let Some(s) = &source.secret_ref {
                secret_names.push(s.name.clone());
            }
            if let Some(c) = &source.config_map_ref {
                config_names.push(c.name.clone());
            }
        }

        let mut sources = Self::default();
        let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &ns);
        for name in secret_names {
            if let Ok(Some(secret)) = secrets.get_opt(&name).await {
                let data = secret.data.unwrap_or_default().into_iter();
                let values = data.map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
                sources.secrets.insert(name, values.collect());
            }
        }
        let configs: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), &ns);
        for name in config_names {
            if let Ok(Some(config)) = configs.get_opt(&name).await {
                sources
                    .config_maps
                    .insert(name, config.data.unwrap_or_default());
            }
        }
        sources
    }
}

/// Where an env var's value comes from, when it cannot be read from the pod alone.
pub trait Lookup {
    /// A key of a Secret.
    fn secret(&self, name: &str, key: &str) -> Option<String>;
    /// A key of a ConfigMap.
    fn config_map(&self, name: &str, key: &str) -> Option<String>;
    /// Every key of a Secret.
    fn secret_all(&self, name: &str) -> Option<BTreeMap<String, String>>;
    /// Every key of a ConfigMap.
    fn config_map_all(&self, name: &str) -> Option<BTreeMap<String, String>>;
}

impl Lookup for Sources {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        self.secrets.get(name)?.get(key).cloned()
    }

    fn config_map(&self, name: &str, key: &str) -> Option<String> {
        self.config_maps.get(name)?.get(key).cloned()
    }

    fn secret_all(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.secrets.get(name).cloned()
    }

    fn config_map_all(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.config_maps.get(name).cloned()
    }
}

/// The container's own env, in order, each value expanded against those before it.
/// Returns the variables and the names of those whose source could not be read.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    base: &[(String, String)],
    lookup: &dyn Lookup,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut env: Vec<(String, String)> = base.to_vec();
    let mut missing = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (values, name, optional) = match (&source.secret_ref, &source.config_map_ref) {
            (Some(s), _) => (lookup.secret_all(&s.name), s.name.clone(), s.optional),
            (_, Some(c)) => (lookup.config_map_all(&c.name), c.name.clone(), c.optional),
            _ => continue,
        };
        match values {
            Some(values) => {
                for (key, value) in values {
                    set(&mut env, &format!("{prefix}{key}"), value);
                }
            }
            None if optional.unwrap_or(false) => {}
            None => missing.push(format!("envFrom {name}")),
        }
    }
    for var in container.env.iter().flatten() {
        match value(pod, var, &env, lookup) {
            Some(value) => set(&mut env, &var.name, value),
            None => missing.push(var.name.clone()),
        }
    }
    (env, missing)
}

fn value(pod: &Pod, var: &EnvVar, env: &[(String, String)], lookup: &dyn Lookup) -> Option<String> {
    if let Some(value) = &var.value {
        return Some(expand(value, env));
    }
    let Some(from) = &var.value_from else {
        return Some(String::new());
    };
    if let Some(field_ref) = &from.field_ref {
        return field(pod, &field_ref.field_path);
    }
    if let Some(secret) = &from.secret_key_ref {
        return lookup
            .secret(&secret.name, &secret.key)
            .or_else(|| optional(secret.optional));
    }
    if let Some(config) = &from.config_map_key_ref {
        return lookup
            .config_map(&config.name, &config.key)
            .or_else(|| optional(config.optional));
    }
    if let Some(resource) = &from.resource_field_ref {
        let container = resource.container_name.as_deref();
        return Some(resource_value(pod, &resource.resource, container));
    }
    None
}

/// A container's resource request or limit, as the downward API gives it: CPU in whole
/// cores rounded up, memory in bytes; a limit left out is the node's capacity.
fn resource_value(pod: &Pod, resource: &str, container: Option<&str>) -> String {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let found = containers
        .iter()
        .find(|c| container.is_none_or(|n| c.name == n));
    let resources = found.and_then(|c| c.resources.clone()).unwrap_or_default();
    let (section, kind) = resource.split_once('.').unwrap_or(("limits", resource));
    let map = if section == "requests" {
        resources.requests
    } else {
        resources.limits
    };
    let quantity = map.and_then(|m| m.get(kind).map(|q| q.0.clone()));
    match (kind, quantity) {
        ("cpu", Some(q)) => match q.strip_suffix('m') {
            Some(milli) => milli
                .parse::<u64>()
                .map_or(q.clone(), |m| m.div_ceil(1000).to_string()),
            None => q,
        },
        ("cpu", None) => "32".into(),
        ("memory", Some(q)) => memory_bytes(&q).map_or(q, |b| b.to_string()),
        ("memory", None) => (64u64 << 30).to_string(),
        (_, Some(q)) => q,
        (_, None) => "0".into(),
    }
}

fn memory_bytes(quantity: &str) -> Option<u64> {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().ok().map(|n| n * factor);
        }
    }
    quantity.parse().ok()
}

fn optional(optional: Option<bool>) -> Option<String> {
    optional.unwrap_or(false).then(String::new)
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

/// Expands `$(NAME)` from `env`, as Kubernetes does: `$$` is a literal `$`, and a reference
/// to an unknown variable stays as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&rest[at..at + 2 + end + 1]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("POD".to_string(), "p".to_string()),
        ];
        assert_eq!(expand("$(A)-$(POD)", &env), "1-p");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(NOPE) $A $", &env), "$(NOPE) $A $");
        assert_eq!(expand("x$(A", &env), "x$(A");
    }

    #[test]
    fn downward_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "v"}},
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {"podIP": "10.244.1.1"},
        }))
        .unwrap_or_default();
        assert_eq!(field(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(field(&pod, "status.podIP").as_deref(), Some("10.244.1.1"));
        assert_eq!(field(&pod, "metadata.labels['app']").as_deref(), Some("v"));
        assert_eq!(field(&pod, "spec.nodeName").as_deref(), Some("node-a"));
    }
}
