//! `halfclose matrix --stacks linux,smoltcp`: the suite against several stacks, as one
//! Markdown table, scenario × stack: pass, deviation (its reason), skipped (the capability the
//! stack lacks), inconclusive, or FAILED (linked to its failure text and capture below the
//! table). docs/conformance.md is this command's output.
//!
//! Each stack runs as a child `halfclose run --stack S --json F`, so a stack's trials keep
//! their own process (and its agents, namespaces and captures) and the table reads the same
//! JSON report CI does. Every child's reports and output are kept in `--out DIR`. The exit
//! status is the worst column's: 1 when any cell failed, 3 when none failed but one stayed
//! inconclusive.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::exit;
use crate::report::{Outcome, Record, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The stacks, one column each, in this order.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "linux"
    )]
    pub stacks: Vec<String>,
    /// Leave out scenarios tagged `slow`.
    #[arg(long)]
    pub fast: bool,
    /// Each column's JSON and JUnit report and output go here (DIR/<stack>.json, .xml,
    /// .log), its captures under DIR/<stack>/.
    #[arg(long, value_name = "DIR", default_value = "target/halfclose/matrix")]
    pub out: PathBuf,
    /// Scenario paths and trial filters, as `run` takes them (default: the whole suite).
    #[arg(value_name = "PATH|FILTER")]
    pub args: Vec<String>,
}

/// One trial's outcome on one stack, as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cell {
    /// Passed, through the named alternative if the scenario has some for it.
    Pass(Option<String>),
    Deviation(String),
    Skipped(String),
    /// Not a trial of this stack: it sets a Linux setting the stack does not have.
    LinuxSetting(String),
    Inconclusive,
    Failed,
    Stale,
}

impl Cell {
    fn of(r: &Record) -> Cell {
        let text = |t: &Option<String>| t.clone().unwrap_or_default();
        match r.outcome {
            Outcome::Passed => Cell::Pass(r.alternative.clone()),
            Outcome::KnownDeviation => Cell::Deviation(text(&r.deviation)),
            Outcome::Skipped if r.linux_setting => Cell::LinuxSetting(text(&r.skipped)),
            Outcome::Skipped => Cell::Skipped(text(&r.skipped)),
            Outcome::Inconclusive => Cell::Inconclusive,
            Outcome::Failed => Cell::Failed,
            Outcome::StaleExpectation => Cell::Stale,
        }
    }

    fn failed(&self) -> bool {
        matches!(self, Cell::Failed | Cell::Stale)
    }

    /// The cell's text; a failure links to its entry below the table.
    fn show(&self, anchor: &str) -> String {
        match self {
            Cell::Pass(None) => "pass".into(),
            Cell::Pass(Some(alt)) => format!("pass ({alt})"),
            Cell::LinuxSetting(w) => format!("Linux's ({})", w.replace('|', "\\|")),
            Cell::Deviation(r) => format!("deviation ({})", r.replace('|', "\\|")),
            Cell::Skipped(w) => format!("skipped (needs {})", w.replace('|', "\\|")),
            Cell::Inconclusive => "inconclusive".into(),
            Cell::Failed => format!("[**FAILED**](#{anchor})"),
            Cell::Stale => format!("[**FAILED** (stale expectation)](#{anchor})"),
        }
    }
}

pub fn run(a: Args) -> i32 {
    // Every stack must be one halfclose can run before the first column runs: a bad name
    // found after a long column is a long wait for a usage error.
    let mut seen = Vec::new();
    for stack in &a.stacks {
        if stack.is_empty() {
            return super::bad_input("--stacks: an empty name; expected a list like linux,smoltcp");
        }
        if seen.contains(&stack) {
            return super::bad_input(format!("--stacks: `{stack}` is listed twice"));
        }
        seen.push(stack);
        if let Err(e) = super::select::resolve_stack(Some(stack), None) {
            return super::bad_input(format!("matrix: {e}"));
        }
    }
    let mut columns = Vec::new();
    for stack in &a.stacks {
        match run_stack(stack, &a) {
            Ok(c) => columns.push(c),
            Err(e) => {
                eprintln!("halfclose matrix: {stack}: {e}");
                return exit::FAILED;
            }
        }
    }
    print!("{}", table(&columns));
    let worst = columns.iter().map(|c| c.status).collect::<Vec<_>>();
    if worst.contains(&exit::FAILED) || columns.iter().any(Column::has_failed) {
        exit::FAILED
    } else if worst.contains(&exit::INCONCLUSIVE) {
        exit::INCONCLUSIVE
    } else {
        exit::OK
    }
}

/// One stack's column: trial name without its family → (family, record).
struct Column {
    stack: String,
    /// Where its JSON report was kept.
    report: PathBuf,
    status: i32,
    cells: BTreeMap<String, Vec<(String, Record)>>,
}

impl Column {
    fn has_failed(&self) -> bool {
        self.cells
            .values()
            .flatten()
            .any(|(_, r)| r.outcome.fails_the_run())
    }
}

fn run_stack(stack: &str, a: &Args) -> Result<Column, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let json = a.out.join(format!("{stack}.json"));
    let log = a.out.join(format!("{stack}.log"));
    let stdout = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["run", "--stack", stack, "--format", "terse", "--json"])
        .arg(&json)
        .arg("--junit")
        .arg(a.out.join(format!("{stack}.xml")))
        .arg("--pcap-dir")
        .arg(a.out.join(stack))
        .args(a.fast.then_some("--fast"))
        .args(&a.args)
        .stdout(stdout);
    let status = cmd.status().map_err(|e| e.to_string())?;
    if status.code() == Some(exit::BAD_INPUT) {
        return Err(format!(
            "bad input or no privileges (see above; the run's output: {})",
            log.display()
        ));
    }
    let report = Report::read(&json)?;
    let mut cells: BTreeMap<String, Vec<(String, Record)>> = BTreeMap::new();
    for t in report.trials {
        let (family, rest) = t.name.split_once("::").unwrap_or(("", &t.name));
        let (family, rest) = (family.to_string(), rest.to_string());
        cells.entry(rest).or_default().push((family, t));
    }
    Ok(Column {
        stack: stack.to_string(),
        report: json,
        status: status.code().unwrap_or(exit::FAILED),
        cells,
    })
}

/// The anchor of a failed cell's entry: `linux-ipv4-close-active-close`.
fn anchor(stack: &str, trial: &str) -> String {
    let mut a: String = format!("{stack}-{trial}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while a.contains("--") {
        a = a.replace("--", "-");
    }
    a.trim_matches('-').to_string()
}

/// The cell of one scenario: one outcome when both families agree, else each family's.
fn merged(stack: &str, cells: Option<&Vec<(String, Record)>>) -> String {
    let Some(cells) = cells else {
        return "—".into();
    };
    let mut cells: Vec<(&String, Cell, &Record)> =
        cells.iter().map(|(f, r)| (f, Cell::of(r), r)).collect();
    cells.sort_by(|a, b| a.0.cmp(b.0));
    if cells.windows(2).all(|w| w[0].1 == w[1].1) {
        return cells[0].1.show(&anchor(stack, &cells[0].2.name));
    }
    cells
        .iter()
        .map(|(f, c, r)| format!("{f}: {}", c.show(&anchor(stack, &r.name))))
        .collect::<Vec<_>>()
        .join("; ")
}

fn table(columns: &[Column]) -> String {
    let mut names: Vec<&String> = columns.iter().flat_map(|c| c.cells.keys()).collect();
    names.sort();
    names.dedup();
    let stacks: Vec<&str> = columns.iter().map(|c| c.stack.as_str()).collect();
    let mut out = format!(
        "# Conformance: the suite on each stack\n\n\
         Generated by `halfclose matrix --stacks {}`; do not edit by hand. A cell is\n\
         `pass`, `pass (rfc)` or `pass (linux)` (the alternative the stack showed, where a\n\
         scenario holds the RFC's behaviour and Linux's), `deviation (reason)` (a known\n\
         deviation listed in the stack's `suites/expectations/<stack>.yaml`), `skipped (needs …)`\n\
         (a capability the stack's agent lacks), `Linux's (sysctl …)` (a case that sets a Linux\n\
         setting: not a trial of a stack without it), `inconclusive` or FAILED (its failure and\n\
         capture below). Both address families share a cell when they agree.\n\n",
        stacks.join(",")
    );
    let records: Vec<(String, Vec<Record>)> = columns
        .iter()
        .map(|c| {
            let all = c.cells.values().flatten().map(|(_, r)| r.clone()).collect();
            (c.stack.clone(), all)
        })
        .collect();
    out.push_str(&crate::scorecard::markdown(&records));
    out.push_str("\n## Every trial\n\n");
    out.push_str("| scenario |");
    for s in &stacks {
        out.push_str(&format!(" {s} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for n in &names {
        out.push_str(&format!("| `{n}` |"));
        for c in columns {
            out.push_str(&format!(" {} |", merged(&c.stack, c.cells.get(*n))));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&failures(columns));
    out.push_str(&deviations(columns));
    for c in columns {
        let count = |f: fn(&Cell) -> bool| {
            c.cells
                .values()
                .flatten()
                .filter(|(_, r)| f(&Cell::of(r)))
                .count()
        };
        out.push_str(&format!(
            "{}: {} trials: {} pass, {} deviations, {} skipped, {} Linux settings, {} inconclusive, {} failed.\n",
            c.stack,
            c.cells.values().map(Vec::len).sum::<usize>(),
            count(|x| matches!(x, Cell::Pass(_))),
            count(|x| matches!(x, Cell::Deviation(_))),
            count(|x| matches!(x, Cell::Skipped(_))),
            count(|x| matches!(x, Cell::LinuxSetting(_))),
            count(|x| *x == Cell::Inconclusive),
            count(Cell::failed),
        ));
    }
    out
}

/// Every failed trial: its failure text, its capture and the report it came from.
fn failures(columns: &[Column]) -> String {
    let mut out = String::new();
    for c in columns {
        let failed: Vec<&Record> = c
            .cells
            .values()
            .flatten()
            .map(|(_, r)| r)
            .filter(|r| r.outcome.fails_the_run())
            .collect();
        if failed.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "## {}: failures\n\nFrom `{}`.\n\n",
            c.stack,
            c.report.display()
        ));
        for r in failed {
            out.push_str(&format!(
                "### <a id=\"{}\"></a>`{}`\n\nCapture: `{}`\n\n```text\n{}\n```\n\n",
                anchor(&c.stack, &r.name),
                r.name,
                r.pcap.as_deref().unwrap_or("none"),
                r.failure.as_deref().unwrap_or("").replace("```", "'''")
            ));
        }
    }
    out
}

/// Every deviation with the capture that shows it (the IPv4 trial's, where both deviate).
fn deviations(columns: &[Column]) -> String {
    let mut out = String::new();
    for c in columns {
        let mut lines = Vec::new();
        for (name, cells) in &c.cells {
            let Some((_, r)) = cells
                .iter()
                .find(|(_, r)| r.outcome == Outcome::KnownDeviation)
            else {
                continue;
            };
            lines.push(format!(
                "- `{name}`: {}. Capture: `{}`\n",
                r.deviation.as_deref().unwrap_or(""),
                r.pcap.as_deref().unwrap_or("")
            ));
        }
        if !lines.is_empty() {
            out.push_str(&format!(
                "## {}: deviations and their captures\n\n",
                c.stack
            ));
            out.push_str(&lines.concat());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, outcome: Outcome) -> (String, Record) {
        let family = name.split("::").next().unwrap().to_string();
        (family, Record::blank(name, "f.yaml", outcome))
    }

    #[test]
    fn families_that_agree_share_a_cell() {
        let c = vec![
            rec("ipv6::g::a", Outcome::Passed),
            rec("ipv4::g::a", Outcome::Passed),
        ];
        assert_eq!(merged("linux", Some(&c)), "pass");
        let c = vec![
            rec("ipv4::g::a", Outcome::Passed),
            rec("ipv6::g::a", Outcome::Failed),
        ];
        assert_eq!(
            merged("linux", Some(&c)),
            "ipv4: pass; ipv6: [**FAILED**](#linux-ipv6-g-a)"
        );
    }

    #[test]
    fn a_failed_cell_links_to_its_failure_and_capture() {
        let mut failed = Record::blank("ipv4::g::a", "f.yaml", Outcome::Failed);
        failed.failure = Some("step 3: expect F.".into());
        failed.pcap = Some("x/ipv4/g/a.pcapng".into());
        let mut cells = BTreeMap::new();
        cells.insert("g::a".to_string(), vec![("ipv4".to_string(), failed)]);
        let col = Column {
            stack: "linux".into(),
            report: "m/linux.json".into(),
            status: exit::FAILED,
            cells,
        };
        assert!(col.has_failed());
        let t = table(&[col]);
        assert!(t.contains("[**FAILED**](#linux-ipv4-g-a)"), "{t}");
        assert!(t.contains("<a id=\"linux-ipv4-g-a\"></a>"), "{t}");
        assert!(t.contains("Capture: `x/ipv4/g/a.pcapng`"), "{t}");
        assert!(t.contains("step 3: expect F."), "{t}");
    }
}
