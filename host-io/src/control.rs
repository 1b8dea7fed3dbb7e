//! The control socket's protocol: one JSON request line from the CLI, one JSON answer line
//! from the daemon. Requests are checked whole (their JSON, each peer's `host[:port]` form,
//! each CIDR) before anything is done, so a bad one changes nothing and says what is wrong.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Longest request line, in bytes.
pub const REQUEST_MAX: u64 = 64 << 10;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Connect to peers (`replace`: forget the others first).
    Connect {
        /// Peers as `host[:port]`.
        peers: Vec<String>,
        /// Forget every other peer.
        #[serde(default)]
        replace: bool,
    },
    /// Stop connecting to peers.
    Forget {
        /// Peers as `host[:port]`.
        peers: Vec<String>,
    },
    /// An address on the bridge and NAT for its subnet.
    Expose {
        /// Like 10.32.0.254/24.
        cidr: String,
    },
    /// Undoes `Expose`.
    Hide {
        /// The address given to `Expose`.
        cidr: String,
    },
    /// Stop the router. (A struct variant, so that unknown fields are refused here too.)
    Stop {},
    /// An address for a target from the allocator; the answer is the CIDR.
    Allocate {
        /// Who will hold it (a container id, a namespace).
        target: String,
        /// The subnet (CIDR) to take it from; the default subnet when absent.
        #[serde(default)]
        subnet: Option<String>,
    },
    /// Records an address the user chose, so the allocator never hands it out.
    Claim {
        /// Who holds it.
        target: String,
        /// The address with its prefix.
        cidr: String,
    },
    /// Leaves the network for good: the allocator hands this peer's space to the others.
    Leave {},
    /// Takes over the address space of a peer that is gone for good.
    Rmpeer {
        /// Its peer name.
        peer: String,
    },
    /// Frees a target's addresses (all of them when `cidrs` is empty).
    Release {
        /// Who held them.
        target: String,
        /// The addresses, with their prefixes.
        #[serde(default)]
        cidrs: Vec<String>,
    },
}

/// The answer on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAnswer {
    /// Done; what to tell the user.
    Ok(String),
    /// Not done, and why.
    Error(String),
}

/// Reads and checks one request line.
pub fn parse_request(line: &str) -> Result<ControlRequest, String> {
    let req: ControlRequest = serde_json::from_str(line).map_err(|e| format!("not a control request: {e}"))?;
    match &req {
        ControlRequest::Connect { peers, .. } | ControlRequest::Forget { peers } => {
            if peers.is_empty() {
                return Err("name at least one peer".into());
            }
            for p in peers {
                check_peer(p)?;
            }
        }
        ControlRequest::Expose { cidr } | ControlRequest::Hide { cidr } => {
            parse_cidr(cidr)?;
        }
        ControlRequest::Stop {} | ControlRequest::Leave {} => {}
        ControlRequest::Allocate { target, subnet } => {
            check_target(target)?;
            if let Some(s) = subnet {
                parse_cidr(s)?;
            }
        }
        ControlRequest::Claim { target, cidr } => {
            check_target(target)?;
            parse_cidr(cidr)?;
        }
        ControlRequest::Rmpeer { peer } => {
            peer.parse::<router_core::PeerName>().map_err(|_| {
                format!("`{}` is not a peer name like 02:00:00:00:00:01 (see `weave status ipam`)", peer.escape_debug())
            })?;
        }
        ControlRequest::Release { target, cidrs } => {
            check_target(target)?;
            for c in cidrs {
                parse_cidr(c)?;
            }
        }
    }
    Ok(req)
}

/// A target name the allocator can key addresses by.
fn check_target(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > router_core::ipam::TARGET_MAX || t.chars().any(char::is_control) {
        return Err(format!("target `{}`: 1 to {} printable bytes", t.escape_debug(), router_core::ipam::TARGET_MAX));
    }
    Ok(())
}

/// Checks the form of a peer given as `host`, `host:port`, `a.b.c.d[:port]` or
/// `[v6]:port`, without resolving it.
pub fn check_peer(s: &str) -> Result<(), String> {
    if s.parse::<std::net::SocketAddr>().is_ok() || s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let bad = |why: &str| Err(format!("peer `{}`: {why}", s.escape_debug()));
    let host = match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => return bad("write an IPv6 address as [address]:port"),
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => h,
            _ => return bad(&format!("`{}` is not a port (1 to 65535)", p.escape_debug())),
        },
        None => s,
    };
    if host.is_empty() || host.len() > 253 {
        return bad("give a host name or IPv4 address");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
    };
    if !host.trim_end_matches('.').split('.').all(label_ok) {
        return bad("not a host name (letters, digits, `-`, `_` and dots) or IPv4 address");
    }
    Ok(())
}

/// A CIDR as `weave attach`, `expose` and `hide` take it: an IPv4 address with its prefix
/// length (1 to 32).
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    match s.parse::<Ipv4Net>() {
        Ok(c) if c.prefix_len() > 0 => Ok(c),
        _ => Err(format!("`{}` is not a CIDR like 10.32.0.1/24", s.escape_debug())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_whole_before_anything_is_done() {
        assert_eq!(parse_request(r#"{"cmd":"stop"}"#), Ok(ControlRequest::Stop {}));
        assert_eq!(
            parse_request(r#"{"cmd":"connect","peers":["10.0.0.1","h1:6790","[::1]:6783"]}"#),
            Ok(ControlRequest::Connect {
                peers: vec!["10.0.0.1".into(), "h1:6790".into(), "[::1]:6783".into()],
                replace: false
            })
        );
        for (line, want) in [
            (r#"{"cmd":"connect","peers":["h1:99999"]}"#, "`99999` is not a port"),
            (r#"{"cmd":"connect","peers":["h1:0"]}"#, "`0` is not a port"),
            (r#"{"cmd":"connect","peers":[]}"#, "at least one peer"),
            (r#"{"cmd":"forget","peers":["a b"]}"#, "not a host name"),
            (r#"{"cmd":"forget","peers":["fe80::1"]}"#, "IPv6"),
            (r#"{"cmd":"expose","cidr":"10.0.0.1"}"#, "not a CIDR"),
            (r#"{"cmd":"hide","cidr":"10.0.0.1/0"}"#, "not a CIDR"),
            (r#"{"cmd":"stop","now":true}"#, "not a control request"),
            (r#"{"cmd":"reboot"}"#, "not a control request"),
            ("", "not a control request"),
        ] {
            let e = parse_request(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }
}
