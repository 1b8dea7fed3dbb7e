//! Firewall rules, through the `iptables` command (as Docker does): isolation of the weave
//! bridge from docker0, forwarding within the bridge even under a DROP policy, and NAT for
//! exposed subnets.

use std::process::Command;

const CHAIN: &str = "WEAVE";

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables ({e}): install the iptables package"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Adds a rule unless it is there (`-C` checks first).
fn ensure(table: &str, chain: &str, rule: &[&str], insert: bool) -> Result<(), String> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if iptables(&check).is_ok() {
        return Ok(());
    }
    let mut add = vec!["-t", table, if insert { "-I" } else { "-A" }, chain];
    add.extend_from_slice(rule);
    iptables(&add)
}

fn remove(table: &str, chain: &str, rule: &[&str]) {
    let mut del = vec!["-t", table, "-D", chain];
    del.extend_from_slice(rule);
    while iptables(&del).is_ok() {}
}

/// Installs the isolation rules for `bridge`.
pub(crate) fn install(bridge: &str) -> Result<(), String> {
    let _ = iptables(&["-t", "filter", "-N", CHAIN]);
    ensure("filter", "FORWARD", &["-j", CHAIN], true)?;
    ensure("filter", CHAIN, &["-i", "docker0", "-o", bridge, "-j", "DROP"], false)?;
    ensure("filter", CHAIN, &["-i", bridge, "-o", bridge, "-j", "ACCEPT"], false)?;
    Ok(())
}

/// Removes the isolation rules.
pub(crate) fn uninstall() {
    remove("filter", "FORWARD", &["-j", CHAIN]);
    let _ = iptables(&["-t", "filter", "-F", CHAIN]);
    let _ = iptables(&["-t", "filter", "-X", CHAIN]);
}

/// NAT for an exposed subnet: containers reach beyond the host.
pub(crate) fn masquerade(cidr: &str, bridge: &str, on: bool) -> Result<(), String> {
    let rule = ["-s", cidr, "!", "-o", bridge, "-j", "MASQUERADE"];
    if on {
        ensure("nat", "POSTROUTING", &rule, false)
    } else {
        remove("nat", "POSTROUTING", &rule);
        Ok(())
    }
}
