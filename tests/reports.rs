//! The reports people look at, made by the binary from real trials: `run --html` and
//! `--format ktap`, `report JSON… --html`, `show CAPTURE`. A passing scenario and a failing
//! fixture run against the local kernel; the HTML is opened in headless Chromium when it is
//! installed (`.ci/report-check`), and that part is skipped, saying so, when it is not.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{halfclose, scratch, stderr, stdout};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn trial_pages(site: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![site.join("trials")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One run gives KTAP on stdout (parsed back by the spec), the JSON, and a site whose every
/// trial page has its ladder; the failing fixture's page marks its step.
#[test]
fn a_run_reported_as_ktap_html_and_text_ladders() {
    let dir = scratch("run");
    let site = dir.0.join("site");
    let pcaps = dir.0.join("pcap");
    let json = dir.0.join("linux.json");
    let o = halfclose(&[
        "run",
        "suites/close/active-close.yaml",
        "fixtures/fail/wrong-flags.yaml",
        "--format",
        "ktap",
        "--html",
        site.to_str().unwrap(),
        "--pcap-dir",
        pcaps.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the fixture fails: {}",
        stderr(&o)
    );

    let ktap = stdout(&o);
    let results = halfclose::ktap::parse(&ktap).unwrap_or_else(|e| panic!("{e}:\n{ktap}"));
    let got: Vec<(bool, &str)> = results
        .iter()
        .map(|r| (r.ok, r.description.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (true, "ipv4::close::active-close"),
            (false, "ipv4::fail::wrong-flags"),
            (true, "ipv6::close::active-close"),
            (false, "ipv6::fail::wrong-flags"),
        ],
        "{ktap}"
    );
    let log = results[1].log.join("\n");
    assert!(
        log.contains("expected: R. seq 1 ack 1") && log.contains("actual:   F. seq 1"),
        "{log}"
    );

    let index = read(&site.join("index.html"));
    let pages = trial_pages(&site);
    assert_eq!(pages.len(), 4);
    for p in &pages {
        let page = read(p);
        assert!(
            page.contains("<svg") && page.contains("class=\"arrow"),
            "{}",
            p.display()
        );
        let rel = p.strip_prefix(&site).unwrap().display().to_string();
        assert!(index.contains(&format!("href=\"{rel}\"")), "{rel}");
    }
    let failing = read(&site.join("trials/linux/ipv4/fail/wrong-flags.html"));
    assert_eq!(failing.matches("class=\"failing-row\"").count(), 1);
    assert!(
        failing.contains(r#"<g class="arrow from-sut unexpected failing""#),
        "the FIN is blamed"
    );
    assert!(failing.contains("expected: R. seq 1 ack 1"));
    assert!(
        !read(&site.join("trials/linux/ipv4/close/active-close.html"))
            .contains("class=\"failing-row\"")
    );

    // `show` reads the capture alone: no report, no script needed.
    let cap = pcaps.join("ipv4/fail/wrong-flags.pcapng");
    let svg = dir.0.join("wrong-flags.svg");
    let o = halfclose(&[
        "show",
        cap.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("ipv4::fail::wrong-flags: FAILED at step 2"),
        "{text}"
    );
    let marked: Vec<&str> = text.lines().filter(|l| l.starts_with(">>")).collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(
        marked[0].contains("F. seq 1 ack 1 len 0") && marked[0].contains("2 L7"),
        "{text}"
    );
    assert!(text.contains("│ close()"), "{text}");
    assert!(text.contains("FIN_WAIT_1"), "{text}");
    assert!(read(&svg).contains("class=\"failing-row\""));

    // The same site again from the saved JSON.
    let again = dir.0.join("again");
    let o = halfclose(&[
        "report",
        json.to_str().unwrap(),
        "--html",
        again.to_str().unwrap(),
    ]);
    // `report` exits as the run it merges would: a trial failed.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(trial_pages(&again).len(), 4);
    assert!(read(&again.join("index.html")).contains("data-stack=\"linux\""));

    browser_check(&site, "trials/linux/ipv4/fail/wrong-flags.html");
}

/// `.ci/report-check` in headless Chromium: no console message, no request off the file
/// system, a ladder on every trial page. Skipped (and said) without chromium-driver.
fn browser_check(site: &Path, page: &str) {
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !["chromedriver", "chromium", "curl", "jq"]
        .iter()
        .all(|t| have(t))
    {
        eprintln!(
            "SKIPPED the browser check: chromium, chromium-driver, curl or jq is not installed"
        );
        return;
    }
    let shots = site.join("shots");
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/report-check"))
        .args([site, &shots])
        .arg(page)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(shots.join("index.png").is_file() && shots.join("trial-1.png").is_file());
}

#[test]
fn bad_input_to_show_and_report_exits_2_naming_it() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir.0).unwrap();
    let junk = dir.0.join("junk.pcapng");
    std::fs::write(&junk, b"not a capture at all").unwrap();
    for (args, want) in [
        (
            vec!["show", junk.to_str().unwrap()],
            "junk.pcapng: not a pcapng file",
        ),
        (vec!["show", "/nonexistent.pcapng"], "/nonexistent.pcapng"),
        (vec!["show"], "required arguments were not provided"),
        (vec!["show", "a", "b"], "unexpected argument 'b'"),
        (
            vec!["report", junk.to_str().unwrap(), "--html", "x"],
            "not a halfclose JSON report",
        ),
        (vec!["report", "--html", "x"], "<JSON>"),
        (
            vec!["run", "--format", "tap"],
            "[possible values: pretty, terse, json, ktap]",
        ),
    ] {
        let o = halfclose(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

/// `report --format ktap` of two stacks' reports: stdout is one KTAP document whose results
/// name their stack (the same trial on two stacks is two distinct results).
#[test]
fn ktap_of_two_stacks_names_each_result_s_stack() {
    let dir = scratch("ktap-two");
    let linux = dir.0.join("linux.json");
    let o = halfclose(&[
        "run",
        "suites/close/active-close.yaml",
        "--pcap-dir",
        dir.0.join("c").to_str().unwrap(),
        "--json",
        linux.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The second "stack" is the same report with its run renamed.
    let mut v: serde_json::Value = serde_json::from_str(&read(&linux)).unwrap();
    v["runs"][0]["stack"] = "other".into();
    let other = dir.0.join("other.json");
    std::fs::write(&other, v.to_string()).unwrap();
    let o = halfclose(&[
        "report",
        linux.to_str().unwrap(),
        other.to_str().unwrap(),
        "--format",
        "ktap",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("KTAP version 1\n1..4\n"), "{out}");
    assert!(
        out.contains("ok 1 linux::ipv4::close::active-close\n"),
        "{out}"
    );
    assert!(
        out.contains("ok 3 other::ipv4::close::active-close\n"),
        "{out}"
    );
}
