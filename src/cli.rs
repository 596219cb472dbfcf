//! The `halfclose` command line: `run`, `check`, `list`, `bench`. The binary is a thin
//! wrapper around this; `cargo test` reaches the same trials through tests/conformance.rs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, FormatSetting};

use crate::runner::Stack;

use crate::expectations::Expectations;
use crate::report::{self, Records};
use crate::runner::TrialConfig;
use crate::{privilege, suite};

/// Exit codes: what CI scripts branch on.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

const USAGE: &str = "\
halfclose: a conformance harness for TCP connection teardown

USAGE:
    halfclose run   [PATHS…] [--filter F] [--exact] [--fast] [--pcap-dir DIR] [--list]
                    [--ignored] [--include-ignored] [--test-threads N]
                    [--format pretty|terse|json] [--json FILE] [--junit FILE]
                    [--expectations FILE] [--stack linux|smoltcp | --agent CMD]
    halfclose check FILES…           validate scripts only; nothing is sent
    halfclose list  [PATHS…]         list the trials
    halfclose bench [--runs N] [--json]
                                     time trial setup and the active-close trial
    halfclose coverage [PATHS…]      requirements → the scenarios that check them (Markdown)
    halfclose matrix [--stacks linux,smoltcp] [--fast]
                                     the suite on each stack, one Markdown table

PATHS are scenario files or directories (default: suites). Captures go to
DIR/<family>/<group>/<name>.pcapng (default DIR: target/halfclose).
Exit status: 0 all passed, 1 a trial failed, 2 bad input or no privileges.";

pub fn main() -> i32 {
    // Before anything can start a thread: entering a user namespace needs a single thread.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let needs_privilege = matches!(
        args.first().map(String::as_str),
        Some("run" | "bench" | "matrix")
    );
    if needs_privilege {
        if let Err(e) = privilege::ensure() {
            eprintln!("halfclose: {e}");
            return EXIT_BAD_INPUT;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("HALFCLOSE_LOG"))
        .with_writer(std::io::stderr)
        .try_init();
    match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("check") => cmd_check(&args[1..]),
        Some("list") => cmd_run(&[args[1..].to_vec(), vec!["--list".into()]].concat()),
        Some("bench") => crate::bench::cmd(&args[1..]),
        Some("coverage") => cmd_coverage(&args[1..]),
        Some("matrix") => crate::matrix::cmd(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            EXIT_OK
        }
        Some("-V" | "--version") => {
            println!("halfclose {}", env!("CARGO_PKG_VERSION"));
            EXIT_OK
        }
        _ => usage_error("expected a command: run, check, list, bench or coverage"),
    }
}

pub fn usage_error(msg: &str) -> i32 {
    eprintln!("halfclose: {msg}\n\n{USAGE}");
    EXIT_BAD_INPUT
}

/// Options of `run` (and `list`).
struct RunOpts {
    paths: Vec<PathBuf>,
    pcap_dir: PathBuf,
    json: Option<PathBuf>,
    junit: Option<PathBuf>,
    expectations: Option<PathBuf>,
    /// Leave out scenarios tagged `slow` (the 60 s TIME_WAIT expiry).
    fast: bool,
    /// `--stack NAME` (linux, smoltcp) or `--agent CMD`.
    stack: Option<String>,
    agent: Option<String>,
    pcap_dir_given: bool,
    test: Arguments,
}

fn parse_run(args: &[String]) -> Result<RunOpts, String> {
    let mut o = RunOpts {
        paths: Vec::new(),
        pcap_dir: PathBuf::from("target/halfclose"),
        json: None,
        junit: None,
        expectations: None,
        fast: false,
        stack: None,
        agent: None,
        pcap_dir_given: false,
        test: Arguments::default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--filter" => o.test.filter = Some(value("--filter")?),
            "--exact" => o.test.exact = true,
            "--fast" => o.fast = true,
            "--stack" => o.stack = Some(value("--stack")?),
            "--agent" => o.agent = Some(value("--agent")?),
            "--pcap-dir" => {
                o.pcap_dir = value("--pcap-dir")?.into();
                o.pcap_dir_given = true;
            }
            "--list" => o.test.list = true,
            "--ignored" => o.test.ignored = true,
            "--include-ignored" => o.test.include_ignored = true,
            "-q" | "--quiet" => o.test.quiet = true,
            "--json" => o.json = Some(value("--json")?.into()),
            "--junit" => o.junit = Some(value("--junit")?.into()),
            "--expectations" => o.expectations = Some(value("--expectations")?.into()),
            "--test-threads" => {
                let n = value("--test-threads")?;
                o.test.test_threads = Some(
                    n.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--test-threads: `{n}` is not a positive number"))?,
                );
            }
            "--format" => {
                o.test.format = Some(match value("--format")?.as_str() {
                    "pretty" => FormatSetting::Pretty,
                    "terse" => FormatSetting::Terse,
                    "json" => FormatSetting::Json,
                    other => {
                        return Err(format!(
                            "--format: `{other}`; expected pretty, terse or json"
                        ))
                    }
                })
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            path => o.paths.push(path.into()),
        }
    }
    if o.paths.is_empty() {
        o.paths.push("suites".into());
    }
    Ok(o)
}

fn cmd_run(args: &[String]) -> i32 {
    let opts = match parse_run(args) {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    if let Some(missing) = opts.paths.iter().find(|p| !p.exists()) {
        eprintln!(
            "halfclose: {}: no such file or directory",
            missing.display()
        );
        return EXIT_BAD_INPUT;
    }
    let mut suite = suite::load(&opts.paths);
    if !suite.errors.is_empty() {
        for e in &suite.errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "halfclose: {} script(s) have errors; nothing was run",
            suite.errors.len()
        );
        return EXIT_BAD_INPUT;
    }
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let stack = match resolve_stack(opts.stack.as_deref(), opts.agent.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halfclose: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    // Another stack's captures go beside the kernel's, not over them.
    let pcap_dir = match (&stack, opts.pcap_dir_given) {
        (Stack::Agent { .. }, false) => opts.pcap_dir.join(stack.short_name()),
        _ => opts.pcap_dir.clone(),
    };
    let cfg = TrialConfig { pcap_dir, stack };
    // Judged against every trial loaded, before --fast or --filter leave some out.
    let expected = match load_expectations(&opts, &cfg.stack, &suite.scenarios) {
        Ok(e) => e,
        Err(code) => return code,
    };
    if opts.fast {
        suite.without_slow();
    }
    let trials = report::trials(&suite.scenarios, &[], &cfg, &records, &expected);
    let conclusion = crate::schedule::run(&opts.test, trials);
    if let Err(code) = write_reports(&opts, &records) {
        return code;
    }
    if conclusion.has_failed() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn write_reports(opts: &RunOpts, records: &Records) -> Result<(), i32> {
    let mut recs = records.lock().expect("records lock").clone();
    recs.sort_by(|a, b| a.name.cmp(&b.name));
    for (path, text) in [
        (&opts.json, report::json(&recs)),
        (&opts.junit, report::junit(&recs)),
    ] {
        if let Some(p) = path {
            report::write_file(p, &text).map_err(|e| {
                eprintln!("halfclose: cannot write {}: {e}", p.display());
                EXIT_BAD_INPUT
            })?;
        }
    }
    Ok(())
}

fn cmd_check(args: &[String]) -> i32 {
    if args.is_empty() {
        return usage_error("check needs script files or directories");
    }
    let paths: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        eprintln!(
            "halfclose: {}: no such file or directory",
            missing.display()
        );
        return EXIT_BAD_INPUT;
    }
    let suite = suite::load(&paths);
    for e in &suite.errors {
        eprintln!("error: {e}");
    }
    let trials: usize = suite.scenarios.iter().map(|s| s.families.len()).sum();
    let files: std::collections::BTreeSet<_> = suite.scenarios.iter().map(|s| &s.file).collect();
    println!(
        "{} file(s) ok: {} scenario(s) with matrix cases, {trials} trials; {} file(s) with errors",
        files.len(),
        suite.scenarios.len(),
        suite.errors.len()
    );
    if suite.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_BAD_INPUT
    }
}

/// `--expectations FILE`, else `expectations/linux.yaml` under the first directory given.
/// The SUT the options name: the kernel by default, the smoltcp agent built beside this
/// binary, or any agent command.
pub fn resolve_stack(stack: Option<&str>, agent: Option<&str>) -> Result<Stack, String> {
    let cmd: Vec<String> = match (stack, agent) {
        (Some(_), Some(_)) => return Err("--stack and --agent: give one".into()),
        (None | Some("linux"), None) => return Ok(Stack::Kernel),
        (Some("smoltcp"), None) => vec![sibling_binary("halfclose-smoltcp-agent")?],
        (Some(other), None) => {
            return Err(format!(
                "--stack `{other}`: expected linux or smoltcp (or --agent CMD for another stack)"
            ))
        }
        (None, Some(cmd)) => cmd.split_whitespace().map(String::from).collect(),
    };
    if cmd.is_empty() {
        return Err("--agent needs a command".into());
    }
    let hello = crate::agent::probe(&cmd)?;
    Ok(Stack::agent(cmd, hello))
}

/// A binary built with this one (`cargo build --workspace` puts them side by side).
fn sibling_binary(name: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dirs: Vec<PathBuf> = exe.parent().into_iter().map(PathBuf::from).collect();
    // From tests/ or examples/, the binaries are one level up.
    if let Some(up) = exe.parent().and_then(|d| d.parent()) {
        dirs.push(up.to_path_buf());
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .ok_or_else(|| {
            format!(
                "{name} is not built beside {}: run `cargo build --release --workspace`",
                exe.display()
            )
        })
}

fn load_expectations(
    opts: &RunOpts,
    stack: &Stack,
    loaded: &[crate::script::Scenario],
) -> Result<Expectations, i32> {
    // `expectations/linux.yaml`, `expectations/smoltcp.yaml`
    let name = format!("expectations/{}.yaml", stack.short_name());
    let default = opts
        .paths
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| p.join(&name))
        .find(|p| p.is_file());
    let Some(file) = opts.expectations.clone().or(default) else {
        return Ok(Expectations::default());
    };
    let expected = Expectations::load(&file).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })?;
    let errors = expected.check(stack.short_name(), loaded);
    for e in &errors {
        eprintln!("error: {e}");
    }
    if errors.is_empty() {
        Ok(expected)
    } else {
        Err(EXIT_BAD_INPUT)
    }
}

fn cmd_coverage(args: &[String]) -> i32 {
    let paths: Vec<PathBuf> = if args.is_empty() {
        vec!["suites".into()]
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    let suite = suite::load(&paths);
    for e in &suite.errors {
        eprintln!("error: {e}");
    }
    if !suite.errors.is_empty() {
        return EXIT_BAD_INPUT;
    }
    print!("{}", crate::coverage::markdown(&suite.scenarios));
    EXIT_OK
}
