//! What `run` and `list` select: the scenario files, the trials of them (libtest's filters,
//! `--skip`, `--shard`), the stack and its expectations.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::expectations::Expectations;
use crate::runner::Stack;
use crate::script::Scenario;
use crate::{exit, suite};

#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Scenario files or directories (default: suites), and trial-name filters as for
    /// `cargo test FILTER`: an argument that looks like a path (has a `/`, or ends in
    /// .yaml/.yml) or names an existing file or directory is a path, anything else a filter.
    #[arg(value_name = "PATH|FILTER")]
    pub args: Vec<String>,
    /// Only trials whose name contains F (any of them, when given more than once).
    #[arg(long, value_name = "F")]
    pub filter: Vec<String>,
    /// Filters match whole trial names, not parts.
    #[arg(long)]
    pub exact: bool,
    /// Leave out trials whose name contains S (is S, with --exact); repeatable.
    #[arg(long, value_name = "S")]
    pub skip: Vec<String>,
    /// The address families to run, a comma list of ipv4, ipv6, ipv4-mapped (default
    /// ipv4,ipv6): every scenario runs in each of them that its `families:` allows.
    #[arg(long, alias = "family", value_name = "LIST", value_delimiter = ',', value_parser = parse_family)]
    pub families: Vec<crate::Family>,
    /// Leave out scenarios tagged `slow` (the 60 s TIME_WAIT expiry).
    #[arg(long)]
    pub fast: bool,
    /// Run only the scenarios marked `ignore:`.
    #[arg(long)]
    pub ignored: bool,
    /// Run the scenarios marked `ignore:` too.
    #[arg(long)]
    pub include_ignored: bool,
    /// Only shard K of N (1 ≤ K ≤ N): the same split as `cargo nextest run --partition
    /// hash:K/N`, stable across runs and machines.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// The system under test: linux (the local kernel, the default), or smoltcp, gvisor or
    /// lwip (their agents, built beside this binary).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["agent", "agent_command"])]
    pub stack: Option<String>,
    /// A stack behind an agent speaking docs/agent-protocol.md: the program (its arguments
    /// with --agent-arg, or give the whole command after `--`).
    #[arg(long, value_name = "PROGRAM", conflicts_with = "agent_command")]
    pub agent: Option<String>,
    /// One argument of the --agent program; repeat for more.
    #[arg(
        long,
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "agent"
    )]
    pub agent_arg: Vec<String>,
    /// The agent's command and arguments, after `--` (like --agent, quoted by your shell).
    #[arg(last = true, value_name = "AGENT_COMMAND")]
    pub agent_command: Vec<String>,
    /// The peer plays on the real interface IF, the agent (over ssh, say) runs beyond it;
    /// one trial at a time (every trial's SUT has the same addresses on one link).
    #[arg(long, value_name = "IF")]
    pub peer_iface: Option<String>,
    /// Known deviations of the stack (default: expectations/<stack>.yaml of the suite the
    /// paths are in, whichever part of it they name).
    #[arg(long, value_name = "FILE")]
    pub expectations: Option<PathBuf>,
}

/// One family of `--families`, by its trial-name prefix.
fn parse_family(s: &str) -> Result<crate::Family, String> {
    crate::Family::from_name(s)
        .ok_or_else(|| format!("unknown family `{s}`; expected ipv4, ipv6 or ipv4-mapped"))
}

/// `--shard K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}`: expected K/N with 1 ≤ K ≤ N, like 1/2");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u64, u64) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// Whether a trial is in this shard: xxHash64 (seed 0) of its name, modulo N, as
    /// nextest's `hash:` partitioning does (fixed for its 0.9 series), so a trial lands in
    /// the same shard whichever of the two runs it, and adding a trial moves no other.
    pub fn holds(&self, trial: &str) -> bool {
        xxhash_rust::xxh64::xxh64(trial.as_bytes(), 0) % self.n == self.k - 1
    }
}

/// A trial name's match against libtest-style filters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub filters: Vec<String>,
    pub skip: Vec<String>,
    pub exact: bool,
    pub shard: Option<Shard>,
}

impl Filters {
    fn hit(&self, pattern: &str, name: &str) -> bool {
        if self.exact {
            pattern == name
        } else {
            name.contains(pattern)
        }
    }

    /// Whether a trial is selected: it matches a filter (or there are none), no `--skip`,
    /// and is in the shard.
    pub fn selects(&self, name: &str) -> bool {
        (self.filters.is_empty() || self.filters.iter().any(|f| self.hit(f, name)))
            && !self.skip.iter().any(|s| self.hit(s, name))
            && self.shard.is_none_or(|s| s.holds(name))
    }
}

/// The selection, resolved: files loaded, stack probed, expectations found and checked.
pub struct Resolved {
    pub scenarios: Vec<Scenario>,
    pub stack: Stack,
    pub expected: Expectations,
    pub filters: Filters,
    pub paths: Vec<PathBuf>,
}

impl Selection {
    /// Paths and filters, told apart (see `args`).
    pub fn split(&self) -> (Vec<PathBuf>, Vec<String>) {
        let (mut paths, mut filters) = (Vec::new(), self.filter.clone());
        for a in &self.args {
            let looks_like_path =
                a.contains('/') || a.ends_with(".yaml") || a.ends_with(".yml") || a == ".";
            if looks_like_path || Path::new(a).exists() {
                paths.push(PathBuf::from(a));
            } else {
                filters.push(a.clone());
            }
        }
        if paths.is_empty() {
            paths.push(default_suite());
        }
        (paths, filters)
    }

    /// The agent's command line, if an agent was named.
    pub fn agent_argv(&self) -> Option<Vec<String>> {
        if !self.agent_command.is_empty() {
            return Some(self.agent_command.clone());
        }
        let program = self.agent.clone()?;
        Some(
            std::iter::once(program)
                .chain(self.agent_arg.iter().cloned())
                .collect(),
        )
    }

    pub fn filters(&self, filters: Vec<String>) -> Filters {
        Filters {
            filters,
            skip: self.skip.clone(),
            exact: self.exact,
            shard: self.shard,
        }
    }

    /// Loads and checks everything a run needs; Err is the exit status (the message printed).
    pub fn resolve(&self) -> Result<Resolved, i32> {
        let (paths, filters) = self.split();
        if let Some(code) = super::missing_path(&paths) {
            return Err(code);
        }
        let loaded = suite::load(&paths);
        if !loaded.errors.is_empty() {
            for e in &loaded.errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "halfclose: {} script(s) have errors; nothing was run",
                loaded.errors.len()
            );
            return Err(exit::BAD_INPUT);
        }
        let stack = resolve_stack(self.stack.as_deref(), self.agent_argv())
            .and_then(|s| match &self.peer_iface {
                Some(iface) => s.over_iface(iface),
                None => Ok(s),
            })
            .map_err(super::bad_input)?;
        let expected = self.expectations_for(&stack, &paths, &loaded.scenarios)?;
        let mut scenarios = loaded.scenarios;
        if !self.families.is_empty() {
            for sc in &mut scenarios {
                sc.select_families(&self.families);
            }
        }
        if self.fast {
            scenarios.retain(|sc| !sc.tags.iter().any(|t| t == "slow"));
        }
        Ok(Resolved {
            scenarios,
            stack,
            expected,
            filters: self.filters(filters),
            paths,
        })
    }

    /// `--expectations FILE`, else `expectations/<stack>.yaml` of the suite the first path is
    /// in, whichever file or directory of it was named: the same trials get the same verdict
    /// whatever the paths or filters. Checked against every trial loaded, before `--fast` or
    /// the filters leave some out.
    fn expectations_for(
        &self,
        stack: &Stack,
        paths: &[PathBuf],
        loaded: &[Scenario],
    ) -> Result<Expectations, i32> {
        let name = stack.short_name();
        let file = match &self.expectations {
            Some(f) => f.clone(),
            None => match find_expectations(paths, &stack.expectations_file()) {
                Some(f) => f,
                None => {
                    if !stack.is_local_kernel() {
                        eprintln!(
                            "halfclose: no expectations/{} in the suite of {} (nor above it): every known deviation of {name} will fail; --expectations FILE names one",
                            stack.expectations_file(),
                            paths[0].display()
                        );
                    }
                    return Ok(Expectations::default());
                }
            },
        };
        let expected = Expectations::load(&file).map_err(|e| {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        })?;
        let errors = expected.check(name, loaded, paths);
        for e in &errors {
            eprintln!("error: {e}");
        }
        if errors.is_empty() {
            Ok(expected)
        } else {
            Err(exit::BAD_INPUT)
        }
    }
}

/// `suites` relative to the working directory, as users type it.
fn default_suite() -> PathBuf {
    PathBuf::from("suites")
}

/// The expectations file (`smoltcp.yaml`) of the suite `paths[0]` belongs to.
pub fn find_expectations(paths: &[PathBuf], file: &str) -> Option<PathBuf> {
    let root = suite::root_of(paths.first()?)?;
    let file = root.join("expectations").join(file);
    file.is_file().then_some(file)
}

/// The SUT the options name: the kernel by default, a stack of the registry
/// (`crate::stack`), or any agent's argv.
pub fn resolve_stack(stack: Option<&str>, agent: Option<Vec<String>>) -> Result<Stack, String> {
    Stack::resolve(stack, agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_every_trial_once() {
        let names: Vec<String> = (0..400).map(|i| format!("ipv4::g::t{i}")).collect();
        for n in 1..=4 {
            let shards: Vec<Shard> = (1..=n).map(|k| Shard { k, n }).collect();
            for name in &names {
                assert_eq!(shards.iter().filter(|s| s.holds(name)).count(), 1);
            }
        }
        let half = names
            .iter()
            .filter(|t| Shard { k: 1, n: 2 }.holds(t))
            .count();
        assert!((150..250).contains(&half), "{half} of 400 in shard 1/2");
        for bad in ["0/2", "3/2", "1", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_libtests() {
        let f = Filters {
            filters: vec!["close::".into(), "abort::x".into()],
            skip: vec!["slow".into()],
            ..Filters::default()
        };
        assert!(f.selects("ipv4::close::a"));
        assert!(f.selects("ipv6::abort::x"));
        assert!(!f.selects("ipv4::close::slow-one"));
        assert!(!f.selects("ipv4::timers::a"));
        let exact = Filters {
            filters: vec!["ipv4::close::a".into()],
            exact: true,
            ..Filters::default()
        };
        assert!(exact.selects("ipv4::close::a") && !exact.selects("ipv4::close::ab"));
    }
}
