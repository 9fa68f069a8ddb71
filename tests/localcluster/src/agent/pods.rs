//! One worker per pod: it gives the pod its network, runs its init containers in order and
//! then its containers, restarts those that exit as `restartPolicy` says, writes the pod's
//! status as the kubelet does, and on deletion stops the processes and removes the pod.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::container::{ContainerSpec, Mount, MountKind};
use super::env::{self, Sources};
use super::images::{self, Run};
use super::names::Names;
use super::network::{self, PodNetwork};
use super::probes::{self, ProbeEvent};
use super::volumes::PodVolumes;
use super::{Agent, Shared};
use crate::{Error, GATEWAY};

/// What a pod's worker is told.
#[derive(Debug)]
pub enum PodEvent {
    /// The pod as the API server now has it.
    Update(Box<Pod>),
    /// The pod is gone from the API server.
    Gone,
    /// The agent is stopping: stop the processes, leave the pod object.
    Shutdown,
}

/// The first wait before restarting a container that exited; it doubles with every restart.
const FIRST_BACK_OFF: Duration = Duration::from_secs(1);
/// The longest wait before a restart.
const MAX_BACK_OFF: Duration = Duration::from_secs(30);
/// How soon a container whose configuration could not be read is tried again.
const CONFIG_RETRY: Duration = Duration::from_secs(3);
/// The start of the name of every container's pid record (`pod_<ns>_<pod>_<container>`).
pub const RECORD_PREFIX: &str = "pod_";
/// How often Secret, ConfigMap and token volumes are compared with their sources.
const VOLUME_REFRESH: Duration = Duration::from_secs(20);

/// A container's state, as its status reports it.
#[derive(Clone, Debug)]
enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        pid: u32,
        started: String,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started: String,
        finished: String,
    },
}

#[derive(Debug)]
struct ContainerRun {
    container: Container,
    init: bool,
    state: State,
    last: Option<State>,
    restarts: i32,
    /// When a container that exited may start again.
    restart_at: Option<Instant>,
    /// What the readiness probe last said (true without one).
    ready: bool,
    /// Whether the startup probe has passed (true without one).
    started: bool,
    /// The task probing the running process.
    probes: Option<tokio::task::JoinHandle<()>>,
}

/// Why a worker ended.
enum End {
    /// Deleted: remove the pod object once its processes have stopped.
    Deleted,
    /// Gone from the API server, or the agent stops.
    Stopped,
}

/// Runs a pod until it is deleted or the agent stops.
pub async fn run_pod(
    agent: Arc<Agent>,
    shared: Arc<Shared>,
    first: Pod,
    mut events: mpsc::Receiver<PodEvent>,
) {
    let name = pod_label(&first);
    match PodWorker::start(agent, shared, first).await {
        Ok(mut worker) => {
            let end = worker.supervise(&mut events).await;
            worker.stop_all().await;
            worker.tear_down();
            if matches!(end, End::Deleted) {
                worker.remove_object().await;
            }
        }
        Err(e) => eprintln!("node agent: pod {name}: {e}"),
    }
}

fn pod_label(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or("?"))
}

struct PodWorker {
    agent: Arc<Agent>,
    pod: Pod,
    network: PodNetwork,
    dir: PathBuf,
    started: String,
    runs: Vec<ContainerRun>,
    exits: mpsc::Sender<(usize, i32)>,
    exit_events: Option<mpsc::Receiver<(usize, i32)>>,
    /// The pod's volumes, once laid out.
    volumes: Option<PodVolumes>,
    /// The names of Services and pods, for `/etc/hosts`.
    names: watch::Receiver<Arc<Names>>,
    shared: Arc<Shared>,
    probe_events: mpsc::Sender<(usize, u32, ProbeEvent)>,
    probe_receiver: Option<mpsc::Receiver<(usize, u32, ProbeEvent)>>,
}

impl PodWorker {
    async fn start(agent: Arc<Agent>, shared: Arc<Shared>, pod: Pod) -> Result<Self, Error> {
        let ip = agent.addresses.take()?;
        let network = match network::create(&agent.layout.netns(), ip) {
            Ok(network) => network,
            Err(e) => {
                agent.addresses.give_back(ip);
                return Err(e);
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = agent.layout.dir().join("pods").join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("pod"),
            uid.get(..8).unwrap_or(&uid)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;

        let spec = pod.spec.clone().unwrap_or_default();
        let runs = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)))
            .map(|(container, init)| ContainerRun {
                container: container.clone(),
                init,
                state: State::Waiting {
                    reason: "PodInitializing".into(),
                    message: String::new(),
                },
                last: None,
                restarts: 0,
                restart_at: Some(Instant::now()),
                ready: false,
                started: false,
                probes: None,
            })
            .collect();
        let (exits, exit_events) = mpsc::channel(64);
        let (probe_events, probe_receiver) = mpsc::channel(64);
        let worker = Self {
            agent,
            pod,
            network,
            dir,
            started: now(),
            runs,
            exits,
            exit_events: Some(exit_events),
            volumes: None,
            names: shared.names.clone(),
            shared,
            probe_events,
            probe_receiver: Some(probe_receiver),
        };
        worker.write_names()?;
        Ok(worker)
    }

    /// `/etc/hosts` and `/etc/resolv.conf` for the pod: its own names, and lookups that go
    /// nowhere, so nothing resolves an outside name.
    fn write_names(&self) -> Result<(), Error> {
        let hostname = self.hostname();
        let ns = self.namespace();
        let mut names = vec![hostname.clone()];
        if let Some(subdomain) = self.pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()) {
            names.insert(0, format!("{hostname}.{subdomain}.{ns}.svc.cluster.local"));
            names.insert(1, format!("{hostname}.{subdomain}.{ns}.svc"));
        }
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n\
             {GATEWAY}\tkubernetes kubernetes.default kubernetes.default.svc \
             kubernetes.default.svc.cluster.local\n",
            self.network.ip,
            names.join(" "),
        );
        let hosts = format!("{hosts}{}", self.names.borrow().lines_for(&ns));
        let resolv = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
        for (file, text) in [("hosts", hosts.as_str()), ("resolv.conf", resolv)] {
            let path = self.dir.join(file);
            std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))?;
        }
        Ok(())
    }

    fn hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.hostname.clone())
            .or_else(|| self.pod.metadata.name.clone())
            .unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    async fn supervise(&mut self, events: &mut mpsc::Receiver<PodEvent>) -> End {
        let Some(mut exits) = self.exit_events.take() else {
            return End::Stopped;
        };
        let Some(mut probe_results) = self.probe_receiver.take() else {
            return End::Stopped;
        };
        self.report().await;
        let mut refresh = tokio::time::interval(VOLUME_REFRESH);
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                return End::Deleted;
            }
            self.start_due().await;

            let wake = self.next_restart().map(tokio::time::Instant::from_std);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(PodEvent::Update(pod)) => self.pod = *pod,
                    Some(PodEvent::Gone) | Some(PodEvent::Shutdown) | None => return End::Stopped,
                },
                Some((index, code)) = exits.recv() => self.exited(index, code).await,
                Some((index, pid, event)) = probe_results.recv() => {
                    self.probed(index, pid, event).await;
                }
                _ = refresh.tick() => self.refresh_volumes().await,
                Ok(()) = self.names.changed() => {
                    if let Err(e) = self.write_names() {
                        eprintln!("node agent: {e}");
                    }
                }
                () = sleep => {}
            }
        }
    }

    async fn refresh_volumes(&mut self) {
        let Some(volumes) = self.volumes.as_mut() else {
            return;
        };
        if let Err(e) = volumes
            .refresh(&self.agent.client, &self.pod, &self.dir)
            .await
        {
            eprintln!(
                "node agent: refreshing the volumes of {}: {e}",
                pod_label(&self.pod)
            );
        }
    }

    /// Lays out the volumes once; until that works every container waits, saying why.
    async fn volumes_ready(&mut self) -> bool {
        if self.volumes.is_some() {
            return true;
        }
        match PodVolumes::prepare(&self.agent.client, &self.pod, &self.dir).await {
            Ok(volumes) => {
                self.volumes = Some(volumes);
                true
            }
            Err(e) => {
                let retry = Instant::now() + Duration::from_secs(2);
                for run in &mut self.runs {
                    run.state = State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: e.to_string(),
                    };
                    run.restart_at = Some(retry);
                }
                self.report().await;
                false
            }
        }
    }

    fn next_restart(&self) -> Option<Instant> {
        self.runs.iter().filter_map(|r| r.restart_at).min()
    }

    /// Starts what is due: the next init container, or, once they have all succeeded, every
    /// container whose (re)start time has come.
    async fn start_due(&mut self) {
        let now = Instant::now();
        if self.next_restart().is_some_and(|at| at <= now) && !self.volumes_ready().await {
            return;
        }
        let init_done = self
            .runs
            .iter()
            .filter(|r| r.init)
            .all(|r| matches!(r.state, State::Terminated { exit_code: 0, .. }));
        let mut changed = false;
        for index in 0..self.runs.len() {
            let run = &self.runs[index];
            let due = run.restart_at.is_some_and(|at| at <= now);
            let blocked = if run.init {
                let earlier_done = self.runs[..index]
                    .iter()
                    .filter(|r| r.init)
                    .all(|r| matches!(r.state, State::Terminated { exit_code: 0, .. }));
                !earlier_done
            } else {
                !init_done
            };
            if due && !blocked {
                self.start_container(index).await;
                changed = true;
                if self.runs[index].init {
                    break;
                }
            }
        }
        if changed {
            self.report().await;
        }
    }

    async fn start_container(&mut self, index: usize) {
        self.runs[index].restart_at = None;
        let container = self.runs[index].container.clone();
        let sources = Sources::fetch(&self.agent.client, &self.pod, &container).await;
        match self.spawn(&container, &sources) {
            Ok(pid) => {
                self.runs[index].state = State::Running {
                    pid,
                    started: now(),
                };
                self.watch_probes(index, pid);
            }
            Err((reason, message)) => {
                // A configuration that cannot start now may start later (a Secret appears).
                self.runs[index].state = State::Waiting { reason, message };
                self.runs[index].restart_at = Some(Instant::now() + CONFIG_RETRY);
            }
        }
    }

    fn spawn(&self, container: &Container, sources: &Sources) -> Result<u32, (String, String)> {
        let image = container.image.clone().unwrap_or_default();
        let Some(run) = self.agent.images.lookup(&image) else {
            return Err((
                "ImageNotMapped".into(),
                format!(
                    "image {image} has no entry in the image table: add one with \
                         `localcluster up --images FILE`"
                ),
            ));
        };

        let home = "/localcluster/home";
        let base = env::base(&self.pod, &self.hostname(), home);
        let (mut env, missing) = env::container_env(&self.pod, container, &base, sources);
        if !missing.is_empty() {
            let message = format!("cannot read env {}", missing.join(", "));
            return Err(("CreateContainerConfigError".into(), message));
        }
        if matches!(run, Run::Vault) {
            mirror_vault_env(&mut env);
        }
        let expand = |words: Option<&Vec<String>>| -> Vec<String> {
            words
                .into_iter()
                .flatten()
                .map(|w| env::expand(w, &env))
                .collect()
        };
        let (command, args) = (
            expand(container.command.as_ref()),
            expand(container.args.as_ref()),
        );
        let mut argv = images::argv(run, &command, &args, &self.agent.bao)
            .map_err(|message| ("RunContainerError".to_string(), message))?;
        // A program of this workspace lives under the builder's home, which a container's
        // non-root user (the operator's pods run as 65532) cannot enter: the container
        // sees it at a path anyone reaches.
        let mut program_mount = None;
        if let Run::Program(program) = run {
            let name = Path::new(program)
                .file_name()
                .map_or_else(|| "program".into(), |n| n.to_string_lossy().into_owned());
            let target = format!("/localcluster/bin/{name}");
            program_mount = Some(bind(PathBuf::from(program), &target, true));
            argv[0] = target;
        }

        let scratch = self.dir.join(format!("{}.root", container.name));
        let mut mounts = vec![
            bind(self.dir.join("hosts"), "/etc/hosts", false),
            bind(self.dir.join("resolv.conf"), "/etc/resolv.conf", true),
            Mount {
                kind: MountKind::Tmpfs,
                target: home.into(),
                read_only: false,
            },
        ];
        mounts.extend(program_mount);
        mounts.extend(self.volume_mounts(container));
        let security = container.security_context.as_ref();
        let pod_security = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        let spec = ContainerSpec {
            hostname: self.hostname(),
            scratch_dir: scratch,
            mounts,
            env,
            working_dir: container.working_dir.clone(),
            user: security
                .and_then(|s| s.run_as_user)
                .or(pod_security.and_then(|s| s.run_as_user))
                .and_then(|u| u32::try_from(u).ok()),
            group: security
                .and_then(|s| s.run_as_group)
                .or(pod_security.and_then(|s| s.run_as_group))
                .and_then(|g| u32::try_from(g).ok()),
            argv,
        };
        self.launch(container, &spec)
            .map_err(|e| ("RunContainerError".into(), e.to_string()))
    }

    /// The container's volume mounts, from the volumes laid out for the pod.
    fn volume_mounts(&self, container: &Container) -> Vec<Mount> {
        let Some(volumes) = &self.volumes else {
            return Vec::new();
        };
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let Some(source) = volumes.paths.get(&mount.name) else {
                continue;
            };
            let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub) => source.join(sub),
                None => source.clone(),
            };
            let read_only =
                mount.read_only.unwrap_or(false) || volumes.read_only.contains(&mount.name);
            make_mount_point(&mounts, &source, &mount.mount_path);
            mounts.push(bind(source, &mount.mount_path, read_only));
        }
        mounts
    }

    fn launch(&self, container: &Container, spec: &ContainerSpec) -> Result<u32, Error> {
        std::fs::create_dir_all(&spec.scratch_dir)
            .map_err(|e| Error::io("creating", &spec.scratch_dir, e))?;
        let spec_path = self.dir.join(format!("{}.json", container.name));
        let json = serde_json::to_string(spec).map_err(|e| Error::Command {
            command: "writing a container spec".into(),
            reason: e.to_string(),
        })?;
        std::fs::write(&spec_path, json).map_err(|e| Error::io("writing", &spec_path, e))?;

        let log_path = self.log_path(&container.name);
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io("opening", &log_path, e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("opening", &log_path, e))?;

        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.network.netns])
            .arg(&self.agent.localcluster_bin)
            .arg("run-container")
            .arg(format!("--spec={}", spec_path.display()))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(|e| Error::Command {
            command: format!("starting container {}", container.name),
            reason: e.to_string(),
        })?;
        let pid = child.id().unwrap_or_default();
        let record = self.record_name(&container.name);
        crate::process::record(
            &self.agent.layout,
            &record,
            pid,
            &self.agent.localcluster_bin,
        )?;

        let index = self
            .runs
            .iter()
            .position(|r| r.container.name == container.name);
        let exits = self.exits.clone();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9)
                }),
                Err(_) => 255,
            };
            if let Some(index) = index {
                let _ = exits.send((index, code)).await;
            }
        });
        Ok(pid)
    }

    fn log_path(&self, container: &str) -> PathBuf {
        log_path(
            &self.agent.layout,
            &self.namespace(),
            &self.name(),
            container,
        )
    }

    fn record_name(&self, container: &str) -> String {
        format!(
            "{RECORD_PREFIX}{}_{}_{container}",
            self.namespace(),
            self.name()
        )
    }

    fn watch_probes(&mut self, index: usize, pid: u32) {
        let container = self.runs[index].container.clone();
        let target = probes::Target {
            ip: self.network.ip.to_string(),
            pid,
        };
        let (events, mut found) = mpsc::channel(8);
        let watch = probes::watch(self.shared.prober.clone(), container, target, events);
        let forward = self.probe_events.clone();
        self.runs[index].probes = Some(tokio::spawn(async move {
            tokio::pin!(watch);
            loop {
                tokio::select! {
                    () = &mut watch => {}
                    Some(event) = found.recv() => {
                        if forward.send((index, pid, event)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
                // The probes are done; pass on what is left.
                while let Some(event) = found.recv().await {
                    let _ = forward.send((index, pid, event)).await;
                }
                return;
            }
        }));
    }

    async fn probed(&mut self, index: usize, pid: u32, event: ProbeEvent) {
        let Some(run) = self.runs.get_mut(index) else {
            return;
        };
        if !matches!(run.state, State::Running { pid: p, .. } if p == pid) {
            return;
        }
        match event {
            ProbeEvent::Started => run.started = true,
            ProbeEvent::Ready(ready) => run.ready = ready,
            ProbeEvent::Restart(reason) => {
                eprintln!(
                    "node agent: {}: {reason}; restarting {}",
                    pod_label(&self.pod),
                    run.container.name
                );
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                return;
            }
        }
        self.report().await;
    }

    async fn exited(&mut self, index: usize, exit_code: i32) {
        let Some(name) = self.runs.get(index).map(|r| r.container.name.clone()) else {
            return;
        };
        crate::process::forget(&self.agent.layout, &self.record_name(&name));
        let Some(run) = self.runs.get_mut(index) else {
            return;
        };
        if let Some(task) = run.probes.take() {
            task.abort();
        }
        (run.ready, run.started) = (false, false);
        let started = match &run.state {
            State::Running { started, .. } => started.clone(),
            _ => now(),
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let terminated = State::Terminated {
            exit_code,
            reason: reason.into(),
            started,
            finished: now(),
        };

        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let restart = if run.init {
            exit_code != 0 && policy != "Never"
        } else {
            policy == "Always" || (policy == "OnFailure" && exit_code != 0)
        };
        if restart {
            let back_off = FIRST_BACK_OFF
                .saturating_mul(1 << run.restarts.clamp(0, 10))
                .min(MAX_BACK_OFF);
            run.restarts += 1;
            run.last = Some(terminated);
            run.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container",
                    back_off.as_secs()
                ),
            };
            run.restart_at = Some(Instant::now() + back_off);
        } else {
            run.state = terminated;
        }
        self.report().await;
    }

    /// Stops every running container: SIGTERM to its process group, the grace period, then
    /// SIGKILL; then whatever else is left in the pod's network namespace.
    async fn stop_all(&mut self) {
        let grace = self.grace_period();
        let running: Vec<u32> = self
            .runs
            .iter()
            .filter_map(|r| match r.state {
                State::Running { pid, .. } => Some(pid),
                _ => None,
            })
            .collect();
        for pid in &running {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && running.iter().any(|p| alive(*p)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in &running {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        // A process that left its container's group, or outlived a container that exited
        // (a shell's `sleep &`), is still in the pod's namespace.
        let netns = Path::new("/run/netns").join(&self.network.netns);
        let _ = tokio::task::spawn_blocking(move || {
            super::stop_everything_in(&[netns], Duration::from_secs(2));
        })
        .await;
        for run in &self.runs {
            crate::process::forget(&self.agent.layout, &self.record_name(&run.container.name));
        }
    }

    fn grace_period(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        Duration::from_secs(seconds.clamp(0, 300) as u64)
    }

    fn tear_down(&self) {
        if let Err(e) = network::delete(&self.agent.layout.netns(), &self.network) {
            eprintln!(
                "node agent: removing the network of {}: {e}",
                pod_label(&self.pod)
            );
        }
        self.agent.addresses.give_back(self.network.ip);
        for run in &self.runs {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("{}.root", run.container.name)));
        }
    }

    /// Removes the pod object, now that its processes have stopped: grace 0, and only the
    /// pod this worker ran (a StatefulSet's replacement has the same name).
    async fn remove_object(&self) {
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        let preconditions = Preconditions {
            uid: self.pod.metadata.uid.clone(),
            ..Default::default()
        };
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(preconditions),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&self.name(), &params).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
        {
            eprintln!("node agent: deleting pod {}: {e}", pod_label(&self.pod));
        }
    }

    /// Writes the pod's status: phase, addresses, conditions and container statuses.
    async fn report(&self) {
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        let status = self.status();
        let patch = Patch::Strategic(json!({"status": status}));
        let written = api
            .patch_status(&self.name(), &PatchParams::default(), &patch)
            .await;
        if let Err(e) = written
            && !matches!(&e, kube::Error::Api(s) if s.code == 404)
        {
            eprintln!(
                "node agent: writing the status of {}: {e}",
                pod_label(&self.pod)
            );
        }
    }

    fn status(&self) -> Value {
        let statuses = |init: bool| -> Vec<Value> {
            self.runs
                .iter()
                .filter(|r| r.init == init)
                .map(container_status)
                .collect()
        };
        let inits_done = self
            .runs
            .iter()
            .filter(|r| r.init)
            .all(|r| matches!(r.state, State::Terminated { exit_code: 0, .. }));
        let containers: Vec<&ContainerRun> = self.runs.iter().filter(|r| !r.init).collect();
        let all_running = containers
            .iter()
            .all(|r| matches!(r.state, State::Running { .. }) && r.ready);
        let all_done = containers
            .iter()
            .all(|r| matches!(r.state, State::Terminated { .. }));
        let phase = if !inits_done {
            if self
                .runs
                .iter()
                .any(|r| r.init && matches!(r.state, State::Terminated { .. }))
            {
                "Failed"
            } else {
                "Pending"
            }
        } else if all_done {
            let ok = containers
                .iter()
                .all(|r| matches!(r.state, State::Terminated { exit_code: 0, .. }));
            if ok { "Succeeded" } else { "Failed" }
        } else if containers
            .iter()
            .any(|r| matches!(r.state, State::Running { .. }) || r.restarts > 0)
        {
            "Running"
        } else {
            "Pending"
        };
        let ready = inits_done && all_running;
        let condition = |type_: &str, status: bool| {
            json!({"type": type_, "status": if status { "True" } else { "False" },
                   "lastProbeTime": null, "lastTransitionTime": now()})
        };
        json!({
            "phase": phase,
            "hostIP": GATEWAY,
            "hostIPs": [{"ip": GATEWAY}],
            "podIP": self.network.ip.to_string(),
            // Replaced, not merged: a pod that outlived an agent restart has a new address,
            // and two addresses of one family are refused.
            "podIPs": [{"ip": self.network.ip.to_string()}, {"$patch": "replace"}],
            "startTime": self.started,
            "conditions": [
                condition("PodReadyToStartContainers", true),
                condition("Initialized", inits_done),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "initContainerStatuses": statuses(true),
            "containerStatuses": statuses(false),
        })
    }
}

fn container_status(run: &ContainerRun) -> Value {
    let running = matches!(run.state, State::Running { .. });
    let mut status = json!({
        "name": run.container.name,
        "image": run.container.image.clone().unwrap_or_default(),
        "imageID": "",
        "ready": running && !run.init && run.ready,
        "started": running && run.started,
        "restartCount": run.restarts,
        "state": state_json(&run.state),
    });
    if let State::Running { pid, .. } = run.state {
        status["containerID"] = json!(format!("localcluster://{pid}"));
    }
    if let Some(last) = &run.last {
        status["lastState"] = state_json(last);
    }
    status
}

fn state_json(state: &State) -> Value {
    match state {
        State::Waiting { reason, message } => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        State::Running { started, .. } => json!({"running": {"startedAt": started}}),
        State::Terminated {
            exit_code,
            reason,
            started,
            finished,
        } => json!({"terminated": {
            "exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": finished,
        }}),
    }
}

/// OpenBao reads `BAO_*` where Vault reads `VAULT_*`: give a Vault image's settings to both.
fn mirror_vault_env(env: &mut Vec<(String, String)>) {
    let extra: Vec<(String, String)> = env
        .iter()
        .filter_map(|(name, value)| {
            let bao = format!("BAO_{}", name.strip_prefix("VAULT_")?);
            (!env.iter().any(|(n, _)| *n == bao)).then(|| (bao, value.clone()))
        })
        .collect();
    env.extend(extra);
}

/// A mount whose target lies inside an earlier volume's needs its mount point made in that
/// volume's host folder, as the kubelet does: the container's shim may not write there.
fn make_mount_point(earlier: &[Mount], source: &std::path::Path, target: &str) {
    let outer = earlier.iter().rev().find_map(|m| match &m.kind {
        MountKind::Bind(folder) if folder.is_dir() => {
            let inside = std::path::Path::new(target).strip_prefix(&m.target).ok()?;
            (!inside.as_os_str().is_empty()).then(|| folder.join(inside))
        }
        _ => None,
    });
    let Some(point) = outer else { return };
    if point.exists() {
        return;
    }
    if let Some(parent) = point.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if source.is_dir() {
        let _ = std::fs::create_dir_all(&point);
    } else {
        let _ = std::fs::File::create(&point);
    }
}

fn bind(source: PathBuf, target: &str, read_only: bool) -> Mount {
    Mount {
        kind: MountKind::Bind(source),
        target: target.to_string(),
        read_only,
    }
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

fn now() -> String {
    // Kubernetes times have whole seconds.
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// The log file of a container.
pub fn log_path(layout: &crate::Layout, namespace: &str, pod: &str, container: &str) -> PathBuf {
    layout
        .logs_dir()
        .join("pods")
        .join(format!("{namespace}_{pod}_{container}.log"))
}

/// Pods of `nodes` grouped by worker.
pub type Workers = BTreeMap<String, (mpsc::Sender<PodEvent>, tokio::task::JoinHandle<()>)>;
