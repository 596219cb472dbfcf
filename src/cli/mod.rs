//! The `halfclose` command line, on clap: one file per subcommand, each with its own
//! arguments struct and `run` function. The binary (src/main.rs) is a thin wrapper around
//! [`main`]; `cargo test` reaches the same trials through `harness`.
//!
//! To add a subcommand: a file here with `#[derive(clap::Args)] pub struct Args` and
//! `pub fn run(args: Args) -> i32`, a variant of [`Command`] with its doc comment (the help
//! line), and an arm in [`dispatch`]. To add an option to `run` and `list`: a field of
//! [`select::Selection`] (what is run) or of [`run::Args`] (what is written).

pub mod bench;
pub mod check;
pub mod completions;
pub mod coverage;
pub mod list;
pub mod matrix;
pub mod report;
pub mod run;
pub mod select;
pub mod show;

use clap::{Parser, Subcommand};

use crate::{exit, privilege};

/// halfclose: a conformance harness for TCP connection teardown.
///
/// Exit status: 0 all passed (known deviations included), 1 a trial failed or an expectation
/// is stale, 2 bad input, no privileges or every trial skipped, 3 none failed but some stayed
/// inconclusive after their retries; 130/143 interrupted by SIGINT/SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "halfclose", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the trials (one per scenario and address family), with a pcapng each.
    Run(run::Args),
    /// List the trials a `run` with the same arguments would run.
    List(list::Args),
    /// Validate scripts only; nothing is sent.
    Check(check::Args),
    /// Requirements → the scenarios that check them (Markdown).
    Coverage(coverage::Args),
    /// The suite on each stack, as one Markdown table (exit 1 when a cell failed).
    Matrix(matrix::Args),
    /// Merge JSON reports (shards, columns) into one summary, JSON, JUnit, HTML or KTAP.
    Report(report::Args),
    /// A capture's ladder diagram as text (and SVG), from its own comments.
    Show(show::Args),
    /// Time trial setup, a trial, a whole single-scenario process, and the suite.
    Bench(bench::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
}

pub fn main() -> i32 {
    // Before anything can start a thread: entering a user namespace needs a single thread.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    if needs_privilege(&cli.command) {
        if let Err(e) = privilege::ensure() {
            eprintln!("halfclose: {e}");
            return exit::BAD_INPUT;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("HALFCLOSE_LOG"))
        .with_writer(std::io::stderr)
        .try_init();
    dispatch(cli.command)
}

/// Commands that build namespaces (or start children that do).
fn needs_privilege(cmd: &Command) -> bool {
    match cmd {
        Command::Run(_) | Command::Bench(_) | Command::Matrix(_) => true,
        // Listing probes an agent (its hello), which needs no namespace.
        Command::List(_)
        | Command::Check(_)
        | Command::Coverage(_)
        | Command::Report(_)
        | Command::Show(_)
        | Command::Completions(_) => false,
    }
}

fn dispatch(cmd: Command) -> i32 {
    match cmd {
        Command::Run(a) => run::run(a),
        Command::List(a) => list::run(a),
        Command::Check(a) => check::run(a),
        Command::Coverage(a) => coverage::run(a),
        Command::Matrix(a) => matrix::run(a),
        Command::Report(a) => report::run(a),
        Command::Show(a) => show::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Completions(a) => completions::run(a),
    }
}

/// A message and exit 2, for what the user typed.
pub fn bad_input(msg: impl std::fmt::Display) -> i32 {
    eprintln!("halfclose: {msg}");
    exit::BAD_INPUT
}

/// The first of these paths that does not exist, as a bad-input message.
pub fn missing_path(paths: &[std::path::PathBuf]) -> Option<i32> {
    let missing = paths.iter().find(|p| !p.exists())?;
    Some(bad_input(format!(
        "{}: no such file or directory",
        missing.display()
    )))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
