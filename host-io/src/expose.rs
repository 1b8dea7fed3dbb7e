//! `weave expose` / `weave hide`: an address on the bridge so the host reaches the
//! containers, and NAT so containers reach beyond the host. Kept in the state directory.

use crate::api::DaemonInfo;
use crate::attach::parse_cidr;
use crate::{firewall, plumb};

/// The exposed CIDRs, from the state directory.
pub(crate) fn exposed(info: &DaemonInfo) -> Vec<String> {
    std::fs::read_to_string(info.state_dir.join("exposed"))
        .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

/// Exposes (`on`) or hides `cidr` on the bridge.
pub(crate) async fn set(info: &DaemonInfo, cidr: &str, on: bool) -> Result<(), String> {
    let c = parse_cidr(cidr)?;
    let net = c.trunc().to_string();
    let h = plumb::connect().await.map_err(|e| e.to_string())?;
    let br = plumb::link(&h, &info.bridge)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("bridge {} does not exist: run `weave launch` first", info.bridge))?;
    let mut list = exposed(info);
    if on {
        plumb::add_addr(&h, br.header.index, c.addr().into(), c.prefix_len()).await.map_err(|e| e.to_string())?;
        firewall::masquerade(&net, &info.bridge, true)?;
        if !list.iter().any(|x| x == cidr) {
            list.push(cidr.to_string());
        }
    } else {
        let was = plumb::del_addr(&h, br.header.index, c.addr().into()).await.map_err(|e| e.to_string())?;
        if !was {
            return Err(format!("{cidr} is not exposed"));
        }
        firewall::masquerade(&net, &info.bridge, false)?;
        list.retain(|x| x != cidr);
    }
    let mut text = list.join("\n");
    text.push('\n');
    std::fs::write(info.state_dir.join("exposed"), text).map_err(|e| format!("cannot save exposed subnets: {e}"))
}
