//! Compiles src/glue.c against Debian's liblwip (`pkg-config lwip`). When liblwip-dev or a C
//! compiler is missing, the workspace still builds: the agent is compiled without lwIP
//! (`cfg(lwip)` unset) and only says why and exits 2, and its tests skip with that reason.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lwip)");
    println!("cargo:rerun-if-changed=src/glue.c");
    println!("cargo:rerun-if-changed=src/glue.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    match build_glue() {
        Ok(version) => {
            println!("cargo:rustc-cfg=lwip");
            println!("cargo:rustc-env=HALFCLOSE_LWIP_VERSION={version}");
        }
        Err(why) => {
            println!("cargo:warning=halfclose-lwip-agent is built without lwIP: {why}");
            println!("cargo:rustc-env=HALFCLOSE_LWIP_MISSING={why}");
        }
    }
}

fn build_glue() -> Result<String, String> {
    let lib = pkg_config::Config::new()
        .atleast_version("2.1")
        .cargo_metadata(false)
        .probe("lwip")
        .map_err(|e| {
            let text = e.to_string();
            let why = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("not found");
            format!("liblwip-dev is not installed (pkg-config lwip: {why}); apt-get install liblwip-dev")
        })?;
    cc::Build::new()
        .file("src/glue.c")
        .includes(&lib.include_paths)
        .warnings(true)
        .try_compile("halfclose_lwip_glue")
        .map_err(|e| format!("src/glue.c does not compile ({e}); is a C compiler installed?"))?;
    for dir in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for name in &lib.libs {
        println!("cargo:rustc-link-lib={name}");
    }
    Ok(lib.version)
}
