//! A pod's volumes, laid out as host folders that the shim binds into its containers.
//!
//! Secret, ConfigMap, projected and downward-API volumes are written the kubelet's way: the
//! files live in a timestamped folder, `..data` links to it, and each top-level name links
//! through `..data`, so that swapping `..data` updates every file at once for readers that
//! watch them. They are rewritten when their sources change, and service-account tokens
//! are requested again before 80% of their life has passed.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use super::env::field;
use crate::Error;

/// The mode of projected files when the volume names none (0644).
const DEFAULT_MODE: u32 = 0o644;

/// A volume's files, by relative path, with their modes.
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Where each volume of a pod is on the host, and when its token must be renewed.
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// The host folder (or file) of each volume, by name.
    pub paths: BTreeMap<String, PathBuf>,
    /// Volumes that are read-only in every container (Secret, ConfigMap, projected).
    pub read_only: Vec<String>,
    /// When the service-account tokens should be requested again.
    renewal: TokenRenewal,
    /// What each projected volume last held, to write only on change.
    written: BTreeMap<String, Files>,
}

impl PodVolumes {
    /// Lays out every volume of the pod under `dir`. A volume whose source is missing and
    /// not optional is an error that names it, so the container waits rather than starts
    /// without it.
    pub async fn prepare(client: &kube::Client, pod: &Pod, dir: &Path) -> Result<Self, Error> {
        let mut volumes = Self::default();
        volumes.refresh(client, pod, dir).await?;
        Ok(volumes)
    }

    /// Writes every projected volume again if its source changed, or its token is due.
    pub async fn refresh(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        dir: &Path,
    ) -> Result<(), Error> {
        let spec = pod.spec.clone().unwrap_or_default();
        let now = Instant::now();
        let token_due = self.renewal.due(now);
        let mut lifetimes = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            let folder = dir.join("volumes").join(&volume.name);
            if let Some(path) = plain_volume(client, pod, volume, &folder).await? {
                self.paths.insert(volume.name.clone(), path);
                continue;
            }
            let has_token = volume.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            });
            if has_token && !token_due && self.written.contains_key(&volume.name) {
                continue;
            }
            let (files, lifetime) = projected_files(client, pod, volume).await?;
            lifetimes.extend(lifetime);
            if self.written.get(&volume.name) != Some(&files) {
                write_atomically(&folder, &files)?;
                self.written.insert(volume.name.clone(), files);
            }
            self.paths.insert(volume.name.clone(), folder);
            if !self.read_only.contains(&volume.name) {
                self.read_only.push(volume.name.clone());
            }
        }
        // Only a pass that wrote every volume moves the deadline: after an error the tokens
        // are still due, and the next pass requests them again.
        self.renewal.requested(now, token_due, &lifetimes);
        Ok(())
    }
}

/// When a pod's service-account tokens are due again: at 80% of the shortest life among
/// them, counted from when they were requested.
#[derive(Debug, Default)]
struct TokenRenewal {
    /// None before the first tokens, and after a pass that was due requested none.
    at: Option<Instant>,
}

impl TokenRenewal {
    /// Whether the tokens must be requested again at `now`.
    fn due(&self, now: Instant) -> bool {
        self.at.is_none_or(|at| now >= at)
    }

    /// Records a pass begun at `now` that requested tokens of these lifetimes. A pass that
    /// was due requested every token, so they alone set the next deadline (the one before
    /// has passed, and keeping it would make every later pass due); a pass that was not
    /// due requested only the first token of a volume new to the pod, which may only bring
    /// the deadline nearer.
    fn requested(&mut self, now: Instant, was_due: bool, lifetimes: &[Duration]) {
        let next = lifetimes.iter().map(|life| now + life.mul_f32(0.8)).min();
        self.at = if was_due {
            next
        } else {
            match (self.at, next) {
                (Some(at), Some(next)) => Some(at.min(next)),
                (at, next) => at.or(next),
            }
        };
    }
}

/// emptyDir, hostPath and persistentVolumeClaim volumes: a folder, made once.
async fn plain_volume(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
    folder: &Path,
) -> Result<Option<PathBuf>, Error> {
    if volume.empty_dir.is_some() {
        std::fs::create_dir_all(folder).map_err(|e| Error::io("creating", folder, e))?;
        // World-writable, as the kubelet makes it: containers of any user share it.
        let open = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        std::fs::set_permissions(folder, open).map_err(|e| Error::io("opening up", folder, e))?;
        return Ok(Some(folder.to_path_buf()));
    }
    if let Some(host) = &volume.host_path {
        return Ok(Some(PathBuf::from(&host.path)));
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        return claim_path(client, ns, &claim.claim_name).await.map(Some);
    }
    Ok(None)
}

/// The host folder of a bound claim.
async fn claim_path(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let found = claims
        .get(claim)
        .await
        .map_err(|e| Error::Kube(format!("reading claim {ns}/{claim}"), e))?;
    let volume = found
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::Command {
            command: format!("mounting claim {ns}/{claim}"),
            reason: "not bound yet".into(),
        })?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get(&volume)
        .await
        .map_err(|e| Error::Kube(format!("reading volume {volume}"), e))?;
    let path = pv
        .spec
        .and_then(|s| s.host_path)
        .map(|h| h.path)
        .ok_or_else(|| Error::Command {
            command: format!("mounting claim {ns}/{claim}"),
            reason: format!("volume {volume} is not a host path"),
        })?;
    let path = PathBuf::from(path);
    std::fs::create_dir_all(&path).map_err(|e| Error::io("creating", &path, e))?;
    Ok(path)
}

/// The files of a Secret, ConfigMap, projected or downward-API volume, and the lifetime of
/// its token if it has one.
async fn projected_files(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
) -> Result<(Files, Option<Duration>), Error> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut files = Files::new();
    let mut lifetime = None;

    let volume_name = volume.name.as_str();
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let source = Source::Secret(&name, secret.optional);
        let mode = mode(secret.default_mode);
        add_source(
            &mut files,
            client,
            &ns,
            source,
            secret.items.as_deref(),
            mode,
            volume_name,
        )
        .await?;
    }
    if let Some(config) = &volume.config_map {
        let source = Source::ConfigMap(&config.name, config.optional);
        let mode = mode(config.default_mode);
        add_source(
            &mut files,
            client,
            &ns,
            source,
            config.items.as_deref(),
            mode,
            volume_name,
        )
        .await?;
    }
    if let Some(downward) = &volume.downward_api {
        add_downward(
            &mut files,
            pod,
            downward.items.as_deref(),
            mode(downward.default_mode),
        );
    }
    if let Some(projected) = &volume.projected {
        let mode = mode(projected.default_mode);
        for source in projected.sources.iter().flatten() {
            if let Some(secret) = &source.secret {
                let from = Source::Secret(&secret.name, secret.optional);
                add_source(
                    &mut files,
                    client,
                    &ns,
                    from,
                    secret.items.as_deref(),
                    mode,
                    volume_name,
                )
                .await?;
            }
            if let Some(config) = &source.config_map {
                let from = Source::ConfigMap(&config.name, config.optional);
                add_source(
                    &mut files,
                    client,
                    &ns,
                    from,
                    config.items.as_deref(),
                    mode,
                    volume_name,
                )
                .await?;
            }
            if let Some(downward) = &source.downward_api {
                add_downward(&mut files, pod, downward.items.as_deref(), mode);
            }
            if let Some(token) = &source.service_account_token {
                let seconds = token.expiration_seconds.unwrap_or(3607);
                let audiences = token.audience.clone().into_iter().collect();
                let value = request_token(client, pod, seconds, audiences).await?;
                files.insert(token.path.clone(), (value.into_bytes(), mode));
                let life = Duration::from_secs(seconds.max(600) as u64);
                lifetime = Some(lifetime.map_or(life, |l: Duration| l.min(life)));
            }
        }
    }
    Ok((files, lifetime))
}

/// A Secret or ConfigMap, by name, and whether it may be missing.
enum Source<'a> {
    Secret(&'a str, Option<bool>),
    ConfigMap(&'a str, Option<bool>),
}

/// Adds the keys of a Secret or ConfigMap (all, or the `items` named) to a volume's files.
async fn add_source(
    files: &mut Files,
    client: &kube::Client,
    ns: &str,
    source: Source<'_>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    volume: &str,
) -> Result<(), Error> {
    let data = match source {
        Source::Secret(name, optional) => secret_data(client, ns, name, optional).await?,
        Source::ConfigMap(name, optional) => config_map_data(client, ns, name, optional).await?,
    };
    match data {
        Some(data) => add_items(files, data, items, mode, volume),
        None => Ok(()),
    }
}

/// Adds downward-API fields of the pod to a volume's files.
fn add_downward(files: &mut Files, pod: &Pod, items: Option<&[DownwardAPIVolumeFile]>, mode: u32) {
    for item in items.into_iter().flatten() {
        let value = item
            .field_ref
            .as_ref()
            .and_then(|f| field(pod, &f.field_path));
        let item_mode = item.mode.map_or(mode, |m| m as u32);
        files.insert(
            item.path.clone(),
            (value.unwrap_or_default().into_bytes(), item_mode),
        );
    }
}

fn mode(default_mode: Option<i32>) -> u32 {
    default_mode.map_or(DEFAULT_MODE, |m| m as u32)
}

fn add_items(
    files: &mut Files,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    volume: &str,
) -> Result<(), Error> {
    match items {
        None => {
            for (key, value) in data {
                files.insert(key, (value, mode));
            }
        }
        Some(items) => {
            for item in items {
                let value = data.get(&item.key).cloned().ok_or_else(|| Error::Command {
                    command: format!("laying out volume {volume}"),
                    reason: format!("its source has no key {}", item.key),
                })?;
                files.insert(
                    item.path.clone(),
                    (value, item.mode.map_or(mode, |m| m as u32)),
                );
            }
        }
    }
    Ok(())
}

async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api
        .get_opt(name)
        .await
        .map_err(|e| Error::Kube(format!("reading Secret {ns}/{name}"), e))?
    {
        Some(secret) => {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (key, value) in secret.string_data.unwrap_or_default() {
                data.insert(key, value.into_bytes());
            }
            Ok(Some(data))
        }
        None if optional.unwrap_or(false) => Ok(None),
        None => Err(Error::Command {
            command: format!("mounting Secret {ns}/{name}"),
            reason: "it does not exist".into(),
        }),
    }
}

async fn config_map_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| Error::Kube(format!("reading ConfigMap {ns}/{name}"), e))?;
    match found {
        Some(config) => {
            let mut data: BTreeMap<String, Vec<u8>> = config
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (key, value) in config.binary_data.unwrap_or_default() {
                data.insert(key, value.0);
            }
            Ok(Some(data))
        }
        None if optional.unwrap_or(false) => Ok(None),
        None => Err(Error::Command {
            command: format!("mounting ConfigMap {ns}/{name}"),
            reason: "it does not exist".into(),
        }),
    }
}

/// A token for the pod's ServiceAccount from the TokenRequest API, bound to the pod, so it
/// stops working when the pod is gone.
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    seconds: i64,
    audiences: Vec<String>,
) -> Result<String, Error> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod",
                "name": pod.metadata.name, "uid": pod.metadata.uid,
            },
        },
    });
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let response: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .map_err(|e| Error::Kube(format!("requesting a token for {ns}/{account}"), e))?;
    Ok(response.status.and_then(|s| s.token).unwrap_or_default())
}

/// Writes `files` into `folder` as the kubelet does: a new timestamped folder, then `..data`
/// swapped to it in one rename, then the old folder removed.
pub fn write_atomically(folder: &Path, files: &Files) -> Result<(), Error> {
    std::fs::create_dir_all(folder).map_err(|e| Error::io("creating", folder, e))?;
    let stamp = format!("..{}", chrono_stamp());
    let fresh = folder.join(&stamp);
    for (path, (data, mode)) in files {
        let file = fresh.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        std::fs::write(&file, data).map_err(|e| Error::io("writing", &file, e))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| Error::io("setting the mode of", &file, e))?;
    }
    std::fs::create_dir_all(&fresh).map_err(|e| Error::io("creating", &fresh, e))?;

    let old = std::fs::read_link(folder.join("..data")).ok();
    let link_tmp = folder.join("..data_tmp");
    let _ = std::fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(&stamp, &link_tmp)
        .map_err(|e| Error::io("linking", &link_tmp, e))?;
    std::fs::rename(&link_tmp, folder.join("..data"))
        .map_err(|e| Error::io("swapping", &folder.join("..data"), e))?;

    let tops: std::collections::BTreeSet<&str> =
        files.keys().filter_map(|p| p.split('/').next()).collect();
    for top in &tops {
        let link = folder.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)
                .map_err(|e| Error::io("linking", &link, e))?;
        }
    }
    // Names the new data no longer has.
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with("..") && !tops.contains(name.as_str()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(folder.join(old));
    }
    Ok(())
}

fn chrono_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}_{:09}", now.as_secs(), now.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_renewed_token_is_due_again_at_80_percent_of_its_new_life() {
        let start = Instant::now();
        let mut renewal = TokenRenewal::default();
        assert!(renewal.due(start), "the first tokens are due at once");
        renewal.requested(start, true, &[HOUR]);
        assert!(!renewal.due(start + HOUR.mul_f32(0.79)));

        let renewed = start + HOUR.mul_f32(0.8);
        assert!(renewal.due(renewed));
        renewal.requested(renewed, true, &[HOUR]);
        assert!(
            !renewal.due(renewed + Duration::from_secs(20)),
            "a renewed token is not due at the next refresh"
        );
        assert!(!renewal.due(renewed + HOUR.mul_f32(0.79)));
        assert!(renewal.due(renewed + HOUR.mul_f32(0.8)));
    }

    #[test]
    fn refreshes_every_20s_request_a_token_once_per_80_percent_of_its_life() {
        let start = Instant::now();
        let mut renewal = TokenRenewal::default();
        let mut requests = 0;
        // Four hours of the worker's 20 s refreshes, one hour tokens.
        for tick in 0..(4 * 3600 / 20) {
            let now = start + Duration::from_secs(20 * tick);
            let due = renewal.due(now);
            if due {
                requests += 1;
            }
            renewal.requested(now, due, if due { &[HOUR] } else { &[] });
        }
        // About every 48 minutes: at 0, 48, 96, 144 and 192.
        assert_eq!(
            requests, 5,
            "not one per refresh once the first deadline passed"
        );
    }

    #[test]
    fn the_shortest_token_sets_the_deadline_and_a_new_volume_only_brings_it_nearer() {
        let start = Instant::now();
        let mut renewal = TokenRenewal::default();
        renewal.requested(start, true, &[HOUR, HOUR / 2]);
        assert!(renewal.due(start + (HOUR / 2).mul_f32(0.8)));

        let mut renewal = TokenRenewal::default();
        renewal.requested(start, true, &[HOUR]);
        let later = start + Duration::from_secs(60);
        renewal.requested(later, false, &[HOUR * 2]);
        assert!(
            renewal.due(start + HOUR.mul_f32(0.8)),
            "a longer token added later does not push the first one's deadline back"
        );
        renewal.requested(later, false, &[Duration::from_secs(600)]);
        assert!(!renewal.due(later + Duration::from_secs(470)));
        assert!(renewal.due(later + Duration::from_secs(481)));
    }

    #[test]
    fn tokens_stay_due_after_a_pass_that_failed() {
        let start = Instant::now();
        let mut renewal = TokenRenewal::default();
        renewal.requested(start, true, &[HOUR]);
        let due_at = start + HOUR.mul_f32(0.8);
        // The pass at `due_at` failed before `requested`: nothing moved.
        assert!(renewal.due(due_at + Duration::from_secs(20)));
    }

    #[test]
    fn rewrites_swap_data_and_keep_links() {
        let dir = std::env::temp_dir().join(format!("volumes-test-{}", std::process::id()));
        let mut files = Files::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        write_atomically(&dir, &files).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).unwrap_or_default(),
            "1"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/b")).unwrap_or_default(),
            "2"
        );

        files.insert("a".into(), (b"changed".to_vec(), 0o644));
        files.remove("sub/b");
        write_atomically(&dir, &files).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).unwrap_or_default(),
            "changed"
        );
        assert!(!dir.join("sub").exists(), "a removed key's link goes");
        let stamps = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("..1"))
                    .count()
            })
            .unwrap_or_default();
        assert_eq!(stamps, 1, "the old data folder is removed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
