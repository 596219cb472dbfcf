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
/// No trial failed, but some were still inconclusive (the harness was late) after retries.
pub const EXIT_INCONCLUSIVE: i32 = 3;

const USAGE: &str = "\
halfclose: a conformance harness for TCP connection teardown

USAGE:
    halfclose run   [PATHS…] [--filter F] [--exact] [--fast] [--pcap-dir DIR] [--list]
                    [--ignored] [--include-ignored] [--test-threads N]
                    [--format pretty|terse|json] [--json FILE] [--junit FILE]
                    [--expectations FILE] [--stack linux|smoltcp | --agent CMD]
                    [--allow-all-skipped] [--retries N]
    halfclose check FILES…           validate scripts only; nothing is sent
    halfclose list  [PATHS…]         list the trials
    halfclose bench [--runs N] [--json]
                                     time trial setup and the active-close trial
    halfclose coverage [PATHS…]      requirements → the scenarios that check them (Markdown)
    halfclose matrix [--stacks linux,smoltcp] [--fast]
                                     the suite on each stack, one Markdown table
    halfclose COMMAND --help         a command's own usage

PATHS are scenario files or directories (default: suites). Captures go to
DIR/<family>/<group>/<name>.pcapng (default DIR: target/halfclose).
A trial whose run the harness's own lateness may have decided is inconclusive and is rerun,
up to --retries N more times (default 2).
Exit status: 0 all passed, 1 a trial failed, 2 bad input, no privileges or every trial
skipped, 3 none failed but some stayed inconclusive after their retries; 130/143 interrupted
by SIGINT/SIGTERM.";

/// `halfclose COMMAND --help` (or `halfclose help COMMAND`).
fn command_usage(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "run" | "list" => "\
USAGE:
    halfclose run  [PATHS…] [OPTIONS]     run the trials (PATHS: files or directories; default suites)
    halfclose list [PATHS…] [OPTIONS]     list them

OPTIONS:
    --filter F, --exact        only trials whose name contains F (is F)
    --fast                     leave out scenarios tagged `slow` (the 60 s TIME_WAIT expiry)
    --ignored, --include-ignored   only / also the scenarios marked `ignore:`
    --stack linux|smoltcp      the system under test (default linux: the local kernel)
    --agent CMD                a stack behind an agent speaking docs/agent-protocol.md
    --expectations FILE        known deviations (default: PATHS' expectations/<stack>.yaml)
    --pcap-dir DIR             captures: DIR/<family>/<group>/<name>.pcapng (default target/halfclose)
    --json FILE, --junit FILE  reports (parent directories are made)
    --format pretty|terse|json, --test-threads N, -q   as for a Rust test binary
    --allow-all-skipped        a run in which every trial was skipped is not an error
    --retries N                reruns of a trial whose runs were inconclusive (default 2)
    --list                     list instead of running

Exit status: 0 all passed, 1 a trial failed, 2 bad input, no privileges or every trial
skipped, 3 none failed but some stayed inconclusive after their retries; 130/143
interrupted (the reports are still written).",
        "check" => "\
USAGE:
    halfclose check FILES…     validate scripts (files or directories); nothing is sent

Errors name file:line:column. Exit status: 0 all valid, 2 a script has errors.",
        "bench" => "\
USAGE:
    halfclose bench [--runs N] [--json] [--no-suite]

Times trial setup, the active-close trial and the injection error (N runs each, default
100), and the whole suite (full and --fast) unless --no-suite. --json: one line for CI.",
        "coverage" => "\
USAGE:
    halfclose coverage [PATHS…]

Prints the requirements → scenarios table (Markdown) for the scenarios under PATHS
(default suites).",
        "matrix" => "\
USAGE:
    halfclose matrix [--stacks linux,smoltcp] [--fast]

Runs the suite on each stack and prints one Markdown table, scenario × stack
(docs/conformance.md is its output). Stack names are checked before anything runs.",
        _ => return None,
    })
}

pub fn main() -> i32 {
    // Before anything can start a thread: entering a user namespace needs a single thread.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let help = |a: &String| a == "-h" || a == "--help";
    let asked = match args.first().map(String::as_str) {
        Some("help") => args.get(1).map(String::as_str),
        Some(cmd) if args[1..].iter().any(help) => Some(cmd),
        _ => None,
    };
    if let Some(cmd) = asked {
        return match command_usage(cmd) {
            Some(u) => {
                println!("{u}");
                EXIT_OK
            }
            None => usage_error(&format!("no command `{cmd}`")),
        };
    }
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
        _ => usage_error("expected a command: run, check, list, bench, coverage or matrix"),
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
    /// A run in which every trial was skipped is not an error.
    allow_all_skipped: bool,
    agent: Option<String>,
    pcap_dir_given: bool,
    /// Reruns of an inconclusive trial (`--retries N`).
    retries: u32,
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
        allow_all_skipped: false,
        agent: None,
        pcap_dir_given: false,
        retries: crate::runner::DEFAULT_TRIES - 1,
        test: Arguments::default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .filter(|v| !v.is_empty() || name == "--filter")
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--filter" => o.test.filter = Some(value("--filter")?),
            "--exact" => o.test.exact = true,
            "--fast" => o.fast = true,
            "--allow-all-skipped" => o.allow_all_skipped = true,
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
            "--retries" => {
                let n = value("--retries")?;
                o.retries = n
                    .parse()
                    .ok()
                    .filter(|n| *n <= 100)
                    .ok_or(format!("--retries: `{n}` is not a number from 0 to 100"))?;
            }
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
    // Before any thread starts: SIGINT/SIGTERM then write what is known (see on_signal).
    let interrupted: Arc<Mutex<Option<Interrupted>>> = Arc::default();
    if !opts.test.list {
        let plan = interrupted.clone();
        if let Err(e) = crate::interrupt::watch(move |sig| on_signal(sig, &plan)) {
            eprintln!("halfclose: cannot watch for signals: {e}");
            return EXIT_BAD_INPUT;
        }
    }
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
    if !opts.test.list {
        if let Err(e) = crate::preflight::writable_dir(&pcap_dir) {
            eprintln!("halfclose: captures go to {}, but {e}", pcap_dir.display());
            return EXIT_BAD_INPUT;
        }
        for (flag, path) in [("--json", &opts.json), ("--junit", &opts.junit)] {
            let Some(path) = path else { continue };
            if let Err(e) = crate::preflight::writable_file(path) {
                eprintln!("halfclose: {flag} {}: {e}", path.display());
                return EXIT_BAD_INPUT;
            }
        }
    }
    let cfg = TrialConfig {
        tries: opts.retries + 1,
        ..TrialConfig::new(pcap_dir, stack)
    };
    // Judged against every trial loaded, before --fast or --filter leave some out.
    let expected = match load_expectations(&opts, &cfg.stack, &suite.scenarios) {
        Ok(e) => e,
        Err(code) => return code,
    };
    if opts.fast {
        suite.without_slow();
    }
    let trials = report::trials(&suite.scenarios, &[], &cfg, &records, &expected);
    if !opts.test.list {
        *interrupted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Interrupted {
            selected: selected(&opts.test, &trials, &suite.scenarios),
            records: records.clone(),
            json: opts.json.clone(),
            junit: opts.junit.clone(),
        });
    }
    let conclusion = crate::schedule::run(&opts.test, trials);
    let recs = records.lock().expect("records lock").clone();
    if let Err(code) = write_reports(&opts.json, &opts.junit, recs) {
        return code;
    }
    if let (Some(why), false) = (all_skipped(&records), opts.allow_all_skipped) {
        eprintln!("halfclose: {why}; --allow-all-skipped accepts that");
        return EXIT_BAD_INPUT;
    }
    exit_code(&conclusion, &records)
}

/// 1 when a trial failed, 3 when none failed but some stayed inconclusive after their
/// retries, else 0. Printed with a summary when anything was rerun or left inconclusive.
pub fn exit_code(conclusion: &libtest_mimic::Conclusion, records: &Records) -> i32 {
    let recs = records.lock().unwrap_or_else(|e| e.into_inner());
    let summary = report::Summary::of(&recs);
    if summary.reruns > 0 || summary.inconclusive > 0 {
        eprintln!("halfclose: {summary}");
    }
    if summary.failed > 0 || (conclusion.has_failed() && summary.inconclusive == 0) {
        EXIT_FAILED
    } else if summary.inconclusive > 0 {
        EXIT_INCONCLUSIVE
    } else {
        EXIT_OK
    }
}

/// When trials ran and every one of them was skipped: what to say (a broken agent's hello
/// must not pass as green).
pub fn all_skipped(records: &Records) -> Option<String> {
    let recs = records.lock().unwrap_or_else(|e| e.into_inner());
    let first = recs.first()?;
    if recs.iter().any(|r| r.skipped.is_none()) {
        return None;
    }
    Some(format!(
        "every trial was skipped, nothing was tested ({} trials; {}: the SUT lacks {})",
        recs.len(),
        first.name,
        first.skipped.as_deref().unwrap_or("")
    ))
}

/// What a signal handler needs to write the reports of a run cut short.
struct Interrupted {
    /// The trials this run would run: name and file.
    selected: Vec<(String, String)>,
    records: Records,
    json: Option<PathBuf>,
    junit: Option<PathBuf>,
}

/// The trials libtest-mimic will run of these (filters and `ignore:` applied), with files.
fn selected(
    args: &libtest_mimic::Arguments,
    trials: &[crate::schedule::Planned],
    scenarios: &[crate::script::Scenario],
) -> Vec<(String, String)> {
    let files: std::collections::HashMap<String, String> = scenarios
        .iter()
        .flat_map(|sc| {
            let file = sc.file.display().to_string();
            sc.families
                .iter()
                .map(move |f| (sc.trial_name(*f), file.clone()))
        })
        .collect();
    trials
        .iter()
        .map(|p| &p.trial)
        .filter(|t| !args.is_filtered_out(t) && !args.is_ignored(t))
        .map(|t| {
            let file = files.get(t.name()).cloned().unwrap_or_default();
            (t.name().to_string(), file)
        })
        .collect()
}

/// SIGINT/SIGTERM: the reports, with every trial that had not finished marked "not run".
fn on_signal(sig: nix::sys::signal::Signal, plan: &Mutex<Option<Interrupted>>) {
    let Some(plan) = plan.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        eprintln!("\nhalfclose: {sig} before any trial started; no reports written");
        return;
    };
    let mut recs = plan
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let finished = recs.len();
    let why = format!("the run was interrupted by {sig} before this trial finished");
    for (name, file) in &plan.selected {
        if !recs.iter().any(|r| r.name == *name) {
            recs.push(report::Record::not_run(name, file, &why));
        }
    }
    let not_run = recs.len() - finished;
    let written = write_reports(&plan.json, &plan.junit, recs).is_ok()
        && (plan.json.is_some() || plan.junit.is_some());
    eprintln!(
        "\nhalfclose: interrupted by {sig}: {finished} trial(s) finished, {not_run} not run{}",
        if written { "; reports written" } else { "" }
    );
}

fn write_reports(
    json: &Option<PathBuf>,
    junit: &Option<PathBuf>,
    mut recs: Vec<report::Record>,
) -> Result<(), i32> {
    recs.sort_by(|a, b| a.name.cmp(&b.name));
    for (path, text) in [(json, report::json(&recs)), (junit, report::junit(&recs))] {
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
            "unknown stack `{other}`: expected linux or smoltcp (or --agent CMD for another stack)"
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
    if !suite.errors.is_empty() {
        return EXIT_BAD_INPUT;
    }
    print!("{}", crate::coverage::markdown(&suite.scenarios));
    EXIT_OK
}
