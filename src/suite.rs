//! Finding and loading the scenario files of a suite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::script::{self, Loc, Scenario, ScriptError};

/// The scenarios found under some paths, and the scripts that did not load.
#[derive(Debug, Default)]
pub struct Suite {
    pub scenarios: Vec<Scenario>,
    pub errors: Vec<ScriptError>,
}

/// Loads every `*.yaml` under the given files and directories. A scenario's group is its
/// directory below the root it was found under (`suites/close/x.yaml` → `close`); a file named
/// directly takes its parent directory's name.
pub fn load(paths: &[PathBuf]) -> Suite {
    let mut suite = Suite::default();
    for root in paths {
        for (file, group) in files_under(root) {
            match script::load(&file, &group) {
                Ok(scs) => suite.scenarios.extend(scs),
                Err(e) => suite.errors.push(e),
            }
        }
    }
    reject_duplicate_names(&mut suite);
    suite
}

impl Suite {
    /// Leaves out scenarios tagged `slow` (those that wait out long kernel timers).
    pub fn without_slow(&mut self) {
        self.scenarios
            .retain(|sc| !sc.tags.iter().any(|t| t == "slow"));
    }
}

fn files_under(root: &Path) -> Vec<(PathBuf, String)> {
    if root.is_file() {
        let group = root
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "misc".to_string(), |n| n.to_string_lossy().into_owned());
        return vec![(root.to_path_buf(), group)];
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Per-stack expectation files live beside the scenarios but are not scenarios.
            if path.file_name().is_some_and(|n| n == "expectations") {
                continue;
            }
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push((path.clone(), group_of(root, &path)));
        }
    }
}

fn group_of(root: &Path, file: &Path) -> String {
    let rel = file.parent().and_then(|p| p.strip_prefix(root).ok());
    let parts: Vec<String> = rel
        .map(|r| {
            r.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        // Files directly under the root take the root's own name (fixtures/fail → fail).
        root.file_name()
            .map_or_else(|| "misc".into(), |n| n.to_string_lossy().into_owned())
    } else {
        parts.join("::")
    }
}

fn reject_duplicate_names(suite: &mut Suite) {
    let mut seen: HashMap<(String, String), PathBuf> = HashMap::new();
    let mut keep = Vec::new();
    for sc in suite.scenarios.drain(..) {
        let key = (sc.group.clone(), sc.name.clone());
        if let Some(first) = seen.get(&key) {
            suite.errors.push(ScriptError {
                file: sc.file.clone(),
                loc: Loc { line: 1, column: 1 },
                message: format!(
                    "scenario `{}::{}` is already defined in {}",
                    sc.group,
                    sc.name,
                    first.display()
                ),
                source_line: None,
            });
            continue;
        }
        seen.insert(key, sc.file.clone());
        keep.push(sc);
    }
    suite.scenarios = keep;
}
