//! The `halfclose` binary; all logic lives in the library (`halfclose::cli`).

fn main() {
    std::process::exit(halfclose::cli::main());
}
