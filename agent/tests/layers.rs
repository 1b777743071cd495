//! The import rules of `agent/src`, read from the sources (DESIGN.md, "Layers"):
//! - no import cycle between modules, neither between files (`hugepages::plan` and
//!   `hugepages::pools` are two) nor between top-level modules (`hugepages` and
//!   `config`);
//! - no file under `cmd/` imports another file under `cmd/` (`cmd/mod.rs` aside):
//!   views share through modules outside `cmd/`.
//!
//! An import is any `crate::`, `super::` or `self::` path in the code, and a `use` of
//! a child module by its bare name; comments and the `#[cfg(test)]` module at the end
//! of a file are left out (tests may reach anywhere). A path names the longest module
//! prefix it has: `crate::hugepages::plan::Decision` is `hugepages::plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `cmd` imports between views that are still there, to be moved out of `cmd/`
/// (issue 12). An import not listed here fails the test; remove an entry when its
/// import goes.
const KNOWN_CMD_IMPORTS: &[(&str, &str)] = &[];

/// Every module of `agent/src` with its code: `foo.rs` and `foo/mod.rs` are `foo`,
/// `foo/bar.rs` is `foo::bar`; `lib.rs` and `main.rs` are left out (they only declare
/// and dispatch).
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            if p.is_dir() {
                let mut sub = prefix.to_vec();
                sub.push(name);
                walk(&p, &sub, out);
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if prefix.is_empty() && (stem == "lib" || stem == "main") {
                continue;
            }
            let mut module = prefix.to_vec();
            if stem != "mod" {
                module.push(stem.to_owned());
            }
            let text = std::fs::read_to_string(&p).expect("read source");
            out.insert(module.join("::"), text);
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The code of a file without comments and without its trailing test module.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        let line = line.find("//").map_or(line, |i| &line[..i]);
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a use-tree starting at `s` names, each as its segments: `a::{b, c::d}`
/// is `a::b` and `a::c::d`.
fn use_tree(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('{') {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(use_tree(&rest[start..i]));
                    return out;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(use_tree(&rest[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    if end == 0 {
        return Vec::new();
    }
    let head = s[..end].to_owned();
    match s[end..].strip_prefix("::") {
        Some(rest) => {
            let mut out = use_tree(rest);
            for p in &mut out {
                p.insert(0, head.clone());
            }
            if out.is_empty() {
                out.push(vec![head]);
            }
            out
        }
        None => vec![vec![head]],
    }
}

/// The module a path names: the longest prefix of `path` that is a module.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The modules `module` imports.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let here: Vec<String> = module.split("::").map(str::to_owned).collect();
    let code = code(text);
    let mut out = BTreeSet::new();
    let mut add = |base: &[String], rest: &str| {
        for p in use_tree(rest) {
            let mut full = base.to_vec();
            full.extend(p);
            if let Some(m) = resolve(&full, modules) {
                out.insert(m);
            }
        }
    };
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if !before.is_some_and(|c| is_ident(c) || c == '$') {
            add(&[], &code[i + "crate::".len()..]);
        }
    }
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue; // the second `super::` of a chain, counted with the first
        }
        let mut rest = &code[i..];
        let mut base = here.clone();
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        add(&base, rest);
    }
    for (i, _) in code.match_indices("self::") {
        let before = code[..i].chars().next_back();
        if !before.is_some_and(|c| is_ident(c) || c == ':') {
            add(&here, &code[i + "self::".len()..]);
        }
    }
    // `use child::...` (2018 paths: a child module by its bare name).
    for line in code.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        if let Some(rest) = t.strip_prefix("use ") {
            for p in use_tree(rest) {
                let mut full = here.clone();
                full.push(p[0].clone());
                if modules.contains(&full.join("::")) {
                    add(&here, rest);
                    break;
                }
            }
        }
    }
    out.remove(module);
    out
}

fn graph(sources: &BTreeMap<String, String>) -> Graph {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &modules)))
        .collect()
}

/// The same graph with every module folded into its top-level module.
fn top_level(g: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut out = Graph::new();
    for (m, deps) in g {
        let entry = out.entry(top(m)).or_default();
        entry.extend(deps.iter().map(|d| top(d)).filter(|d| *d != top(m)));
    }
    out
}

/// One cycle of the graph, as the modules around it, if there is any.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        m: &str,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|s| s == m).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_owned(), Mark::Open);
        stack.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(m.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut marks, &mut Vec::new()))
}

/// Imports from one file under `cmd/` to another (`cmd/mod.rs` aside).
fn cmd_imports(g: &Graph) -> Vec<(String, String)> {
    let view = |m: &str| m.starts_with("cmd::");
    g.iter()
        .flat_map(|(m, deps)| deps.iter().map(move |d| (m.clone(), d.clone())))
        .filter(|(m, d)| view(m) && view(d))
        .collect()
}

#[test]
fn no_import_cycle_between_modules() {
    let g = graph(&sources());
    assert!(g.len() > 20, "the sources were not found: {:?}", g.keys());
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle between files: {}", c.join(" -> "));
    }
    if let Some(c) = find_cycle(&top_level(&g)) {
        panic!("import cycle between modules: {}", c.join(" -> "));
    }
}

#[test]
fn no_view_imports_another_view() {
    let g = graph(&sources());
    let all = cmd_imports(&g);
    for (m, d) in all
        .iter()
        .filter(|(m, d)| KNOWN_CMD_IMPORTS.contains(&(m.as_str(), d.as_str())))
    {
        eprintln!("known, to be moved out of cmd/: {m} imports {d}");
    }
    let new: Vec<String> = all
        .into_iter()
        .filter(|(m, d)| !KNOWN_CMD_IMPORTS.contains(&(m.as_str(), d.as_str())))
        .map(|(m, d)| format!("{m} imports {d}"))
        .collect();
    assert!(
        new.is_empty(),
        "a file under cmd/ imports another (move what they share out of cmd/): {}",
        new.join("; ")
    );
}

// --- the checker itself, over made-up sources ------------------------------------

fn made_up(files: &[(&str, &str)]) -> Graph {
    graph(
        &files
            .iter()
            .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
            .collect(),
    )
}

#[test]
fn the_checker_sees_every_kind_of_path() {
    let g = made_up(&[
        ("a", "use crate::b::Thing;\nfn f() { crate::c::g(); }\n"),
        (
            "b",
            "use crate::{c, d::{self, X}};\n// crate::a in a comment\n",
        ),
        ("c", "pub use self::inner::Y;\n"),
        ("c::inner", "use super::super::d::Z;\n"),
        ("d", "pub mod p;\npub use p::Q;\n"),
        (
            "d::p",
            "use super::super::e;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
        ),
        ("e", "macro_rules! m { () => { $crate::a::f() } }\n"),
    ]);
    let deps = |m: &str| g[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(deps("a"), ["b", "c"]);
    assert_eq!(deps("b"), ["c", "d"]);
    assert_eq!(deps("c"), ["c::inner"]);
    assert_eq!(deps("c::inner"), ["d"]);
    assert_eq!(deps("d"), ["d::p"]);
    assert_eq!(
        deps("d::p"),
        ["e"],
        "test modules and `$crate` do not count"
    );
    assert!(deps("e").is_empty());
    assert_eq!(find_cycle(&g), None);
    assert_eq!(find_cycle(&top_level(&g)), None);
}

#[test]
fn the_checker_finds_cycles_and_view_imports() {
    let g = made_up(&[("a", "use crate::b::X;\n"), ("b", "use crate::a::Y;\n")]);
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
    // No cycle between files, one between their top-level modules.
    let g = made_up(&[
        ("h", "pub mod p;\n"),
        ("h::p", "use crate::config::C;\n"),
        ("config", "use crate::h::q::Size;\n"),
        ("h::q", ""),
    ]);
    assert_eq!(find_cycle(&g), None);
    assert!(find_cycle(&top_level(&g)).is_some());

    let g = made_up(&[
        ("cmd", "pub mod a;\npub mod b;\n"),
        (
            "cmd::a",
            "use crate::cmd::b::render;\nuse crate::cmd::Shared;\n",
        ),
        ("cmd::b", "use super::Shared;\n"),
    ]);
    assert_eq!(
        cmd_imports(&g),
        [("cmd::a".to_owned(), "cmd::b".to_owned())],
        "cmd/mod.rs is no view"
    );
}
