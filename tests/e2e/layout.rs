//! The house keeps its rooms: no crate links what it must not know, and no
//! two modules of a crate depend on each other (a cycle is where the flow
//! runbook -> load -> plan -> run -> journal starts going both ways).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The dependencies a crate's Cargo.toml names (normal ones, not dev).
fn deps(krate: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(format!("crates/{krate}/Cargo.toml"))).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crates_link_only_what_they_may_know() {
    let rules: &[(&str, &[&str])] = &[
        // The parser: no sandbox, no journal, no capability filesystem.
        (
            "runbook",
            &[
                "wasmtime",
                "wasmtime-wasi",
                "rusqlite",
                "cap-std",
                "mend-host",
                "mend-journal",
            ],
        ),
        // The plan's vocabulary: plain data.
        (
            "plan",
            &[
                "wasmtime",
                "wasmtime-wasi",
                "rusqlite",
                "cap-std",
                "mend-host",
                "mend-journal",
                "mend-runbook",
            ],
        ),
        // The journal remembers; it runs nothing.
        (
            "journal",
            &["wasmtime", "wasmtime-wasi", "cap-std", "mend-host"],
        ),
        // The host runs steps and touches the world; it knows no journal.
        ("host", &["rusqlite", "mend-journal", "clap"]),
        ("human", &["wasmtime", "rusqlite", "cap-std", "wit-bindgen"]),
        // The registry client moves and checks bytes; it runs no step.
        (
            "oci",
            &[
                "wasmtime",
                "wasmtime-wasi",
                "rusqlite",
                "cap-std",
                "mend-host",
                "mend-journal",
            ],
        ),
    ];
    for (krate, banned) in rules {
        let have = deps(krate);
        for b in *banned {
            assert!(!have.contains(*b), "crates/{krate} depends on {b}");
        }
    }
}

/// `crate::NAME` references per top-level module of one crate.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut top: BTreeSet<String> = BTreeSet::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name != "lib" && name != "main" {
            top.insert(name);
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    let re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let me = first.trim_end_matches(".rs").to_string();
            if !top.contains(&me) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for c in re.captures_iter(&text) {
                let other = c[1].to_string();
                if other != me && top.contains(&other) {
                    graph.entry(me.clone()).or_default().insert(other);
                }
            }
        }
    }
    graph
}

fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_two_modules_of_a_crate_depend_on_each_other() {
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        let graph = module_graph(&src);
        if let Some(c) = cycle(&graph) {
            panic!("{}: modules in a cycle: {}", src.display(), c.join(" -> "));
        }
    }
    // The check finds a cycle when there is one.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert!(cycle(&g).is_some());
}

/// The parser stays readable: no source file of the runbook crate (tests
/// apart) over 600 lines. The format table grows with the format; when it
/// passes this, split it by table.
#[test]
fn no_parser_file_is_a_wall() {
    let src = root().join("crates/runbook/src");
    let mut stack = vec![src.clone()];
    let mut long = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().unwrap() != "tests.rs"
            {
                let n = std::fs::read_to_string(&p).unwrap().lines().count();
                if n > 600 {
                    long.push(format!(
                        "{} ({n} lines)",
                        p.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "parser files over 600 lines: {}",
        long.join(", ")
    );
}
