//! Per-stack expectations: the trials where a stack is known to deviate from what the
//! scenario asserts, each with a reason (`suites/expectations/<stack>.yaml`).
//!
//! A listed trial that fails passes as an expected deviation; a listed trial that passes
//! fails as a stale expectation, so the list never hides a fix.
//!
//! ```yaml
//! stack: linux
//! deviations:
//!   - trial: "ipv4::closing-states::rst-in-window[state=LAST_ACK,*]"
//!     reason: Linux answers … (RFC 5961 §3 says …)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::script::{Loc, Scenario, ScriptError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    stack: Spanned<String>,
    #[serde(default)]
    deviations: Vec<Spanned<RawDeviation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviation {
    trial: String,
    reason: String,
}

/// One known deviation: a trial name pattern (`*` matches any run of characters).
#[derive(Clone, Debug)]
pub struct Deviation {
    pub pattern: String,
    pub reason: String,
    pub line: u32,
    pub column: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub file: PathBuf,
    pub stack: String,
    /// Where `stack:` names it.
    pub stack_loc: Loc,
    pub deviations: Vec<Deviation>,
}

impl Expectations {
    pub fn load(file: &Path) -> Result<Expectations, ScriptError> {
        let err = |loc: Loc, message: String| ScriptError {
            file: file.to_path_buf(),
            loc,
            message,
            source_line: None,
        };
        let text = crate::script::read_script(file)?;
        let raw: RawFile = crate::script::from_yaml(&text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| Loc {
                    line: l.line() as u32,
                    column: l.column() as u32,
                })
                .unwrap_or_default();
            err(
                loc,
                e.without_snippet()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })?;
        let mut deviations = Vec::new();
        for d in raw.deviations {
            let (line, column) = (d.referenced.line() as u32, d.referenced.column() as u32);
            if d.value.reason.trim().is_empty() {
                return Err(err(
                    Loc { line, column },
                    "a deviation needs a `reason`".into(),
                ));
            }
            deviations.push(Deviation {
                pattern: d.value.trial,
                reason: d.value.reason.trim().to_string(),
                line,
                column,
            });
        }
        Ok(Expectations {
            file: file.to_path_buf(),
            stack: raw.stack.value.clone(),
            stack_loc: Loc {
                line: raw.stack.referenced.line() as u32,
                column: raw.stack.referenced.column() as u32,
            },
            deviations,
        })
    }

    /// The deviation listed for a trial, if any.
    pub fn lookup(&self, trial: &str) -> Option<&Deviation> {
        self.deviations.iter().find(|d| glob(&d.pattern, trial))
    }

    /// Entries that name no trial at all (a renamed or deleted scenario).
    pub fn unused<'a>(&'a self, trials: &[String]) -> Vec<&'a Deviation> {
        self.deviations
            .iter()
            .filter(|d| !trials.iter().any(|t| glob(&d.pattern, t)))
            .collect()
    }

    /// Whether the file fits this run: it is for the stack under test (`linux`, or the first
    /// word of the agent's stack), and every entry names a trial that exists. Trials that
    /// exist are those of the scenarios loaded from `paths` (all of them, whatever `--filter`
    /// or `--fast` then runs). A run of part of the suite the file belongs to (a file in its
    /// `expectations/` directory; `suites/close` with `suites/expectations/linux.yaml`)
    /// cannot tell a misspelt entry from one for a trial it did not load without reading the
    /// whole suite, which a one-scenario run should not pay for: its entries are checked
    /// when the whole suite runs, and by `halfclose check`.
    pub fn check(&self, stack: &str, loaded: &[Scenario], paths: &[PathBuf]) -> Vec<ScriptError> {
        if self.file.as_os_str().is_empty() {
            return Vec::new();
        }
        let err = |loc: Loc, message: String| ScriptError {
            file: self.file.clone(),
            loc,
            message,
            source_line: None,
        };
        if self.stack != stack {
            let what = if crate::stack::lookup(&self.stack).is_ok() {
                format!("this file lists deviations of `{}`", self.stack)
            } else {
                format!("unknown stack `{}`", self.stack)
            };
            return vec![err(
                self.stack_loc,
                format!(
                    "{what}, but the run is against `{stack}`: use expectations/{stack}.yaml, or run that stack (--stack or --agent)"
                ),
            )];
        }
        if self.is_for_part_of_its_suite(paths) {
            return Vec::new();
        }
        let trials: Vec<String> = trial_names(loaded)
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        self.unused(&trials)
            .into_iter()
            .map(|d| {
                err(
                    Loc {
                        line: d.line,
                        column: d.column,
                    },
                    format!(
                        "the entry `{}` matches no trial of the {} there are: fix the name (halfclose list shows them) or remove the entry",
                        d.pattern,
                        trials.len()
                    ),
                )
            })
            .collect()
    }

    /// Whether `paths` name part of this file's suite but not the suite itself.
    fn is_for_part_of_its_suite(&self, paths: &[PathBuf]) -> bool {
        let Some(root) = self
            .suite_root()
            .and_then(|r| std::fs::canonicalize(r).ok())
        else {
            return false;
        };
        let canon: Vec<PathBuf> = paths
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        !canon.is_empty() && canon.iter().all(|p| p.starts_with(&root)) && !canon.contains(&root)
    }

    /// `suites` for `suites/expectations/linux.yaml`: the suite a file in an `expectations/`
    /// directory belongs to.
    fn suite_root(&self) -> Option<PathBuf> {
        let dir = self.file.parent()?;
        if dir.file_name()? != "expectations" {
            return None;
        }
        // Not the working directory itself: that is a project, not a suite.
        let root = dir.parent().filter(|r| !r.as_os_str().is_empty())?;
        root.is_dir().then(|| root.to_path_buf())
    }
}

/// Every trial name the scenarios stand for, each family.
fn trial_names(scenarios: &[Scenario]) -> impl Iterator<Item = String> + '_ {
    scenarios
        .iter()
        .flat_map(|sc| sc.families.iter().map(|&f| sc.trial_name(f)))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(stack: &str, patterns: &[&str]) -> Expectations {
        Expectations {
            file: PathBuf::from("x/stacks.yaml"),
            stack: stack.into(),
            stack_loc: Loc { line: 1, column: 8 },
            deviations: patterns
                .iter()
                .enumerate()
                .map(|(i, p)| Deviation {
                    pattern: p.to_string(),
                    reason: "r".into(),
                    line: 3 + 2 * i as u32,
                    column: 5,
                })
                .collect(),
        }
    }

    #[test]
    fn the_file_must_fit_the_run() {
        let sc = crate::script::parse(
            "name: a\nsummary: s\nsteps:\n  - call: close()\n",
            Path::new("a.yaml"),
            "g",
        )
        .unwrap();
        let ok = listing("linux", &["*::g::a", "ipv6::g::a"]);
        assert!(ok.check("linux", std::slice::from_ref(&sc), &[]).is_empty());
        let errors = ok.check("smoltcp", std::slice::from_ref(&sc), &[]);
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].loc.line, errors[0].loc.column), (1, 8));
        assert!(
            errors[0].message.contains("deviations of `linux`"),
            "{}",
            errors[0]
        );
        let unused = listing("linux", &["*::g::a", "ipv4::g::b", "*::h::*"]);
        let errors = unused.check("linux", std::slice::from_ref(&sc), &[]);
        let shown: Vec<(u32, bool)> = errors
            .iter()
            .map(|e| (e.loc.line, e.message.contains("matches no trial")))
            .collect();
        assert_eq!(shown, vec![(5, true), (7, true)]);
        assert!(errors[0].message.contains("`ipv4::g::b`"));
        // No file, nothing to check.
        assert!(Expectations::default()
            .check("smoltcp", &[], &[])
            .is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob("ipv4::a::b", "ipv4::a::b"));
        assert!(glob("*::a::b", "ipv6::a::b"));
        assert!(glob("ipv4::a::b[x=*,y=2]", "ipv4::a::b[x=1,y=2]"));
        assert!(!glob("ipv4::a::b", "ipv4::a::bc"));
        assert!(!glob("*::a::b[x=1]", "ipv4::a::b[x=2]"));
    }
}
