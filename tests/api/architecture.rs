//! The layers of docs/ARCHITECTURE.md, checked on the source: imports go down only (front ends
//! → wiring → use cases → services → foundations), HTTP types stay in the HTTP layer, and no
//! file imports (through `use` and paths) a file that imports it back, directly or not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of a top-level module of src/, lowest first.
fn layer(module: &str) -> usize {
    match module {
        "store" | "db" | "config" | "domain" | "clock" | "crypto" | "metrics" => 0,
        "oauth" | "users" | "clients" | "keys" | "rbac" | "articles" | "abuse" | "audit"
        | "signins" | "sessions" | "mail" | "mfa" | "alerts" | "webhooks" | "upstream" => 1,
        "ops" => 2,
        "state" => 3,
        "http" | "cli" | "duties" | "crate" => 4,
        other => panic!("module `{other}` has no layer: add it to docs/ARCHITECTURE.md and here"),
    }
}

struct Source {
    /// `oauth::grants::password`, `store`, `crate` for lib.rs.
    module: String,
    text: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter_map(|path: PathBuf| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel == "main" {
                return None;
            }
            let module = match rel.as_str() {
                "lib" => "crate".to_string(),
                r => r.trim_end_matches("/mod").replace('/', "::"),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anything; the layers are about the server's code.
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            Some(Source { module, text })
        })
        .collect()
}

/// The modules `source` refers to by `crate::`, `super::` or `self::` paths, resolved to the
/// longest known module.
fn references(source: &Source, known: &BTreeSet<String>) -> BTreeSet<String> {
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| known.contains(m))
    };
    let parent = match source.module.rsplit_once("::") {
        Some((p, _)) => p.to_string(),
        None => "crate".to_string(),
    };
    let within = |base: &str, rest: &str| {
        if base == "crate" {
            rest.to_string()
        } else {
            format!("{base}::{rest}")
        }
    };
    let mut found = BTreeSet::new();
    let text = &source.text;
    for (prefix, base) in [
        ("crate::", "crate".to_string()),
        ("super::", parent.clone()),
        ("self::", source.module.clone()),
    ] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(prefix) {
            let preceded_by_ident = rest[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[i + prefix.len()..];
            if preceded_by_ident {
                continue;
            }
            let tail: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                .collect();
            let names: Vec<String> = if let Some(group) = tail
                .strip_suffix('{')
                .or_else(|| tail.ends_with("::{").then(|| tail.trim_end_matches("::{")))
            {
                // `super::{a, b}`: each name inside, or the module itself.
                let inside: String = rest[tail.len()..]
                    .chars()
                    .take_while(|c| *c != '}')
                    .collect();
                let group = group.trim_end_matches("::");
                inside
                    .split(',')
                    .map(|n| n.trim().split(' ').next().unwrap_or("").to_string())
                    .map(|n| {
                        if group.is_empty() {
                            n
                        } else {
                            format!("{group}::{n}")
                        }
                    })
                    .collect()
            } else {
                vec![tail.trim_end_matches(':').to_string()]
            };
            for name in names {
                let target = resolve(&within(&base, &name))
                    .or_else(|| (base != "crate" && known.contains(&base)).then(|| base.clone()));
                if let Some(t) = target
                    && t != source.module
                {
                    found.insert(t);
                }
            }
        }
    }
    found
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn imports_go_down_and_never_around_in_a_circle() {
    let sources = sources();
    let known: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    let graph: BTreeMap<String, BTreeSet<String>> = sources
        .iter()
        .map(|s| (s.module.clone(), references(s, &known)))
        .collect();

    let mut upward = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if top(to) != top(from) && layer(top(to)) > layer(top(from)) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports going up a layer: {upward:#?}");

    // Tarjan's strongly connected components: any with more than one file is a cycle.
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        cycles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        for t in w.graph.get(v).into_iter().flatten() {
            let t = t.as_str();
            if !w.index.contains_key(t) {
                visit(w, t);
                let low = w.low[v].min(w.low[t]);
                w.low.insert(v, low);
            } else if w.on_stack.contains(t) {
                let low = w.low[v].min(w.index[t]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(x) = w.stack.pop() {
                w.on_stack.remove(x);
                component.push(x);
                if x == v {
                    break;
                }
            }
            if component.len() > 1 {
                w.cycles.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    assert!(walk.cycles.is_empty(), "import cycles: {:#?}", walk.cycles);
}

#[test]
fn http_types_stay_in_the_http_layer() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|s| !(s.module == "crate" || s.module == "http" || s.module.starts_with("http::")))
        .filter(|s| s.text.contains("poem"))
        .map(|s| s.module)
        .collect();
    assert!(
        offenders.is_empty(),
        "modules below the HTTP layer that use poem: {offenders:?}"
    );
}

#[test]
fn the_layers_are_the_documented_ones() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .unwrap();
    let tops: BTreeSet<String> = sources()
        .iter()
        .map(|s| top(&s.module).to_string())
        .filter(|m| m != "crate")
        .collect();
    for module in tops {
        layer(&module);
        assert!(
            doc.contains(&format!("`{module}`")),
            "docs/ARCHITECTURE.md does not name `{module}`"
        );
    }
}
