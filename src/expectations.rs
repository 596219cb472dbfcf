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

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::script::{Loc, ScriptError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    stack: String,
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
}

#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub file: PathBuf,
    pub stack: String,
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
        let text = std::fs::read_to_string(file)
            .map_err(|e| err(Loc::default(), format!("cannot read: {e}")))?;
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
            let line = d.referenced.line() as u32;
            if d.value.reason.trim().is_empty() {
                return Err(err(
                    Loc {
                        line,
                        column: d.referenced.column() as u32,
                    },
                    "a deviation needs a `reason`".into(),
                ));
            }
            deviations.push(Deviation {
                pattern: d.value.trial,
                reason: d.value.reason.trim().to_string(),
                line,
            });
        }
        Ok(Expectations {
            file: file.to_path_buf(),
            stack: raw.stack,
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
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("ipv4::a::b", "ipv4::a::b"));
        assert!(glob("*::a::b", "ipv6::a::b"));
        assert!(glob("ipv4::a::b[x=*,y=2]", "ipv4::a::b[x=1,y=2]"));
        assert!(!glob("ipv4::a::b", "ipv4::a::bc"));
        assert!(!glob("*::a::b[x=1]", "ipv4::a::b[x=2]"));
    }
}
