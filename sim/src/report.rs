//! A picture of a run (`weave-sim run FILE --report run.svg`): the topology as the run left
//! it, and a timeline of faults, link changes, convergence and the share of pings answered.
//!
//! The SVG is self-contained and machine-readable too: every host is a `circle` with
//! `data-host`, every fault a `line` with `data-fault` and `data-at` (microseconds), every
//! bucket of link changes a `rect` with `data-up` or `data-lost`, and the convergence and
//! last-fault markers `line`s with ids `converged` and `last-fault`.

use std::fmt::Write;

use router_core::status::ConnState;
use router_core::{Duration, Instant};
use rustc_hash::FxHashMap;

use crate::run::Outcome;
use crate::world::{host_of_peer, World};

/// Buckets across the run.
const BUCKETS: usize = 200;
/// A workload ping counts as answered when its reply comes within this.
const ANSWER: Duration = Duration::from_secs(1);

/// What a run records for its picture, by time bucket.
#[derive(Debug, Clone)]
pub struct Timeline {
    width: Duration,
    links_up: Vec<u32>,
    links_lost: Vec<u32>,
    pings_sent: Vec<u32>,
    pings_answered: Vec<u32>,
    pending: FxHashMap<(u32, u16), Instant>,
}

impl Timeline {
    /// A timeline of `span` from the start.
    pub fn new(span: Duration) -> Timeline {
        let width = Duration::from_micros((span.as_micros() as u64).div_ceil(BUCKETS as u64).max(1));
        Timeline {
            width,
            links_up: vec![0; BUCKETS],
            links_lost: vec![0; BUCKETS],
            pings_sent: vec![0; BUCKETS],
            pings_answered: vec![0; BUCKETS],
            pending: FxHashMap::default(),
        }
    }

    fn bucket(&self, at: Instant) -> usize {
        (((at - Instant::ZERO).as_micros() / self.width.as_micros()) as usize).min(BUCKETS - 1)
    }

    /// A router saw one of its links established (`up`) or lost.
    pub(crate) fn link(&mut self, now: Instant, up: bool) {
        let b = self.bucket(now);
        if up {
            self.links_up[b] += 1;
        } else {
            self.links_lost[b] += 1;
        }
    }

    /// Container `c` sent workload ping `seq`.
    pub(crate) fn ping_sent(&mut self, now: Instant, c: u32, seq: u16) {
        let b = self.bucket(now);
        self.pings_sent[b] += 1;
        self.pending.insert((c, seq), now);
    }

    /// Container `c` got the reply to its ping `seq`.
    pub(crate) fn ping_answered(&mut self, now: Instant, c: u32, seq: u16) {
        if let Some(sent) = self.pending.remove(&(c, seq)) {
            if now <= sent + ANSWER {
                let b = self.bucket(sent);
                self.pings_answered[b] += 1;
            }
        }
    }
}

/// Layout.
const W: f64 = 1000.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 970.0;
const TOPO_CY: f64 = 300.0;
const TOPO_R: f64 = 230.0;
const FAULTS_Y: f64 = 590.0;
const LINKS_Y: (f64, f64) = (640.0, 760.0);
const PINGS_Y: (f64, f64) = (790.0, 890.0);
const H: f64 = 930.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The picture of a finished run, as SVG. `w` is the world the run left; its checker must
/// have kept a timeline (see [`crate::run::run_reported`]).
pub fn svg(o: &Outcome, w: &mut World) -> String {
    let tl = w.checker.timeline.clone().unwrap_or_else(|| Timeline::new(o.simulated));
    let n = w.hosts.len();
    let span = tl.width.as_micros() as f64 * BUCKETS as f64;
    let x_of = |t: Duration| LEFT + (RIGHT - LEFT) * (t.as_micros() as f64 / span).min(1.0);
    let mut s = String::new();
    let verdict = match o.first_failure() {
        None => "PASS".to_string(),
        Some(v) => format!("FAIL {} at {}: {}", v.check, v.at, v.detail),
    };
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{} — seed {} — {} hosts — {}</text>
"#,
        esc(&o.name),
        o.seed,
        n,
        esc(&verdict)
    );

    // Topology: hosts on a circle, the underlay in grey, the links established at the end
    // in blue.
    let pos = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n.max(1) as f64 - std::f64::consts::FRAC_PI_2;
        (W / 2.0 + TOPO_R * a.cos(), TOPO_CY + TOPO_R * a.sin())
    };
    let _ = writeln!(s, r#"<g id="underlay" stroke="silver" stroke-width="0.5" opacity="0.6">"#);
    if !w.net.is_full_mesh() {
        for a in 0..n {
            for b in w.net.neighbours(a as u32) {
                if (a as u32) < b {
                    let ((x1, y1), (x2, y2)) = (pos(a), pos(b as usize));
                    let _ = writeln!(s, r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"#);
                }
            }
        }
    }
    let _ = writeln!(s, "</g>");
    let now = w.now;
    let mut overlay = Vec::new();
    for (a, h) in w.hosts.iter_mut().enumerate() {
        let Some(r) = h.router.as_mut() else { continue };
        for c in r.status(now).connections.iter().filter(|c| c.state == ConnState::Established) {
            if let Some(b) = c.peer.and_then(host_of_peer).filter(|&b| (a as u32) < b) {
                overlay.push((a, b as usize));
            }
        }
    }
    let _ = writeln!(s, r#"<g id="overlay" stroke="steelblue" stroke-width="1">"#);
    for (a, b) in &overlay {
        let ((x1, y1), (x2, y2)) = (pos(*a), pos(*b));
        let _ = writeln!(s, r#"<line data-link="{a}-{b}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"#);
    }
    let _ = writeln!(s, "</g>");
    let r = if n <= 100 {
        5.0
    } else if n <= 1000 {
        2.5
    } else {
        1.5
    };
    let _ = writeln!(s, r#"<g id="hosts">"#);
    for (i, h) in w.hosts.iter().enumerate() {
        let (x, y) = pos(i);
        let fill = if h.running() { "#222" } else { "crimson" };
        let name = esc(&h.name);
        let _ = write!(s, r#"<circle data-host="{name}" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"><title>{name}"#);
        let _ = writeln!(s, "{}</title></circle>", if h.running() { "" } else { " (not running)" });
        if n <= 40 {
            let (lx, ly) = (W / 2.0 + (x - W / 2.0) * 1.08, TOPO_CY + (y - TOPO_CY) * 1.08);
            let _ = writeln!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" dominant-baseline="middle">{name}</text>"#
            );
        }
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.0}" fill="dimgray">grey: underlay; blue: links established at the end ({}); red hosts: not running at the end</text>"#,
        TOPO_CY + TOPO_R + 30.0,
        overlay.len()
    );

    // Time axis.
    let (top, bottom) = (FAULTS_Y - 15.0, PINGS_Y.1);
    let _ = writeln!(s, r#"<g id="axis" stroke="gray">"#);
    let secs = span / 1e6;
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|st| secs / st <= 12.0)
        .unwrap_or(1200.0);
    let mut t = 0.0;
    while t <= secs {
        let x = x_of(Duration::from_secs_f64(t));
        let _ = writeln!(s, r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke-opacity="0.2"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.0}" text-anchor="middle" stroke="none" fill="dimgray">{t}s</text>"#,
            bottom + 15.0
        );
        t += step;
    }
    let _ = writeln!(s, "</g>");

    // Faults.
    let _ = writeln!(s, r#"<text x="4" y="{FAULTS_Y}" fill="dimgray">faults</text>"#);
    let _ = writeln!(s, r#"<g id="faults" stroke="crimson">"#);
    for (i, f) in w.faults().iter().enumerate() {
        let x = x_of(f.at.0);
        let kind = serde_json::to_value(&f.action)
            .ok()
            .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_string))
            .unwrap_or_default();
        let detail = esc(&serde_json::to_string(&f.action).unwrap_or_default());
        let _ = writeln!(
            s,
            r#"<line data-fault="{}" data-at="{}" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke-dasharray="2,3"><title>{} {detail}</title></line>"#,
            esc(&kind),
            f.at.0.as_micros(),
            f.at
        );
        let ly = FAULTS_Y + 12.0 * (i % 3) as f64;
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{ly:.0}" stroke="none" fill="crimson">{}</text>"#, x + 2.0, esc(&kind));
    }
    let _ = writeln!(s, "</g>");

    // Link changes per bucket: established above the middle, lost below.
    let mid = (LINKS_Y.0 + LINKS_Y.1) / 2.0;
    let most = tl.links_up.iter().chain(&tl.links_lost).copied().max().unwrap_or(0).max(1) as f64;
    let half = (LINKS_Y.1 - LINKS_Y.0) / 2.0;
    let bw = (RIGHT - LEFT) / BUCKETS as f64;
    let _ = writeln!(s, r#"<text x="4" y="{mid}" fill="dimgray">links</text>"#);
    let _ = writeln!(
        s,
        r#"<text x="{RIGHT}" y="{}" text-anchor="end" fill="dimgray">most in a bucket: {most}</text>"#,
        LINKS_Y.0 - 4.0
    );
    let _ = writeln!(s, r#"<g id="link-changes"><line x1="{LEFT}" y1="{mid}" x2="{RIGHT}" y2="{mid}" stroke="gray"/>"#);
    for b in 0..BUCKETS {
        let x = LEFT + bw * b as f64;
        let (up, lost) = (tl.links_up[b], tl.links_lost[b]);
        if up > 0 {
            let h = half * up as f64 / most;
            let _ = writeln!(
                s,
                r#"<rect data-up="{up}" x="{x:.1}" y="{:.1}" width="{bw:.2}" height="{h:.1}" fill="seagreen"><title>{up} established</title></rect>"#,
                mid - h
            );
        }
        if lost > 0 {
            let h = half * lost as f64 / most;
            let _ = writeln!(
                s,
                r#"<rect data-lost="{lost}" x="{x:.1}" y="{mid}" width="{bw:.2}" height="{h:.1}" fill="crimson"><title>{lost} lost</title></rect>"#
            );
        }
    }
    let _ = writeln!(s, "</g>");

    // Share of workload pings answered within a second, by when they were sent.
    let _ = writeln!(s, r#"<text x="4" y="{}" fill="dimgray">pings</text>"#, (PINGS_Y.0 + PINGS_Y.1) / 2.0);
    let _ = writeln!(s, r#"<g id="ping-grid" stroke="gainsboro">"#);
    for (frac, label) in [(0.0, "0%"), (0.5, "50%"), (1.0, "100%")] {
        let y = PINGS_Y.1 - (PINGS_Y.1 - PINGS_Y.0) * frac;
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}"/><text x="{}" y="{y}" text-anchor="end" stroke="none" fill="dimgray">{label}</text>"#,
            LEFT - 4.0
        );
    }
    let _ = writeln!(s, "</g>");
    let points: Vec<String> = (0..BUCKETS)
        .filter(|&b| tl.pings_sent[b] > 0)
        .map(|b| {
            let share = f64::from(tl.pings_answered[b]) / f64::from(tl.pings_sent[b]);
            let x = LEFT + bw * (b as f64 + 0.5);
            format!("{x:.1},{:.1}", PINGS_Y.1 - (PINGS_Y.1 - PINGS_Y.0) * share)
        })
        .collect();
    let (sent, answered): (u32, u32) = (tl.pings_sent.iter().sum(), tl.pings_answered.iter().sum());
    let _ = writeln!(
        s,
        r#"<polyline id="ping-share" data-sent="{sent}" data-answered="{answered}" points="{}" fill="none" stroke="darkorange" stroke-width="1.5"/>"#,
        points.join(" ")
    );

    // Markers: the last fault and convergence after it.
    let fe = x_of(o.faults_end);
    let _ = writeln!(
        s,
        r#"<line id="last-fault" data-at="{}" x1="{fe:.1}" y1="{top}" x2="{fe:.1}" y2="{bottom}" stroke="dimgray" stroke-dasharray="6,3"/>"#,
        o.faults_end.as_micros()
    );
    if let Some(c) = o.converged_after {
        let at = o.faults_end + c;
        let x = x_of(at);
        let _ = writeln!(
            s,
            r#"<line id="converged" data-at="{}" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="seagreen" stroke-width="2"><title>converged {:.3}s after the last fault</title></line>"#,
            at.as_micros(),
            c.as_secs_f64()
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{}" fill="seagreen">converged</text>"#, x + 3.0, top + 10.0);
    }
    s.push_str("</svg>\n");
    s
}
