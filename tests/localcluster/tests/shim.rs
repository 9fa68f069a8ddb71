//! The container shim gives a process the hostname, environment, root, mounts, working
//! folder and user of its spec, keeps the pid and exit status the agent sees, and leaves
//! the host unchanged.
//!
//! Run as root: `cargo test -p localcluster --test shim`.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use localcluster::agent::container::{ContainerSpec, Mount, MountKind};

/// A folder of its own for one test: the spec, the scratch folder and the host files the
/// container binds. Removed, with anything the test made, when dropped.
struct Sandbox {
    dir: PathBuf,
    netns: Option<String>,
}

impl Sandbox {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "localcluster-shim-{}-{n}-{test}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("scratch"))
            .unwrap_or_else(|e| panic!("making {}: {e}", dir.display()));
        Sandbox { dir, netns: None }
    }

    /// A spec running `script` with `sh -c`, with a plain PATH and this sandbox's scratch.
    fn spec(&self, script: &str) -> ContainerSpec {
        ContainerSpec {
            hostname: "vault-0".into(),
            scratch_dir: self.dir.join("scratch"),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..ContainerSpec::default()
        }
    }

    /// Writes a host file in the sandbox and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("making {}: {e}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// The shim command for `spec`, run as the agent runs it (`ip netns exec` when the
    /// sandbox has a network namespace).
    fn command(&self, spec: &ContainerSpec) -> Command {
        let path = self.dir.join("spec.json");
        let json = serde_json::to_vec(spec).unwrap_or_else(|e| panic!("writing a spec: {e}"));
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));

        let shim = env!("CARGO_BIN_EXE_localcluster");
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, shim]);
                command
            }
            None => Command::new(shim),
        };
        command.arg("run-container").arg("--spec").arg(&path);
        command
    }

    /// Runs the shim to the end.
    fn run(&self, spec: &ContainerSpec) -> Output {
        let output = self
            .command(spec)
            .output()
            .unwrap_or_else(|e| panic!("running the shim: {e}"));
        self.assert_no_mounts_left();
        output
    }

    /// Runs the shim and returns what the program printed, failing on a non-zero exit.
    fn stdout(&self, spec: &ContainerSpec) -> String {
        let output = self.run(spec);
        assert!(
            output.status.success(),
            "the container failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Makes a network namespace for the shim to run in, as the agent does for a pod.
    fn with_netns(mut self) -> Self {
        let name = format!("shim-test-{}-{}", std::process::id(), self.dir_suffix());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap_or_else(|e| panic!("running ip netns add: {e}"));
        assert!(status.success(), "ip netns add {name}: {status}");
        self.netns = Some(name);
        self
    }

    fn dir_suffix(&self) -> String {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        name.unwrap_or_default()
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .into()
    }

    /// The host sees none of the container's mounts, not even over the scratch folder.
    fn assert_no_mounts_left(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_else(|e| panic!("reading mountinfo: {e}"));
        let dir = self.dir.to_string_lossy();
        assert!(
            !mounts.contains(dir.as_ref()),
            "mounts left on the host:\n{mounts}"
        );
        let scratch = std::fs::read_dir(self.dir.join("scratch"))
            .unwrap_or_else(|e| panic!("listing the scratch folder: {e}"))
            .count();
        assert_eq!(
            scratch, 0,
            "the container wrote in the host's scratch folder"
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(netns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", netns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        kind: MountKind::Bind(source.to_path_buf()),
        target: target.into(),
        read_only,
    }
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_else(|e| panic!("reading the host's hostname: {e}"))
}

#[test]
fn the_container_has_its_own_hostname() {
    let sandbox = Sandbox::new("hostname");
    let before = host_hostname();

    let out = sandbox.stdout(&sandbox.spec("cat /proc/sys/kernel/hostname; hostname"));

    assert_eq!(out, "vault-0\nvault-0\n");
    assert_eq!(host_hostname(), before);
}

#[test]
fn the_environment_is_exactly_the_specs() {
    let sandbox = Sandbox::new("env");
    let mut spec = sandbox.spec("");
    spec.argv = vec!["/usr/bin/env".into()];
    spec.env
        .push(("VAULT_ADDR".into(), "https://vault-0:8200".into()));

    let output = sandbox
        .command(&spec)
        .env("LEAKED_FROM_THE_AGENT", "1")
        .output()
        .unwrap_or_else(|e| panic!("running the shim: {e}"));

    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "PATH=/usr/bin:/bin\nVAULT_ADDR=https://vault-0:8200\n"
    );
}

#[test]
fn binds_show_host_files_at_new_paths_and_leave_the_host_unchanged() {
    let sandbox = Sandbox::new("binds");
    let hosts = sandbox.file("hosts", "10.244.0.5 vault-0.vault-internal\n");
    let resolv = sandbox.file("resolv.conf", "nameserver 127.0.0.1\n");
    let ca = sandbox.file("tls/ca.crt", "-----BEGIN CERTIFICATE-----\n");
    let config = sandbox.file("config/vault.hcl", "ui = true\n");
    let extra = sandbox.file("extra/extra.hcl", "disable_mlock = true\n");
    sandbox.file("token/token", "a-token\n");
    let read = |path: &str| std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (host_hosts, host_resolv) = (read("/etc/hosts"), read("/etc/resolv.conf"));
    assert!(
        !Path::new("/vault").exists(),
        "the host must not have /vault"
    );

    let mut spec = sandbox.spec(
        "cat /etc/hosts /etc/resolv.conf /vault/tls/ca.crt /vault/config/vault.hcl \
         /var/run/secrets/kubernetes.io/serviceaccount/token",
    );
    spec.mounts = vec![
        bind(&hosts, "/etc/hosts", false),
        bind(&resolv, "/etc/resolv.conf", true),
        bind(&ca, "/vault/tls/ca.crt", true),
        bind(&sandbox.dir.join("config"), "/vault/config", true),
        // A subPath file over one that exists in the folder mounted just before.
        bind(&extra, "/vault/config/vault.hcl", true),
        bind(
            &sandbox.dir.join("token"),
            "/var/run/secrets/kubernetes.io/serviceaccount",
            true,
        ),
    ];
    let out = sandbox.stdout(&spec);

    assert_eq!(
        out,
        "10.244.0.5 vault-0.vault-internal\nnameserver 127.0.0.1\n-----BEGIN CERTIFICATE-----\n\
         disable_mlock = true\na-token\n"
    );
    assert!(!Path::new("/vault").exists(), "/vault appeared on the host");
    assert!(!Path::new("/var/run/secrets/kubernetes.io").exists());
    assert_eq!(read("/etc/hosts"), host_hosts);
    assert_eq!(read("/etc/resolv.conf"), host_resolv);
    assert_eq!(
        std::fs::read_to_string(&config).ok().as_deref(),
        Some("ui = true\n")
    );
}

#[test]
fn a_missing_mount_point_inside_a_host_bind_is_refused() {
    let sandbox = Sandbox::new("subpath");
    let _config = sandbox.file("config/vault.hcl", "ui = true\n");
    let extra = sandbox.file("extra.hcl", "disable_mlock = true\n");
    let volume = sandbox.dir.join("config");

    let mut spec = sandbox.spec("cat /vault/config/extra.hcl");
    spec.mounts = vec![
        bind(&volume, "/vault/config", false),
        bind(&extra, "/vault/config/extra.hcl", false),
    ];
    let output = sandbox.run(&spec);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr.contains("/vault/config/extra.hcl") && stderr.contains("host folder"),
        "{stderr}"
    );
    assert!(
        !volume.join("extra.hcl").exists(),
        "the shim wrote in the host's volume"
    );
}

#[test]
fn writes_stay_in_the_container() {
    let sandbox = Sandbox::new("writes");
    let name = format!("localcluster-shim-test-{}", std::process::id());
    let file = Path::new("/usr/local").join(&name);
    let folder = Path::new("/").join(&name);

    let out = sandbox.stdout(&sandbox.spec(&format!(
        "echo written > {file} && cat {file} && mkdir {folder} && rm /etc/hostname && \
         echo tmp > /tmp/x && ls /tmp",
        file = file.display(),
        folder = folder.display(),
    )));

    assert_eq!(out, "written\nx\n");
    assert!(!file.exists(), "{} appeared on the host", file.display());
    assert!(
        !folder.exists(),
        "{} appeared on the host",
        folder.display()
    );
    assert!(
        Path::new("/etc/hostname").exists(),
        "the container removed a host file"
    );
}

#[test]
fn read_only_mounts_refuse_writes_and_writable_binds_write_through() {
    let sandbox = Sandbox::new("readonly");
    let config = sandbox.file("config/vault.hcl", "ui = true\n");
    let data = sandbox.dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("making {}: {e}", data.display()));

    let mut spec = sandbox.spec(
        "for f in /vault/config/new /vault/empty/new; do \
           if echo x > $f; then echo wrote $f; else echo refused $f; fi; \
         done 2>/dev/null; echo raft > /vault/data/raft.db; echo scratch > /vault/scratch/x; \
         cat /vault/scratch/x",
    );
    spec.mounts = vec![
        bind(&sandbox.dir.join("config"), "/vault/config", true),
        Mount {
            kind: MountKind::Tmpfs,
            target: "/vault/empty".into(),
            read_only: true,
        },
        bind(&data, "/vault/data", false),
        Mount {
            kind: MountKind::Tmpfs,
            target: "/vault/scratch".into(),
            read_only: false,
        },
    ];
    let out = sandbox.stdout(&spec);

    assert_eq!(
        out,
        "refused /vault/config/new\nrefused /vault/empty/new\nscratch\n"
    );
    assert!(!config.with_file_name("new").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("raft.db"))
            .ok()
            .as_deref(),
        Some("raft\n"),
        "a volume's writes must reach the host"
    );
}

#[test]
fn the_working_folder_and_user_are_the_specs() {
    let sandbox = Sandbox::new("user");
    let mut spec =
        sandbox.spec("pwd; id -u; id -g; id -G; touch /tmp/mine && stat -c %u /tmp/mine");
    spec.working_dir = Some("/vault/data".into());
    spec.mounts = vec![Mount {
        kind: MountKind::Tmpfs,
        target: "/vault/data".into(),
        read_only: false,
    }];
    spec.user = Some(65534);
    spec.group = Some(1000);

    assert_eq!(
        sandbox.stdout(&spec),
        "/vault/data\n65534\n1000\n1000\n65534\n"
    );

    // Without a group, the user's own from /etc/passwd; a missing folder is made.
    spec.group = None;
    spec.working_dir = Some("/home/nobody".into());
    assert!(!Path::new("/home/nobody").exists());
    spec.argv[2] = "pwd; id -u; id -g".into();
    assert_eq!(sandbox.stdout(&spec), "/home/nobody\n65534\n65534\n");
    assert!(!Path::new("/home/nobody").exists());
}

#[test]
fn the_exit_status_is_the_programs() {
    let sandbox = Sandbox::new("exit");

    let output = sandbox.run(&sandbox.spec("exit 42"));
    assert_eq!(output.status.code(), Some(42));

    let output = sandbox.run(&sandbox.spec("kill -TERM $$"));
    assert_eq!(output.status.signal(), Some(15));

    // SIGPIPE kills a writer to a closed pipe, as in any shell, instead of an EPIPE error.
    let output = sandbox.run(&sandbox.spec("yes | head -n 1"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "y\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

#[test]
fn the_program_keeps_the_pid_the_agent_started_in_the_pods_network_namespace() {
    let sandbox = Sandbox::new("pid").with_netns();
    // The pod's namespace has only `lo`, so `ip` shows the shim ran inside it.
    let spec = sandbox.spec("echo $$; ip -o link show | cut -d' ' -f2");

    let child = sandbox
        .command(&spec)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the shim: {e}"));
    let pid = child.id();
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for the shim: {e}"));
    sandbox.assert_no_mounts_left();

    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{pid}\nlo:\n")
    );
}

#[test]
fn the_container_gets_fresh_system_folders() {
    let sandbox = Sandbox::new("system");
    let host_tmp = sandbox.file("marker", "");
    let spec = sandbox.spec(&format!(
        "test ! -e {marker} && test -z \"$(ls -A /tmp)$(ls -A /run)\" && echo ok > /dev/null && \
         head -c 4 /dev/zero | wc -c && test -d /sys/class/net && test -d /proc/self && \
         test -w /dev/shm && test ! -e /.localcluster-old-root && echo system ok",
        marker = host_tmp.display()
    ));

    assert_eq!(sandbox.stdout(&spec), "4\nsystem ok\n");
}

#[test]
fn a_failed_step_names_itself_and_the_path() {
    let sandbox = Sandbox::new("fails");
    let mut spec = sandbox.spec("true");
    let missing = sandbox.dir.join("no-such-volume");
    spec.mounts = vec![bind(&missing, "/vault/data", false)];

    let output = sandbox.run(&spec);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("opening the mount source") && stderr.contains("no-such-volume"),
        "{stderr}"
    );

    spec.mounts = vec![];
    spec.argv = vec!["/no/such/program".into()];
    let output = sandbox.run(&spec);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("executing /no/such/program"), "{stderr}");
}
