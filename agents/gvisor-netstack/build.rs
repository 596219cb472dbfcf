//! Builds the Go agent (go/) with scripts/build-gvisor-agent.sh, so that `cargo build
//! --workspace` builds every agent. Where Go or gVisor's sources are not installed the
//! launcher is built anyway and says so when run, and the tests skip (cfg
//! `no_gvisor_agent`); a build that fails for any other reason fails cargo's build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_gvisor_agent)");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../..");
    let script = root.join("scripts/build-gvisor-agent.sh");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let bin = out.join("halfclose-gvisor-agent-go");
    println!("cargo::rerun-if-changed={}", manifest.join("go").display());
    println!("cargo::rerun-if-changed={}", script.display());
    // Installing (or upgrading) either package reruns this; while they are absent these
    // paths do not exist, and cargo reruns it on every build, which costs a `command -v`.
    println!("cargo::rerun-if-changed=/usr/share/gocode/src/gvisor.dev/gvisor/pkg/tcpip");
    println!("cargo::rerun-if-changed=/usr/bin/go");
    println!("cargo::rerun-if-env-changed=HALFCLOSE_GOCODE");
    println!("cargo::rerun-if-env-changed=PATH");

    let built = Command::new("bash")
        .arg(&script)
        .arg(&bin)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let said = String::from_utf8_lossy(&built.stderr).trim().to_string();
    match built.status.code() {
        Some(0) => println!(
            "cargo::rustc-env=HALFCLOSE_GVISOR_AGENT_GO={}",
            bin.display()
        ),
        Some(3) => {
            println!("cargo::warning=the gVisor agent is not built: {said}");
            println!("cargo::rustc-cfg=no_gvisor_agent");
            println!("cargo::rustc-env=HALFCLOSE_GVISOR_AGENT_MISSING={said}");
        }
        _ => panic!(
            "scripts/build-gvisor-agent.sh failed ({}):\n{said}",
            built.status
        ),
    }
}
