//! The layout stays free of import cycles: every module of `src/` and the
//! modules its non-test code names (`crate::…`, `super::…`), as a graph
//! that must have no cycle. A cycle found names its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`policy::kms`) → its source, test modules cut off.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_string();
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// Module → the other modules its code names.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let comment = regex::Regex::new(r"//[^\n]*").unwrap();
    let path = regex::Regex::new(r"\b(crate|super)::((?:[a-z_0-9]+::)*[a-z_0-9]+)").unwrap();
    let owner = |p: &str| -> Option<String> {
        let parts: Vec<&str> = p.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|i| parts[..i].join("::"))
            .find(|m| modules.contains_key(m))
    };
    modules
        .iter()
        .map(|(m, code)| {
            let code = comment.replace_all(code, "");
            let parent = m.rsplit_once("::").map(|(p, _)| p).unwrap_or("");
            let deps = path
                .captures_iter(&code)
                .filter_map(|c| {
                    let full = match (&c[1], parent) {
                        ("crate", _) | ("super", "") => c[2].to_string(),
                        _ => format!("{parent}::{}", &c[2]),
                    };
                    owner(&full)
                })
                // A module's own items and its ancestors' re-exports are
                // not an import of another module.
                .filter(|d| d != m && !m.starts_with(&format!("{d}::")))
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

/// The cycles of `graph` (strongly connected components of two or more).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: finish order on the graph, then components on its reverse.
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(v.to_string()) {
            return;
        }
        for w in g.get(v).into_iter().flatten() {
            visit(w, g, seen, out);
        }
        out.push(v.to_string());
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for v in graph.keys() {
        visit(v, graph, &mut seen, &mut order);
    }
    let mut reverse: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (v, ws) in graph {
        for w in ws {
            reverse.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for v in order.iter().rev() {
        let mut component = Vec::new();
        visit(v, &reverse, &mut seen, &mut component);
        if component.len() > 1 {
            component.sort();
            found.push(component);
        }
    }
    found
}

#[test]
fn the_modules_import_each_other_without_cycles() {
    let modules = modules();
    assert!(modules.len() > 50, "{} modules", modules.len());
    let graph = imports(&modules);
    assert!(graph["policy::validate"].contains("policy::kms_ref"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles: {found:?}");
}

#[test]
fn a_cycle_is_seen() {
    let modules: BTreeMap<String, String> = [
        ("cli", "use crate::report::InputFormat;"),
        ("report", "fn main(a: &crate::cli::ReportArgs) {}"),
        ("report::verify", "use super::Report; use crate::audit::x;"),
        ("audit", "// crate::cli::nothing in a comment\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let graph = imports(&modules);
    assert_eq!(
        cycles(&graph),
        vec![vec!["cli".to_string(), "report".to_string()]]
    );
}
