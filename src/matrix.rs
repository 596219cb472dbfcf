//! `halfclose matrix --stacks linux,smoltcp`: the suite against several stacks, as one
//! Markdown table, scenario × stack: pass, deviation (its reason), skipped (the capability the
//! stack lacks), or FAILED. docs/conformance.md is this command's output.
//!
//! Each stack runs as a child `halfclose run --stack S --json F`, so a stack's trials keep
//! their own process (and its agents, namespaces and captures) and the table reads the same
//! JSON report CI does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{usage_error, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK};

/// One trial's outcome on one stack, as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cell {
    Pass,
    Deviation(String),
    Skipped(String),
    Failed,
}

impl Cell {
    fn of(trial: &Value) -> Cell {
        let text = |k: &str| trial.get(k).and_then(Value::as_str).map(String::from);
        if let Some(what) = text("skipped") {
            return Cell::Skipped(what);
        }
        if trial.get("passed").and_then(Value::as_bool) != Some(true) {
            return Cell::Failed;
        }
        match text("deviation") {
            Some(reason) => Cell::Deviation(reason),
            None => Cell::Pass,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Pass => "pass".into(),
            Cell::Deviation(r) => format!("deviation ({})", r.replace('|', "\\|")),
            Cell::Skipped(w) => format!("skipped (needs {})", w.replace('|', "\\|")),
            Cell::Failed => "**FAILED**".into(),
        }
    }
}

pub fn cmd(args: &[String]) -> i32 {
    let mut stacks = vec!["linux".to_string()];
    let mut fast = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--stacks" => match it.next() {
                Some(list) => stacks = list.split(',').map(String::from).collect(),
                None => return usage_error("--stacks needs a list, like linux,smoltcp"),
            },
            "--fast" => fast = true,
            other => return usage_error(&format!("matrix: unknown option `{other}`")),
        }
    }
    // Every stack must be one halfclose can run before the first column runs: a bad name
    // found after a long column is a long wait for a usage error.
    let mut seen = Vec::new();
    for stack in &stacks {
        if stack.is_empty() {
            return usage_error("--stacks: an empty name; expected a list like linux,smoltcp");
        }
        if seen.contains(&stack) {
            return usage_error(&format!("--stacks: `{stack}` is listed twice"));
        }
        seen.push(stack);
        if let Err(e) = crate::cli::resolve_stack(Some(stack), None) {
            eprintln!("halfclose matrix: {e}");
            return EXIT_BAD_INPUT;
        }
    }
    let mut columns = Vec::new();
    for stack in &stacks {
        match run_stack(stack, fast) {
            Ok(c) => columns.push((stack.clone(), c)),
            Err(e) => {
                eprintln!("halfclose matrix: {stack}: {e}");
                return EXIT_FAILED;
            }
        }
    }
    print!("{}", table(&columns));
    EXIT_OK
}

/// Trial name without its family → (family, cell, capture).
type Column = BTreeMap<String, Vec<(String, Cell, String)>>;

fn run_stack(stack: &str, fast: bool) -> Result<Column, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let report = std::env::temp_dir().join(format!(
        "halfclose-matrix-{}-{stack}.json",
        std::process::id()
    ));
    let pcaps = PathBuf::from("target/halfclose/matrix").join(stack);
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["run", "--stack", stack, "--format", "terse", "--json"])
        .arg(&report)
        .arg("--pcap-dir")
        .arg(&pcaps)
        .stdout(std::process::Stdio::null());
    if fast {
        cmd.arg("--fast");
    }
    let status = cmd.status().map_err(|e| e.to_string())?;
    if status.code() == Some(2) {
        return Err("bad input or no privileges (see above)".into());
    }
    let column = read_report(&report);
    let _ = std::fs::remove_file(&report);
    column
}

fn read_report(path: &Path) -> Result<Column, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut column = Column::new();
    for t in v["trials"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("");
        let (family, rest) = name.split_once("::").unwrap_or(("", name));
        column.entry(rest.to_string()).or_default().push((
            family.to_string(),
            Cell::of(t),
            t["pcap"].as_str().unwrap_or("").to_string(),
        ));
    }
    Ok(column)
}

/// The cell of one scenario: one outcome when both families agree, else each family's.
fn merged(cells: Option<&Vec<(String, Cell, String)>>) -> String {
    let Some(cells) = cells else {
        return "—".into();
    };
    let mut cells = cells.clone();
    cells.sort_by(|a, b| a.0.cmp(&b.0));
    if cells.windows(2).all(|w| w[0].1 == w[1].1) {
        return cells[0].1.show();
    }
    cells
        .iter()
        .map(|(f, c, _)| format!("{f}: {}", c.show()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn table(columns: &[(String, Column)]) -> String {
    let mut names: Vec<&String> = columns.iter().flat_map(|(_, c)| c.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = String::from(
        "# Conformance: the suite on each stack\n\n\
         Generated by `halfclose matrix --stacks linux,smoltcp`; do not edit by hand. A cell is\n\
         `pass`, `deviation (reason)` (a known deviation listed in the stack's\n\
         `suites/expectations/<stack>.yaml`), `skipped (needs …)` (a capability the stack's\n\
         agent lacks) or FAILED. Both address families share a cell when they agree.\n\n",
    );
    out.push_str("| scenario |");
    for (s, _) in columns {
        out.push_str(&format!(" {s} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for n in &names {
        out.push_str(&format!("| `{n}` |"));
        for (_, c) in columns {
            out.push_str(&format!(" {} |", merged(c.get(*n))));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&deviations(columns));
    for (s, c) in columns {
        let count = |f: fn(&Cell) -> bool| c.values().flatten().filter(|(_, x, _)| f(x)).count();
        out.push_str(&format!(
            "{s}: {} trials: {} pass, {} deviations, {} skipped, {} failed.\n",
            c.values().map(Vec::len).sum::<usize>(),
            count(|x| *x == Cell::Pass),
            count(|x| matches!(x, Cell::Deviation(_))),
            count(|x| matches!(x, Cell::Skipped(_))),
            count(|x| *x == Cell::Failed),
        ));
    }
    out
}

/// Every deviation with the capture that shows it (the IPv4 trial's, where both deviate).
fn deviations(columns: &[(String, Column)]) -> String {
    let mut out = String::new();
    for (stack, c) in columns {
        let mut lines = Vec::new();
        for (name, cells) in c {
            let Some((_, Cell::Deviation(reason), pcap)) = cells
                .iter()
                .find(|(_, x, _)| matches!(x, Cell::Deviation(_)))
            else {
                continue;
            };
            lines.push(format!("- `{name}`: {reason}. Capture: `{pcap}`\n"));
        }
        if !lines.is_empty() {
            out.push_str(&format!("## {stack}: deviations and their captures\n\n"));
            out.push_str(&lines.concat());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_that_agree_share_a_cell() {
        let c = vec![
            ("ipv6".to_string(), Cell::Pass, String::new()),
            ("ipv4".to_string(), Cell::Pass, String::new()),
        ];
        assert_eq!(merged(Some(&c)), "pass");
        let c = vec![
            ("ipv4".to_string(), Cell::Pass, String::new()),
            ("ipv6".to_string(), Cell::Failed, String::new()),
        ];
        assert_eq!(merged(Some(&c)), "ipv4: pass; ipv6: **FAILED**");
    }

    #[test]
    fn report_entries_become_cells() {
        let v: Value = serde_json::from_str(
            r#"[{"passed":true,"deviation":"FIN not RST"},{"passed":true,"skipped":"dup"},{"passed":false},{"passed":true}]"#,
        )
        .unwrap();
        let cells: Vec<Cell> = v.as_array().unwrap().iter().map(Cell::of).collect();
        assert_eq!(
            cells,
            [
                Cell::Deviation("FIN not RST".into()),
                Cell::Skipped("dup".into()),
                Cell::Failed,
                Cell::Pass
            ]
        );
    }
}
