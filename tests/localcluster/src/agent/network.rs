//! Each pod's network: a namespace of its own, joined to the cluster's bridge by a veth pair,
//! with loopback up, one address from the pod range, and a route to the pod range only, so a
//! dial to any other address fails at once.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::Error;
use crate::net::{BRIDGE, ip};

/// Hands out pod addresses from 10.244.1.1 to 10.244.255.254 (10.244.0.0/24 is the
/// cluster's own).
#[derive(Debug, Default)]
pub struct Addresses {
    used: Mutex<BTreeSet<u32>>,
}

/// The first pod address, as a number.
const FIRST: u32 = u32::from_be_bytes([10, 244, 1, 1]);
/// The last pod address, as a number.
const LAST: u32 = u32::from_be_bytes([10, 244, 255, 254]);

impl Addresses {
    /// A free address.
    pub fn take(&self) -> Result<Ipv4Addr, Error> {
        let mut used = self.used.lock().map_err(|_| poisoned())?;
        let free = (FIRST..=LAST).find(|ip| !used.contains(ip) && ip & 0xff != 0xff);
        let ip = free.ok_or_else(|| Error::Command {
            command: "allocating a pod address".into(),
            reason: "the pod range is exhausted".into(),
        })?;
        used.insert(ip);
        Ok(Ipv4Addr::from(ip))
    }

    /// Gives an address back.
    pub fn give_back(&self, ip: Ipv4Addr) {
        if let Ok(mut used) = self.used.lock() {
            used.remove(&u32::from(ip));
        }
    }
}

fn poisoned() -> Error {
    Error::Command {
        command: "allocating a pod address".into(),
        reason: "lock poisoned".into(),
    }
}

/// A pod's network namespace and address.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// The namespace's name.
    pub netns: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The veth end on the bridge, in the cluster's namespace.
    veth: String,
}

/// The prefix of every pod namespace of a cluster, so that `down` finds them all.
pub fn netns_prefix(cluster_netns: &str) -> String {
    format!("{cluster_netns}-p-")
}

/// Whether `name` is a pod namespace of the cluster whose namespace is `cluster_netns`: the
/// prefix, then the last two numbers of the pod's address. Matching the whole name keeps
/// another cluster's namespaces out (cluster `a`'s prefix `lc-a-p-` also starts the pod
/// namespaces of a cluster `a-p-1`, `lc-a-p-1-p-3-4`).
pub fn is_pod_netns(cluster_netns: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(&netns_prefix(cluster_netns)) else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('-')
        .is_some_and(|(a, b)| number(a) && number(b))
}

/// The names of the cluster's pod namespaces that exist.
pub fn pod_namespaces(cluster_netns: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| is_pod_netns(cluster_netns, name))
        .collect();
    names.sort();
    names
}

/// Makes the pod's namespace and wires it to the bridge in `cluster_netns`.
pub fn create(cluster_netns: &str, ip: Ipv4Addr) -> Result<PodNetwork, Error> {
    let [_, _, a, b] = ip.octets();
    let network = PodNetwork {
        netns: format!("{}{a}-{b}", netns_prefix(cluster_netns)),
        ip,
        veth: format!("vp{a}x{b}"),
    };
    let _ = delete(cluster_netns, &network);
    let result = wire(cluster_netns, &network);
    if result.is_err() {
        let _ = delete(cluster_netns, &network);
    }
    result.map(|()| network)
}

fn wire(cluster_netns: &str, network: &PodNetwork) -> Result<(), Error> {
    let (pod, veth) = (network.netns.as_str(), network.veth.as_str());
    let address = format!("{}/16", network.ip);
    ip(&["netns", "add", pod])?;
    ip(&[
        "-n",
        cluster_netns,
        "link",
        "add",
        veth,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod,
    ])?;
    ip(&["-n", cluster_netns, "link", "set", veth, "master", BRIDGE])?;
    ip(&["-n", cluster_netns, "link", "set", veth, "up"])?;
    // The hardware address follows the IP, as Docker makes it: an address freed by one
    // pod and given to the next keeps its MAC, so neighbours' ARP caches stay right
    // (a random MAC left them sending to the old pod for 10-20 s).
    ip(&[
        "-n",
        pod,
        "link",
        "set",
        "eth0",
        "address",
        &mac_of(network.ip),
    ])?;
    ip(&["-n", pod, "link", "set", "lo", "up"])?;
    ip(&["-n", pod, "addr", "add", &address, "dev", "eth0"])?;
    ip(&["-n", pod, "link", "set", "eth0", "up"])
}

/// A locally administered unicast MAC made of the IPv4 address.
fn mac_of(ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Removes the pod's namespace and its veth pair.
pub fn delete(cluster_netns: &str, network: &PodNetwork) -> Result<(), Error> {
    let _ = ip(&["-n", cluster_netns, "link", "delete", &network.veth]);
    if crate::net::exists(&network.netns) {
        ip(&["netns", "delete", &network.netns])?;
    }
    Ok(())
}

/// Removes every pod namespace of a cluster (after a crash, or on `down`); tries them all
/// and fails with the first that could not be removed.
pub fn delete_all(cluster_netns: &str) -> Result<(), Error> {
    let mut first_error = None;
    for name in pod_namespaces(cluster_netns) {
        if let Err(e) = ip(&["netns", "delete", &name]) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_mac_follows_the_address() {
        let ip = std::net::Ipv4Addr::new(10, 244, 1, 6);
        assert_eq!(mac_of(ip), "02:42:0a:f4:01:06");
        assert_ne!(mac_of(ip), mac_of(std::net::Ipv4Addr::new(10, 244, 1, 7)));
    }
    use super::*;

    #[test]
    fn a_cluster_owns_only_the_pod_namespaces_named_after_it() {
        assert!(is_pod_netns("lc-a", "lc-a-p-1-2"));
        assert!(is_pod_netns("lc-a", "lc-a-p-255-254"));
        assert!(!is_pod_netns("lc-a", "lc-a"), "the cluster's own");
        assert!(!is_pod_netns("lc-a", "lc-a-p-1"), "cluster a-p-1's own");
        assert!(
            !is_pod_netns("lc-a", "lc-a-p-1-p-3-4"),
            "a pod of cluster a-p-1"
        );
        assert!(!is_pod_netns("lc-a", "lc-ab-p-1-2"), "a pod of cluster ab");
        assert!(!is_pod_netns("lc-a", "lc-a-p-1-2x"));
    }
}
