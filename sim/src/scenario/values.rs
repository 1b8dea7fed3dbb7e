//! The scenario format's value types: durations (`250ms`, `1.5s`) and IPv4 subnets.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use router_core::Duration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `250ms`, `10s`, `2m`, `1h` or `1.5s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 250ms, 10s, 2m or 1h"))?;
        let secs = match unit.trim() {
            "us" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("`{s}`: the unit must be one of us, ms, s, m, h")),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("`{s}` is not a valid duration"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us % 1_000_000 == 0 {
            write!(f, "{}s", us / 1_000_000)
        } else if us % 1000 == 0 {
            write!(f, "{}ms", us / 1000)
        } else {
            write!(f, "{us}us")
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A parsed IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n` (prefix 8 to 30; host bits are cleared).
    pub fn parse(s: &str) -> Option<Subnet> {
        let net = s.parse::<Ipv4Net>().ok().filter(|n| (8..=30).contains(&n.prefix_len()))?;
        Some(Subnet { addr: net.network(), prefix: net.prefix_len() })
    }

    /// Whether `ip` lies in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        Ipv4Net::new(self.addr, self.prefix).is_ok_and(|n| n.contains(&ip))
    }

    /// The `n`-th host address (1-based).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + n)
    }

    /// Number of usable host addresses.
    pub fn capacity(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }
}
