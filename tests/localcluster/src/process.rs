//! Starting and stopping the cluster's processes. Each one has a pid file naming its pid,
//! its start time and its program, so that `down`, or an `up` after a crash, finds and stops
//! exactly what the cluster started, and never a process that merely reused a pid. (The
//! start time, unlike the command line, stays the same across `exec`.) Each one also leads
//! a process group of its own, and is stopped with its group, so that what it started
//! (a shell's children) goes with it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::{Error, Layout};

/// A process to start.
#[derive(Debug)]
pub struct Spec {
    /// Short name, used for its log and pid files.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The network namespace to run it in, or the host's.
    pub netns: Option<String>,
}

/// Starts a process in the background, its output going to its log file.
pub fn start(layout: &Layout, spec: &Spec) -> Result<u32, Error> {
    for dir in [layout.logs_dir(), layout.pids_dir()] {
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    }
    let log_path = layout.log(&spec.name);
    let log = fs::File::create(&log_path).map_err(|e| Error::io("creating", &log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("opening", &log_path, e))?;

    let mut command = match &spec.netns {
        Some(netns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns]).arg(&spec.program);
            c
        }
        None => Command::new(&spec.program),
    };
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group: a Ctrl-C meant for `localcluster up` must not stop the cluster.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);

    let child = command.spawn().map_err(|e| Error::Command {
        command: spec.program.display().to_string(),
        reason: e.to_string(),
    })?;
    let pid = child.id();
    let started = start_time(pid).unwrap_or_default();
    let pid_file = pid_file(layout, &spec.name);
    let record = format!("{pid}\n{started}\n{}\n", spec.program.display());
    fs::write(&pid_file, record).map_err(|e| Error::io("writing", &pid_file, e))?;
    // The child is reaped by whoever outlives it; dropping the handle does not kill it.
    drop(child);
    Ok(pid)
}

/// Records a process started elsewhere (a container), so that `down` finds it.
pub fn record(layout: &Layout, name: &str, pid: u32, program: &Path) -> Result<(), Error> {
    let dir = layout.pids_dir();
    fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let started = start_time(pid).unwrap_or_default();
    let path = pid_file(layout, name);
    let record = format!("{pid}\n{started}\n{}\n", program.display());
    fs::write(&path, record).map_err(|e| Error::io("writing", &path, e))
}

/// Forgets a recorded process that has ended.
pub fn forget(layout: &Layout, name: &str) {
    let _ = fs::remove_file(pid_file(layout, name));
}

/// The pid of a process the cluster started, if it still runs.
pub fn running(layout: &Layout, name: &str) -> Option<u32> {
    let (pid, started) = read_pid_file(&pid_file(layout, name))?;
    is_ours(pid, started).then_some(pid)
}

/// The names of every process with a pid file.
pub fn recorded(layout: &Layout) -> Vec<String> {
    let Ok(entries) = fs::read_dir(layout.pids_dir()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".pid").map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Stops a process and its process group: SIGTERM, then SIGKILL after `grace`. Removes its
/// pid file. Returns whether a running process was stopped.
pub fn stop(layout: &Layout, name: &str, grace: Duration) -> bool {
    !stop_all(layout, &[name.to_string()], grace).is_empty()
}

/// Stops the named processes at once, each with its process group (every process the
/// cluster records leads a group of its own, so a shell's children go with the shell):
/// SIGTERM to all, then SIGKILL to what is left after `grace`. Removes their pid files.
/// Returns the names of those that were running.
pub fn stop_all(layout: &Layout, names: &[String], grace: Duration) -> Vec<String> {
    let running: Vec<(String, u32)> = names
        .iter()
        .filter_map(|name| {
            let (pid, started) = read_pid_file(&pid_file(layout, name))?;
            is_ours(pid, started).then(|| (name.clone(), pid))
        })
        .collect();
    let groups: Vec<u32> = running.iter().map(|(_, pid)| *pid).collect();

    signal_groups(&groups, Signal::SIGTERM);
    wait_for_groups(&groups, grace);
    signal_groups(&groups, Signal::SIGKILL);
    wait_for_groups(&groups, Duration::from_secs(2));

    for name in names {
        let _ = fs::remove_file(pid_file(layout, name));
    }
    running.into_iter().map(|(name, _)| name).collect()
}

/// The live processes (zombies aside) whose network namespace is the one bound at one of
/// `netns_paths` (`/run/netns/<name>`): a namespace is the same when its device and inode
/// are, as `ip netns identify` compares them.
pub fn in_network_namespaces(netns_paths: &[PathBuf]) -> Vec<u32> {
    let wanted: Vec<(u64, u64)> = netns_paths
        .iter()
        .filter_map(|path| fs::metadata(path).ok())
        .map(|meta| (meta.dev(), meta.ino()))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) else {
                return false;
            };
            wanted.contains(&(meta.dev(), meta.ino()))
                && matches!(stat(*pid), Some((state, _)) if !matches!(state, 'Z' | 'X'))
        })
        .collect()
}

/// Resident memory of a process, in KiB.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits for a process that the calling process started to exit, reaping it, so that a
/// stopped child does not stay a zombie that still looks alive.
fn reap(pid: u32) {
    let _ = nix::sys::wait::waitpid(
        Pid::from_raw(pid as i32),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

/// Sends `signal` to each process group that still has a live member. A group outlives its
/// leader while any member does, and its id is not reused until then, so a group with
/// members is still the one the cluster started.
fn signal_groups(groups: &[u32], signal: Signal) {
    let live = live_groups(groups);
    for pgid in groups.iter().filter(|g| live.contains(g)) {
        let _ = killpg(Pid::from_raw(*pgid as i32), signal);
    }
}

/// Waits until no process of `groups` is alive, or `limit` has passed.
fn wait_for_groups(groups: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        for leader in groups {
            reap(*leader);
        }
        if live_groups(groups).is_empty() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Those of `groups` that have a member that is alive (not a zombie).
fn live_groups(groups: &[u32]) -> Vec<u32> {
    if groups.is_empty() {
        return Vec::new();
    }
    let mut live: Vec<u32> = all_pids()
        .into_iter()
        .filter_map(|pid| {
            let (state, pgid) = state_and_group(pid)?;
            (!matches!(state, 'Z' | 'X') && groups.contains(&pgid)).then_some(pgid)
        })
        .collect();
    live.sort_unstable();
    live.dedup();
    live
}

/// Every process id in `/proc`.
fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn pid_file(layout: &Layout, name: &str) -> PathBuf {
    layout.pids_dir().join(format!("{name}.pid"))
}

fn read_pid_file(path: &Path) -> Option<(u32, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    Some((pid, lines.next()?.trim().parse().ok()?))
}

/// The fields of `/proc/<pid>/stat` after the command name, which is in parentheses and may
/// hold spaces: the state letter first.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process's state letter and start time (in clock ticks since boot).
fn stat(pid: u32) -> Option<(char, u64)> {
    let fields = stat_fields(pid)?;
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

/// The process's state letter and process group.
fn state_and_group(pid: u32) -> Option<(char, u32)> {
    let fields = stat_fields(pid)?;
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(2)?.parse().ok()?))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, started)| started)
}

/// True when `pid` is alive (not a zombie) and is the process started at `started`.
fn is_ours(pid: u32, started: u64) -> bool {
    matches!(stat(pid), Some((state, time)) if time == started && !matches!(state, 'Z' | 'X'))
}
