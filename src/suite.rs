//! Finding and loading the scenario files of a suite.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::script::{self, Loc, Scenario, ScriptError};

/// The scenarios found under some paths, and the scripts that did not load.
#[derive(Debug, Default)]
pub struct Suite {
    pub scenarios: Vec<Scenario>,
    pub errors: Vec<ScriptError>,
}

/// Loads every `*.yaml` under the given files and directories. A scenario's group is its
/// directory below the suite it belongs to (`suites/close/x.yaml` → `close`, whether
/// `suites`, `suites/close` or the file was named; see [`root_of`]); outside a suite, below
/// the directory named, and a file named directly takes its parent directory's name. A path that does not exist, is not a script,
/// or holds no scenario file is an error: nothing to run is never a success.
pub fn load(paths: &[PathBuf]) -> Suite {
    let mut suite = Suite::default();
    for root in paths {
        let files = match files_under(root, root_of(root).as_deref()) {
            Ok(files) => files,
            Err(e) => {
                suite.errors.push(e);
                continue;
            }
        };
        if files.is_empty() {
            suite.errors.push(whole_file_error(
                root,
                "no scenario files (*.yaml, *.yml) in this directory".into(),
            ));
        }
        for (file, group) in files {
            match script::load(&file, &group) {
                Ok(scs) => suite.scenarios.extend(scs),
                Err(e) => suite.errors.push(e),
            }
        }
    }
    reject_duplicate_names(&mut suite);
    suite
}

/// An error about a path as a whole, not a place in it.
fn whole_file_error(path: &Path, message: String) -> ScriptError {
    ScriptError {
        file: path.to_path_buf(),
        loc: Loc::default(),
        message,
        source_line: None,
    }
}

impl Suite {
    /// Leaves out scenarios tagged `slow` (those that wait out long kernel timers).
    pub fn without_slow(&mut self) {
        self.scenarios
            .retain(|sc| !sc.tags.iter().any(|t| t == "slow"));
    }
}

/// How deep below a root scenario files are looked for.
const MAX_DEPTH: usize = 16;

/// The suite a path belongs to: the nearest directory at or above it (up to the working
/// directory, for a relative path) that holds an `expectations/` directory, as `suites/` does.
pub fn root_of(path: &Path) -> Option<PathBuf> {
    let start = if path.is_dir() { path } else { path.parent()? };
    start
        .ancestors()
        .find(|dir| {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.join("expectations").is_dir()
        })
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        })
}

fn files_under(root: &Path, suite: Option<&Path>) -> Result<Vec<(PathBuf, String)>, ScriptError> {
    let meta =
        std::fs::metadata(root).map_err(|e| whole_file_error(root, format!("cannot read: {e}")))?;
    if let Some(suite) = suite.filter(|s| *s != root) {
        // Part of a suite: groups as the whole suite names them.
        let mut out = if meta.is_dir() {
            files_under(root, None)?
        } else {
            vec![(root.to_path_buf(), String::new())]
        };
        for (file, group) in &mut out {
            *group = group_of(suite, file);
        }
        return Ok(out);
    }
    if !meta.is_dir() {
        // A file named directly: `script::load` refuses what is not a script.
        let group = root
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "misc".to_string(), |n| n.to_string_lossy().into_owned());
        return Ok(vec![(root.to_path_buf(), group)]);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk(root, root, 0, &mut seen, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<(PathBuf, String)>,
) -> Result<(), ScriptError> {
    // A directory reached twice (a symlink loop, or two links to one place) is read once.
    if !seen.insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())) {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(whole_file_error(
            dir,
            format!(
                "more than {MAX_DEPTH} directories deep below {}",
                root.display()
            ),
        ));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| whole_file_error(dir, format!("cannot read: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| whole_file_error(dir, format!("cannot read: {e}")))?;
        let path = entry.path();
        if path.is_dir() {
            // Per-stack expectation files live beside the scenarios but are not scenarios.
            if path.file_name().is_some_and(|n| n == "expectations") {
                continue;
            }
            walk(root, &path, depth + 1, seen, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push((path.clone(), group_of(root, &path)));
        }
    }
    Ok(())
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
    // Per family: a script with per-family values is one scenario per family, same name.
    let mut seen: HashMap<(String, String, crate::Family), PathBuf> = HashMap::new();
    let mut keep = Vec::new();
    for sc in suite.scenarios.drain(..) {
        let keys: Vec<_> = sc
            .families
            .iter()
            .map(|f| (sc.group.clone(), sc.name.clone(), *f))
            .collect();
        if let Some(first) = keys.iter().find_map(|k| seen.get(k)) {
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
        for key in keys {
            seen.insert(key, sc.file.clone());
        }
        keep.push(sc);
    }
    suite.scenarios = keep;
}
