//! The container shim: see [`super::container`] for the contract.
//!
//! [`exec`] turns the calling process into the container, in this order:
//! 1. new mount and UTS namespaces, every mount made private, the pod's hostname;
//! 2. a private root: an overlay whose lower layer is the host's `/` and whose upper layer
//!    lives on a tmpfs the shim mounts over `scratch_dir` inside its own namespace, so every
//!    write the container makes lands in memory and vanishes with it. Overlayfs shows one
//!    filesystem per layer, so each further host mount gets an overlay of its own at the
//!    same path (a read-only bind when overlayfs refuses it, as it does for a file);
//! 3. `pivot_root` into it, then a fresh `/proc`, `/dev`, `/tmp` and `/run`, the host's
//!    `/sys`, and the spec's mounts, whose sources were opened before the host's root went
//!    out of reach;
//! 4. the working folder, the user and group, and `execve` of the program with exactly the
//!    spec's environment, so the process the agent started becomes the container's program.
//!
//! The shim creates mount points only in filesystems that are the container's own (its
//! overlays and tmpfs), checked by device number: a missing mount point under a host bind
//! is refused rather than made on the host.
//!
//! What the container does not get: the host's `/tmp` and `/run` (so a program must not
//! live there), a writable view of host mounts overlayfs cannot stack on (they are shown
//! read-only), and a private `/sys` (the host's is bound, writable by root as in a
//! privileged container). A read-only bind is read-only at its top only: mounts under its
//! source stay as they are.

use std::collections::HashSet;
use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Display;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{
    DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt, chown, symlink,
};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{Gid, Uid, User, chdir, execve, getgrouplist, pivot_root};
use nix::unistd::{setgid, setgroups, sethostname, setuid};

use super::container::{ContainerSpec, MountKind};
use crate::Error;

/// Host folders the container gets fresh rather than overlaid: kernel views that must
/// describe the container's namespaces (`/proc`), device nodes a tmpfs cannot copy
/// (`/dev`), and folders whose host contents (sockets, pid files, netns mounts) a
/// container must not see or share (`/run`, `/tmp`). `/sys` is the host's, bound.
const FRESH: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];

/// Device nodes bound from the host into the container's `/dev`: the set container
/// runtimes provide.
const DEVICES: [&str; 7] = ["null", "zero", "full", "random", "urandom", "tty", "ptmx"];

/// Where the host's root sits, inside the private root, between `pivot_root` and the end
/// of the spec's mounts.
const OLD_ROOT: &str = "/.localcluster-old-root";

/// Sets up the calling process as the container described by `spec` and `exec`s its
/// program. Returns only on failure.
///
/// Must be called as root from a single-threaded process: `unshare(CLONE_NEWNS)` and the
/// credential changes apply to the calling thread, and `execve` keeps only that one.
pub fn exec(spec: &ContainerSpec) -> Result<Infallible, Error> {
    let program = exec_args(spec)?;
    let scratch = fs::canonicalize(&spec.scratch_dir)
        .map_err(|e| Error::io("finding the scratch folder", &spec.scratch_dir, e))?;

    enter_namespaces(&spec.hostname)?;

    let host_mounts = host_mounts(&scratch)?;
    let mut root = Root::build(&scratch, &host_mounts)?;

    // Host paths are opened now: after `pivot_root` they resolve inside the container,
    // where an absolute symlink would point somewhere else.
    let system = SystemSources::open()?;
    let sources = open_mount_sources(spec)?;
    root.pivot()?;

    root.mount_system(&system)?;
    root.mount_spec(spec, &sources)?;
    drop(sources);
    drop(system);
    root.drop_old_root()?;

    let working_dir = spec.working_dir.as_deref().unwrap_or("/");
    root.make_target(Path::new(working_dir), Kind::Dir)?;
    chdir(working_dir)
        .map_err(|e| step(format!("entering the working folder {working_dir}"), e))?;
    set_credentials(spec.user, spec.group)?;
    program.exec()
}

/// Fails with what went wrong in which step of the shim.
fn step(what: impl Display, err: impl Display) -> Error {
    Error::Command {
        command: "run-container".into(),
        reason: format!("{what}: {err}"),
    }
}

/// Gives the process mount and UTS namespaces of its own and the pod's hostname.
fn enter_namespaces(hostname: &str) -> Result<(), Error> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| step("unsharing the mount and UTS namespaces", e))?;

    // Mounts start as copies of the host's, some shared with it (`/run/netns` is): making
    // them private keeps every mount below from propagating back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| step("making the mounts of / private", e))?;

    sethostname(hostname).map_err(|e| step(format!("setting the hostname {hostname:?}"), e))
}

/// The host's mount points to show in the private root, parents before children: every
/// mount but `/` itself, the [`FRESH`] folders and the scratch folder, with what is under
/// them.
fn host_mounts(scratch: &Path) -> Result<Vec<PathBuf>, Error> {
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = fs::read(mountinfo).map_err(|e| Error::io("reading", mountinfo, e))?;
    let skipped: Vec<&Path> = FRESH.iter().map(Path::new).chain([scratch]).collect();
    Ok(mount_points(&text)
        .into_iter()
        .filter(|point| point != Path::new("/"))
        .filter(|point| !skipped.iter().any(|skip| point.starts_with(skip)))
        .collect())
}

/// The mount points listed in a `/proc/<pid>/mountinfo`, each once, parents first.
fn mount_points(mountinfo: &[u8]) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = Vec::new();
    for line in mountinfo.split(|b| *b == b'\n') {
        // Fields: id, parent id, major:minor, root, mount point, ...
        let Some(field) = line.split(|b| *b == b' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(OsString::from_vec(unescape_mountinfo(field)));
        // A later mount on the same path hides the earlier; one overlay shows it.
        if !points.contains(&point) {
            points.push(point);
        }
    }
    // The kernel lists a mount after its parent; sorting by depth keeps that order even
    // when a mount was moved, and the sort is stable for siblings.
    points.sort_by_key(|point| point.components().count());
    points
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mountinfo paths.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let is_octal = |digits: &&[u8]| digits.iter().all(|d| (b'0'..=b'7').contains(d));
        let octal = field
            .get(i + 1..i + 4)
            .filter(|digits| field[i] == b'\\' && is_octal(digits));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Overlayfs options for one layer; `\`, `,` and `:` in paths are escaped, since
/// overlayfs splits options at commas and lower layers at colons.
fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> OsString {
    let escape = |path: &Path| {
        let mut out = Vec::new();
        for b in path.as_os_str().as_bytes() {
            if matches!(b, b'\\' | b',' | b':') {
                out.push(b'\\');
            }
            out.push(*b);
        }
        out
    };
    let mut options = b"lowerdir=".to_vec();
    options.extend(escape(lower));
    options.extend(b",upperdir=");
    options.extend(escape(upper));
    options.extend(b",workdir=");
    options.extend(escape(work));
    OsString::from_vec(options)
}

/// What a missing mount point is made as.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Dir,
    File,
}

/// The container's root while the shim builds it.
struct Root {
    /// Where the root is: inside the scratch folder until [`Root::pivot`], then `/`.
    path: PathBuf,
    /// Device numbers of the filesystems only this container sees (its overlays and
    /// tmpfs). Mount points are made only in these, so nothing is ever made on the host.
    private: HashSet<u64>,
    /// Layers made so far, to name the next one's folders.
    layers: usize,
    /// The scratch tmpfs, which holds the root's mount point and the overlay layers.
    scratch: PathBuf,
}

impl Root {
    /// Mounts the scratch tmpfs, the overlay of the host's root and one overlay per host
    /// mount.
    fn build(scratch: &Path, host_mounts: &[PathBuf]) -> Result<Self, Error> {
        // The upper layers live on a tmpfs of our own: overlayfs refuses an upper folder
        // inside its lower layer, and the host's scratch folder is inside `/`.
        mount(
            Some("scratch"),
            scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0700"),
        )
        .map_err(|e| step(format!("mounting a tmpfs at {}", scratch.display()), e))?;

        let mut root = Root {
            path: scratch.join("root"),
            private: HashSet::new(),
            layers: 0,
            scratch: scratch.to_path_buf(),
        };
        make_dir(&root.path)?;
        root.overlay(Path::new("/"), &root.path.clone())?;

        for point in host_mounts {
            root.show_host_mount(point)?;
        }
        Ok(root)
    }

    /// The path, seen from the shim now, of `target` in the container.
    fn resolve(&self, target: &Path) -> PathBuf {
        self.path.join(target.strip_prefix("/").unwrap_or(target))
    }

    /// Mounts an overlay of the host folder `lower` at `target` with a fresh upper layer
    /// on the scratch tmpfs, and records it as the container's own.
    fn overlay(&mut self, lower: &Path, target: &Path) -> Result<(), Error> {
        self.layers += 1;
        let layer = self.scratch.join("layers").join(self.layers.to_string());
        let (upper, work) = (layer.join("upper"), layer.join("work"));
        make_dir(&upper)?;
        make_dir(&work)?;
        // The merged folder takes the upper folder's owner and mode: give it the host
        // folder's, or the container's `/` would be root's alone, as the scratch is.
        let host = fs::metadata(lower).map_err(|e| Error::io("reading", lower, e))?;
        chown(&upper, Some(host.uid()), Some(host.gid()))
            .map_err(|e| Error::io("setting the owner of", &upper, e))?;
        fs::set_permissions(&upper, fs::Permissions::from_mode(host.mode() & 0o7777))
            .map_err(|e| Error::io("setting the mode of", &upper, e))?;

        let options = overlay_options(lower, &upper, &work);
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_os_str()),
        )
        .map_err(|e| {
            step(
                format!(
                    "mounting an overlay of {} at {}",
                    lower.display(),
                    target.display()
                ),
                e,
            )
        })?;
        self.record_private(target)
    }

    /// Shows the host mount at `point` at the same path in the root: as an overlay, or
    /// read-only when overlayfs refuses it (a file, or a filesystem it cannot stack on),
    /// so that either way the container cannot change it.
    fn show_host_mount(&mut self, point: &Path) -> Result<(), Error> {
        let target = self.resolve(point);
        // A mount point gone from the host (`(deleted)`) or hidden under a later mount
        // has nothing to show.
        let (Ok(host), Ok(_)) = (fs::metadata(point), fs::symlink_metadata(&target)) else {
            return Ok(());
        };
        if host.is_dir() && self.overlay(point, &target).is_ok() {
            return Ok(());
        }
        bind(point, &target, MsFlags::empty())?;
        remount_read_only(&target)
    }

    /// Records the filesystem mounted at `path` as one only the container sees.
    fn record_private(&mut self, path: &Path) -> Result<(), Error> {
        let meta =
            fs::metadata(path).map_err(|e| Error::io("reading what is mounted at", path, e))?;
        self.private.insert(meta.dev());
        Ok(())
    }

    /// Makes the private root the process's root, with the host's root at [`OLD_ROOT`]
    /// until [`Root::drop_old_root`], since the spec's sources are host mounts that can
    /// only be bound while they belong to this namespace.
    fn pivot(&mut self) -> Result<(), Error> {
        let old_root = self.resolve(Path::new(OLD_ROOT));
        match fs::symlink_metadata(&old_root) {
            Ok(meta) if meta.is_dir() => {}
            _ => self.make_target(Path::new(OLD_ROOT), Kind::Dir)?,
        }
        pivot_root(&self.path, &old_root)
            .map_err(|e| step(format!("pivoting the root to {}", self.path.display()), e))?;
        self.path = PathBuf::from("/");
        chdir("/").map_err(|e| step("entering the new root", e))
    }

    /// Mounts `/proc`, `/dev`, `/sys`, `/tmp` and `/run`.
    fn mount_system(&mut self, sources: &SystemSources) -> Result<(), Error> {
        // A fresh proc, mounted first since the binds below name their sources through it.
        let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.make_target(Path::new("/proc"), Kind::Dir)?;
        mount_fs("proc", Path::new("/proc"), hidden, None)?;

        self.tmpfs(Path::new("/dev"), MsFlags::MS_NOSUID, "mode=0755")?;
        for (name, fd) in &sources.devices {
            let target = Path::new("/dev").join(name);
            self.make_target(&target, Kind::File)?;
            bind(&fd_path(fd), &target, MsFlags::empty())?;
        }
        if let Some(pts) = &sources.pts {
            self.make_target(Path::new("/dev/pts"), Kind::Dir)?;
            bind(&fd_path(pts), Path::new("/dev/pts"), MsFlags::MS_REC)?;
        }
        let shm = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        self.tmpfs(Path::new("/dev/shm"), shm, "mode=1777")?;
        for (link, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            let link = Path::new("/dev").join(link);
            symlink(to, &link).map_err(|e| Error::io("linking", &link, e))?;
        }

        self.make_target(Path::new("/sys"), Kind::Dir)?;
        bind(&fd_path(&sources.sys), Path::new("/sys"), MsFlags::MS_REC)?;

        let temporary = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        self.tmpfs(Path::new("/tmp"), temporary, "mode=1777")?;
        self.tmpfs(Path::new("/run"), temporary, "mode=0755")
    }

    /// Mounts the spec's mounts in order, then remounts the read-only ones, so that a
    /// later mount point can still be made inside an earlier read-only tmpfs.
    fn mount_spec(
        &mut self,
        spec: &ContainerSpec,
        sources: &[Option<Source>],
    ) -> Result<(), Error> {
        for (wanted, source) in spec.mounts.iter().zip(sources) {
            let target = Path::new(&wanted.target);
            // A source was opened for each bind, none for a tmpfs.
            match source {
                Some(source) => {
                    self.make_target(target, source.kind)?;
                    // Recursive, as a container runtime binds volumes.
                    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
                    let from = fd_path(&source.fd);
                    mount(Some(&from), target, None::<&str>, flags, None::<&str>).map_err(|e| {
                        let (from, to) = (source.path.display(), &wanted.target);
                        step(format!("binding {from} at {to}"), e)
                    })?;
                }
                None => {
                    // Kubernetes' emptyDir is world-writable, as tmpfs's default 1777 is.
                    self.tmpfs(target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "mode=1777")?;
                }
            }
        }

        for wanted in spec.mounts.iter().filter(|wanted| wanted.read_only) {
            remount_read_only(Path::new(&wanted.target))?;
        }
        Ok(())
    }

    /// Detaches the host's root, which the container must not reach.
    fn drop_old_root(&mut self) -> Result<(), Error> {
        umount2(OLD_ROOT, MntFlags::MNT_DETACH)
            .map_err(|e| step(format!("detaching the host's root from {OLD_ROOT}"), e))?;
        // The folder is on the private overlay, so removing it changes only what the
        // container sees; a failure leaves an empty folder and harms nothing.
        let _ = fs::remove_dir(OLD_ROOT);
        Ok(())
    }

    /// Mounts an empty tmpfs at `target` (made if missing), one of the container's own.
    fn tmpfs(&mut self, target: &Path, flags: MsFlags, options: &str) -> Result<(), Error> {
        let path = self.resolve(target);
        self.make_target(target, Kind::Dir)?;
        mount_fs("tmpfs", &path, flags, Some(options))?;
        self.record_private(&path)
    }

    /// Makes the missing folders of `target` and the target itself (a folder, or an empty
    /// file to bind a file onto), only in the container's own filesystems. A dangling
    /// symlink on the way (`/etc/resolv.conf` into a `/run` that is now empty) is replaced.
    fn make_target(&self, target: &Path, kind: Kind) -> Result<(), Error> {
        let mut parts = Vec::new();
        for component in target.components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => parts.push(part),
                _ => {
                    return Err(step(
                        format!("mount target {}", target.display()),
                        "must be an absolute path without `.` or `..`",
                    ));
                }
            }
        }
        if !target.has_root() {
            return Err(step(
                format!("mount target {}", target.display()),
                "must be an absolute path",
            ));
        }

        let mut current = self.path.clone();
        for (i, part) in parts.iter().enumerate() {
            let next = current.join(part);
            let kind = if i + 1 == parts.len() {
                kind
            } else {
                Kind::Dir
            };
            match (fs::symlink_metadata(&next), fs::metadata(&next)) {
                (Ok(_), Ok(_)) => {}
                (Ok(_), Err(_)) => {
                    self.check_private(&current, &next)?;
                    fs::remove_file(&next)
                        .map_err(|e| Error::io("replacing the dangling link", &next, e))?;
                    create(&next, kind)?;
                }
                (Err(e), _) if e.kind() == ErrorKind::NotFound => {
                    self.check_private(&current, &next)?;
                    create(&next, kind)?;
                }
                (Err(e), _) => return Err(Error::io("looking up", &next, e)),
            }
            current = next;
        }
        Ok(())
    }

    /// Fails unless `dir` is on one of the container's own filesystems, so that making
    /// `path` in it cannot change the host.
    fn check_private(&self, dir: &Path, path: &Path) -> Result<(), Error> {
        let meta = fs::metadata(dir).map_err(|e| Error::io("looking up", dir, e))?;
        if self.private.contains(&meta.dev()) {
            return Ok(());
        }
        Err(step(
            format!("making the mount point {}", path.display()),
            format!(
                "{} is a host folder or bind mount, and the shim makes nothing on the host; \
                 create the mount point in the volume first",
                dir.display()
            ),
        ))
    }
}

/// Makes a folder on the scratch tmpfs.
fn make_dir(path: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("making the folder", path, e))
}

/// Makes a mount point: a folder, or an empty file to bind a file onto.
fn create(path: &Path, kind: Kind) -> Result<(), Error> {
    let made = match kind {
        Kind::Dir => fs::DirBuilder::new().mode(0o755).create(path),
        Kind::File => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .map(drop),
    };
    made.map_err(|e| Error::io("making the mount point", path, e))
}

/// Mounts a fresh filesystem of type `fstype` at `target`.
fn mount_fs(
    fstype: &str,
    target: &Path,
    flags: MsFlags,
    options: Option<&str>,
) -> Result<(), Error> {
    mount(Some(fstype), target, Some(fstype), flags, options)
        .map_err(|e| step(format!("mounting {fstype} at {}", target.display()), e))
}

/// Binds `source` at `target`; `extra` adds `MS_REC` for a recursive bind.
fn bind(source: &Path, target: &Path, extra: MsFlags) -> Result<(), Error> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | extra,
        None::<&str>,
    )
    .map_err(|e| {
        step(
            format!("binding {} at {}", source.display(), target.display()),
            e,
        )
    })
}

/// Makes the mount at `target` read-only, keeping its nosuid, nodev, noexec and atime
/// flags: a bind remount replaces them all.
fn remount_read_only(target: &Path) -> Result<(), Error> {
    let current = statvfs(target)
        .map_err(|e| {
            step(
                format!("reading the mount flags of {}", target.display()),
                e,
            )
        })?
        .flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (kept, as_mount) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(kept) {
            flags |= as_mount;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| step(format!("remounting {} read-only", target.display()), e))
}

/// An open host file or folder to bind once the host's paths are out of reach.
struct Source {
    /// The host path, for messages.
    path: PathBuf,
    /// An `O_PATH` descriptor of it; `/proc/self/fd/<n>` names it to `mount`.
    fd: OwnedFd,
    /// What the mount point must be.
    kind: Kind,
}

impl Source {
    fn open(path: &Path) -> Result<Self, Error> {
        let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| step(format!("opening the mount source {}", path.display()), e))?;
        let meta = fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
        let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
        Ok(Source {
            path: path.to_path_buf(),
            fd,
            kind,
        })
    }
}

/// The path through `/proc` that names an open descriptor.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens the source of each of the spec's binds; `None` for a tmpfs.
fn open_mount_sources(spec: &ContainerSpec) -> Result<Vec<Option<Source>>, Error> {
    spec.mounts
        .iter()
        .map(|mount| match &mount.kind {
            MountKind::Bind(path) => Source::open(path).map(Some),
            MountKind::Tmpfs => Ok(None),
        })
        .collect()
}

/// The host's `/sys`, `/dev/pts` and device nodes, opened before `pivot_root`.
struct SystemSources {
    sys: OwnedFd,
    pts: Option<OwnedFd>,
    devices: Vec<(&'static str, OwnedFd)>,
}

impl SystemSources {
    fn open() -> Result<Self, Error> {
        let open_path = |path: &str| open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
        let sys = open_path("/sys").map_err(|e| step("opening /sys", e))?;
        // A host without a pts or one of the devices simply gives the container none.
        let pts = open_path("/dev/pts").ok();
        let devices = DEVICES
            .iter()
            .filter_map(|name| Some((*name, open_path(&format!("/dev/{name}")).ok()?)))
            .collect();
        Ok(SystemSources { sys, pts, devices })
    }
}

/// Switches to the spec's group and user, with the user's supplementary groups from the
/// container's `/etc/group`.
fn set_credentials(user: Option<u32>, group: Option<u32>) -> Result<(), Error> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }

    let account = match user {
        Some(uid) => User::from_uid(Uid::from_raw(uid))
            .map_err(|e| step(format!("looking up user {uid}"), e))?,
        None => None,
    };
    let gid = Gid::from_raw(
        group
            .or(account.as_ref().map(|account| account.gid.as_raw()))
            .unwrap_or(0),
    );
    let groups = match &account {
        Some(account) => CString::new(account.name.as_bytes())
            .map_err(|e| step(format!("user name {:?}", account.name), e))
            .and_then(|name| {
                getgrouplist(&name, gid)
                    .map_err(|e| step(format!("listing the groups of {}", account.name), e))
            })?,
        None => vec![gid],
    };

    // Groups first: once the user is not root, it may no longer change them.
    setgroups(&groups).map_err(|e| step("setting the supplementary groups", e))?;
    setgid(gid).map_err(|e| step(format!("setting group {gid}"), e))?;
    if let Some(uid) = user {
        setuid(Uid::from_raw(uid)).map_err(|e| step(format!("setting user {uid}"), e))?;
    }
    Ok(())
}

/// The program, its arguments and its environment, checked before anything is mounted.
struct Program {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn exec_args(spec: &ContainerSpec) -> Result<Program, Error> {
    let c_string = |what: &str, text: Vec<u8>| {
        CString::new(text).map_err(|_| step(what, "contains a NUL byte"))
    };
    let Some(first) = spec.argv.first() else {
        return Err(step("starting the container", "argv is empty"));
    };
    let argv = spec
        .argv
        .iter()
        .map(|arg| c_string("an argument", arg.clone().into_bytes()))
        .collect::<Result<_, _>>()?;
    let env = spec
        .env
        .iter()
        .map(|(name, value)| {
            let what = format!("the environment variable {name}");
            c_string(&what, format!("{name}={value}").into_bytes())
        })
        .collect::<Result<_, _>>()?;
    Ok(Program {
        path: c_string("the program", first.clone().into_bytes())?,
        argv,
        env,
    })
}

impl Program {
    /// Replaces the shim with the program.
    fn exec(self) -> Result<Infallible, Error> {
        // Rust starts every program with SIGPIPE ignored and `execve` keeps ignored
        // signals, so the container would get EPIPE where a shell pipeline expects to die;
        // blocked signals are kept too.
        #[allow(unsafe_code)]
        // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context.
        let pipe = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
        pipe.map_err(|e| step("restoring the default SIGPIPE action", e))?;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            .map_err(|e| step("unblocking signals", e))?;

        let Err(e) = execve(&self.path, &self.argv, &self.env);
        let program = OsStr::from_bytes(self.path.as_bytes()).to_string_lossy();
        Err(step(format!("executing {program}"), explain_exec(e)))
    }
}

/// Says why `execve` failed in the container's terms.
fn explain_exec(e: Errno) -> String {
    match e {
        Errno::ENOENT => format!(
            "{e} (argv[0] must be an absolute path of a host file outside /tmp and /run, \
             which containers get fresh)"
        ),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c\011"), b"/a b\\c\t");
        // A backslash not followed by three octal digits is kept as it is.
        assert_eq!(unescape_mountinfo(br"/a\9b\04"), br"/a\9b\04");
    }

    #[test]
    fn mount_points_are_listed_once_parents_first() {
        let mountinfo = b"\
27 1 254:0 / / rw - ext4 /dev/vda rw
40 41 0:5 / /mnt/a/b rw - tmpfs t rw
41 27 0:6 / /mnt/a rw - tmpfs t rw
42 41 0:7 / /mnt/a rw - tmpfs t rw
43 27 0:8 / /with\\040space rw - tmpfs t rw
";
        assert_eq!(
            mount_points(mountinfo),
            ["/", "/with space", "/mnt/a", "/mnt/a/b"].map(PathBuf::from)
        );
    }

    #[test]
    fn overlay_options_escape_separators() {
        let options = overlay_options(
            Path::new("/a,b"),
            Path::new("/s/up:per"),
            Path::new(r"/s/w\ork"),
        );
        assert_eq!(
            options,
            r"lowerdir=/a\,b,upperdir=/s/up\:per,workdir=/s/w\\ork"
        );
    }
}
