//! The report of a passing and a failing trial (and a skipped one), checked as a reader
//! would see it: the index lists them, each trial page has its ladder with the failing step
//! marked, and nothing on any page points off the file system.

use super::*;
use crate::ladder::tests::sample;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("halfclose-html-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn record(name: &str, pcap: Option<&Path>, failure: Option<&str>) -> Record {
    let mut r = Record::not_run(name, "suites/close/active-close.yaml", "");
    r.failure = failure.map(String::from);
    r.outcome = match failure {
        None => crate::report::Outcome::Passed,
        Some(_) => crate::report::Outcome::Failed,
    };
    r.seconds = 0.25;
    r.tries = 1;
    r.pcap = pcap.map(|p| p.display().to_string());
    r
}

/// Every `href`/`src` on a page: local (relative, or an anchor), never a URL.
fn assert_offline(page: &str, what: &str) {
    for attr in ["href=\"", "src=\"", "url("] {
        for (i, _) in page.match_indices(attr) {
            let target = &page[i + attr.len()..];
            let target = &target[..target.find(['"', ')']).unwrap_or(target.len())];
            assert!(
                !target.contains("://") && !target.starts_with("//"),
                "{what}: {attr}{target}"
            );
        }
    }
    assert!(!page.contains("<link"), "{what}: no stylesheet is fetched");
    assert!(page.contains("Content-Security-Policy"), "{what}");
}

#[test]
fn a_report_of_a_passing_and_a_failing_trial() {
    let dir = scratch("site");
    let pass_pcap = dir.0.join("in/pass.pcapng");
    let fail_pcap = dir.0.join("in/fail.pcapng");
    sample(false).write_pcapng(&pass_pcap).unwrap();
    sample(true).write_pcapng(&fail_pcap).unwrap();
    let mut skipped = record("ipv6::close::active-close", None, None);
    skipped.skipped = Some("the call dup".into());
    skipped.outcome = crate::report::Outcome::Skipped;
    let mut deviation = record("ipv6::abort::linger[s=0]", Some(&pass_pcap), None);
    deviation.deviation = Some("sends FIN, not RST".into());
    deviation.outcome = crate::report::Outcome::KnownDeviation;
    let trials = vec![
        Trial::of(
            "linux",
            &record("ipv4::close::active-close", Some(&pass_pcap), None),
        ),
        Trial::of(
            "smoltcp",
            &record(
                "ipv4::close::active-close",
                Some(&fail_pcap),
                Some("step 5 (x.yaml:13:5): expect . seq 2 ack 2"),
            ),
        ),
        Trial::of("smoltcp", &skipped),
        Trial::of("smoltcp", &deviation),
    ];
    let site = dir.0.join("site");
    let w = write_site(&site, &trials).unwrap();
    assert_eq!(
        w,
        Written {
            pages: 7,
            ladders: 3,
            missing: Vec::new()
        }
    );

    let index = fs::read_to_string(site.join("index.html")).unwrap();
    assert_offline(&index, "index");
    assert_eq!(index.matches("<tr data-v=").count(), 4, "{index}");
    for page in trials.iter().map(Trial::page) {
        assert!(index.contains(&format!("href=\"{page}\"")), "{page}");
        let text = fs::read_to_string(site.join(&page)).unwrap();
        assert_offline(&text, &page);
        // Every link on the page resolves to a file of the site or an anchor on the page.
        for (i, _) in text.match_indices("href=\"") {
            let target = &text[i + 6..];
            let target = &target[..target.find('"').unwrap()];
            if let Some(anchor) = target.strip_prefix('#') {
                assert!(
                    text.contains(&format!("id=\"{anchor}\"")),
                    "{page}: #{anchor}"
                );
            } else {
                let file = site.join(&page).parent().unwrap().join(target);
                assert!(file.is_file(), "{page}: {target}");
            }
        }
    }
    assert!(index.contains("data-v=\"failed\" data-stack=\"smoltcp\""));
    assert!(index.contains("needs the call dup"));

    let failing = fs::read_to_string(site.join(trials[1].page())).unwrap();
    assert!(failing.contains("<svg"), "a ladder");
    assert!(failing.contains("class=\"failing-row\""));
    assert!(failing.contains(r#"<g class="arrow from-sut unexpected failing" data-frame="7">"#));
    assert!(failing.contains(">expected: . seq 2 ack 2 len 0<title>"));
    assert!(failing.contains("<tr id=\"frame-7\">"));
    assert!(failing.contains("<pre class=\"failure\">step 5 (x.yaml:13:5)"));
    let passing = fs::read_to_string(site.join(trials[0].page())).unwrap();
    assert!(!passing.contains("class=\"failing-row\""));
    assert_eq!(passing.matches(r#"<g class="arrow"#).count(), 7);
    // The capture is copied beside the pages, so the site moves as one directory.
    assert_eq!(
        fs::read(site.join(trials[0].capture_copy())).unwrap(),
        fs::read(&pass_pcap).unwrap()
    );

    let matrix = fs::read_to_string(site.join("matrix.html")).unwrap();
    assert!(
        matrix.contains("<th colspan=\"2\">linux</th><th colspan=\"2\">smoltcp</th>"),
        "{matrix}"
    );
    let card = fs::read_to_string(site.join("scorecard.html")).unwrap();
    assert!(
        card.contains("1 <span class=\"v v-deviation\">deviation</span>"),
        "{card}"
    );
}

#[test]
fn a_missing_capture_is_named_not_fatal() {
    let dir = scratch("missing");
    let t = Trial::of(
        "linux",
        &record(
            "ipv4::close::x",
            Some(Path::new("/nonexistent.pcapng")),
            None,
        ),
    );
    let w = write_site(&dir.0, std::slice::from_ref(&t)).unwrap();
    assert_eq!(w.ladders, 0);
    assert_eq!(w.missing.len(), 1);
    assert!(
        w.missing[0].contains("/nonexistent.pcapng"),
        "{:?}",
        w.missing
    );
    let page = fs::read_to_string(dir.0.join(t.page())).unwrap();
    assert!(page.contains("No ladder"));
}

#[test]
fn names_become_distinct_safe_file_names() {
    assert_eq!(file_part("active-close"), "active-close");
    let a = file_part("rst[state=LAST_ACK,pos=middle]");
    let b = file_part("rst_state_LAST_ACK_pos_middle_");
    assert!(a.starts_with("rst_state_LAST_ACK_pos_middle_-"), "{a}");
    assert_ne!(a, b);
    assert!(!file_part("../x").contains('/'));
    assert!(!file_part("..").starts_with('.'));
}

#[test]
fn trials_of_a_report_without_runs_take_the_fallback_stack() {
    let recs = vec![
        record("ipv4::close::a", None, None),
        record("ipv4::close::b", None, Some("step 1: boom")),
    ];
    let report = crate::report::Report {
        format: 1,
        runs: Vec::new(),
        summary: Default::default(),
        trials: recs,
    };
    let trials = trials_of(&report, "smoltcp");
    assert_eq!(trials.len(), 2);
    assert_eq!(trials[0].stack, "smoltcp");
    assert_eq!(trials[1].verdict, Verdict::Failed);
}
