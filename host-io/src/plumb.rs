//! Linux plumbing through netlink: the bridge, its capture port, container veths, addresses.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use nix::errno::Errno;
use rtnetlink::Handle;

/// The container side of an attachment.
pub(crate) const CONTAINER_IF: &str = "ethwe";

/// The router's capture port of a bridge: a veth pair, one end a port of the bridge, the
/// router capturing and injecting on the other. Named after the bridge, so that routers on
/// different bridges of one host never take each other's: `vethwe-bridge` and `vethwe-pcap`
/// for the default bridge `weave`, `vethwe-b` and `vethwe-p` with six hex digits of a hash
/// of the bridge's name for any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ports {
    /// The end that is a port of the bridge.
    pub(crate) bridge_side: String,
    /// The end the router captures on.
    pub(crate) pcap: String,
}

impl Ports {
    pub(crate) fn of(bridge: &str) -> Ports {
        if bridge == "weave" {
            return Ports { bridge_side: "vethwe-bridge".into(), pcap: "vethwe-pcap".into() };
        }
        // FNV-1a: stable across builds and releases, unlike std's hasher.
        let h = bridge.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let tag = (h ^ (h >> 24) ^ (h >> 48)) & 0xff_ffff;
        Ports { bridge_side: format!("vethwe-b{tag:06x}"), pcap: format!("vethwe-p{tag:06x}") }
    }
}

/// The bridge's MAC for peer `name`: fixed, so the bridge never takes a port's MAC when a
/// container is attached (a Linux bridge without an address set takes its lowest port's),
/// and the host's neighbours' ARP entries for an exposed address stay right. The peer name
/// with its last byte inverted, as a unicast, locally administered address.
pub(crate) fn bridge_mac(name: [u8; 6]) -> [u8; 6] {
    let mut m = name;
    m[0] = (m[0] | 0x02) & 0xfe;
    m[5] ^= 0xff;
    m
}

/// The bridge a link is a port of, by index.
fn controller_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| if let LinkAttribute::Controller(i) = a { Some(*i) } else { None })
}

/// The name of a link.
fn name_of(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.as_str()) } else { None })
}

/// A plumbing step that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlumbError {
    /// Netlink refused an operation.
    #[error("{what}: {source}")]
    Netlink {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: Box<rtnetlink::Error>,
    },
    /// An interface we need is missing.
    #[error("{0}")]
    Missing(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> PlumbError {
    let what = what.into();
    move |source| PlumbError::Netlink { what, source: Box::new(source) }
}

/// A netlink connection in the current network namespace.
pub(crate) async fn connect() -> Result<Handle, PlumbError> {
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|source| PlumbError::Io { what: "opening a netlink socket".into(), source })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The link called `name`, if it exists.
pub(crate) async fn link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, PlumbError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -(Errno::ENODEV as i32) => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

/// The largest MTU among the links that may carry the underlay: up, and neither loopback, the
/// weave bridge `bridge`, nor a port of any weave bridge. `None` when there is none.
pub(crate) async fn underlay_mtu(h: &Handle, bridge: &str) -> Result<Option<u32>, PlumbError> {
    use netlink_packet_route::link::LinkFlag;
    let mut s = h.link().get().execute();
    let mut best = None;
    while let Some(m) = s.try_next().await.map_err(nl("listing links"))? {
        let name =
            m.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.as_str()) } else { None });
        let Some(name) = name else { continue };
        let up = m.header.flags.contains(&LinkFlag::Up);
        let ours = name == bridge || name.starts_with("vethwe");
        if !up || ours || m.header.flags.contains(&LinkFlag::Loopback) {
            continue;
        }
        best = best.max(mtu_of(&m));
    }
    Ok(best)
}

/// The MTU of a link.
pub(crate) fn mtu_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(v) = a { Some(*v) } else { None })
}

/// The MAC of a link.
pub(crate) fn mac_of(m: &LinkMessage) -> Option<[u8; 6]> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(v) if v.len() == 6 => v.as_slice().try_into().ok(),
        _ => None,
    })
}

/// Whether a link is a Linux bridge.
fn is_bridge(m: &LinkMessage) -> bool {
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// What [`ensure_bridge`] made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Made {
    /// Whether the bridge is new (a failed start removes it again).
    pub(crate) new_bridge: bool,
    /// Whether the capture port is new.
    pub(crate) new_port: bool,
}

/// Creates the bridge (with `mtu` and `mac`) and the router's capture port, unless they
/// exist. Refuses, changing nothing, when what is in the way is not ours to use: an interface
/// of the bridge's name that is no bridge, a bridge with another MTU (`weave reset` first), a
/// capture port that belongs to another bridge.
pub(crate) async fn ensure_bridge(h: &Handle, bridge: &str, mtu: u32, mac: [u8; 6]) -> Result<Made, PlumbError> {
    let ports = Ports::of(bridge);
    let existing = link(h, bridge).await?;
    if let Some(p) = link(h, &ports.bridge_side).await? {
        let on = controller_of(&p);
        if on.is_none() || on != existing.as_ref().map(|m| m.header.index) {
            return Err(PlumbError::Missing(format!(
                "{} exists and is not a port of bridge {bridge}: another router's capture port? remove it                  (`ip link del {}`) or launch with another --bridge",
                ports.bridge_side, ports.bridge_side
            )));
        }
    } else if link(h, &ports.pcap).await?.is_some() {
        return Err(PlumbError::Missing(format!(
            "{} exists without its peer {}: remove it (`ip link del {}`)",
            ports.pcap, ports.bridge_side, ports.pcap
        )));
    }
    let new_bridge = existing.is_none();
    let br = match existing {
        Some(m) => {
            if !is_bridge(&m) {
                return Err(PlumbError::Missing(format!(
                    "a network interface named {bridge} exists and is not a bridge: remove it, or launch with \
                     --bridge NAME"
                )));
            }
            if let Some(cur) = mtu_of(&m) {
                if cur != mtu {
                    return Err(PlumbError::Missing(format!(
                        "bridge {bridge} exists with MTU {cur}, not {mtu}: run `weave reset` or launch with --mtu {cur}"
                    )));
                }
            }
            m.header.index
        }
        None => {
            h.link()
                .add()
                .bridge(bridge.to_string())
                .execute()
                .await
                .map_err(nl(format!("creating bridge {bridge}")))?;
            let m = link(h, bridge).await?.ok_or_else(|| PlumbError::Missing(format!("bridge {bridge} vanished")))?;
            h.link().set(m.header.index).mtu(mtu).up().execute().await.map_err(nl(format!("bringing {bridge} up")))?;
            m.header.index
        }
    };
    let made = Made { new_bridge, new_port: link(h, &ports.bridge_side).await?.is_none() };
    let rest = async {
        h.link().set(br).address(mac.to_vec()).execute().await.map_err(nl(format!("setting {bridge}'s MAC")))?;
        add_port(h, &ports, br, mtu).await?;
        h.link().set(br).up().execute().await.map_err(nl(format!("bringing {bridge} up")))?;
        offloads_tcp_only(&ports.bridge_side)
    };
    match rest.await {
        Ok(()) => Ok(made),
        Err(e) => {
            undo_bridge(h, bridge, made).await;
            Err(e)
        }
    }
}

/// Removes what [`ensure_bridge`] made (a failed start); errors are logged.
pub(crate) async fn undo_bridge(h: &Handle, bridge: &str, made: Made) {
    let ports = Ports::of(bridge);
    if made.new_port {
        if let Err(e) = delete(h, &ports.bridge_side).await {
            tracing::warn!("{e}");
        }
    }
    if made.new_bridge {
        if let Err(e) = delete(h, bridge).await {
            tracing::warn!("{e}");
        }
    }
}

/// The capture port, made unless it exists, on bridge `br`.
async fn add_port(h: &Handle, ports: &Ports, br: u32, mtu: u32) -> Result<(), PlumbError> {
    if link(h, &ports.bridge_side).await?.is_none() {
        h.link()
            .add()
            .veth(ports.bridge_side.clone(), ports.pcap.clone())
            .execute()
            .await
            .map_err(nl("creating the capture port"))?;
    }
    let bp = link(h, &ports.bridge_side).await?.ok_or_else(|| PlumbError::Missing(ports.bridge_side.clone()))?;
    let pp = link(h, &ports.pcap).await?.ok_or_else(|| PlumbError::Missing(ports.pcap.clone()))?;
    h.link()
        .set(bp.header.index)
        .mtu(mtu)
        .controller(br)
        .up()
        .execute()
        .await
        .map_err(nl("attaching the capture port"))?;
    h.link().set(pp.header.index).mtu(mtu).up().execute().await.map_err(nl("bringing the capture port up"))?;
    Ok(())
}

/// Removes bridge `bridge` with everything weave attached to it: the capture port and the
/// containers' host-side veths (which takes their `ethwe` ends away too). Other ports are
/// left, detached. Returns the names removed.
pub(crate) async fn remove_bridge(h: &Handle, bridge: &str) -> Result<Vec<String>, PlumbError> {
    let ports = Ports::of(bridge);
    let mut gone = Vec::new();
    if let Some(br) = link(h, bridge).await? {
        let mut s = h.link().get().execute();
        let mut ours = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("listing links"))? {
            let Some(name) = name_of(&m) else { continue };
            if controller_of(&m) == Some(br.header.index) && name.starts_with("vethwe") {
                ours.push(name.to_string());
            }
        }
        for name in ours {
            if delete(h, &name).await? {
                gone.push(name);
            }
        }
    }
    if delete(h, &ports.bridge_side).await? {
        gone.push(ports.bridge_side);
    }
    if delete(h, bridge).await? {
        gone.push(bridge.to_string());
    }
    Ok(gone)
}

/// Segmentation offloads other than TCP's: frames of these kinds must reach the capture
/// port already cut to the MTU, because only TCP segments can be cut without knowing the
/// sender's segment size.
const NON_TCP_SEGMENTATION: [&str; 9] = [
    "tx-udp-segmentation",
    "tx-gso-list",
    "tx-sctp-segmentation",
    "tx-gre-segmentation",
    "tx-gre-csum-segmentation",
    "tx-ipxip4-segmentation",
    "tx-ipxip6-segmentation",
    "tx-udp_tnl-segmentation",
    "tx-udp_tnl-csum-segmentation",
];

/// Leaves TCP segmentation and checksum offload on for frames going to the router (it cuts
/// large TCP segments and completes checksums itself, `segment.rs`) and turns every other
/// segmentation offload off on `dev`, the bridge's port towards the router: the bridge then
/// cuts such frames in software before they reach it. Through the `ethtool` command; one
/// feature at a time, since older kernels lack some.
pub(crate) fn offloads_tcp_only(dev: &str) -> Result<(), PlumbError> {
    for f in NON_TCP_SEGMENTATION {
        let _ = std::process::Command::new("ethtool").args(["-K", dev, f, "off"]).output().map_err(|source| {
            PlumbError::Io { what: "running ethtool (install the ethtool package)".into(), source }
        })?;
    }
    let check = std::process::Command::new("ethtool")
        .args(["-k", dev])
        .output()
        .map_err(|source| PlumbError::Io { what: "running ethtool".into(), source })?;
    let text = String::from_utf8_lossy(&check.stdout);
    let still_on: Vec<&str> = NON_TCP_SEGMENTATION
        .into_iter()
        .filter(|f| text.lines().any(|l| l.trim_start().starts_with(&format!("{f}: on"))))
        .collect();
    if !still_on.is_empty() {
        return Err(PlumbError::Missing(format!("cannot turn off {} on {dev}", still_on.join(", "))));
    }
    Ok(())
}

/// Deletes a link if it exists.
pub(crate) async fn delete(h: &Handle, name: &str) -> Result<bool, PlumbError> {
    match link(h, name).await? {
        Some(m) => {
            h.link().del(m.header.index).execute().await.map_err(nl(format!("deleting {name}")))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Where a container's network namespace is.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The namespace file.
    pub(crate) ns: PathBuf,
}

/// Resolves `netns:NAME`, `pid:N`, a path, or a Docker container id or name.
pub(crate) fn resolve_target(t: &str) -> Result<Target, String> {
    let ns = if let Some(name) = t.strip_prefix("netns:") {
        PathBuf::from("/run/netns").join(name)
    } else if let Some(pid) = t.strip_prefix("pid:") {
        let pid: u32 = pid.parse().map_err(|_| format!("`{t}`: expected pid:NUMBER"))?;
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    } else if t.starts_with('/') {
        PathBuf::from(t)
    } else {
        let pid = crate::docker::container_pid(t)?;
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    };
    if !ns.exists() {
        return Err(format!("network namespace {} of `{t}` does not exist", ns.display()));
    }
    Ok(Target { ns })
}

/// The host-side veth name for a target: `vethwepl` and 7 hex digits of its namespace's inode.
pub(crate) fn host_veth(t: &Target) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&t.ns).map_err(|e| format!("{}: {e}", t.ns.display()))?.ino();
    Ok(format!("vethwepl{:07x}", ino & 0xfff_ffff))
}

/// Runs `f` on a thread inside the network namespace at `ns`, with its own netlink handle.
pub(crate) fn in_netns<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce(Handle) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, PlumbError>>>> + Send + 'static,
) -> Result<T, PlumbError> {
    let file = File::open(ns).map_err(|source| PlumbError::Io { what: format!("opening {}", ns.display()), source })?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| PlumbError::Io {
            what: "entering the container's network namespace".into(),
            source: std::io::Error::from(e),
        })?;
        let rt = runtime().map_err(|source| PlumbError::Io { what: "starting a runtime".into(), source })?;
        rt.block_on(async move {
            let h = connect().await?;
            f(h).await
        })
    })
    .join()
    .unwrap_or_else(|_| Err(PlumbError::Missing("the namespace thread panicked".into())))
}

/// Moves link `index` into the namespace at `ns`.
pub(crate) async fn move_to_netns(h: &Handle, index: u32, ns: &Path) -> Result<(), PlumbError> {
    let file = File::open(ns).map_err(|source| PlumbError::Io { what: format!("opening {}", ns.display()), source })?;
    h.link().set(index).setns_by_fd(file.as_raw_fd()).execute().await.map_err(nl("moving the veth into the container"))
}

/// Adds an address to a link (an existing identical address is fine).
pub(crate) async fn add_addr(h: &Handle, index: u32, ip: IpAddr, prefix: u8) -> Result<(), PlumbError> {
    match h.address().add(index, ip, prefix).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -(Errno::EEXIST as i32) => Ok(()),
        Err(e) => Err(nl(format!("adding {ip}/{prefix}"))(e)),
    }
}

/// The address messages of a link.
async fn addr_messages(
    h: &Handle,
    index: u32,
) -> Result<Vec<netlink_packet_route::address::AddressMessage>, PlumbError> {
    h.address().get().set_link_index_filter(index).execute().try_collect().await.map_err(nl("listing addresses"))
}

/// Removes an address from a link; returns whether it was there.
pub(crate) async fn del_addr(h: &Handle, index: u32, ip: IpAddr) -> Result<bool, PlumbError> {
    use netlink_packet_route::address::AddressAttribute;
    for a in addr_messages(h, index).await? {
        if a.attributes.iter().any(|x| matches!(x, AddressAttribute::Address(v) if *v == ip)) {
            h.address().del(a).execute().await.map_err(nl(format!("removing {ip}")))?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The addresses (with prefixes) on a link.
pub(crate) async fn addrs(h: &Handle, index: u32) -> Result<Vec<(IpAddr, u8)>, PlumbError> {
    use netlink_packet_route::address::AddressAttribute;
    Ok(addr_messages(h, index)
        .await?
        .into_iter()
        .filter_map(|m| {
            let p = m.header.prefix_len;
            m.attributes.iter().find_map(|a| if let AddressAttribute::Address(ip) = a { Some((*ip, p)) } else { None })
        })
        .collect())
}

/// A single-threaded runtime with I/O and timers, for a blocking caller's netlink work (and the
/// daemon's event loop).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The host's IPv4 routes (other than the default and those through `bridge`) that share
/// addresses with `range`, as `DEST/LEN dev NAME`: an allocation range there would hand
/// containers addresses the host already reaches elsewhere.
pub(crate) async fn routes_overlapping(
    h: &Handle,
    range: ipnet::Ipv4Net,
    bridge: &str,
) -> Result<Vec<String>, PlumbError> {
    use netlink_packet_route::route::{RouteAddress, RouteAttribute};
    let skip = link(h, bridge).await?.map(|l| l.header.index);
    let mut names = std::collections::BTreeMap::new();
    let mut links = h.link().get().execute();
    while let Some(m) = links.try_next().await.map_err(nl("listing links"))? {
        if let Some(n) =
            m.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
        {
            names.insert(m.header.index, n);
        }
    }
    let mut s = h.route().get(rtnetlink::IpVersion::V4).execute();
    let mut out = Vec::new();
    while let Some(m) = s.try_next().await.map_err(nl("listing routes"))? {
        let len = m.header.destination_prefix_length;
        let dest = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let oif = m.attributes.iter().find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None });
        let (Some(dest), true) = (dest, len > 0) else { continue };
        if oif.is_some() && oif == skip {
            continue;
        }
        let Ok(net) = ipnet::Ipv4Net::new(dest, len) else { continue };
        if net.contains(&range.network()) || range.contains(&net.network()) {
            let dev = oif.and_then(|i| names.get(&i).cloned()).unwrap_or_else(|| "?".into());
            out.push(format!("{} dev {dev}", net.trunc()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
