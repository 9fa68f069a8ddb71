//! The cluster's network namespace and its bridge, made with iproute2's `ip`.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use crate::{Error, GATEWAY};

/// Name of the bridge that carries the pod network inside the cluster's namespace.
pub const BRIDGE: &str = "lc0";

/// Makes the namespace `netns` with loopback up and a bridge holding the gateway address.
pub fn create(netns: &str) -> Result<(), Error> {
    ip(&["netns", "add", netns])?;
    let steps: [&[&str]; 4] = [
        &["link", "set", "lo", "up"],
        &["link", "add", BRIDGE, "type", "bridge"],
        &["addr", "add", &format!("{GATEWAY}/16"), "dev", BRIDGE],
        &["link", "set", BRIDGE, "up"],
    ];
    for step in steps {
        let mut args = vec!["-n", netns];
        args.extend_from_slice(step);
        ip(&args)?;
    }
    Ok(())
}

/// True when the namespace exists.
pub fn exists(netns: &str) -> bool {
    Path::new("/run/netns").join(netns).exists()
}

/// Removes the namespace (and so its bridge and every veth in it), if it exists.
pub fn delete(netns: &str) -> Result<(), Error> {
    if exists(netns) {
        ip(&["netns", "delete", netns])
    } else {
        Ok(())
    }
}

/// Runs `f` on a thread that has entered the namespace: sockets it opens live there.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    let path = Path::new("/run/netns").join(netns);
    let file = std::fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(&file)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Command {
                    command: "in_netns".into(),
                    reason: "panicked".into(),
                })
            })
    })
}

/// Moves the calling thread into the namespace held open by `file`.
pub fn enter(file: &std::fs::File) -> Result<(), Error> {
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::Command {
            command: "setns".into(),
            reason: e.to_string(),
        }
    })
}

/// Runs iproute2's `ip` with `args`, failing with what it printed.
pub(crate) fn ip(args: &[&str]) -> Result<(), Error> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            reason: format!("{e} (is iproute2 installed?)"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        let reason = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(Error::Command { command, reason })
    }
}
