//! The HTML report: a static site that opens from the file system, with nothing fetched from
//! anywhere (every page carries a Content-Security-Policy that forbids it, so a stray request
//! would show as a console error rather than go out).
//!
//! ```text
//! DIR/index.html        every trial: group, scenario, family, stack, verdict, time, runs; filters
//! DIR/matrix.html       scenario × (stack, family), each cell linking to its trial
//! DIR/scorecard.html    per stack and group: passed, deviations, failed, inconclusive, skipped
//! DIR/trials/<stack>/<family>/<group>/<scenario>.html   one trial: its ladder (SVG), failure,
//!                       frames (#frame-N), script (#L12), capture notes
//! DIR/captures/<stack>/<family>/<group>/<scenario>.pcapng   a copy of its capture
//! ```
//!
//! The input is one [`Trial`] per trial and stack, from a run's records or from saved JSON
//! reports ([`trials_of`]); ladders come from the captures the records name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::ladder::{self, svg, Ladder};
use crate::report::{Outcome, Record, Report};

/// Script files larger than this are not copied into a trial's page.
const MAX_SCRIPT_BYTES: u64 = 1 << 20;

/// A trial's outcome, as the report shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Failed,
    Inconclusive,
    Deviation,
    Passed,
    Skipped,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Deviation => "deviation",
            Verdict::Failed => "failed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Skipped => "skipped",
        }
    }

    /// A record's verdict: a listed deviation that failed passes as one; a stale
    /// expectation (listed, but it passed) is a failure.
    pub fn of(r: &Record) -> Verdict {
        match r.outcome {
            Outcome::Passed => Verdict::Passed,
            Outcome::KnownDeviation => Verdict::Deviation,
            Outcome::StaleExpectation | Outcome::Failed => Verdict::Failed,
            Outcome::Skipped => Verdict::Skipped,
            Outcome::Inconclusive => Verdict::Inconclusive,
        }
    }

    const ALL: [Verdict; 5] = [
        Verdict::Passed,
        Verdict::Deviation,
        Verdict::Failed,
        Verdict::Inconclusive,
        Verdict::Skipped,
    ];
}

/// One trial on one stack, as the report needs it.
#[derive(Clone, Debug)]
pub struct Trial {
    pub stack: String,
    /// `ipv4::close::active-close[…]`
    pub name: String,
    pub file: String,
    pub verdict: Verdict,
    pub seconds: f64,
    pub tries: u32,
    pub reruns: Vec<String>,
    /// The failure text, the stale-expectation or inconclusive reason.
    pub failure: Option<String>,
    pub deviation: Option<String>,
    pub skipped: Option<String>,
    pub inconclusive: Option<String>,
    pub pcap: Option<PathBuf>,
    pub measurements: Vec<String>,
    /// The alternative the SUT showed, where the scenario holds the RFC's and Linux's.
    pub alternative: Option<String>,
}

impl Trial {
    pub fn of(stack: &str, r: &Record) -> Trial {
        let verdict = Verdict::of(r);
        Trial {
            stack: stack.to_string(),
            name: r.name.clone(),
            file: r.file.clone(),
            verdict,
            seconds: r.seconds,
            tries: r.tries,
            reruns: r.reruns.clone(),
            failure: r.failure.clone(),
            deviation: r.deviation.clone(),
            skipped: r.skipped.clone(),
            inconclusive: r.inconclusive.clone(),
            pcap: r.pcap.as_ref().map(PathBuf::from),
            measurements: r.measurements.clone(),
            alternative: r.alternative.clone(),
        }
    }

    /// (family, group, scenario) from `family::group::scenario`.
    fn parts(&self) -> (&str, &str, &str) {
        let mut it = self.name.splitn(3, "::");
        match (it.next(), it.next(), it.next()) {
            (Some(f), Some(g), Some(s)) => (f, g, s),
            _ => ("", "", &self.name),
        }
    }

    /// The page's path under the site, `trials/linux/ipv4/close/active-close.html`.
    fn page(&self) -> String {
        let (f, g, s) = self.parts();
        format!(
            "trials/{}/{}/{}/{}.html",
            file_part(&self.stack),
            file_part(f),
            file_part(g),
            file_part(s)
        )
    }

    fn capture_copy(&self) -> String {
        self.page()
            .replacen("trials/", "captures/", 1)
            .trim_end_matches(".html")
            .to_string()
            + ".pcapng"
    }
}

/// A read report's trials with their stacks.
pub fn trials_of(report: &Report, fallback_stack: &str) -> Vec<Trial> {
    report
        .trials_by_stack(fallback_stack)
        .map(|(stack, r)| Trial::of(stack, r))
        .collect()
}

/// What [`write_site`] made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub pages: usize,
    pub ladders: usize,
    /// Trials whose capture could not be read (named, with why).
    pub missing: Vec<String>,
}

/// Writes the site into `dir` (made if missing).
pub fn write_site(dir: &Path, trials: &[Trial]) -> Result<Written, String> {
    let mut trials = trials.to_vec();
    trials.sort_by(|a, b| {
        (a.parts().1, a.parts().2, a.parts().0, &a.stack).cmp(&(
            b.parts().1,
            b.parts().2,
            b.parts().0,
            &b.stack,
        ))
    });
    let mut written = Written::default();
    let put = |rel: &str, text: &str| -> Result<(), String> {
        let path = dir.join(rel);
        crate::report::write_file(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    for t in &trials {
        let (page, ladder) = trial_page(dir, t, &mut written);
        put(&t.page(), &page)?;
        written.pages += 1;
        if ladder {
            written.ladders += 1;
        }
    }
    put("index.html", &index(&trials))?;
    put("matrix.html", &matrix(&trials))?;
    put("scorecard.html", &scorecard(&trials))?;
    written.pages += 3;
    Ok(written)
}

/// Writes the site and says on stderr where it is and what had no capture.
pub fn write_and_tell(dir: &Path, trials: &[Trial]) -> Result<(), String> {
    let w = write_site(dir, trials)?;
    for m in &w.missing {
        eprintln!("halfclose: --html: no ladder for {m}");
    }
    eprintln!(
        "halfclose: HTML report: {} ({} pages, {} ladders)",
        dir.join("index.html").display(),
        w.pages,
        w.ladders
    );
    Ok(())
}

/// `[A-Za-z0-9._-]` kept, anything else `_`, and a hash of the original when anything was
/// replaced, so two names never share a file.
fn file_part(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == s && !s.is_empty() && !s.starts_with('.') {
        return clean;
    }
    // FNV-1a: stable across runs and platforms, which a std hasher is not.
    let hash = s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{}-{:08x}", clean.trim_start_matches('.'), hash as u32)
}

/// `../../../../` from a trial page to the site's root.
fn up(page: &str) -> String {
    "../".repeat(page.matches('/').count())
}

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em;color:#1f2328;background:#fff}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:13px}
a{color:#0969da;text-decoration:none} a:hover{text-decoration:underline}
nav a{margin-right:1.2em}
table{border-collapse:collapse;margin:.8em 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
td.num{text-align:right}
.v{font-weight:600;border-radius:4px;padding:0 5px;white-space:nowrap}
.v-passed{color:#1a7f37}.v-deviation{color:#8250df}.v-failed{color:#fff;background:#cf222e}
.v-inconclusive{color:#9a6700;background:#fff8c5}.v-skipped{color:#6e7781}
.filters{margin:.6em 0;padding:.5em;background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px}
.filters label{margin-right:1em}
pre.failure{background:#ffebe9;border:1px solid #ff818266;padding:.6em;white-space:pre-wrap}
pre.script{background:#f6f8fa;padding:.6em;line-height:1.35}
pre.script span{display:block} pre.script span:target{background:#fff8c5}
pre.script i{color:#8c959f;font-style:normal;display:inline-block;width:3em;user-select:none}
tr:target{background:#fff8c5}
.ladder-box{overflow-x:auto;border:1px solid #d0d7de;border-radius:6px;margin:.8em 0;display:inline-block}
.muted{color:#6e7781}
#trials td:last-child{min-width:28em}
"#;

fn html_page(title: &str, root: &str, body: &str, script: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{CSS}</style></head><body>\
<nav><a href=\"{root}index.html\">trials</a><a href=\"{root}matrix.html\">matrix</a><a href=\"{root}scorecard.html\">scorecard</a></nav>\n{body}",
        esc(title)
    );
    if !script.is_empty() {
        let _ = write!(s, "<script>{script}</script>");
    }
    s.push_str("</body></html>\n");
    s
}

fn badge(v: Verdict) -> String {
    format!("<span class=\"v v-{0}\">{0}</span>", v.word())
}

fn stacks(trials: &[Trial]) -> Vec<String> {
    let set: BTreeSet<&str> = trials.iter().map(|t| t.stack.as_str()).collect();
    // The local kernel first, the others as named.
    let mut v: Vec<String> = set.into_iter().map(String::from).collect();
    v.sort_by_key(|s| (s != "linux", s.clone()));
    v
}

fn counts(trials: &[&Trial]) -> BTreeMap<Verdict, usize> {
    let mut m = BTreeMap::new();
    for t in trials {
        *m.entry(t.verdict).or_insert(0) += 1;
    }
    m
}

fn counts_text(c: &BTreeMap<Verdict, usize>) -> String {
    Verdict::ALL
        .iter()
        .filter_map(|v| c.get(v).map(|n| format!("{n} {}", v.word())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The index: every trial, filterable by verdict, stack, family and text.
fn index(trials: &[Trial]) -> String {
    let all: Vec<&Trial> = trials.iter().collect();
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>halfclose report</h1><p>{} trials on {}: {}.</p>",
        trials.len(),
        stacks(trials).join(", "),
        counts_text(&counts(&all))
    );
    b.push_str("<div class=\"filters\"><b>show</b> ");
    for v in Verdict::ALL {
        let _ = write!(
            b,
            "<label><input type=\"checkbox\" class=\"fv\" value=\"{0}\" checked> {0}</label>",
            v.word()
        );
    }
    b.push_str("<label>stack <select id=\"fstack\"><option value=\"\">all</option>");
    for s in stacks(trials) {
        let _ = write!(b, "<option>{}</option>", esc(&s));
    }
    b.push_str("</select></label><label>family <select id=\"ffam\"><option value=\"\">all</option><option>ipv4</option><option>ipv6</option></select></label>");
    b.push_str("<label>name <input id=\"ftext\" type=\"search\" placeholder=\"close::active\"></label> <span id=\"shown\" class=\"muted\"></span></div>");
    b.push_str("<table id=\"trials\"><thead><tr><th>group</th><th>scenario</th><th>family</th><th>stack</th><th>verdict</th><th>seconds</th><th>runs</th><th>why</th></tr></thead><tbody>\n");
    for t in trials {
        let (f, g, s) = t.parts();
        let why = t
            .skipped
            .as_ref()
            .map(|w| format!("needs {w}"))
            .or_else(|| t.deviation.clone())
            .or_else(|| {
                t.failure
                    .as_ref()
                    .and_then(|f| f.lines().next().map(String::from))
            })
            .or_else(|| {
                t.alternative
                    .as_ref()
                    .map(|a| format!("showed the `{a}` alternative"))
            })
            .unwrap_or_default();
        let runs = if t.reruns.is_empty() {
            t.tries.to_string()
        } else {
            format!("{} ({} rerun)", t.tries, t.reruns.len())
        };
        let _ = writeln!(
            b,
            "<tr data-v=\"{}\" data-stack=\"{}\" data-fam=\"{}\" data-name=\"{}\"><td>{}</td><td><a href=\"{}\">{}</a></td><td>{f}</td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{runs}</td><td class=\"muted\">{}</td></tr>",
            t.verdict.word(),
            esc(&t.stack),
            esc(f),
            esc(&t.name),
            esc(g),
            esc(&t.page()),
            esc(s),
            esc(&t.stack),
            badge(t.verdict),
            t.seconds,
            esc(&ladder::text::clip(&why, 120))
        );
    }
    b.push_str("</tbody></table>");
    html_page("halfclose report", "", &b, FILTER_JS)
}

/// Hides the rows the filters leave out; nothing is loaded, only rows shown or hidden.
const FILTER_JS: &str = r#"
(function(){
  var rows=[].slice.call(document.querySelectorAll('#trials tbody tr'));
  var boxes=[].slice.call(document.querySelectorAll('.fv'));
  var stack=document.getElementById('fstack'),fam=document.getElementById('ffam'),text=document.getElementById('ftext');
  function apply(){
    var want={};boxes.forEach(function(b){want[b.value]=b.checked;});
    var q=text.value.toLowerCase(),n=0;
    rows.forEach(function(r){
      var ok=want[r.dataset.v]&&(!stack.value||r.dataset.stack===stack.value)&&(!fam.value||r.dataset.fam===fam.value)&&r.dataset.name.toLowerCase().indexOf(q)>=0;
      r.style.display=ok?'':'none';if(ok)n++;
    });
    document.getElementById('shown').textContent=n+' of '+rows.length+' shown';
  }
  boxes.concat([stack,fam,text]).forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});
  apply();
})();
"#;

/// A matrix row's trials by (stack, family).
type Cells<'a> = BTreeMap<(String, String), &'a Trial>;

/// Scenario × (stack, family), each cell its verdict linking to the trial.
fn matrix(trials: &[Trial]) -> String {
    let stacks = stacks(trials);
    let mut rows: BTreeMap<(String, String), Cells> = BTreeMap::new();
    let mut families = BTreeSet::new();
    for t in trials {
        let (f, g, s) = t.parts();
        families.insert(f.to_string());
        rows.entry((g.to_string(), s.to_string()))
            .or_default()
            .insert((t.stack.clone(), f.to_string()), t);
    }
    let mut b = String::from("<h1>matrix</h1><p>Each scenario on each stack and family; a cell links to its trial.</p><table><thead><tr><th rowspan=\"2\">group</th><th rowspan=\"2\">scenario</th>");
    for s in &stacks {
        let _ = write!(b, "<th colspan=\"{}\">{}</th>", families.len(), esc(s));
    }
    b.push_str("</tr><tr>");
    for _ in &stacks {
        for f in &families {
            let _ = write!(b, "<th>{}</th>", esc(f));
        }
    }
    b.push_str("</tr></thead><tbody>\n");
    for ((g, s), cells) in &rows {
        let _ = write!(b, "<tr><td>{}</td><td>{}</td>", esc(g), esc(s));
        for st in &stacks {
            for f in &families {
                match cells.get(&(st.clone(), f.clone())) {
                    Some(t) => {
                        let why = t
                            .deviation
                            .as_deref()
                            .or(t.skipped.as_deref())
                            .unwrap_or("");
                        let _ = write!(
                            b,
                            "<td><a href=\"{}\" title=\"{}\">{}</a></td>",
                            esc(&t.page()),
                            esc(why),
                            badge(t.verdict)
                        );
                    }
                    None => b.push_str("<td class=\"muted\">—</td>"),
                }
            }
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody></table>");
    html_page("halfclose matrix", "", &b, "")
}

/// Per stack and group, the count of each verdict, stacks side by side.
fn scorecard(trials: &[Trial]) -> String {
    let stacks = stacks(trials);
    let groups: BTreeSet<&str> = trials.iter().map(|t| t.parts().1).collect();
    let mut b = String::from("<h1>scorecard</h1><p>Trials per verdict, per stack: passed, known deviations (each with its reason in the stack's expectations file), failed, inconclusive, skipped (a capability the stack lacks).</p><table><thead><tr><th>group</th>");
    for s in &stacks {
        let _ = write!(b, "<th>{}</th>", esc(s));
    }
    b.push_str("</tr></thead><tbody>\n");
    let cell = |sel: &dyn Fn(&Trial) -> bool| -> String {
        let ts: Vec<&Trial> = trials.iter().filter(|t| sel(t)).collect();
        if ts.is_empty() {
            return "<td class=\"muted\">—</td>".into();
        }
        let c = counts(&ts);
        let parts: Vec<String> = Verdict::ALL
            .iter()
            .filter_map(|v| c.get(v).map(|n| format!("{n} {}", badge(*v))))
            .collect();
        format!("<td>{}</td>", parts.join("<br>"))
    };
    b.push_str("<tr><td><b>all</b></td>");
    for s in &stacks {
        b.push_str(&cell(&|t: &Trial| &t.stack == s));
    }
    b.push_str("</tr>\n");
    for g in &groups {
        let _ = write!(b, "<tr><td>{}</td>", esc(g));
        for s in &stacks {
            b.push_str(&cell(&|t: &Trial| &t.stack == s && t.parts().1 == *g));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody></table>");
    html_page("halfclose scorecard", "", &b, "")
}

/// A trial's page, and whether it has a ladder.
fn trial_page(dir: &Path, t: &Trial, written: &mut Written) -> (String, bool) {
    let page = t.page();
    let root = up(&page);
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1 class=\"mono\">{}</h1><p>{} on <b>{}</b> · {:.3} s · {} run(s) · script <code>{}</code></p>",
        esc(&t.name),
        badge(t.verdict),
        esc(&t.stack),
        t.seconds,
        t.tries,
        esc(&t.file)
    );
    for (what, text) in [
        ("known deviation", &t.deviation),
        ("skipped: the stack lacks", &t.skipped),
        ("inconclusive", &t.inconclusive),
    ] {
        if let Some(x) = text {
            let _ = write!(b, "<p><b>{what}</b>: {}</p>", esc(x));
        }
    }
    for (i, r) in t.reruns.iter().enumerate() {
        let _ = write!(
            b,
            "<p class=\"muted\">run {} was rerun: {}</p>",
            i + 1,
            esc(r)
        );
    }
    if let Some(f) = &t.failure {
        let _ = write!(b, "<pre class=\"failure\">{}</pre>", esc(f));
    }
    let ladder = match &t.pcap {
        Some(p) => ladder::read_pcapng_file(p).and_then(|bytes| {
            let l = Ladder::from_pcapng(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((l, bytes))
        }),
        None if t.skipped.is_some() => Err("skipped: no capture".into()),
        None => Err("no capture was written".into()),
    };
    let has_ladder = match ladder {
        Ok((l, bytes)) => {
            let copy = t.capture_copy();
            let _ = crate::report::write_file(&dir.join(&copy), "")
                .and_then(|()| fs::write(dir.join(&copy), &bytes));
            let _ = write!(
                b,
                "<h2>ladder</h2><p class=\"muted\">Time runs down; each arrow links to its frame, each step to its script line. Capture: <a href=\"{root}{}\">{}</a> ({} frames).</p><div class=\"ladder-box\">{}</div>",
                esc(&copy),
                esc(copy.rsplit('/').next().unwrap_or("")),
                l.rows.iter().filter(|r| !matches!(r.kind, ladder::RowKind::Sut(..))).count(),
                svg::render(&l, svg::Links { anchors: true })
            );
            frames_table(&mut b, &l);
            if !l.notes.is_empty() {
                b.push_str("<h2>capture notes</h2><ul class=\"mono\">");
                for n in &l.notes {
                    let _ = write!(b, "<li>{}</li>", esc(n));
                }
                b.push_str("</ul>");
            }
            true
        }
        Err(why) => {
            if t.skipped.is_none() {
                written
                    .missing
                    .push(format!("{} ({}): {why}", t.name, t.stack));
            }
            let _ = write!(b, "<p class=\"muted\">No ladder: {}</p>", esc(&why));
            false
        }
    };
    script_listing(&mut b, &t.file);
    (html_page(&t.name, &root, &b, ""), has_ladder)
}

fn frames_table(b: &mut String, l: &Ladder) {
    b.push_str("<h2>frames</h2><table class=\"mono\"><thead><tr><th>#</th><th>time</th><th>from</th><th>segment</th><th>comment</th></tr></thead><tbody>");
    for row in &l.rows {
        let (frame, from, seg, comment) = match &row.kind {
            ladder::RowKind::Segment(s) => (
                s.frame,
                if s.from_sut { "SUT" } else { "peer" },
                s.label(),
                s.comment.as_str(),
            ),
            ladder::RowKind::Other { frame, summary } => (*frame, "", summary.clone(), ""),
            ladder::RowKind::Sut(..) => continue,
        };
        let _ = write!(
            b,
            "<tr id=\"frame-{frame}\"><td>{frame}</td><td>+{}</td><td>{from}</td><td>{}</td><td>{}</td></tr>",
            ladder::show_span(row.at),
            esc(&seg),
            esc(comment)
        );
    }
    b.push_str("</tbody></table>");
}

fn script_listing(b: &mut String, file: &str) {
    let text = fs::metadata(file)
        .ok()
        .filter(|m| m.len() <= MAX_SCRIPT_BYTES)
        .and_then(|_| fs::read_to_string(file).ok());
    let Some(text) = text else {
        let _ = write!(b, "<p class=\"muted\">The script <code>{}</code> was not readable when the report was made.</p>", esc(file));
        return;
    };
    let _ = write!(
        b,
        "<h2>script <code>{}</code></h2><pre class=\"script\">",
        esc(file)
    );
    for (i, line) in text.lines().enumerate() {
        let _ = write!(
            b,
            "<span id=\"L{0}\"><i>{0}</i>{1}</span>",
            i + 1,
            esc(line)
        );
    }
    b.push_str("</pre>");
}

fn esc(s: &str) -> String {
    svg::esc(s)
}

#[cfg(test)]
mod tests;
