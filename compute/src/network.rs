//! A compute host's network: its own network namespace with a bridge whose address is the
//! gateway every host gives its instances, an uplink to the deployment's fabric namespace, and a
//! routed /32 in the fabric for each address of each instance.
//!
//! Invariant: the gateway is the same on every host ([`GATEWAY`]), so moving an instance's
//! addresses to another host is one route change in the fabric per address; everything here is
//! idempotent (set up again over what exists, removed when already gone), so an agent that
//! restarts finds its network as it left it.
//!
//! Each host also has an address of its own on its uplink ([`HostNetwork::address`],
//! `10.98.x.y`), routed in the fabric like an instance's, for what hosts say to each other (a
//! migration's disk copy).
//!
//! ```text
//!   fabric ns (10.99.0.1)  ──u<host>══uplink 10.98.x.y──  host ns: br0 10.77.0.1/16 ── tap / veth ── instance
//!   routes: 10.77.x.y/32, 198.18.x.y/32, 10.98.x.y/32 dev u<host>
//! ```

use crate::driver::DriverError;
use crate::process::{ip, ip_batch, run, tag};
use streamfleet_bus_schemas::ids::{HostId, InstanceId};
use streamfleet_bus_schemas::instance::InstanceAddresses;
use streamfleet_domain::fleet::{GATEWAY, PREFIX};

/// The address the fabric namespace has: where clients inside it come from.
pub const FABRIC_ADDRESS: &str = "10.99.0.1";

/// The deployment's fabric: a namespace that reaches every instance through its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fabric {
    /// The namespace's name.
    pub namespace: String,
}

impl Fabric {
    /// Creates (or finds) the fabric namespace `namespace`.
    pub async fn create(namespace: &str) -> Result<Fabric, DriverError> {
        ensure_namespace(namespace).await?;
        ip(&["-n", namespace, "link", "set", "lo", "up"]).await?;
        let _ = ip(&[
            "-n",
            namespace,
            "addr",
            "add",
            &format!("{FABRIC_ADDRESS}/32"),
            "dev",
            "lo",
        ])
        .await;
        // Hosts reach each other through the fabric (a migration's copy).
        sysctl(namespace, "net.ipv4.ip_forward=1").await?;
        sysctl(namespace, "net.ipv4.conf.all.proxy_arp=1").await?;
        Ok(Fabric {
            namespace: namespace.to_string(),
        })
    }

    /// Removes the fabric namespace (its uplinks go with it).
    pub async fn remove(&self) {
        let _ = ip(&["netns", "del", &self.namespace]).await;
    }
}

/// One compute host's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetwork {
    /// The host's namespace (its instances' hypervisors run in it).
    pub namespace: String,
    /// The fabric.
    pub fabric: Fabric,
    /// The uplink's name on the fabric's side.
    uplink: String,
    /// The host's own address, reachable from the other hosts through the fabric.
    pub address: String,
}

/// The address of host `host_id` on the fabric: `10.98.x.y` from its id's hash (x.y never 0 or
/// 255; two hosts of one deployment sharing one is a 1-in-64 000 chance, and `prepare` says so).
pub fn host_address(host_id: &HostId) -> String {
    let h = crc32fast::hash(host_id.as_bytes());
    let (x, y) = (1 + (h >> 8) % 254, 1 + h % 254);
    format!("10.98.{x}.{y}")
}

/// Makes namespace `name` unless it exists; whether it was made now.
async fn ensure_namespace(name: &str) -> Result<bool, DriverError> {
    // `ip netns add` makes the file; looking for it spares a process.
    if std::path::Path::new("/var/run/netns").join(name).exists() {
        return Ok(false);
    }
    ip(&["netns", "add", name]).await?;
    Ok(true)
}

async fn sysctl(namespace: &str, setting: &str) -> Result<(), DriverError> {
    run(
        "ip",
        &["netns", "exec", namespace, "sysctl", "-qw", setting],
    )
    .await
    .map(|_| ())
}

/// The name of host `host_id`'s namespace.
pub fn host_namespace(host_id: &HostId) -> String {
    format!("sfh{}", tag(host_id))
}

/// The tag of instance `instance_id`'s interface on network `network_id`.
fn nic_tag(instance_id: &InstanceId, network_id: &str) -> String {
    tag(&format!("{instance_id}/{network_id}"))
}

/// The name a container sees its interface on network `network_id` by.
pub fn network_interface(network_id: &str) -> String {
    format!("n{}", tag(network_id))
}

/// The name of a container instance's own namespace.
pub fn instance_namespace(instance_id: &InstanceId) -> String {
    format!("sfi{}", tag(instance_id))
}

impl HostNetwork {
    /// Sets up (or finds) the network of host `host_id` on `fabric`.
    pub async fn prepare(host_id: &HostId, fabric: &Fabric) -> Result<HostNetwork, DriverError> {
        let namespace = host_namespace(host_id);
        let uplink = format!("u{}", tag(host_id));
        ensure_namespace(&namespace).await?;
        let ns = namespace.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        if ip(&["-n", ns, "link", "show", "br0"]).await.is_err() {
            ip(&["-n", ns, "link", "add", "br0", "type", "bridge"]).await?;
        }
        // The gateway as a /32: the host reaches its own instances by their /32 routes (see
        // `route`) and every other address of the pool through the fabric, so an instance on
        // one host reaches an instance on another by its private address (the bridge answers
        // the ARP for it). A /16 on the bridge would claim the whole pool as local.
        let _ = ip(&[
            "-n",
            ns,
            "addr",
            "del",
            &format!("{GATEWAY}/{PREFIX}"),
            "dev",
            "br0",
        ])
        .await;
        let _ = ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{GATEWAY}/32"),
            "dev",
            "br0",
        ])
        .await;
        ip(&["-n", ns, "link", "set", "br0", "up"]).await?;
        if ip(&["-n", &fabric.namespace, "link", "show", &uplink])
            .await
            .is_err()
        {
            ip(&[
                "-n",
                &fabric.namespace,
                "link",
                "add",
                &uplink,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                ns,
            ])
            .await?;
        }
        ip(&["-n", &fabric.namespace, "link", "set", &uplink, "up"]).await?;
        ip(&["-n", ns, "link", "set", "uplink", "up"]).await?;
        let address = host_address(host_id);
        let _ = ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "uplink",
        ])
        .await;
        let host_route = format!("{address}/32");
        if let Ok(routes) = ip(&["-n", &fabric.namespace, "route", "show", &host_route]).await
            && !routes.trim().is_empty()
            && !routes.contains(&uplink)
        {
            return Err(DriverError::Program {
                program: "ip route".into(),
                detail: format!(
                    "host address {address} of {host_id} is another host's already (a hash collision): rename one of them"
                ),
            });
        }
        ip(&[
            "-n",
            &fabric.namespace,
            "route",
            "replace",
            &host_route,
            "dev",
            &uplink,
        ])
        .await?;
        let _ = ip(&["-n", ns, "route", "replace", "default", "dev", "uplink"]).await;
        sysctl(ns, "net.ipv4.ip_forward=1").await?;
        // The host answers the fabric's ARP for its instances' addresses, at once: a proxy
        // waits up to 0.8 s by default (for a real owner to answer first), which a moved
        // address's first packet, and a host's first connection to another, would pay.
        sysctl(ns, "net.ipv4.conf.uplink.proxy_arp=1").await?;
        sysctl(ns, "net.ipv4.conf.br0.proxy_arp=1").await?;
        sysctl(ns, "net.ipv4.neigh.uplink.proxy_delay=0").await?;
        sysctl(ns, "net.ipv4.neigh.br0.proxy_delay=0").await?;
        sysctl(
            &fabric.namespace,
            &format!("net.ipv4.neigh.{uplink}.proxy_delay=0"),
        )
        .await?;
        Ok(HostNetwork {
            namespace,
            fabric: fabric.clone(),
            uplink,
            address,
        })
    }

    /// Routes the instance's addresses to this host, and in the host onto its bridge.
    pub async fn route(&self, addresses: &InstanceAddresses) -> Result<(), DriverError> {
        ip_batch(
            &self.fabric.namespace,
            &[&addresses.private, &addresses.public]
                .map(|a| format!("route replace {a}/32 dev {}", self.uplink)),
        )
        .await?;
        ip_batch(
            &self.namespace,
            &[&addresses.private, &addresses.public]
                .map(|a| format!("route replace {a}/32 dev br0")),
        )
        .await?;
        Ok(())
    }

    /// Withdraws the instance's routes to this host (gone already, or leading to another host
    /// since a migration: nothing to do).
    pub async fn unroute(&self, addresses: &InstanceAddresses) {
        for address in [&addresses.private, &addresses.public] {
            let _ = ip(&[
                "-n",
                &self.fabric.namespace,
                "route",
                "del",
                &format!("{address}/32"),
                "dev",
                &self.uplink,
            ])
            .await;
        }
        for address in [&addresses.private, &addresses.public] {
            let _ = ip(&[
                "-n",
                &self.namespace,
                "route",
                "del",
                &format!("{address}/32"),
            ])
            .await;
        }
    }

    /// A tap device on the bridge for a virtual machine's interface.
    pub async fn tap(&self, instance_id: &InstanceId) -> Result<String, DriverError> {
        let name = format!("t{}", tag(instance_id));
        let ns = self.namespace.as_str();
        if ip(&["-n", ns, "link", "show", &name]).await.is_err() {
            ip(&["-n", ns, "tuntap", "add", "dev", &name, "mode", "tap"]).await?;
        }
        ip(&["-n", ns, "link", "set", &name, "master", "br0", "up"]).await?;
        Ok(name)
    }

    /// A namespace of the instance's own, joined to the bridge by a veth, with its addresses
    /// (for a container). Returns the namespace's path.
    pub async fn instance_namespace(
        &self,
        instance_id: &InstanceId,
        addresses: &InstanceAddresses,
    ) -> Result<String, DriverError> {
        let t = tag(instance_id);
        let (own, host_end) = (instance_namespace(instance_id), format!("v{t}"));
        let made = ensure_namespace(&own).await?;
        if made || ip(&["-n", &own, "link", "show", "eth0"]).await.is_err() {
            // A veth from the host's bridge into the instance's namespace, its addresses, its
            // way out: one `ip -batch` per namespace. (A host end left from an earlier one goes
            // first; a namespace made now has none.)
            if !made {
                let _ = ip(&["-n", &self.namespace, "link", "del", &host_end]).await;
            }
            ip_batch(
                &self.namespace,
                &[
                    format!("link add {host_end} type veth peer name eth0 netns {own}"),
                    format!("link set {host_end} master br0 up"),
                ],
            )
            .await?;
            ip_batch(
                &own,
                &[
                    format!("addr add {}/{PREFIX} dev eth0", addresses.private),
                    format!("addr add {}/32 dev eth0", addresses.public),
                    "link set lo up".into(),
                    "link set eth0 up".into(),
                    format!("route replace default via {GATEWAY}"),
                ],
            )
            .await?;
        } else {
            ip_batch(
                &self.namespace,
                &[format!("link set {host_end} master br0 up")],
            )
            .await?;
            ip_batch(
                &own,
                &[
                    "link set lo up".into(),
                    "link set eth0 up".into(),
                    format!("route replace default via {GATEWAY}"),
                ],
            )
            .await?;
        }
        Ok(format!("/var/run/netns/{own}"))
    }

    /// The bridge of network `network_id` on this host (created when missing): the instances'
    /// interfaces on that network meet there, apart from the host's own bridge.
    async fn network_bridge(&self, network_id: &str) -> Result<String, DriverError> {
        let name = format!("n{}", tag(network_id));
        let ns = self.namespace.as_str();
        if ip(&["-n", ns, "link", "show", &name]).await.is_err() {
            ip(&["-n", ns, "link", "add", &name, "type", "bridge"]).await?;
        }
        ip(&["-n", ns, "link", "set", &name, "up"]).await?;
        Ok(name)
    }

    /// A tap device on network `network_id`'s bridge for a virtual machine's extra interface.
    pub async fn network_tap(
        &self,
        instance_id: &InstanceId,
        network_id: &str,
    ) -> Result<String, DriverError> {
        let bridge = self.network_bridge(network_id).await?;
        let name = format!("t{}", nic_tag(instance_id, network_id));
        let ns = self.namespace.as_str();
        if ip(&["-n", ns, "link", "show", &name]).await.is_err() {
            ip(&["-n", ns, "tuntap", "add", "dev", &name, "mode", "tap"]).await?;
        }
        ip(&["-n", ns, "link", "set", &name, "master", &bridge, "up"]).await?;
        Ok(name)
    }

    /// A veth from network `network_id`'s bridge into a container instance's own namespace,
    /// where it is called [`network_interface`]`(network_id)`.
    pub async fn network_veth(
        &self,
        instance_id: &InstanceId,
        network_id: &str,
    ) -> Result<(), DriverError> {
        let bridge = self.network_bridge(network_id).await?;
        let host_end = format!("w{}", nic_tag(instance_id, network_id));
        let (own, inside) = (
            instance_namespace(instance_id),
            network_interface(network_id),
        );
        let ns = self.namespace.as_str();
        if ip(&["-n", &own, "link", "show", &inside]).await.is_err() {
            let _ = ip(&["-n", ns, "link", "del", &host_end]).await;
            ip(&[
                "-n", ns, "link", "add", &host_end, "type", "veth", "peer", "name", &inside,
                "netns", &own,
            ])
            .await?;
        }
        ip(&["-n", ns, "link", "set", &host_end, "master", &bridge, "up"]).await?;
        ip(&["-n", &own, "link", "set", &inside, "up"]).await?;
        Ok(())
    }

    /// Removes what [`HostNetwork::network_tap`] or [`HostNetwork::network_veth`] made (gone
    /// already: nothing to do).
    pub async fn remove_network_interface(&self, instance_id: &InstanceId, network_id: &str) {
        let t = nic_tag(instance_id, network_id);
        let _ = ip(&["-n", &self.namespace, "link", "del", &format!("t{t}")]).await;
        let _ = ip(&["-n", &self.namespace, "link", "del", &format!("w{t}")]).await;
    }

    /// Takes everything of an ended instance off the network: its routes, its extra
    /// interfaces, its tap or namespace.
    pub async fn withdraw(&self, spec: &crate::InstanceSpec) {
        self.unroute(&spec.addresses).await;
        for network_id in &spec.networks {
            self.remove_network_interface(&spec.instance_id, network_id)
                .await;
        }
        self.release(&spec.instance_id).await;
    }

    /// Removes what [`HostNetwork::tap`] or [`HostNetwork::instance_namespace`] made.
    pub async fn release(&self, instance_id: &InstanceId) {
        let t = tag(instance_id);
        let _ = ip(&["-n", &self.namespace, "link", "del", &format!("t{t}")]).await;
        let _ = ip(&["-n", &self.namespace, "link", "del", &format!("v{t}")]).await;
        let _ = ip(&["netns", "del", &instance_namespace(instance_id)]).await;
    }

    /// The first moment `address` answers a ping from the fabric (where clients come from),
    /// trying for up to `within`; `None`: it did not.
    pub async fn first_answer(
        &self,
        address: &str,
        within: std::time::Duration,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let until = tokio::time::Instant::now() + within;
        // A try a moment apart at most: an unreachable address fails at once, not after `-W`.
        const TRY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
        while tokio::time::Instant::now() < until {
            let tried = tokio::time::Instant::now();
            let answered = run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.fabric.namespace,
                    "busybox",
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "1",
                    "-q",
                    address,
                ],
            )
            .await
            .is_ok();
            if answered {
                return Some(chrono::Utc::now());
            }
            tokio::time::sleep_until(tried + TRY_EVERY).await;
        }
        None
    }

    /// Removes the host's namespace (its devices go with it).
    pub async fn remove(&self) {
        let _ = ip(&[
            "-n",
            &self.fabric.namespace,
            "route",
            "del",
            &format!("{}/32", self.address),
        ])
        .await;
        let _ = ip(&["-n", &self.fabric.namespace, "link", "del", &self.uplink]).await;
        let _ = ip(&["netns", "del", &self.namespace]).await;
    }
}
