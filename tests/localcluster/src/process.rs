//! Starting and stopping the cluster's processes. Each one has a pid file naming its pid,
//! its start time and its program, so that `down`, or an `up` after a crash, finds and stops
//! exactly what the cluster started, and never a process that merely reused a pid. (The
//! start time, unlike the command line, stays the same across `exec`.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
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

/// Stops a process: SIGTERM, then SIGKILL after `grace`. Removes its pid file. Returns
/// whether a running process was stopped.
pub fn stop(layout: &Layout, name: &str, grace: Duration) -> bool {
    let path = pid_file(layout, name);
    let stopped = match read_pid_file(&path) {
        Some((pid, started)) if is_ours(pid, started) => {
            terminate(pid, started, grace);
            true
        }
        _ => false,
    };
    let _ = fs::remove_file(&path);
    stopped
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

fn terminate(pid: u32, started: u64, grace: Duration) {
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap(pid);
        if !is_ours(pid, started) {
            reap(pid);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(target, Signal::SIGKILL);
    for _ in 0..100 {
        reap(pid);
        if !is_ours(pid, started) {
            reap(pid);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The process's state letter and start time (in clock ticks since boot), from
/// `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after its last ')'.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, started)| started)
}

/// True when `pid` is alive (not a zombie) and is the process started at `started`.
fn is_ours(pid: u32, started: u64) -> bool {
    matches!(stat(pid), Some((state, time)) if time == started && !matches!(state, 'Z' | 'X'))
}
