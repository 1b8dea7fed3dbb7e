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

/// Removes every rule of `bridge`: its isolation rules and the NAT of its exposed subnets
/// (whether or not the state directory still lists them). The chain goes once no bridge has
/// rules in it.
pub(crate) fn uninstall(bridge: &str) {
    for (table, chain) in [("filter", CHAIN), ("nat", "POSTROUTING")] {
        for rule in rules_of(table, chain, bridge) {
            let mut del = vec!["-t", table, "-D", chain];
            del.extend(rule.iter().map(String::as_str));
            let _ = iptables(&del);
        }
    }
    if rules_of_any(CHAIN).is_empty() {
        remove("filter", "FORWARD", &["-j", CHAIN]);
        let _ = iptables(&["-t", "filter", "-X", CHAIN]);
    }
}

/// The rules of `chain` (as `iptables -S` lists them, without `-A CHAIN`).
fn listed(table: &str, chain: &str) -> Vec<Vec<String>> {
    let Ok(out) = Command::new("iptables").args(["-w", "-t", table, "-S", chain]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("-A {chain} ")))
        .map(|l| l.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect())
        .collect()
}

/// The rules of `chain` that name `bridge` as an interface.
fn rules_of(table: &str, chain: &str, bridge: &str) -> Vec<Vec<String>> {
    listed(table, chain)
        .into_iter()
        .filter(|r| r.windows(2).any(|w| (w[0] == "-i" || w[0] == "-o") && w[1] == bridge))
        .collect()
}

fn rules_of_any(chain: &str) -> Vec<Vec<String>> {
    listed("filter", chain)
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
