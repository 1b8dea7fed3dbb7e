//! Addresses on the command line of `weave attach` and `weave run`: `CIDR` or `ip:CIDR` (an
//! address the user chose), `net:CIDR` (one from the allocator, in that subnet), `net:default`
//! (one from the allocator's default subnet, also what no address at all means).

use ipnet::Ipv4Net;
use weave_host_io::control::{parse_cidr, ControlRequest};

/// One address asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// This address.
    Ip(Ipv4Net),
    /// One from the allocator, in this subnet (the default one when `None`).
    Net(Option<Ipv4Net>),
}

/// Reads one address argument; `None` when the argument is not one (a target, or the first
/// of `docker run`'s arguments).
pub(crate) fn parse(s: &str) -> Option<Result<Spec, String>> {
    if let Some(net) = s.strip_prefix("net:") {
        if net == "default" {
            return Some(Ok(Spec::Net(None)));
        }
        return Some(parse_cidr(net).map(|n| Spec::Net(Some(n.trunc()))));
    }
    if let Some(ip) = s.strip_prefix("ip:") {
        return Some(parse_cidr(ip).map(Spec::Ip));
    }
    // Something shaped like an address (a digit first, a prefix) is one, or a mistake.
    if s.starts_with(|c: char| c.is_ascii_digit()) && s.contains('/') {
        return Some(parse_cidr(s).map(Spec::Ip));
    }
    None
}

/// The leading address arguments of `args` (none given: one from the default subnet), and
/// how many arguments they took.
pub(crate) fn leading(args: &[String]) -> Result<(Vec<Spec>, usize), String> {
    let mut specs = Vec::new();
    for a in args {
        match parse(a) {
            Some(s) => specs.push(s?),
            None => break,
        }
    }
    let n = specs.len();
    if specs.is_empty() {
        specs.push(Spec::Net(None));
    }
    Ok((specs, n))
}

/// Turns specs into addresses for `target` (the allocator's key: a container's full id, a
/// namespace): asks the router for `net:` ones, records `ip:` ones with it. `ask` sends one
/// control request. On failure, what this call allocated is freed again.
pub(crate) fn resolve(
    specs: &[Spec],
    target: &str,
    ask: &dyn Fn(&ControlRequest) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut allocated = Vec::new();
    for s in specs {
        let r = match s {
            Spec::Ip(n) => {
                match ask(&ControlRequest::Claim { target: target.to_owned(), cidr: n.to_string() }) {
                    Ok(w) if w.starts_with("warning:") => eprintln!("weave: {w}"),
                    // No router, or one without an allocator: the address is the user's word.
                    _ => {}
                }
                Ok(n.to_string())
            }
            Spec::Net(subnet) => {
                let req = ControlRequest::Allocate { target: target.to_owned(), subnet: subnet.map(|n| n.to_string()) };
                ask(&req).inspect(|a| allocated.push(a.clone()))
            }
        };
        match r {
            Ok(a) => out.push(a),
            Err(e) => {
                release(target, &allocated, ask);
                return Err(format!("no address for {target}: {e}"));
            }
        }
    }
    Ok(out)
}

/// Frees `cidrs` of `target` (all its addresses when empty); a router that is not running
/// has nothing to free, and any other failure is reported on standard error.
pub(crate) fn release(target: &str, cidrs: &[String], ask: &dyn Fn(&ControlRequest) -> Result<String, String>) {
    // No router answers: it has nothing to free (it frees Docker containers' addresses
    // itself when Docker reports them removed). Any other refusal is the user's to see.
    match ask(&ControlRequest::Release { target: target.to_owned(), cidrs: cidrs.to_vec() }) {
        Err(e) if !e.starts_with("no weave router answers") => eprintln!("weave: addresses of {target} not freed: {e}"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_arguments_are_told_from_targets_and_docker_arguments() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(parse("10.32.1.5/24"), Some(Ok(Spec::Ip(n("10.32.1.5/24")))));
        assert_eq!(parse("ip:10.32.1.5/24"), Some(Ok(Spec::Ip(n("10.32.1.5/24")))));
        assert_eq!(parse("net:10.32.1.5/24"), Some(Ok(Spec::Net(Some(n("10.32.1.0/24"))))));
        assert_eq!(parse("net:default"), Some(Ok(Spec::Net(None))));
        assert!(matches!(parse("net:nonsense"), Some(Err(_))));
        assert!(matches!(parse("ip:10.1.2.3"), Some(Err(_))));
        assert!(matches!(parse("10.32.0.1/33"), Some(Err(e)) if e.contains("is not a CIDR")));
        assert_eq!(parse("my-container"), None);
        assert_eq!(parse("-ti"), None);
        let args: Vec<String> = ["net:10.2.0.0/16", "10.3.0.1/8", "busybox"].iter().map(|s| s.to_string()).collect();
        let (specs, used) = leading(&args).unwrap();
        assert_eq!((specs.len(), used), (2, 2));
        let (specs, used) = leading(&args[2..]).unwrap();
        assert_eq!((specs, used), (vec![Spec::Net(None)], 0), "no address: one from the default subnet");
    }

    #[test]
    fn a_failed_allocation_frees_what_the_call_took() {
        let asked = std::cell::RefCell::new(Vec::new());
        let ask = |r: &ControlRequest| -> Result<String, String> {
            asked.borrow_mut().push(r.clone());
            match r {
                ControlRequest::Allocate { subnet: None, .. } => Ok("10.32.0.1/12".into()),
                ControlRequest::Allocate { .. } => Err("no free address".into()),
                _ => Ok(String::new()),
            }
        };
        let specs = [Spec::Net(None), Spec::Net(Some("10.40.0.0/16".parse().unwrap()))];
        let e = resolve(&specs, "c1", &ask).unwrap_err();
        assert!(e.contains("no free address"), "{e}");
        let last = asked.borrow().last().cloned();
        assert_eq!(last, Some(ControlRequest::Release { target: "c1".into(), cidrs: vec!["10.32.0.1/12".into()] }));
    }
}
