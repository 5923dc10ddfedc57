//! The library's modules form layers, and each imports only from the layers below it.
//! This test reads every `crate::…` path in `runtime/src` (unit tests excepted: they may
//! reach anywhere) and fails, naming the file and the import, on any path that reaches a
//! module of the same layer or a higher one. The layer order is written once, here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The library's top-level modules, bottom to top. A module may use `crate::x` only for an
/// `x` in an earlier row. `main.rs`, `cli/` and `bench/` belong to the binary, above all.
const LAYERS: &[&[&str]] = &[
    &["model"],
    &["wit", "config", "store"],
    &["error"],
    &["replay", "messaging"],
    &["engine"],
    &["sched"],
    &["observe"],
    &["peers"],
    &["host"],
    &["instance"],
    &["node"],
    &["operator", "triggers"],
    &["testing", "project"],
    &["api"],
    &["console"],
];

/// Files of the binary, which sits above every layer.
const BINARY: &[&str] = &["main.rs", "cli", "bench"];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// The source of a file without its unit tests and comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module named by a `crate::` path in `code`, with the path as written.
fn crate_paths(code: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a::b, c}`: every first segment inside the braces, at depth one.
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    push_first_segment(&mut found, &item);
                    item.clear();
                    if depth == 0 {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        } else {
            push_first_segment(&mut found, after);
        }
        rest = after;
    }
    found
}

fn push_first_segment(found: &mut Vec<(String, String)>, path: &str) {
    let path = path.trim_start();
    let name: String = path
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() {
        let shown: String = path
            .chars()
            .take_while(|c| !matches!(c, ';' | ',' | '\n' | '(' | ')' | '{'))
            .collect();
        found.push((name, format!("crate::{}", shown.trim())));
    }
}

/// What is wrong with the imports of `file` (in top-level module `module`), one line each.
fn violations(file: &str, module: &str, text: &str) -> Vec<String> {
    let Some(own) = rank(module) else {
        return vec![format!(
            "{file}: module `{module}` is in no layer; add it to LAYERS in tests/all/layers.rs"
        )];
    };
    let mut out = Vec::new();
    for (target, path) in crate_paths(&code_of(text)) {
        if target == module {
            continue;
        }
        match rank(target.as_str()) {
            Some(r) if r < own => {}
            Some(r) => out.push(format!(
                "{file}: `{path}` reaches up from layer {own} (`{module}`) to layer {r} (`{target}`)"
            )),
            None => out.push(format!(
                "{file}: `{path}` names `{target}`, which is in no layer"
            )),
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut by_module: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src").to_path_buf();
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a path component")
            .to_string();
        if first == "lib.rs" || BINARY.contains(&first.as_str()) {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        *by_module.entry(module.clone()).or_default() += 1;
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        problems.extend(violations(&rel.display().to_string(), &module, &text));
    }
    assert!(
        by_module.len() >= LAYERS.iter().map(|r| r.len()).sum::<usize>(),
        "some layer of LAYERS has no module in runtime/src: {by_module:?}"
    );
    assert!(
        problems.is_empty(),
        "imports that break the layering:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_upward_and_grouped_imports() {
    let text = "use crate::model::Outcome;\nuse crate::{store::Journal, node::Node};\n\
                // crate::node in a comment is fine\n#[cfg(test)]\nmod tests { use crate::node::Node; }\n";
    let found = violations("host/mod.rs", "host", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("host/mod.rs") && found[0].contains("crate::node::Node"),
        "{found:?}"
    );
    let sideways = violations("store/mod.rs", "store", "use crate::wit::WIT;");
    assert_eq!(
        sideways.len(),
        1,
        "a module of the same layer is not below: {sideways:?}"
    );
    let unknown = violations("bindings.rs", "bindings", "");
    assert!(unknown[0].contains("in no layer"), "{unknown:?}");
}
