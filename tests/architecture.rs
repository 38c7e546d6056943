//! The house is a clean stack: each top-level module of `src/` imports only modules below it
//! in [`LAYERS`], so there are no import cycles and the request path reads top to bottom.
//! Read from the source text (`crate::…` paths outside comments and unit tests), so a new
//! upward import fails here with the line that made it.

use std::path::Path;

/// Bottom to top. Modules on one line share a level and may not import each other.
const LAYERS: &[&[&str]] = &[
    &["pypi", "secret", "error_chain", "metrics", "body", "glob"],
    &["config"],
    &["auth"],
    &["upstream"],
    &["resolve", "identity"],
    &["cache"],
    &["error"],
    &["index"],
    &["state"],
    &["handler"],
    &["layers"],
    &["server"],
    &["app"],
];

fn level(module: &str) -> Option<usize> {
    LAYERS.iter().position(|level| level.contains(&module))
}

/// `crate::x` paths in code: comments and `#[cfg(test)] mod tests` blocks are left out.
fn imports(text: &str) -> Vec<(usize, String)> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            found.push((number + 1, name));
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if relative == "lib.rs" || relative == "main.rs" {
            continue;
        }
        let module = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        let Some(own) = level(&module) else {
            problems.push(format!("{relative}: module `{module}` has no place in LAYERS"));
            continue;
        };
        for (line, imported) in imports(&std::fs::read_to_string(&file).unwrap()) {
            if imported == module {
                continue;
            }
            match level(&imported) {
                Some(theirs) if theirs < own => {}
                _ => problems.push(format!(
                    "{relative}:{line}: `{module}` imports `{imported}`, which is not below it"
                )),
            }
        }
    }
    assert!(problems.is_empty(), "upward or sideways imports:\n{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_imports_and_skips_comments() {
    let text = "use crate::cache::x; // crate::app\n/// see [`crate::app`]\nfn f() { crate::index::y(); }\n";
    let names: Vec<String> = imports(text).into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, ["cache", "index"]);
}
