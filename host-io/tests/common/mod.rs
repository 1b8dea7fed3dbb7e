//! What the namespace tests share: a lab of hosts as network namespaces joined by veth
//! "underlay" links, a real `weave` router in each, and containers as further namespaces.
//! Every lab makes its own uniquely named namespaces and removes them, and its routers, even
//! when its test fails.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const WEAVE: &str = env!("CARGO_BIN_EXE_weave");
pub static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn ok(args: &[&str]) -> String {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// How a test hands `weave launch` the password.
#[derive(Clone, Copy)]
pub enum Secret<'a> {
    None,
    File(&'a str),
    Env(&'a str),
}

pub struct Lab {
    pub id: String,
    pub hosts: Vec<String>,
    pub containers: Vec<String>,
    pub dir: PathBuf,
}

impl Lab {
    /// `n` hosts; `links` are underlay veths between host indices, each its own /24.
    pub fn new(n: usize, links: &[(usize, usize)]) -> Lab {
        assert!(nix_is_root(), "these tests build network namespaces and need root");
        let id = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("weave-test-{id}"));
        let mut lab = Lab { id: id.clone(), hosts: Vec::new(), containers: Vec::new(), dir };
        for i in 0..n {
            let h = format!("wh{i}-{id}");
            ok(&["ip", "netns", "add", &h]);
            ok(&["ip", "-n", &h, "link", "set", "lo", "up"]);
            lab.hosts.push(h);
        }
        for (k, &(a, b)) in links.iter().enumerate() {
            let (ia, ib) = (format!("wu{k}a{id}"), format!("wu{k}b{id}"));
            ok(&["ip", "link", "add", &ia, "type", "veth", "peer", "name", &ib]);
            ok(&["ip", "link", "set", &ia, "netns", &lab.hosts[a]]);
            ok(&["ip", "link", "set", &ib, "netns", &lab.hosts[b]]);
            ok(&["ip", "-n", &lab.hosts[a], "addr", "add", &format!("{}/24", lab.underlay_ip(k, a, b, a)), "dev", &ia]);
            ok(&["ip", "-n", &lab.hosts[b], "addr", "add", &format!("{}/24", lab.underlay_ip(k, a, b, b)), "dev", &ib]);
            ok(&["ip", "-n", &lab.hosts[a], "link", "set", &ia, "up"]);
            ok(&["ip", "-n", &lab.hosts[b], "link", "set", &ib, "up"]);
        }
        lab
    }

    /// Underlay address of `host` on link `k` between `a` and `b`.
    pub fn underlay_ip(&self, k: usize, a: usize, _b: usize, host: usize) -> String {
        format!("10.201.{k}.{}", if host == a { 1 } else { 2 })
    }

    pub fn weave(&self, host: usize, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host], WEAVE]).args(args);
        cmd.env_remove("WEAVE_PASSWORD");
        cmd.output().expect("run weave")
    }

    pub fn launch(&self, host: usize, peers: &[&str]) -> String {
        self.launch_with(host, peers, Secret::None)
    }

    /// `weave launch`, with the password (if any) given as `secret` says.
    pub fn launch_with(&self, host: usize, peers: &[&str], secret: Secret) -> String {
        let o = self.try_launch(host, peers, secret);
        assert!(o.status.success(), "launch on h{host}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn try_launch(&self, host: usize, peers: &[&str], secret: Secret) -> Output {
        self.try_launch_args(host, &[], peers, secret)
    }

    /// `weave launch` with further flags `args`.
    pub fn launch_args(&self, host: usize, args: &[&str], peers: &[&str], secret: Secret) -> String {
        let o = self.try_launch_args(host, args, peers, secret);
        assert!(o.status.success(), "launch on h{host}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn try_launch_args(&self, host: usize, args: &[&str], peers: &[&str], secret: Secret) -> Output {
        let dir = self.dir.join(format!("h{host}"));
        let dir = dir.to_str().unwrap().to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host], WEAVE, "launch", "--state-dir", &dir]);
        cmd.args(["--nickname", &format!("h{host}")]).args(args).env_remove("WEAVE_PASSWORD");
        match secret {
            Secret::None => {}
            Secret::File(pw) => {
                std::fs::create_dir_all(&self.dir).unwrap();
                let f = self.dir.join(format!("password-h{host}"));
                std::fs::write(&f, format!("{pw}\n")).unwrap();
                std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                cmd.arg("--password-file").arg(f);
            }
            Secret::Env(pw) => {
                cmd.env("WEAVE_PASSWORD", pw);
            }
        }
        cmd.args(peers).output().expect("run weave")
    }

    /// A container namespace attached on `host` with `cidrs`.
    pub fn container(&mut self, host: usize, cidrs: &[&str]) -> String {
        let (c, o) = self.try_container(host, cidrs);
        assert!(o.status.success(), "attach: {}", String::from_utf8_lossy(&o.stderr));
        c
    }

    /// A container namespace (removed with the lab), and what `weave attach` with `args`
    /// said about it on `host`.
    pub fn try_container(&mut self, host: usize, args: &[&str]) -> (String, Output) {
        let c = format!("wc{}-{}", self.containers.len(), self.id);
        ok(&["ip", "netns", "add", &c]);
        ok(&["ip", "-n", &c, "link", "set", "lo", "up"]);
        self.containers.push(c.clone());
        let target = format!("netns:{c}");
        let mut a = vec!["attach"];
        a.extend_from_slice(args);
        a.push(&target);
        let o = self.weave(host, &a);
        (c, o)
    }

    /// Pings until one answer or `within` runs out.
    pub fn pings(&self, container: &str, ip: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if sh(&["ip", "netns", "exec", container, "ping", "-c", "1", "-W", "1", ip]).status.success() {
                return true;
            }
        }
        false
    }

    /// Sends `len` pseudo-random bytes over TCP from container `from` to `ip` (container
    /// `to`) and checks they arrive whole, in order and unchanged.
    pub fn transfer(&self, from: &str, to: &str, ip: &str, len: usize) {
        self.transfers(&[(from, to, ip)], len);
    }

    /// Several such transfers at once, each (from, to, ip) on its own port.
    pub fn transfers(&self, flows: &[(&str, &str, &str)], len: usize) {
        let mut data = Vec::with_capacity(len);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(len);
        std::fs::create_dir_all(&self.dir).unwrap();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let src = self.dir.join(format!("sent-{k}"));
        std::fs::write(&src, &data).unwrap();
        let dst = |i: usize| self.dir.join(format!("received-{k}-{i}"));
        let servers: Vec<_> = flows
            .iter()
            .enumerate()
            .map(|(i, &(_, to, _))| {
                Command::new("ip")
                    .args(["netns", "exec", to, "sh", "-c"])
                    .arg(format!("nc -l -p {} > {}", 5001 + i, dst(i).display()))
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let clients: Vec<_> = flows
            .iter()
            .enumerate()
            .map(|(i, &(from, _, ip))| {
                Command::new("ip")
                    .args(["netns", "exec", from, "sh", "-c"])
                    .arg(format!("nc -N -w 10 {ip} {} < {}", 5001 + i, src.display()))
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, mut c) in clients.into_iter().enumerate() {
            assert!(c.wait().unwrap().success(), "the sender of flow {i} finished");
        }
        for (i, mut s) in servers.into_iter().enumerate() {
            let _ = s.wait();
            let got = std::fs::read(dst(i)).unwrap();
            assert_eq!(got.len(), data.len(), "flow {i}: every byte arrived");
            assert!(got == data, "flow {i}: in order, unchanged");
        }
    }

    /// `/metrics` of host `host`'s router, fetched from inside its namespace without an
    /// HTTP client (bash's `/dev/tcp`).
    pub fn metrics(&self, host: usize) -> String {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[host],
                "bash",
                "-c",
                "exec 3<>/dev/tcp/127.0.0.1/6784; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A counter or gauge from host `host`'s metrics, by its full sample name with labels.
    pub fn metric(&self, host: usize, sample: &str) -> u64 {
        let m = self.metrics(host);
        m.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {sample} in:\n{m}")) as u64
    }

    pub fn pid(&self, host: usize) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("h{host}/router.pid"))).ok()?.trim().parse().ok()
    }
}

pub fn nix_is_root() -> bool {
    sh(&["id", "-u"]).stdout.starts_with(b"0")
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in 0..self.hosts.len() {
            if let Some(pid) = self.pid(h) {
                let _ = sh(&["kill", "-9", &pid.to_string()]);
            }
        }
        for n in self.containers.iter().chain(&self.hosts) {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const SETTLE: Duration = Duration::from_secs(15);

/// Two hosts on one underlay link, h1 told to connect to h0.
pub fn two_hosts() -> Lab {
    let lab = Lab::new(2, &[(0, 1)]);
    lab.launch(0, &[]);
    lab.launch(1, &["10.201.0.1"]);
    lab
}
