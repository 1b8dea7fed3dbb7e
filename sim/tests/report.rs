//! The picture of a run (`--report`): it parses as SVG and holds every host, every fault, the
//! link changes the routers saw, the pings and the convergence of the run it draws.

use weave_sim::report::svg;
use weave_sim::{run_reported, Scenario, Trace};

fn scenario(file: &str) -> Scenario {
    let path = format!("{}/../scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn attr<'a>(n: &roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name).unwrap_or_else(|| panic!("{:?} has no {name}", n.tag_name()))
}

fn num(n: &roxmltree::Node<'_, '_>, name: &str) -> u64 {
    attr(n, name).parse().unwrap()
}

#[test]
fn the_report_draws_every_host_fault_link_change_and_the_convergence() {
    for file in ["partition-heal.toml", "random-faults.toml"] {
        let s = scenario(file);
        let (o, mut w) = run_reported(&s, 1, Trace::new());
        assert!(o.passed(), "{file}: {:?}", o.first_failure());
        let text = svg(&o, &mut w);
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{file}: not XML: {e}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let all: Vec<roxmltree::Node> = root.descendants().collect();

        let mut hosts: Vec<&str> =
            all.iter().filter(|n| n.has_attribute("data-host")).map(|n| attr(n, "data-host")).collect();
        hosts.sort();
        let mut names: Vec<&str> = w.hosts.iter().map(|h| h.name.as_str()).collect();
        names.sort();
        assert_eq!(hosts, names, "{file}: one circle per host");

        let faults: Vec<(String, u64)> = all
            .iter()
            .filter(|n| n.has_attribute("data-fault"))
            .map(|n| (attr(n, "data-fault").into(), num(n, "data-at")))
            .collect();
        assert_eq!(faults.len(), w.faults().len(), "{file}: one line per fault");
        for (f, (kind, at)) in w.faults().iter().zip(&faults) {
            assert_eq!(*at, f.at.0.as_micros() as u64, "{file}");
            let want = serde_json::to_value(&f.action).unwrap()["action"].as_str().unwrap().to_string();
            assert_eq!(*kind, want, "{file}");
        }
        assert!(faults.len() >= 2, "{file}: the scenarios drawn have faults");

        // Every link change a router reported is in a bucket. In partition-heal no router
        // restarts, so the routers' own counters are the whole story.
        let sum = |a: &str| all.iter().filter(|n| n.has_attribute(a)).map(|n| num(n, a)).sum::<u64>();
        let (up, lost) = (sum("data-up"), sum("data-lost"));
        assert!(up > 0, "{file}: links came up");
        if file == "partition-heal.toml" {
            let stats: Vec<_> = w.hosts.iter().filter_map(|h| h.router.as_ref()).map(|r| *r.stats()).collect();
            assert_eq!(up, stats.iter().map(|s| s.links_established).sum::<u64>());
            let lost_total =
                stats.iter().map(|s| s.links_lost_probe + s.links_lost_heartbeat + s.links_lost_ack).sum::<u64>();
            assert_eq!(lost, lost_total);
            assert!(lost > 0, "the partition cut links");
        }

        let pings = all.iter().find(|n| n.attribute("id") == Some("ping-share")).expect("the ping line");
        let (sent, answered) = (num(pings, "data-sent"), num(pings, "data-answered"));
        assert!(sent > 0 && answered > 0 && answered <= sent, "{file}: {answered} of {sent}");
        assert!(attr(pings, "points").split(' ').count() > 10, "{file}");

        let marker = |id: &str| all.iter().find(|n| n.attribute("id") == Some(id)).map(|n| num(n, "data-at"));
        assert_eq!(marker("last-fault"), Some(o.faults_end.as_micros() as u64), "{file}");
        let converged = o.converged_after.map(|c| (o.faults_end + c).as_micros() as u64);
        assert!(converged.is_some());
        assert_eq!(marker("converged"), converged, "{file}");
    }
}
