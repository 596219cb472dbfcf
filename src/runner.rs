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
use crate::observe::Observer;
use crate::peer::{Link, PeerConn};
use crate::script::values::show_duration;
use crate::script::{Action, Call, PeerConfig, Scenario, Step, Window, DEFAULT_CONN};
use crate::stack::TopologyKind;
use crate::sut::{AgentSut, KernelSut, SutDriver};
use crate::topology::{self, Topology};
use crate::tracepoint::Transitions;
use crate::Family;

pub use crate::stack::Stack;

mod calls;
mod matching;
pub mod noise;
mod receive;
mod segments;
mod states;
mod trace;

pub use trace::Trace;

/// Where a trial leaves its files, and what it tests.
#[derive(Clone, Debug)]
pub struct TrialConfig {
    pub pcap_dir: PathBuf,
    pub stack: Stack,
    /// How many times a trial runs at most while its runs are inconclusive (the harness was
    /// late); a trial is judged on its first conclusive run.
    pub tries: u32,
}

/// Runs of a trial at most, unless `--retries` says otherwise: one, and two reruns.
pub const DEFAULT_TRIES: u32 = 3;

impl TrialConfig {
    pub fn new(pcap_dir: PathBuf, stack: Stack) -> TrialConfig {
        TrialConfig {
            pcap_dir,
            stack,
            tries: DEFAULT_TRIES,
        }
    }
}

/// Why a trial failed, pointing at the step.
#[derive(Clone, Debug)]
pub struct Failure {
    /// 1-based step number as counted in the file (implicit handshake steps count as 0).
    pub step: usize,
    pub heading: String,
    pub details: Vec<(String, String)>,
    /// The harness could not run the trial (its setup failed, it panicked): the run says
    /// nothing about the SUT, so it is inconclusive, never a (known) failure.
    pub harness: bool,
}

/// The result of one trial.
#[derive(Debug)]
pub struct Verdict {
    pub trial: String,
    pub failure: Option<Failure>,
    pub trace: Trace,
    /// Timer readings and measured moments (`state` timers, `leave`), in step order.
    pub measurements: Vec<String>,
    pub pcap: Option<PathBuf>,
    pub elapsed: Duration,
    /// Why this run proves nothing either way: the harness was late (a send, a call, a wait,
    /// a look at the socket) beyond its slack. Empty: the verdict stands.
    pub excuses: Vec<String>,
    /// Machine allowances used in time windows (CPU steal measured while they ran).
    pub allowances: Vec<String>,
    /// The largest of them.
    pub allowance_max: Duration,
    /// The index in the scenario's steps of the step that failed (None: the trial failed
    /// in setup or in the closing quiet period, or passed).
    pub failed_step: Option<usize>,
}

impl Verdict {
    /// Passed with no excuse.
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.excuses.is_empty()
    }

    /// The run proves nothing: the harness's own lateness may have decided it.
    pub fn inconclusive(&self) -> bool {
        !self.excuses.is_empty()
    }

    /// Why the run is inconclusive, one line.
    pub fn excuse_text(&self) -> Option<String> {
        if self.excuses.is_empty() {
            return None;
        }
        let outcome = if self.failure.is_some() {
            "it would have failed"
        } else {
            "it would have passed"
        };
        Some(format!(
            "inconclusive ({outcome}): {}",
            self.excuses.join("; ")
        ))
    }

    /// The failure text: step and place, expected vs actual, the state trace, the capture.
    pub fn failure_text(&self) -> Option<String> {
        let f = self.failure.as_ref()?;
        let mut out = f.heading.clone();
        for (k, v) in &f.details {
            out.push_str(&format!("\n  {k:<9} {v}"));
        }
        out.push_str(&format!(
            "\n  {:<9} {}  [{}]",
            "states:",
            self.trace,
            self.trace.source.short()
        ));
        for a in &self.allowances {
            out.push_str(&format!("\n  {:<9} {a}", "allowed:"));
        }
        match &self.pcap {
            Some(p) => out.push_str(&format!("\n  {:<9} {}", "capture:", p.display())),
            None => out.push_str(&format!("\n  {:<9} (not written)", "capture:")),
        }
        Some(out)
    }
}

/// The pcapng path of a trial: `<dir>/<family>/<group>/<name>.pcapng`.
pub fn pcap_path(dir: &Path, sc: &Scenario, family: Family) -> PathBuf {
    let alt = match &sc.running_alternative {
        Some((i, a)) if *i > 0 => format!("@{a}"),
        _ => String::new(),
    };
    dir.join(family.name())
        .join(&sc.group)
        .join(format!("{}{alt}.pcapng", sc.name))
}

/// Runs one trial. Never panics on SUT behaviour; a panic inside still leaves the capture.
pub fn run_trial(sc: &Scenario, family: Family, cfg: &TrialConfig) -> Verdict {
    let started = Instant::now();
    noise::start();
    let trial = sc.trial_name(family);
    let capture = Arc::new(Mutex::new(Capture::new(
        topology::PEER_IFNAME,
        &format!("halfclose peer, trial {trial}"),
    )));
    let pcap = pcap_path(&cfg.pcap_dir, sc, family);
    let mut trace = Trace::default();
    let mut notes = Notes::default();
    let cap2 = capture.clone();
    let trace_ref = &mut trace;
    let notes_ref = &mut notes;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute(sc, family, cfg, cap2, trace_ref, notes_ref)
    }));
    let failure = match result {
        Ok(r) => r.err(),
        Err(p) => Some(Failure {
            step: 0,
            heading: format!("the harness panicked: {}", panic_text(&p)),
            details: Vec::new(),
            harness: true,
        }),
    };
    if let Some(f) = failure.as_ref().filter(|f| f.harness) {
        notes.excuses.push(f.heading.clone());
    }
    if let Some((_, alt)) = &sc.running_alternative {
        let c = capture.lock();
        c.unwrap_or_else(|e| e.into_inner())
            .add_note(format!("alternative: {alt} (the scenario's steps for it)"));
    }
    annotate(&capture, &failure, &trace, &notes);
    crate::ladder::events::annotate(&capture, sc, failure.as_ref(), &trace, &notes.events);
    let written = capture
        .lock()
        .map(|c| c.write_pcapng(&pcap))
        .unwrap_or_else(|e| e.into_inner().write_pcapng(&pcap));
    let pcap = match written {
        Ok(()) => Some(pcap),
        Err(e) => {
            eprintln!("halfclose: {trial}: cannot write {}: {e}", pcap.display());
            None
        }
    };
    Verdict {
        trial,
        failure,
        trace,
        measurements: notes.measurements,
        pcap,
        elapsed: started.elapsed(),
        excuses: notes.excuses,
        allowances: notes.allowances,
        allowance_max: notes.allowance_max,
        failed_step: notes.failed_step,
    }
}

/// What a trial writes down besides its verdict.
#[derive(Default)]
struct Notes {
    measurements: Vec<String>,
    /// The SUT's side of the timeline, for the ladder (`crate::ladder::events`).
    events: Vec<crate::ladder::Event>,
    excuses: Vec<String>,
    allowances: Vec<String>,
    allowance_max: Duration,
    failed_step: Option<usize>,
}

/// The trial's verdict, state trace and measurements as comments on the whole capture.
fn annotate(capture: &Mutex<Capture>, failure: &Option<Failure>, trace: &Trace, notes: &Notes) {
    let mut c = capture.lock().unwrap_or_else(|e| e.into_inner());
    match (failure, notes.excuses.is_empty()) {
        (None, true) => c.add_note("verdict: passed".into()),
        (Some(f), true) => c.add_note(format!("verdict: FAILED at {}", f.heading)),
        (None, false) => c.add_note("verdict: INCONCLUSIVE (it would have passed)".into()),
        (Some(f), false) => c.add_note(format!(
            "verdict: INCONCLUSIVE (it would have failed at {})",
            f.heading
        )),
    }
    for e in &notes.excuses {
        c.add_note(format!("inconclusive because: {e}"));
    }
    c.add_note(format!("states ({}): {}", trace.source, trace.timeline()));
    for m in &notes.measurements {
        c.add_note(format!("measured: {m}"));
    }
    for a in &notes.allowances {
        c.add_note(format!("allowance: {a}"));
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
        harness: true,
    }
}

/// A trial's SUT as set up: its topology, its driver, and the tracepoint that sees its
/// transitions (the local kernel only).
type TrialSut = (Topology, Box<dyn SutDriver>, Option<Transitions>);

/// The local kernel in the trial's namespaces: topology, driver, and the tracepoint that sees
/// its transitions (where tracefs is there to read).
fn kernel_sut(sc: &Scenario, family: Family, trace: &mut Trace) -> Result<TrialSut, Failure> {
    let topo = Topology::create_with_mtu(&trial_sysctls(sc, family), sc.setup.mtu)
        .map_err(|e| setup_failure("topology", e))?;
    let observer = topo
        .run_in_sut(Observer::new)
        .map_err(|e| setup_failure("observer", e))?
        .map_err(|e| setup_failure("sock_diag", e))?;
    // Before the first packet, so the handshake's transitions are seen too.
    let peer = topo.peer_ip(family);
    let transitions = match Transitions::open(family, peer, sc.setup.peer_port) {
        Ok(t) => Some(t),
        Err(why) => {
            trace.source = trace::Source::SampledBecause(why);
            None
        }
    };
    let sut = KernelSut::new(observer, &topo).map_err(|e| setup_failure("call threads", e))?;
    Ok((topo, Box::new(sut), transitions))
}

/// A stack behind an agent: the topology the stack asks for (a TAP device, a namespace pair,
/// or the real interface `--peer-iface` names), and the agent on it.
fn agent_sut(
    cmd: &[String],
    stack: &crate::stack::Stack,
    sysctls: Vec<(String, String)>,
    mtu: Option<u32>,
) -> Result<TrialSut, Failure> {
    let topo = match (&stack.peer_iface, stack.topology()) {
        (Some(iface), _) => Topology::on_iface(iface),
        (None, TopologyKind::Tap) => Topology::create_tap(),
        (None, TopologyKind::Veth) => Topology::create_with_mtu(&sysctls, mtu),
    }
    .map_err(|e| setup_failure("topology", e))?;
    let agent = AgentSut::launch(cmd, &topo, &sysctls).map_err(|e| setup_failure("agent", e))?;
    Ok((topo, Box::new(agent), None))
}

fn execute(
    sc: &Scenario,
    family: Family,
    cfg: &TrialConfig,
    capture: Arc<Mutex<Capture>>,
    trace: &mut Trace,
    notes: &mut Notes,
) -> Result<(), Failure> {
    let setup = crate::schedule::setup_permit();
    let (topo, sut, transitions) = match cfg.stack.agent_command() {
        None => kernel_sut(sc, family, trace)?,
        Some(cmd) => agent_sut(cmd, &cfg.stack, trial_sysctls(sc, family), sc.setup.mtu)?,
    };
    let link = Link::start(&topo, capture).map_err(|e| setup_failure("packet socket", e))?;
    link.wait_ready(family)
        .map_err(|e| setup_failure("link", e))?;
    drop(setup);
    // From here the runner decides when the peer's segments leave and when calls start: keep
    // it ahead of the machine's load where allowed (its lateness is still measured). Not
    // during setup: building namespaces is long kernel work that would hold a CPU from the
    // other trials' timed threads, which share this priority.
    let _rt = crate::realtime::Realtime::enter();
    let conns = sc
        .setup
        .connections
        .iter()
        .map(|d| {
            let cfg = PeerConfig {
                isn: d.isn,
                ..sc.setup.peer.clone()
            };
            (
                d.name.clone(),
                PeerConn::new(cfg, family, topo.peer_ip(family), (d.peer_port, d.sut_port)),
            )
        })
        .collect();
    let mut run = Run {
        sc,
        topo: &topo,
        link,
        sut,
        conns,
        trace,
        notes,
        clock: SystemTime::now(),
        started: SystemTime::now(),
        anchor: SystemTime::now(),
        anchor_what: "the start of the trial".into(),
        named: HashMap::new(),
        background: HashMap::new(),
        read_offsets: HashMap::new(),
        written: HashMap::new(),
        named_segments: HashMap::new(),
        captured: HashMap::new(),
        step_no: 0,
        profile: cfg.stack.profile(),
        transitions,
        family,
    };
    let result = run.steps().and_then(|()| run.final_quiet());
    run.finish();
    result
}

/// The script's sysctls, after ours: an IPv4 trial turns IPv6 off in the SUT netns so its
/// capture has no MLD reports in it (the script may still turn it back on).
fn trial_sysctls(sc: &Scenario, family: Family) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if family.wire() == Family::V4 {
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
    sut: Box<dyn SutDriver>,
    /// The peer's side of every connection, `conn` first.
    conns: Vec<(String, PeerConn)>,
    /// The state trace of `conn`.
    trace: &'a mut Trace,
    notes: &'a mut Notes,
    /// When the previous step ended: the moment the next one is due to start.
    clock: SystemTime,
    /// When the steps began, for messages.
    started: SystemTime,
    /// The previous timed event: windows are measured from here unless `since:` says otherwise.
    anchor: SystemTime,
    anchor_what: String,
    named: HashMap<String, (SystemTime, String)>,
    /// Background calls by name: the call and when it started.
    background: HashMap<String, (Call, SystemTime)>,
    /// How many bytes the SUT application has read, per connection.
    read_offsets: HashMap<String, usize>,
    /// What the SUT application has written, per connection, for `receive` to check.
    written: HashMap<String, Vec<u8>>,
    /// The segments of named `send` and `expect` steps, for options that refer to them.
    named_segments: HashMap<String, matching::NamedSegment>,
    /// Values `expect` steps captured (`win: =w`), as the script writes them.
    captured: HashMap<String, i64>,
    step_no: usize,
    /// The SUT stack's timers: where every derived window comes from.
    profile: &'static crate::timers::TimerProfile,
    /// Every state change, when the tracepoint could be opened.
    transitions: Option<Transitions>,
    /// The trial's family: the SUT's socket calls see mapped addresses in `V4Mapped`.
    family: Family,
}

impl Run<'_> {
    fn steps(&mut self) -> Result<(), Failure> {
        let mut numbered = 0;
        for (index, step) in self.sc.steps.iter().enumerate() {
            if !step.implicit {
                numbered += 1;
            }
            self.step_no = if step.implicit { 0 } else { numbered };
            if let Some(what) = crate::ladder::events::check_text(&step.action) {
                self.event(step, SystemTime::now(), crate::ladder::Kind::Check, what);
            }
            if let Err(f) = self.step(step) {
                self.notes.failed_step = Some(index);
                self.event(
                    step,
                    SystemTime::now(),
                    crate::ladder::Kind::Failed,
                    String::new(),
                );
                return Err(f);
            }
            self.sample();
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), Failure> {
        match &step.action {
            Action::Send(spec) => self.send(step, spec),
            Action::Expect(spec) => self.expect(step, spec),
            Action::Quiet(d) => self.quiet(step, *d),
            Action::Transitions(want) => self.transitions_so_far(step, want),
            Action::Wait(d) => {
                let due = self.clock + *d;
                sleep_until(due);
                self.check_late(step, "the end of the wait", due, SystemTime::now());
                self.clock = due;
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
            Action::State(check) => self.state(step, check),
            Action::Leave {
                state,
                window,
                conn,
            } => self.leave(step, *state, window, conn),
            Action::Transfer {
                bytes,
                segment,
                conn,
            } => self.transfer(step, *bytes, *segment, conn),
            Action::Receive(spec) => self.receive(step, spec),
        }
    }

    /// An event on the SUT's side of the ladder.
    fn event(&mut self, step: &Step, at: SystemTime, kind: crate::ladder::Kind, text: String) {
        let step = crate::ladder::StepRef {
            step: self.step_no,
            line: step.loc.line,
        };
        self.notes.events.push(crate::ladder::Event {
            at,
            kind,
            step: Some(step),
            text,
        });
    }

    fn conn(&self, name: &str) -> &PeerConn {
        &self
            .conns
            .iter()
            .find(|(n, _)| n == name)
            .expect("connection names are checked at load")
            .1
    }

    fn conn_mut(&mut self, name: &str) -> &mut PeerConn {
        &mut self
            .conns
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("connection names are checked at load")
            .1
    }

    /// The connection a SUT segment belongs to (the first whose ports match), else `conn`.
    fn conn_of(&self, tcp: &crate::wire::TcpRepr) -> &PeerConn {
        self.conns
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.owns(tcp))
            .unwrap_or(&self.conns[0].1)
    }

    /// The SUT-side and peer-side socket addresses of a connection.
    fn addrs(&self, name: &str) -> (SocketAddr, SocketAddr) {
        let c = self.conn(name);
        // What the SUT's socket calls use: `::ffff:` addresses in the mapped family.
        (
            self.family.sut_view(SocketAddr::new(c.ep.dst, c.sut_port)),
            self.family.sut_view(SocketAddr::new(c.ep.src, c.peer_port)),
        )
    }

    /// "step 4 (suites/close/active-close.yaml:12:5)" or "the `open:` handshake (…:7)".
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
            harness: false,
        }
    }

    /// A failure that shows what was expected against what happened.
    fn mismatch(
        &self,
        step: &Step,
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Failure {
        self.fail(
            step,
            what.into(),
            vec![
                ("expected:".into(), expected.into()),
                ("actual:".into(), actual.into()),
            ],
        )
    }

    /// Records a timed event: later windows count from it, and the next step is due then.
    fn mark(&mut self, step: &Step, at: SystemTime, what: String) {
        self.clock = at;
        self.anchor = at;
        self.anchor_what = what.clone();
        if let Some(n) = &step.name {
            self.named.insert(n.clone(), (at, what));
        }
    }

    fn window_start(&self, step: &Step, w: &Window) -> Result<(SystemTime, String), Failure> {
        self.anchor_of(step, w.since.as_deref())
    }

    /// The moment something counts from: the step `since` names, else the previous event.
    fn anchor_of(&self, step: &Step, since: Option<&str>) -> Result<(SystemTime, String), Failure> {
        match since {
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

    /// A `retransmission: N` window comes from the timer profile and the RTTs seen so far, a
    /// `timer:` window from the profile's expiry model.
    fn resolve_window(&self, w: &Window, conn: &str) -> Window {
        let derived = match (w.retransmission, w.timer) {
            (Some(n), _) => self.profile.retransmission_window(n, self.conn(conn).rtt),
            (None, Some(t)) => self.profile.expiry_window(self.profile.armed(t)),
            (None, None) => return w.clone(),
        };
        Window {
            after: Some(derived.0),
            within: derived.1,
            ..w.clone()
        }
    }

    /// A look at the connection for the trace, between steps; an agent's answer may come
    /// back later (see [`SutDriver::sample`]).
    fn sample(&mut self) {
        let (local, remote) = self.addrs(DEFAULT_CONN);
        for (asked, state) in self.sut.sample(local, remote) {
            self.trace.record(asked, state);
        }
    }

    /// The trace's looks still on their way, in: before a look that must come after them.
    fn finish_samples(&mut self) {
        for (asked, state) in self.sut.finish_samples() {
            self.trace.record(asked, state);
        }
    }

    /// Folds the tracepoint's changes of `conn` into the trace, when there is a tracepoint.
    fn update_exact_trace(&mut self) {
        let sut_port = self.conn(DEFAULT_CONN).sut_port;
        let Some(t) = self.transitions.as_mut() else {
            return;
        };
        let changes: Vec<_> = t
            .changes()
            .iter()
            .filter(|c| c.sport == sut_port)
            .copied()
            .collect();
        let lost = t.lost();
        self.trace.use_changes(&changes, lost);
    }

    /// After the last step: nothing more may arrive for the closing quiet period, and nothing
    /// unclaimed may be left in the queue.
    fn final_quiet(&mut self) -> Result<(), Failure> {
        let last = self.sc.steps.last().expect("a scenario has steps");
        let d = self.sc.setup.final_quiet;
        if let Some(got) = self.link.arrival_by(self.clock + d) {
            let during = format!(
                "the closing quiet period ({}) after the last step",
                show_duration(d)
            );
            return Err(self.unexpected(last, got, during));
        }
        Ok(())
    }

    /// Stops the link and marks what nobody claimed; a segment that reached the harness
    /// after it had judged its moment empty makes the trial inconclusive.
    fn finish(&mut self) {
        let leftover = self.link.stop();
        for (frame, at, judged) in self.link.late_deliveries() {
            self.excuse(format!(
                "a SUT segment stamped {} reached the harness after it had judged the moment {} empty (capture frame {})",
                offset_text(at, self.started),
                offset_text(judged, self.started),
                frame + 1
            ));
        }
        for got in leftover {
            let actual = self.conn_of(&got.tcp).describe_received(&got.tcp);
            self.link.comment(
                got.frame,
                format!("UNEXPECTED (after the trial had failed or ended): {actual}"),
            );
        }
        self.finish_samples();
        self.sample();
        self.finish_samples();
        self.update_exact_trace();
        self.sut.close_all();
    }
}

/// How long a window's end is waited for beyond its nominal close, so a late segment is
/// reported with its time rather than as missing.
pub const WAIT_BEYOND: Duration = Duration::from_millis(100);

impl Run<'_> {
    /// Something the harness did late, or could not measure, makes the run prove nothing.
    fn excuse(&mut self, why: String) {
        tracing::debug!("inconclusive: {why}");
        self.notes.excuses.push(why);
    }

    /// A step that began (or a segment that left) later than the harness's slack after it
    /// was due: the SUT saw a different timing than the script's.
    fn check_late(&mut self, step: &Step, what: &str, due: SystemTime, at: SystemTime) {
        let slack = self.profile.harness_slack();
        let late = at.duration_since(due).unwrap_or_default();
        if late > slack {
            let place = self.short_place(step);
            self.excuse(format!(
                "{place}: {what} was {} late (the harness's slack is {})",
                show_precise(late),
                show_duration(slack)
            ));
        }
    }

    /// Judges a moment against a window. The edges move only by the CPU steal measured at
    /// them (around the anchor for the early edge, from the late edge to the moment for the
    /// late one), known within a tick of /proc/stat: a verdict that the smallest allowance
    /// gives stands, as does a failure the largest cannot save; one in between makes the run
    /// inconclusive. Err: a certain failure.
    fn judge_time(
        &mut self,
        step: &Step,
        w: &Window,
        at: SystemTime,
        from: SystemTime,
    ) -> Result<(), String> {
        let (least, most) = self.allowances(step, w, at, from);
        match matching::check_time(w, at, from, least) {
            Ok(()) => Ok(()),
            Err(why) => match matching::check_time(w, at, from, most) {
                Err(_) => Err(why),
                Ok(()) => {
                    let place = self.short_place(step);
                    self.excuse(format!(
                        "{place}: {why}, but up to {} of CPU steal or softirq-thread wait measured at that edge could explain it",
                        show_precise(most.early.max(most.late))
                    ));
                    Ok(())
                }
            },
        }
    }

    /// The same for a moment known only within a span (see `check_span`).
    fn judge_span(
        &mut self,
        step: &Step,
        w: &Window,
        (lo, hi): (SystemTime, SystemTime),
        from: SystemTime,
    ) -> matching::Span {
        let (least, most) = self.allowances(step, w, hi, from);
        match matching::check_span(w, (lo, hi), from, least) {
            matching::Span::Outside(why) => match matching::check_span(w, (lo, hi), from, most) {
                matching::Span::Outside(_) => matching::Span::Outside(why),
                _ => matching::Span::Across,
            },
            other => other,
        }
    }

    /// The least and most CPU steal at a window's edges, noted in the verdict when not zero.
    fn allowances(
        &mut self,
        step: &Step,
        w: &Window,
        at: SystemTime,
        from: SystemTime,
    ) -> (matching::Allow, matching::Allow) {
        let closes = from + w.within;
        let mut early = noise::steal_bounds(from, from);
        // An anchor that is the SUT's segment was stamped in the peer's receive softirq: one
        // deferred to a waiting ksoftirqd stamps it late, and the moment looks early by as much
        // (seen: a FIN retransmission 4 ms early). Like the late edge's, a *may* allowance.
        early.1 += noise::softirq_wait(from, from);
        let mut late = noise::steal_bounds(closes, at.max(closes));
        // A deferred timer softirq may have been that late; whether it was the SUT's, the
        // samples cannot say, so it only widens what *may* be allowed.
        late.1 += noise::softirq_wait(closes, at.max(closes));
        // An agent's timers fire on its own threads: their wait for a CPU, likewise, over
        // the whole span from the anchor: a stack that re-arms its tick from when it ran
        // (lwIP's sys_timeout) carries every earlier delay into the expiry.
        late.1 += self.sut.run_delay(from, at.max(closes));
        let least = matching::Allow {
            early: early.0,
            late: late.0,
        };
        let most = matching::Allow {
            early: early.1,
            late: late.1,
        };
        self.notes.allowance_max = self.notes.allowance_max.max(least.early.max(least.late));
        if !most.is_zero() {
            let place = self.short_place(step);
            self.notes.allowances.push(format!(
                "{place}: CPU steal, softirq and SUT-thread waits near the window's edges: early {}–{}, late {}–{}",
                show_precise(early.0),
                show_precise(early.1),
                show_precise(late.0),
                show_precise(late.1)
            ));
        }
        (least, most)
    }

    /// A moment the harness measured itself (a call's return): if its threads were held up
    /// around it beyond the slack, the moment may be late.
    fn check_stall(&mut self, step: &Step, what: &str, from: SystemTime, to: SystemTime) {
        let stall = noise::harness_stall(from, to);
        if stall > self.profile.harness_slack() {
            let place = self.short_place(step);
            self.excuse(format!(
                "{place}: the harness was held up {} while it measured {what}",
                show_precise(stall)
            ));
        }
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
/// since a plain sleep overshoots by up to a millisecond under load. While it waits the thread
/// runs SCHED_FIFO when allowed (root), so the wake-up preempts whatever else runs on the CPU,
/// and with a 1 ns timer slack (the default 50 µs would be added to every sleep).
pub fn sleep_until(at: SystemTime) {
    const SPIN: Duration = Duration::from_micros(300);
    let _rt = crate::realtime::Realtime::enter();
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
