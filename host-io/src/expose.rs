//! `weave expose` / `weave hide`: an address on the bridge so the host reaches the
//! containers, and NAT so containers reach beyond the host. Kept in the state directory.

use crate::api::DaemonInfo;
use crate::attach::parse_cidr;
use crate::{firewall, plumb};

/// The exposed CIDRs, from the state directory.
pub(crate) fn exposed(info: &DaemonInfo) -> Result<Vec<String>, String> {
    crate::state::lines(&info.state_dir.join("exposed"))
}

/// Runs `f` (the `iptables` command, a file lock) on a blocking thread: the daemon's runtime
/// has one thread, the router's.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("a blocking task failed: {e}"))?
}

/// Exposes (`on`) or hides `cidr` on the bridge, and records it in the state directory.
pub(crate) async fn set(info: &DaemonInfo, cidr: &str, on: bool) -> Result<(), String> {
    apply(info, cidr, on).await?;
    let (info, cidr) = (info.clone(), cidr.to_string());
    blocking(move || record(&info, &cidr, on)).await
}

fn record(info: &DaemonInfo, cidr: &str, on: bool) -> Result<(), String> {
    crate::state::locked(&info.state_dir, || {
        let mut list = exposed(info)?;
        if on {
            if !list.iter().any(|x| x == cidr) {
                list.push(cidr.to_string());
            }
        } else {
            list.retain(|x| x != cidr);
        }
        crate::state::save_lines(&info.state_dir.join("exposed"), &list)
    })
    .map_err(|e| format!("cannot save exposed subnets: {e}"))
}

/// Exposes again, at start, every CIDR recorded as exposed (the bridge is new, and the NAT
/// rules may be gone); a failure is logged and the rest are still restored.
pub(crate) async fn restore(info: &DaemonInfo) {
    let list = match exposed(info) {
        Ok(l) => l,
        Err(e) => return tracing::warn!("exposed subnets not restored: {e}"),
    };
    for cidr in list {
        match apply(info, &cidr, true).await {
            Ok(()) => tracing::info!(%cidr, "exposed again"),
            Err(e) => tracing::warn!(%cidr, "cannot expose again: {e}"),
        }
    }
}

/// The address on the bridge and the NAT rule of `cidr`, made (`on`) or removed.
async fn apply(info: &DaemonInfo, cidr: &str, on: bool) -> Result<(), String> {
    let c = parse_cidr(cidr)?;
    let net = c.trunc().to_string();
    let h = plumb::connect().await.map_err(|e| e.to_string())?;
    let br = plumb::link(&h, &info.bridge)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("bridge {} does not exist: run `weave launch` first", info.bridge))?;
    if on {
        plumb::add_addr(&h, br.header.index, c.addr().into(), c.prefix_len()).await.map_err(|e| e.to_string())?;
        let bridge = info.bridge.clone();
        blocking(move || firewall::masquerade(&net, &bridge, true)).await?;
    } else {
        let was = plumb::del_addr(&h, br.header.index, c.addr().into()).await.map_err(|e| e.to_string())?;
        if !was {
            return Err(format!("{cidr} is not exposed"));
        }
        let bridge = info.bridge.clone();
        blocking(move || firewall::masquerade(&net, &bridge, false)).await?;
    }
    Ok(())
}
