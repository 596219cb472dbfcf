//! `halfclose completions SHELL`: a completion script on stdout, e.g.
//! `halfclose completions bash > /etc/bash_completion.d/halfclose`.

use clap::CommandFactory;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(a: Args) -> i32 {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "halfclose", &mut std::io::stdout());
    crate::exit::OK
}
