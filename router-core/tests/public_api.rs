//! The core's API is the protocol contract: this test reads the crate's source and fails when
//! a driver's tuning creeps back into it (unsafe code, raw addresses, layout promises on public
//! types, or the `many-routers` feature spreading beyond the items it documents).

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("router-core/src is readable") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every source line of the crate, with its file and number, comments left out.
fn code_lines() -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    assert!(files.len() > 20, "found the crate's sources ({} files)", files.len());
    let mut lines = Vec::new();
    for f in files {
        let name = f.strip_prefix(&root).unwrap().display().to_string();
        for (i, l) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            let code = l.split("//").next().unwrap_or("").to_string();
            if !code.trim().is_empty() {
                lines.push((name.clone(), i + 1, code));
            }
        }
    }
    lines
}

fn offenders(lines: &[(String, usize, String)], bad: impl Fn(&str, &str) -> bool) -> Vec<String> {
    lines.iter().filter(|(f, _, l)| bad(f, l)).map(|(f, n, l)| format!("{f}:{n}: {}", l.trim())).collect()
}

#[test]
fn the_core_has_no_unsafe_code_and_forbids_it() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(lib.contains("#![forbid(unsafe_code)]"), "lib.rs forbids unsafe code");
    let found = offenders(&code_lines(), |_, l| l.contains("unsafe") && !l.contains("forbid(unsafe_code)"));
    assert!(found.is_empty(), "unsafe in the core:\n{}", found.join("\n"));
}

#[test]
fn no_raw_addresses_or_layout_constants_are_handed_out() {
    let lines = code_lines();
    let found = offenders(&lines, |_, l| {
        l.contains("*const ")
            || l.contains("*mut ")
            || l.contains("as_ptr()")
            || l.contains("offset_of!")
            || l.contains("prefetch")
            || l.contains("HOT_LEN")
    });
    assert!(found.is_empty(), "raw addresses or layout tuning in the core:\n{}", found.join("\n"));
    // A `repr` is a promise about memory layout: only crate-private types may make one.
    let mut found = Vec::new();
    for (i, (f, n, l)) in lines.iter().enumerate() {
        if l.trim_start().starts_with("#[repr(") {
            let item = lines[i + 1..].iter().find(|(_, _, x)| !x.trim_start().starts_with("#[")).map(|x| &x.2);
            if item.is_some_and(|x| x.trim_start().starts_with("pub ")) {
                found.push(format!("{f}:{n}: {}", l.trim()));
            }
        }
    }
    assert!(found.is_empty(), "public types with a layout promise:\n{}", found.join("\n"));
}

#[test]
fn the_many_routers_feature_stays_where_it_is_documented() {
    // The feature's items: the store (share.rs, its module in lib.rs), the two `Config` fields
    // and the router reading them, and two sharing probes on `View` and `Routes`.
    let allowed = ["share.rs", "lib.rs", "config.rs", "router.rs", "view.rs", "routes/mod.rs"];
    let found = offenders(&code_lines(), |f, l| l.contains("many-routers") && !allowed.contains(&f));
    assert!(found.is_empty(), "the many-routers feature outside its items:\n{}", found.join("\n"));
    let cargo = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let features = cargo.split("[features]").nth(1).expect("a [features] table").split("\n[").next().unwrap();
    assert!(!features.lines().any(|l| l.trim_start().starts_with("default")), "the core enables no feature by default");
}
