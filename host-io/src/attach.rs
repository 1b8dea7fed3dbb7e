//! `weave attach` and `weave detach`: a veth from the bridge into the container, `ethwe`
//! inside with its addresses and the bridge's MTU, and a gratuitous ARP.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::plumb::{self, PlumbError, CONTAINER_IF};

pub(crate) use weave_host_io::control::parse_cidr;

fn garp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0);
    f
}

/// Attaches `target` to `bridge` with the given addresses; returns ethwe's MAC.
pub(crate) fn attach(bridge: &str, cidrs: &[String], target: &str) -> Result<String, String> {
    let cidrs = cidrs.iter().map(|c| parse_cidr(c)).collect::<Result<Vec<_>, _>>()?;
    let t = plumb::resolve_target(target)?;
    let host_if = plumb::host_veth(&t)?;
    let temp_if = format!("vethwepg{}", &host_if[8..]);
    let rt = plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
    let ns = t.ns.clone();
    let mtu = rt.block_on(async {
        let h = plumb::connect().await?;
        let br = plumb::link(&h, bridge)
            .await?
            .ok_or_else(|| PlumbError::Missing(format!("bridge {bridge} does not exist: run `weave launch` first")))?;
        let mtu = plumb::mtu_of(&br).unwrap_or(1376);
        if plumb::link(&h, &host_if).await?.is_none() {
            h.link().add().veth(host_if.clone(), temp_if.clone()).execute().await.map_err(|source| {
                PlumbError::Netlink { what: "creating the container's veth".into(), source: Box::new(source) }
            })?;
            let done = async {
                let hl = plumb::link(&h, &host_if).await?.ok_or_else(|| PlumbError::Missing(host_if.clone()))?;
                let pl = plumb::link(&h, &temp_if).await?.ok_or_else(|| PlumbError::Missing(temp_if.clone()))?;
                h.link().set(hl.header.index).mtu(mtu).controller(br.header.index).up().execute().await.map_err(
                    |source| PlumbError::Netlink {
                        what: "attaching the veth to the bridge".into(),
                        source: Box::new(source),
                    },
                )?;
                h.link().set(pl.header.index).mtu(mtu).execute().await.map_err(|source| PlumbError::Netlink {
                    what: "setting the container side's MTU".into(),
                    source: Box::new(source),
                })?;
                plumb::move_to_netns(&h, pl.header.index, &ns).await
            };
            if let Err(e) = done.await {
                // Nothing half-created is left behind.
                let _ = plumb::delete(&h, &host_if).await;
                return Err(e);
            }
        }
        Ok(mtu)
    });
    let mtu = mtu.map_err(|e| e.to_string())?;
    let temp = temp_if.clone();
    let first_v4 = cidrs.first().map(Ipv4Net::addr);
    let res =
        plumb::in_netns(&t.ns, move |h| {
            Box::pin(async move {
                let l = match plumb::link(&h, CONTAINER_IF).await? {
                    Some(l) => l,
                    None => {
                        let l = plumb::link(&h, &temp)
                            .await?
                            .ok_or_else(|| PlumbError::Missing(format!("{temp} did not arrive in the container")))?;
                        h.link().set(l.header.index).name(CONTAINER_IF.into()).mtu(mtu).execute().await.map_err(
                            |source| PlumbError::Netlink { what: "naming ethwe".into(), source: Box::new(source) },
                        )?;
                        l
                    }
                };
                let idx = l.header.index;
                for c in &cidrs {
                    plumb::add_addr(&h, idx, IpAddr::V4(c.addr()), c.prefix_len()).await?;
                }
                // Offloads stay on: the router completes what the container's stack leaves to
                // the NIC (checksums, segmentation) when it captures the frame.
                h.link().set(idx).up().execute().await.map_err(|source| PlumbError::Netlink {
                    what: "bringing ethwe up".into(),
                    source: Box::new(source),
                })?;
                let mac = plumb::link(&h, CONTAINER_IF).await?.as_ref().and_then(plumb::mac_of);
                if let (Some(mac), Some(ip)) = (mac, first_v4) {
                    // Announce the container at once (a migrated container is found immediately).
                    if let Ok(mut cap) = pcap::Capture::from_device(CONTAINER_IF).and_then(|c| c.open()) {
                        let _ = cap.sendpacket(garp(mac, ip));
                    }
                }
                Ok(mac.map(|m| router_core::Mac(m).to_string()).unwrap_or_default())
            })
        });
    res.map_err(|e| format!("attaching {target}: {e}"))
}

/// One attached target, as recorded for `weave ps`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Attachment {
    pub(crate) target: String,
    pub(crate) ns: std::path::PathBuf,
    pub(crate) mac: String,
    pub(crate) cidrs: Vec<String>,
}

/// The recorded attachments (none when nothing was recorded); an error for a file that
/// does not parse, which is never replaced.
pub(crate) fn load(dir: &std::path::Path) -> Result<Vec<Attachment>, String> {
    let path = dir.join("attachments.json");
    match crate::state::read(&path)? {
        None => Ok(Vec::new()),
        Some(s) => serde_json::from_str(&s).map_err(|e| crate::state::corrupt(&path, e)),
    }
}

/// Saves the attachments.
fn save(dir: &std::path::Path, all: &[Attachment]) -> Result<(), String> {
    let text = serde_json::to_string_pretty(all).map_err(|e| e.to_string())?;
    crate::state::write_atomic(&dir.join("attachments.json"), text.as_bytes())
}

/// Refuses addresses another live target holds (by the attachments recorded in `dir`; one
/// whose namespace is gone holds nothing) or that are on the bridge (exposed): a newcomer's
/// gratuitous ARP would take the address over. `target` itself may hold them already.
pub(crate) fn check_free(
    dir: &std::path::Path,
    bridge: &str,
    cidrs: &[String],
    target: Option<&str>,
) -> Result<(), String> {
    let wanted = cidrs.iter().map(|c| parse_cidr(c)).collect::<Result<Vec<_>, _>>()?;
    let ns = target.and_then(|t| plumb::resolve_target(t).ok()).map(|t| t.ns);
    for a in load(dir)? {
        if Some(a.target.as_str()) == target || ns.as_ref() == Some(&a.ns) || !a.ns.exists() {
            continue;
        }
        for c in a.cidrs.iter().filter_map(|c| parse_cidr(c).ok()) {
            if let Some(w) = wanted.iter().find(|w| w.addr() == c.addr()) {
                return Err(format!(
                    "{} is already attached to {}: detach it there first, or give --force",
                    w.addr(),
                    a.target
                ));
            }
        }
    }
    let rt = plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
    let on_bridge = rt.block_on(async {
        let h = plumb::connect().await?;
        match plumb::link(&h, bridge).await? {
            Some(br) => plumb::addrs(&h, br.header.index).await,
            None => Ok(Vec::new()),
        }
    });
    for (ip, _) in on_bridge.map_err(|e| e.to_string())? {
        if let Some(w) = wanted.iter().find(|w| IpAddr::V4(w.addr()) == ip) {
            return Err(format!(
                "{} is bridge {bridge}'s own address (weave expose): choose another, or give --force",
                w.addr()
            ));
        }
    }
    Ok(())
}

/// Records an attachment (merging CIDRs for a target attached again).
pub(crate) fn record(dir: &std::path::Path, target: &str, mac: &str, cidrs: &[String]) -> Result<(), String> {
    let t = plumb::resolve_target(target)?;
    crate::state::locked(dir, || record_locked(dir, target, mac, cidrs, t.ns))
        .map_err(|e| format!("cannot record the attachment: {e}"))
}

fn record_locked(
    dir: &std::path::Path,
    target: &str,
    mac: &str,
    cidrs: &[String],
    ns: std::path::PathBuf,
) -> Result<(), String> {
    let mut all = load(dir)?;
    match all.iter_mut().find(|a| a.target == target) {
        Some(a) => {
            a.mac = mac.to_string();
            // A restarted container lives in a new namespace.
            a.ns = ns;
            for c in cidrs {
                if !a.cidrs.contains(c) {
                    a.cidrs.push(c.clone());
                }
            }
        }
        None => all.push(Attachment { target: target.into(), ns, mac: mac.into(), cidrs: cidrs.to_vec() }),
    }
    save(dir, &all)
}

/// Forgets CIDRs of a target (all of it when `cidrs` is empty).
pub(crate) fn unrecord(dir: &std::path::Path, target: &str, cidrs: &[String]) -> Result<(), String> {
    crate::state::locked(dir, || {
        let mut all = load(dir)?;
        if cidrs.is_empty() {
            all.retain(|a| a.target != target);
        } else if let Some(a) = all.iter_mut().find(|a| a.target == target) {
            a.cidrs.retain(|c| !cidrs.contains(c));
        }
        all.retain(|a| !a.cidrs.is_empty());
        save(dir, &all)
    })
    .map_err(|e| format!("cannot record the detachment: {e}"))
}

/// `weave ps`: the bridge first, then every attached target whose namespace still exists.
pub(crate) fn ps(info: &crate::api::DaemonInfo, only: &[String]) -> Result<String, String> {
    let rt = plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
    let bridge_mac = rt.block_on(async {
        let h = plumb::connect().await.map_err(|e| e.to_string())?;
        let br = plumb::link(&h, &info.bridge).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(
            br.as_ref().and_then(plumb::mac_of).map(|m| router_core::Mac(m).to_string()).unwrap_or_default(),
        )
    })?;
    let mut out = format!("weave:expose {bridge_mac} {}\n", crate::expose::exposed(info)?.join(" "));
    for a in load(&info.state_dir)? {
        if (!only.is_empty() && !only.contains(&a.target)) || !a.ns.exists() {
            continue;
        }
        out.push_str(&format!("{} {} {}\n", a.target, a.mac, a.cidrs.join(" ")));
    }
    Ok(out)
}

/// Removes the given addresses from `target`'s ethwe, or ethwe itself when none are given.
pub(crate) fn detach(cidrs: &[String], target: &str) -> Result<(), String> {
    let cidrs = cidrs.iter().map(|c| parse_cidr(c)).collect::<Result<Vec<_>, _>>()?;
    let t = plumb::resolve_target(target)?;
    let res = plumb::in_netns(&t.ns, move |h| {
        Box::pin(async move {
            let Some(l) = plumb::link(&h, CONTAINER_IF).await? else {
                return Err(PlumbError::Missing("the container is not attached (it has no ethwe)".into()));
            };
            let idx = l.header.index;
            if cidrs.is_empty() {
                plumb::delete(&h, CONTAINER_IF).await?;
                return Ok(());
            }
            for c in &cidrs {
                if !plumb::del_addr(&h, idx, IpAddr::V4(c.addr())).await? {
                    return Err(PlumbError::Missing(format!("{c} is not attached")));
                }
            }
            if plumb::addrs(&h, idx).await?.iter().all(|(ip, _)| ip.is_ipv6()) {
                plumb::delete(&h, CONTAINER_IF).await?;
            }
            Ok(())
        })
    });
    res.map_err(|e| format!("detaching {target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_bad_ones_say_what_is_expected() {
        let c = parse_cidr("10.32.0.1/24").unwrap();
        assert_eq!((c.addr(), c.prefix_len()), ("10.32.0.1".parse().unwrap(), 24));
        for bad in ["10.32.0.1", "10.32.0.1/33", "10.32.0.1/0", "x/24", "10.32.0.256/24"] {
            let e = parse_cidr(bad).unwrap_err();
            assert!(e.contains("is not a CIDR like"), "{e}");
        }
    }
}
