//! SIGINT and SIGTERM during `halfclose run`: the reports are written with what is known, the
//! trials that did not finish marked "not run", and the process exits with 128 + the signal.
//!
//! The signals are blocked in every thread (threads inherit the mask of the thread that starts
//! them, so [`watch`] must run before any other thread is started) and one thread waits for
//! them with sigwait: the reports are written by ordinary code, not in a signal handler.

use std::io;

use nix::sys::signal::{SigSet, Signal};

/// Blocks SIGINT and SIGTERM in the calling thread and, from now on, in every thread it starts,
/// and starts the thread that waits for them: on one, it runs `then(signal)` and exits the
/// process with 128 + the signal's number. Agents and namespaces go with the process.
pub fn watch(then: impl FnOnce(Signal) + Send + 'static) -> io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(io::Error::from)?;
    std::thread::Builder::new()
        .name("halfclose-signals".into())
        .spawn(move || {
            let Ok(sig) = set.wait() else {
                return;
            };
            then(sig);
            std::process::exit(128 + sig as i32);
        })?;
    Ok(())
}
