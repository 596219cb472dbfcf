//! Plays one scenario for one address family: one trial.
//!
//! The runner builds the trial's topology, starts the peer's link, and walks the steps in order
//! with its own clock. Every SUT segment must be claimed by an `expect` step, in order; after
//! the last step a short quiet period catches trailing segments. The capture is written however
//! the trial ends, failure and panic included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::capture::Capture;
use crate::observe::{Observer, TcpState};
use crate::peer::{Arrival, Link, PeerConn};
use crate::script::values::show_duration;
use crate::script::{Action, ExpectSpec, Scenario, SendSpec, Step, Window};
use crate::sut::{self, Completed, KernelSut};
use crate::topology::{self, Topology};
use crate::wire;
use crate::Family;

mod matching;
pub mod timing;
mod trace;

pub use trace::Trace;

/// Where a trial leaves its files.
#[derive(Clone, Debug)]
pub struct TrialConfig {
    pub pcap_dir: PathBuf,
}

/// Why a trial failed, pointing at the step.
#[derive(Clone, Debug)]
pub struct Failure {
    /// 1-based step number as counted in the file (implicit handshake steps count as 0).
    pub step: usize,
    pub heading: String,
    pub details: Vec<(String, String)>,
}

/// The result of one trial.
#[derive(Debug)]
pub struct Verdict {
    pub trial: String,
    pub failure: Option<Failure>,
    pub trace: Trace,
    pub pcap: Option<PathBuf>,
    pub elapsed: Duration,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The failure text: step and place, expected vs actual, the state trace, the capture.
    pub fn failure_text(&self) -> Option<String> {
        let f = self.failure.as_ref()?;
        let mut out = f.heading.clone();
        for (k, v) in &f.details {
            out.push_str(&format!("\n  {k:<9} {v}"));
        }
        out.push_str(&format!("\n  {:<9} {}", "states:", self.trace));
        match &self.pcap {
            Some(p) => out.push_str(&format!("\n  {:<9} {}", "capture:", p.display())),
            None => out.push_str(&format!("\n  {:<9} (not written)", "capture:")),
        }
        Some(out)
    }
}

/// The pcapng path of a trial: `<dir>/<family>/<group>/<name>.pcapng`.
pub fn pcap_path(dir: &Path, sc: &Scenario, family: Family) -> PathBuf {
    dir.join(family.name())
        .join(&sc.group)
        .join(format!("{}.pcapng", sc.name))
}

/// Runs one trial. Never panics on SUT behaviour; a panic inside still leaves the capture.
pub fn run_trial(sc: &Scenario, family: Family, cfg: &TrialConfig) -> Verdict {
    let started = Instant::now();
    let trial = sc.trial_name(family);
    let capture = Arc::new(Mutex::new(Capture::new(
        topology::PEER_IFNAME,
        &format!("halfclose peer, trial {trial}"),
    )));
    let pcap = pcap_path(&cfg.pcap_dir, sc, family);
    let mut trace = Trace::default();
    let cap2 = capture.clone();
    let trace_ref = &mut trace;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute(sc, family, cap2, trace_ref)
    }));
    let failure = match result {
        Ok(r) => r.err(),
        Err(p) => Some(Failure {
            step: 0,
            heading: format!("the harness panicked: {}", panic_text(&p)),
            details: Vec::new(),
        }),
    };
    let written = capture
        .lock()
        .map(|c| c.write_pcapng(&pcap))
        .unwrap_or_else(|e| e.into_inner().write_pcapng(&pcap));
    let pcap = match written {
        Ok(()) => Some(pcap),
        Err(e) => {
            tracing::warn!("cannot write {}: {e}", pcap.display());
            None
        }
    };
    Verdict {
        trial,
        failure,
        trace,
        pcap,
        elapsed: started.elapsed(),
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn setup_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure {
        step: 0,
        heading: format!("trial setup failed: {what}: {e}"),
        details: Vec::new(),
    }
}

fn execute(
    sc: &Scenario,
    family: Family,
    capture: Arc<Mutex<Capture>>,
    trace: &mut Trace,
) -> Result<(), Failure> {
    let topo =
        Topology::create(&trial_sysctls(sc, family)).map_err(|e| setup_failure("topology", e))?;
    let observer = topo
        .run_in_sut(Observer::new)
        .map_err(|e| setup_failure("observer", e))?
        .map_err(|e| setup_failure("sock_diag", e))?;
    let link = Link::start(&topo, capture).map_err(|e| setup_failure("packet socket", e))?;
    link.wait_ready(family)
        .map_err(|e| setup_failure("link", e))?;
    let sut_addr = SocketAddr::new(topology::sut_ip(family), sc.setup.sut_port);
    let peer_addr = SocketAddr::new(topology::peer_ip(family), sc.setup.peer_port);
    let mut run = Run {
        sc,
        topo: &topo,
        link,
        observer,
        sut: KernelSut::new(sut_addr, peer_addr),
        conn: PeerConn::new(
            sc.setup.peer.clone(),
            family,
            sc.setup.peer_port,
            sc.setup.sut_port,
        ),
        trace,
        anchor: SystemTime::now(),
        anchor_what: "the start of the trial".into(),
        named: HashMap::new(),
        background: HashMap::new(),
        step_no: 0,
    };
    let result = run.steps().and_then(|()| run.final_quiet());
    run.finish();
    result
}

/// The script's sysctls, after ours: an IPv4 trial turns IPv6 off in the SUT netns so its
/// capture has no MLD reports in it (the script may still turn it back on).
fn trial_sysctls(sc: &Scenario, family: Family) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if family == Family::V4 {
        for k in [
            "net.ipv6.conf.all.disable_ipv6",
            "net.ipv6.conf.default.disable_ipv6",
        ] {
            out.push((k.to_string(), "1".to_string()));
        }
    }
    out.extend(sc.setup.sysctls.iter().cloned());
    out
}

/// Everything one trial's steps act on.
struct Run<'a> {
    sc: &'a Scenario,
    topo: &'a Topology,
    link: Link,
    observer: Observer,
    sut: KernelSut,
    conn: PeerConn,
    trace: &'a mut Trace,
    /// The previous timed event: windows are measured from here unless `since:` says otherwise.
    anchor: SystemTime,
    anchor_what: String,
    named: HashMap<String, (SystemTime, String)>,
    /// Background calls by name: the call and when it started.
    background: HashMap<String, (crate::script::Call, SystemTime)>,
    step_no: usize,
}

impl Run<'_> {
    fn steps(&mut self) -> Result<(), Failure> {
        let mut numbered = 0;
        for step in &self.sc.steps {
            if !step.implicit {
                numbered += 1;
            }
            self.step_no = if step.implicit { 0 } else { numbered };
            self.step(step)?;
            self.sample();
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), Failure> {
        match &step.action {
            Action::Send(spec) => self.send(step, spec),
            Action::Expect(spec) => self.expect(step, spec),
            Action::Quiet(d) => self.quiet(step, *d),
            Action::Wait(d) => {
                std::thread::sleep(*d);
                Ok(())
            }
            Action::Call {
                call,
                background: false,
            } => self.call(step, call),
            Action::Call {
                call,
                background: true,
            } => self.call_background(step, call),
            Action::Await { name, window } => self.await_call(step, name, window),
            Action::State(want) => self.state(step, *want),
        }
    }

    /// "step 4 (suites/close/active-close.yaml:12)" or "the open: handshake (…:7)".
    fn place(&self, step: &Step) -> String {
        let file = self.sc.file.display();
        if step.implicit {
            format!("the `open:` handshake ({file}:{})", step.loc.line)
        } else {
            format!(
                "step {} ({file}:{}:{})",
                self.step_no, step.loc.line, step.loc.column
            )
        }
    }

    fn short_place(&self, step: &Step) -> String {
        let file = self
            .sc
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if step.implicit {
            format!("open: handshake ({file}:{})", step.loc.line)
        } else {
            format!("step {} ({file}:{})", self.step_no, step.loc.line)
        }
    }

    fn fail(&self, step: &Step, what: String, details: Vec<(String, String)>) -> Failure {
        Failure {
            step: self.step_no,
            heading: format!("{}: {what}", self.place(step)),
            details,
        }
    }

    fn mark(&mut self, step: &Step, at: SystemTime, what: String) {
        self.anchor = at;
        self.anchor_what = what.clone();
        if let Some(n) = &step.name {
            self.named.insert(n.clone(), (at, what));
        }
    }

    fn sample(&mut self) {
        let local = SocketAddr::new(self.conn.ep.dst, self.conn.sut_port);
        let remote = SocketAddr::new(self.conn.ep.src, self.conn.peer_port);
        if let Ok(info) = self.observer.connection(local, remote) {
            self.trace.record(SystemTime::now(), info.map(|i| i.state));
        }
    }

    fn send(&mut self, step: &Step, spec: &SendSpec) -> Result<(), Failure> {
        let tcp = self.conn.build(spec);
        if let Err(why) = tcp.check() {
            return Err(self.fail(
                step,
                "send".into(),
                vec![("error:".into(), format!("cannot build this segment: {why}"))],
            ));
        }
        let frame = wire::emit_tcp(topology::PEER_MAC, topology::SUT_MAC, self.conn.ep, &tcp);
        let text = self.conn.describe_sent(&tcp);
        if spec.delay > Duration::ZERO {
            sleep_until(self.anchor + spec.delay);
        }
        let (at, _) = if spec.drop {
            let c = format!("NOT SENT: dropped by {}: {text}", self.short_place(step));
            self.link.record_dropped(frame, c)
        } else {
            let c = format!("sent by {}: {text}", self.short_place(step));
            self.link.send(frame, c).map_err(|e| {
                self.fail(
                    step,
                    format!("send {text}"),
                    vec![("error:".into(), e.to_string())],
                )
            })?
        };
        self.conn.on_sent(&tcp, at, spec.drop);
        self.mark(step, at, format!("the send at line {}", step.loc.line));
        Ok(())
    }

    fn window_start(&self, step: &Step, w: &Window) -> Result<(SystemTime, String), Failure> {
        match &w.since {
            Some(name) => self.named.get(name).cloned().ok_or_else(|| {
                self.fail(
                    step,
                    format!("`since: {name}`: that step has not happened"),
                    Vec::new(),
                )
            }),
            None => Ok((self.anchor, self.anchor_what.clone())),
        }
    }

    fn expect(&mut self, step: &Step, spec: &ExpectSpec) -> Result<(), Failure> {
        let window = self.resolve_window(&spec.window);
        let (from, from_what) = self.window_start(step, &window)?;
        let want = matching::describe_expect(spec);
        let deadline = deadline_of(from + window.within);
        let Some(got) = self.link.next_arrival(deadline) else {
            return Err(self.nothing_arrived(step, &window, &want, from, &from_what));
        };
        let actual = self.conn.describe_received(&got.tcp);
        let offset = offset_text(got.at, from);
        if let Err(why) = matching::check_segment(spec, &got, &self.conn) {
            self.link.comment(
                got.frame,
                format!(
                    "UNEXPECTED: {} expected {want}: {why}",
                    self.short_place(step)
                ),
            );
            return Err(self.fail(
                step,
                format!("expect {want}"),
                vec![
                    ("expected:".into(), want.clone()),
                    (
                        "actual:".into(),
                        format!("{actual}  ({why}), at {offset} after {from_what}"),
                    ),
                ],
            ));
        }
        if let Err(why) = matching::check_time(&window, got.at, from) {
            self.link.comment(
                got.frame,
                format!("LATE/EARLY: matched {} but {why}", self.short_place(step)),
            );
            return Err(self.fail(
                step,
                format!("expect {want}"),
                vec![
                    (
                        "expected:".into(),
                        format!("{want} {}", matching::show_window(&window)),
                    ),
                    (
                        "actual:".into(),
                        format!("{actual} at {offset} after {from_what}: {why}"),
                    ),
                ],
            ));
        }
        self.conn.note_transmission(&got.tcp, got.at);
        if spec.drop {
            self.link.comment(
                got.frame,
                format!(
                    "matched {}, DROPPED by the harness (the peer ignores it): {actual}",
                    self.short_place(step)
                ),
            );
        } else {
            self.link.comment(
                got.frame,
                format!("matched {}: {actual} at {offset}", self.short_place(step)),
            );
            self.conn.on_received(&got.tcp);
        }
        self.mark(
            step,
            got.at,
            format!("the segment matched at line {}", step.loc.line),
        );
        Ok(())
    }

    /// A `retransmission: N` window comes from the timer model and the RTTs seen so far.
    fn resolve_window(&self, w: &Window) -> Window {
        match w.retransmission {
            Some(n) => {
                let (after, within) =
                    timing::TimerModel::LINUX.retransmission_window(n, self.conn.rtt);
                Window {
                    after: Some(after),
                    within,
                    ..w.clone()
                }
            }
            None => w.clone(),
        }
    }

    /// The window closed empty. Waiting a little longer tells "late, at +X" from "never", so
    /// a wrong window fails with the time actually measured.
    fn nothing_arrived(
        &self,
        step: &Step,
        window: &Window,
        want: &str,
        from: SystemTime,
        from_what: &str,
    ) -> Failure {
        let w = matching::show_window(window);
        let grace = window
            .within
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let actual = match self.link.next_arrival(Instant::now() + grace) {
            Some(late) => {
                let text = self.conn.describe_received(&late.tcp);
                let at = offset_text(late.at, from);
                self.link.comment(
                    late.frame,
                    format!("LATE for {}: {text} at {at}", self.short_place(step)),
                );
                format!("nothing {w} of {from_what}; then {text} came at {at}")
            }
            None => format!(
                "nothing arrived {w} of {from_what} (nor {} after)",
                show_duration(grace)
            ),
        };
        self.fail(
            step,
            format!("expect {want}"),
            vec![
                ("expected:".into(), format!("{want} {w}")),
                ("actual:".into(), actual),
            ],
        )
    }

    fn quiet(&mut self, step: &Step, d: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + d;
        if let Some(got) = self.link.next_arrival(deadline) {
            return Err(self.unexpected(step, got, format!("quiet {}", show_duration(d))));
        }
        Ok(())
    }

    fn unexpected(&self, step: &Step, got: Arrival, during: String) -> Failure {
        let actual = self.conn.describe_received(&got.tcp);
        self.link.comment(
            got.frame,
            format!(
                "UNEXPECTED during {} of {}: {actual}",
                during,
                self.short_place(step)
            ),
        );
        let offset = offset_text(got.at, self.anchor);
        self.fail(
            step,
            format!("{during}: the SUT sent a segment no step expects"),
            vec![
                ("expected:".into(), "nothing".into()),
                (
                    "actual:".into(),
                    format!("{actual} at {offset} after {}", self.anchor_what),
                ),
            ],
        )
    }

    fn call(&mut self, step: &Step, call: &crate::script::Call) -> Result<(), Failure> {
        let timeout = self.sc.setup.call_timeout;
        let done = self.sut.call(self.topo, call, timeout).map_err(|e| {
            self.fail(
                step,
                format!("call {}", call.text),
                vec![("error:".into(), e)],
            )
        })?;
        let Some(done) = done else {
            return Err(self.fail(step, format!("call {}", call.text), vec![
                ("expected:".into(), sut::show_outcome(&call.outcome)),
                ("actual:".into(), format!("still blocked after {}; a call that blocks needs `background: true` and an `await` step", show_duration(timeout))),
            ]));
        };
        self.check_call(step, call, &done)?;
        self.mark(
            step,
            done.started,
            format!("the call at line {}", step.loc.line),
        );
        Ok(())
    }

    fn check_call(
        &self,
        step: &Step,
        call: &crate::script::Call,
        done: &Completed,
    ) -> Result<(), Failure> {
        if sut::check_outcome(&call.outcome, &done.result) {
            return Ok(());
        }
        Err(self.fail(
            step,
            format!("call {}", call.text),
            vec![
                ("expected:".into(), sut::show_outcome(&call.outcome)),
                ("actual:".into(), done.result.to_string()),
            ],
        ))
    }

    fn call_background(&mut self, step: &Step, call: &crate::script::Call) -> Result<(), Failure> {
        let name = step.name.clone().unwrap_or_default();
        let started = self
            .sut
            .call_background(self.topo, &name, call)
            .map_err(|e| {
                self.fail(
                    step,
                    format!("call {}", call.text),
                    vec![("error:".into(), e)],
                )
            })?;
        self.background.insert(name, (call.clone(), started));
        self.mark(
            step,
            started,
            format!(
                "the start of call `{}` at line {}",
                call.text, step.loc.line
            ),
        );
        Ok(())
    }

    fn await_call(&mut self, step: &Step, name: &str, w: &Window) -> Result<(), Failure> {
        let (call, started) = self
            .background
            .remove(name)
            .expect("checked when the script was loaded");
        let (from, from_what) = match &w.since {
            Some(_) => self.window_start(step, w)?,
            None => (started, format!("the start of `{}`", call.text)),
        };
        let Some(done) = self.sut.collect(name, &call, deadline_of(from + w.within)) else {
            return Err(self.fail(
                step,
                format!("await {name}"),
                vec![
                    (
                        "expected:".into(),
                        format!(
                            "`{}` returns {} {}",
                            call.text,
                            sut::show_outcome(&call.outcome),
                            matching::show_window(w)
                        ),
                    ),
                    (
                        "actual:".into(),
                        format!(
                            "still blocked {} after {from_what}",
                            show_duration(w.within)
                        ),
                    ),
                ],
            ));
        };
        self.check_call(step, &call, &done)?;
        if let Err(why) = matching::check_time(w, done.ended, from) {
            return Err(self.fail(
                step,
                format!("await {name}"),
                vec![
                    (
                        "expected:".into(),
                        format!("`{}` returns {}", call.text, matching::show_window(w)),
                    ),
                    (
                        "actual:".into(),
                        format!(
                            "returned {} after {from_what}: {why}",
                            offset_text(done.ended, from)
                        ),
                    ),
                ],
            ));
        }
        self.mark(step, done.ended, format!("the return of `{}`", call.text));
        Ok(())
    }

    fn state(&mut self, step: &Step, want: Option<TcpState>) -> Result<(), Failure> {
        // The kernel handles our last frame in softirq context; give it a moment to settle
        // before calling a state wrong, but never long enough to hide a transient state.
        const SETTLE: Duration = Duration::from_millis(50);
        let local = SocketAddr::new(self.conn.ep.dst, self.conn.sut_port);
        let remote = SocketAddr::new(self.conn.ep.src, self.conn.peer_port);
        let until = Instant::now() + SETTLE;
        loop {
            let now = self.observer.connection(local, remote).map_err(|e| {
                self.fail(
                    step,
                    "state".into(),
                    vec![("error:".into(), format!("sock_diag: {e}"))],
                )
            })?;
            let got = now.as_ref().map(|i| i.state);
            self.trace.record(SystemTime::now(), got);
            if got == want {
                return Ok(());
            }
            if Instant::now() >= until {
                let show = |s: Option<TcpState>| {
                    s.map_or("CLOSED (no socket)".to_string(), |s| s.name().to_string())
                };
                return Err(self.fail(
                    step,
                    format!("state {}", show(want)),
                    vec![
                        ("expected:".into(), show(want)),
                        ("actual:".into(), show(got)),
                    ],
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// After the last step: nothing more may arrive for the closing quiet period, and nothing
    /// unclaimed may be left in the queue.
    fn final_quiet(&mut self) -> Result<(), Failure> {
        let last = self.sc.steps.last().expect("a scenario has steps");
        let d = self.sc.setup.final_quiet;
        if let Some(got) = self.link.next_arrival(Instant::now() + d) {
            return Err(self.unexpected(
                last,
                got,
                format!(
                    "the closing quiet period ({}) after the last step",
                    show_duration(d)
                ),
            ));
        }
        Ok(())
    }

    /// Stops the link and marks what nobody claimed.
    fn finish(&mut self) {
        for got in self.link.stop() {
            let actual = self.conn.describe_received(&got.tcp);
            self.link.comment(
                got.frame,
                format!("UNEXPECTED (after the trial had failed or ended): {actual}"),
            );
        }
        self.sut.close_all();
    }
}

fn deadline_of(at: SystemTime) -> Instant {
    let now = SystemTime::now();
    match at.duration_since(now) {
        Ok(d) => Instant::now() + d,
        Err(_) => Instant::now(),
    }
}

/// Sleeps until a wall-clock moment: a coarse sleep, then a short spin for the last stretch,
/// since a plain sleep overshoots by up to a millisecond under load.
fn sleep_until(at: SystemTime) {
    const SPIN: Duration = Duration::from_micros(300);
    if let Ok(d) = at.duration_since(SystemTime::now()) {
        if d > SPIN {
            std::thread::sleep(d - SPIN);
        }
    }
    while SystemTime::now() < at {
        std::hint::spin_loop();
    }
}

/// "+1.234ms" / "-0.200ms": when something happened relative to an anchor.
fn offset_text(at: SystemTime, from: SystemTime) -> String {
    match at.duration_since(from) {
        Ok(d) => format!("+{}", show_precise(d)),
        Err(e) => format!("-{}", show_precise(e.duration())),
    }
}

fn show_precise(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    }
}
