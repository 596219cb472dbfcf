//! `halfclose show CAPTURE.pcapng [--svg FILE]`: a capture's ladder diagram as text, from the
//! capture's own frame comments (and as SVG in FILE).

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A capture halfclose wrote (`run --pcap-dir`).
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// Also write the ladder as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

pub fn run(a: Args) -> i32 {
    match crate::ladder::show(&a.capture, a.svg.as_deref()) {
        Ok(text) => {
            print!("{text}");
            crate::exit::OK
        }
        Err(e) => super::bad_input(e),
    }
}
