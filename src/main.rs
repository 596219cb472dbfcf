//! The `halfclose` binary; all logic lives in the library (`halfclose::cli`).

fn main() {
    // Without waiting for the kernel's slow closes (see `closer`).
    halfclose::closer::exit(halfclose::cli::main());
}
