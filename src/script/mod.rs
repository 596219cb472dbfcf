//! Scenario scripts: YAML files that read like a ladder diagram, parsed into a typed
//! [`Scenario`] before any packet is sent. Every step keeps its file:line:column so a failure
//! (or a mistake in the script) points at the line to look at.
//!
//! The language is documented in `docs/script-format.md`.

pub mod call;
pub mod limits;
pub mod matrix;
pub mod names;
mod raw;
pub mod values;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::observe::TcpState;
use crate::wire::TcpFlags;
use crate::Family;
pub use call::{Call, Func, Outcome, Payload, SockOpt};
use matrix::{Combination, Matrix};
use raw::{MatrixOnly, RawExpect, RawScenario, RawSend, RawSetup, RawStep, SysctlValue};
pub use values::{FoKind, FoSpec, NumRef, OptSpec, SeqSpec, TsRef};

/// How long an `expect` waits when the script gives no `within`.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(1);
/// The closing quiet period: after the last step, any SUT segment fails the trial.
pub const DEFAULT_FINAL_QUIET: Duration = Duration::from_millis(20);
/// How long a foreground call may take before the trial fails.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A place in a script file (1-based line and column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Loc {
        Loc::from_location(s.referenced)
    }
    fn from_location(l: Location) -> Loc {
        Loc {
            line: l.line() as u32,
            column: l.column() as u32,
        }
    }
}

/// A mistake in a script, found before anything runs.
#[derive(Debug, Clone)]
pub struct ScriptError {
    pub file: PathBuf,
    pub loc: Loc,
    pub message: String,
    /// The source line the error points into, for the caret display.
    pub source_line: Option<String>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.loc.line == 0 {
            // About the file as a whole (it cannot be read, it is not a script).
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.loc.line,
            self.loc.column,
            self.message
        )?;
        if let Some(src) = &self.source_line {
            let pad = " ".repeat(self.loc.column.saturating_sub(1) as usize);
            write!(f, "\n    | {src}\n    | {pad}^")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// The SUT listens and accepts; the peer sends the SYN.
    Passive,
    /// The SUT connects; the peer answers the SYN.
    Active,
    /// The script does the handshake itself (long form).
    None,
}

/// What the peer offers in its SYN or SYN-ACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub isn: u32,
    pub win: u16,
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack: bool,
    pub timestamps: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            isn: 1_000_000,
            win: 65535,
            mss: 1460,
            wscale: Some(7),
            sack: false,
            timestamps: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Setup {
    pub open: Open,
    pub sysctls: Vec<(String, String)>,
    pub peer: PeerConfig,
    pub sut_port: u16,
    pub peer_port: u16,
    /// Every connection, `conn` first.
    pub connections: Vec<ConnDef>,
    pub final_quiet: Duration,
    pub call_timeout: Duration,
    /// The link's MTU (both veth ends); None: 1500.
    pub mtu: Option<u32>,
}

/// A time window for an event, measured from an anchor: the previous timed event (a send, a
/// matched segment, the start of a call), or the named step in `since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub after: Option<Duration>,
    pub within: Duration,
    pub since: Option<String>,
    /// `retransmission: N`: the window of the Nth retransmission, from the timer model.
    pub retransmission: Option<u32>,
    /// `timer: time-wait` or `timer: 3s`: the window in which that timer fires, from the
    /// stack's timer profile.
    pub timer: Option<ArmedTimer>,
}

/// A timer a script refers to: the profile's TIME_WAIT, or one of a length the script set
/// (tcp_fin_timeout, TCP_LINGER2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArmedTimer {
    TimeWait,
    Fixed(Duration),
}

impl std::fmt::Display for ArmedTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArmedTimer::TimeWait => f.write_str("time-wait"),
            ArmedTimer::Fixed(d) => f.write_str(&crate::script::values::show_duration(*d)),
        }
    }
}

/// A number field of a segment that a captured value stands in for or is captured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumField {
    Seq,
    Ack,
    Win,
}

impl NumField {
    pub fn name(self) -> &'static str {
        match self {
            NumField::Seq => "seq",
            NumField::Ack => "ack",
            NumField::Win => "win",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SendSpec {
    /// Fields given by captured values (`${w - 1}`), filled in when the step runs.
    pub refs: Vec<(NumField, NumRef)>,
    pub conn: String,
    pub flags: TcpFlags,
    pub seq: Option<SeqSpec>,
    pub ack: Option<SeqSpec>,
    pub win: Option<u16>,
    pub payload: Vec<u8>,
    /// None: the peer chooses (SYN options from the setup, timestamps when negotiated).
    pub options: Option<Vec<OptSpec>>,
    pub delay: Duration,
    /// `delay` counts from this named step instead of the previous event.
    pub since: Option<String>,
    pub drop: bool,
}

#[derive(Clone, Debug)]
pub struct ExpectSpec {
    /// `=w` captures a field's value; `${w - 1}` compares with a captured one.
    pub refs: Vec<(NumField, NumRef)>,
    pub conn: String,
    pub flags: TcpFlags,
    /// Flags that may or may not be set (`P?`).
    pub maybe_flags: TcpFlags,
    pub seq: Option<SeqSpec>,
    pub ack: Option<SeqSpec>,
    pub win: Option<u16>,
    pub len: Option<u32>,
    pub data: Option<Vec<u8>>,
    /// None: any options. Some: these, in order, NOPs and EOL not counted.
    pub options: Option<Vec<OptSpec>>,
    pub window: Window,
    pub drop: bool,
}

#[derive(Clone, Debug)]
pub enum Action {
    Send(SendSpec),
    Expect(ExpectSpec),
    Quiet(Duration),
    Call {
        call: Call,
        background: bool,
    },
    Await {
        name: String,
        window: Window,
    },
    State(StateCheck),
    /// Wait until the connection leaves `state`; the moment must fall in the window.
    Leave {
        state: TcpState,
        window: Window,
        conn: String,
    },
    /// The peer sends `bytes` of data within the SUT's window and takes in its ACKs.
    Transfer {
        bytes: usize,
        segment: Option<u16>,
        conn: String,
    },
    /// The peer takes in `bytes` of data from the SUT, ACKing each segment with the window it
    /// offers, and checks them against what the application wrote.
    Receive(ReceiveSpec),
    Wait(Duration),
    /// The connection's whole state sequence so far (`conn` only); CLOSED = no socket.
    Transitions(Vec<Option<TcpState>>),
}

/// A `receive` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveSpec {
    pub bytes: usize,
    /// The window the peer offers, in bytes (scaled by its window scale); None: the setup's.
    pub window: Option<u32>,
    /// After this many bytes the peer's ACK closes the window (0) …
    pub zero_at: Option<usize>,
    /// … and this long later a window update reopens it.
    pub reopen_after: Duration,
    pub conn: String,
}

/// A `state` step: the connection's state now and, optionally, its timer.
#[derive(Clone, Debug)]
pub struct StateCheck {
    /// None means CLOSED: no socket for the connection.
    pub want: Option<TcpState>,
    /// What the remaining time of the SUT's timer must be.
    pub timer: Option<TimerCheck>,
    /// A profile timer is read back against the time since this named step (else the
    /// previous event).
    pub since: Option<String>,
    pub conn: String,
}

/// A `state` step's `timer:`: a range typed in the script, or a timer the stack's profile
/// knows (`time-wait`) or the script set (`3s`), read back with the time since it was armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerCheck {
    Range(Duration, Duration),
    Armed(ArmedTimer),
}

/// One connection of a scenario: `conn` (from the setup), and any in `setup.connections`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnDef {
    pub name: String,
    pub sut_port: u16,
    pub peer_port: u16,
    pub isn: u32,
}

/// The connection steps act on when they name none.
pub const DEFAULT_CONN: &str = "conn";

#[derive(Clone, Debug)]
pub struct Step {
    pub loc: Loc,
    pub name: Option<String>,
    pub action: Action,
    /// Part of the `open:` shorthand rather than written as a step.
    pub implicit: bool,
    /// The requirements its assertion checks (registry ids, crate::requirements): the
    /// step's `req:`, else the scenario's. Empty for a step that asserts nothing, or in a
    /// script that names none.
    pub reqs: Vec<String>,
}

impl Step {
    /// Whether the step checks something of the SUT (everything but sending and waiting).
    pub fn asserts(&self) -> bool {
        !matches!(
            self.action,
            Action::Send(_)
                | Action::Wait(_)
                | Action::Call {
                    background: true,
                    ..
                }
        )
    }
}

/// One named behaviour of a scenario (`alternatives:`) and the steps that check it.
#[derive(Clone, Debug)]
pub struct Alternative {
    pub name: String,
    /// What the stack does in it, in a line.
    pub says: String,
    pub steps: Vec<Step>,
}

impl Alternative {
    /// An `rfc` or `rfc-…` alternative is what an RFC asks; `linux` is Linux's departure.
    pub fn conforms(&self) -> bool {
        alternative_conforms(&self.name)
    }
}

fn alternative_conforms(name: &str) -> bool {
    name == "rfc" || name.starts_with("rfc-")
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub file: PathBuf,
    pub name: String,
    pub group: String,
    pub summary: String,
    pub refs: Vec<String>,
    pub tags: Vec<String>,
    /// The families its trials run in: [`Scenario::select_families`] of the run's.
    pub families: Vec<Family>,
    /// `families:` as the script lists them; None runs in whatever families the run asks.
    pub listed_families: Option<Vec<Family>>,
    /// The one family a `per_family:` variant of a script was expanded for.
    pub variant: Option<Family>,
    pub ignore: Option<String>,
    pub setup: Setup,
    pub steps: Vec<Step>,
    /// The behaviours a stack may show, RFC first, when this combination's steps differ
    /// between them: the trial runs each in turn until one passes. `steps` is the first's.
    pub alternatives: Vec<Alternative>,
    /// The alternative these steps are (its index and name), when the trial runs one of
    /// several: the first's capture is the trial's, a later one's `<name>@<alternative>.pcapng`.
    pub running_alternative: Option<(usize, String)>,
}

impl Scenario {
    /// This scenario holding one of its alternatives' steps, to be run as it.
    pub fn with_alternative(&self, i: usize) -> Scenario {
        let alt = &self.alternatives[i];
        Scenario {
            steps: alt.steps.clone(),
            alternatives: Vec::new(),
            running_alternative: Some((i, alt.name.clone())),
            ..self.clone()
        }
    }

    /// Sets the families to run to those of `wanted` the script allows: all of them when it
    /// lists none (as packetdrill runs every script in the families asked), else the
    /// intersection; a `per_family:` variant keeps only its own.
    pub fn select_families(&mut self, wanted: &[Family]) {
        let allowed = |f: &Family| {
            self.listed_families.as_ref().is_none_or(|l| l.contains(f))
                && self.variant.is_none_or(|v| v == *f)
        };
        self.families = wanted.iter().copied().filter(allowed).collect();
    }

    /// `ipv4::close::active-close`
    pub fn trial_name(&self, family: Family) -> String {
        format!("{}::{}::{}", family.name(), self.group, self.name)
    }
}

/// The largest script file halfclose reads: scenarios are a few KB; anything near this is
/// not a script.
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// The most combinations (trials per family) one matrix may stand for.
pub const MAX_COMBINATIONS: u128 = 10_000;
/// The longest scenario name with its matrix values (`name[k=v,…]`): it names the trial's
/// capture file, and a file name has at most 255 bytes.
pub const MAX_TRIAL_NAME: usize = 200;
/// The most text a matrix may expand a file to (combinations × file size): every combination
/// is parsed on its own.
pub const MAX_EXPANDED_BYTES: u128 = 64 << 20;

/// Reads and checks one script: one scenario per matrix combination. `default_group` is the
/// file's directory under the suite root.
pub fn load(file: &Path, default_group: &str) -> Result<Vec<Scenario>, ScriptError> {
    let text = read_script(file)?;
    parse_all(&text, file, default_group)
}

/// A script's text: a regular file of at most [`MAX_SCRIPT_BYTES`] of UTF-8. Anything else (a
/// directory, a device such as /dev/zero, a FIFO, a huge file) is refused before it is read.
pub fn read_script(file: &Path) -> Result<String, ScriptError> {
    let fail = |loc: Loc, message: String| ScriptError {
        file: file.to_path_buf(),
        loc,
        message,
        source_line: None,
    };
    let whole = |message: String| fail(Loc::default(), message);
    let meta = std::fs::metadata(file).map_err(|e| whole(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(whole(format!(
            "not a regular file ({}); a script is a .yaml file",
            file_kind(&meta)
        )));
    }
    let too_big = |n: u64| {
        whole(format!(
            "{n} bytes is more than a script may have ({} KiB)",
            MAX_SCRIPT_BYTES >> 10
        ))
    };
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(too_big(meta.len()));
    }
    let bytes = crate::preflight::read_capped(file, MAX_SCRIPT_BYTES).map_err(|e| match e {
        Some(e) => whole(format!("cannot read: {e}")),
        None => too_big(MAX_SCRIPT_BYTES + 1),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let before = String::from_utf8_lossy(valid);
        fail(
            loc_of_offset(&before, before.len()),
            "not UTF-8 text: a script is UTF-8".into(),
        )
    })
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// The YAML dialect of scripts: YAML 1.2 booleans only (`true`, `false`), so the words
/// `off`, `on`, `yes` and `no` stay words (`wscale: off`, a matrix value `off`).
fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o
}

/// Parses YAML text the way scripts and expectation files are parsed.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, yaml_options())
}

/// Every scenario a script's text stands for (one per matrix combination). Combinations are
/// made and checked one at a time; the first with an error stops the parse.
pub fn parse_all(
    text: &str,
    file: &Path,
    default_group: &str,
) -> Result<Vec<Scenario>, ScriptError> {
    let (matrix, matrix_loc) = read_matrix(text);
    let none = Combination::default();
    let written = Cx {
        file,
        text,
        written: text,
        expansions: None,
        matrix: &matrix,
        combo: &none,
        alt: None,
        alt_names: &[],
    };
    let count = matrix.count();
    if count > MAX_COMBINATIONS {
        let sizes: Vec<String> = matrix
            .0
            .iter()
            .map(|p| p.values.len().to_string())
            .collect();
        let count = if count == u128::MAX {
            "more than 10^38".to_string()
        } else {
            count.to_string()
        };
        return Err(written.error(
            matrix_loc,
            format!(
                "the matrix stands for {count} combinations ({}); at most {MAX_COMBINATIONS} are allowed: split the file or drop values",
                sizes.join(" × ")
            ),
        ));
    }
    matrix
        .check_names()
        .map_err(|e| written.error(matrix_loc, e))?;
    if count.saturating_mul(text.len() as u128) > MAX_EXPANDED_BYTES {
        return Err(written.error(
            matrix_loc,
            format!(
                "the matrix expands this {} KiB file {count} times, more than the {} MiB of text allowed: split the file or drop values",
                text.len() >> 10,
                MAX_EXPANDED_BYTES >> 20
            ),
        ));
    }
    let mut out = Vec::new();
    // What the combinations may still expand to, all together.
    let mut budget = MAX_EXPANDED_BYTES as usize;
    // A script with per-family values is parsed once per family, each scenario for its own.
    let per_family = family_vars(text, &matrix);
    let captured = matrix::captured_names(text);
    for combo in matrix.combinations() {
        let in_combo = Cx {
            combo: &combo,
            ..written
        };
        let variants: Vec<(Option<Family>, BTreeMap<String, String>)> = match &per_family {
            None => vec![(None, combo.vars.clone())],
            Some(fams) => fams
                .iter()
                .map(|(f, vars)| {
                    let mut all = vars.clone();
                    all.extend(combo.vars.clone());
                    (Some(*f), all)
                })
                .collect(),
        };
        for (family, vars) in variants {
            let (expanded, expansions) = matrix::substitute_with(text, &vars, &captured, budget)
                .map_err(|(at, msg)| in_combo.error(loc_of_offset(text, at), msg))?;
            budget = budget.saturating_sub(expanded.len());
            let cx = Cx {
                text: &expanded,
                expansions: Some(&expansions),
                ..in_combo
            };
            let raw: RawScenario = from_yaml(&expanded).map_err(|e| cx.yaml_error(&e))?;
            let mut sc = lower_alternatives(&cx, &raw, default_group)?;
            // Every family's variant is kept, run or not by default: `--families` may ask
            // for it. By default a scenario runs in the families it lists, or IPv4 and IPv6.
            sc.variant = family;
            let wanted = sc
                .listed_families
                .clone()
                .unwrap_or(Family::DEFAULT.to_vec());
            sc.select_families(&wanted);
            out.push(sc);
        }
    }
    Ok(out)
}

/// The first scenario of a script (the whole script when it has no matrix).
pub fn parse(text: &str, file: &Path, default_group: &str) -> Result<Scenario, ScriptError> {
    let mut all = parse_all(text, file, default_group)?;
    if all.is_empty() {
        return Err(ScriptError {
            file: file.to_path_buf(),
            loc: Loc { line: 1, column: 1 },
            message: "the script stands for no scenario".into(),
            source_line: None,
        });
    }
    Ok(all.swap_remove(0))
}

/// The matrix and where it is, read with every `${…}` blanked out; a file that does not parse
/// this way has no usable matrix, and the full parse reports why.
fn read_matrix(text: &str) -> (Matrix, Loc) {
    let blank = matrix::blank_variables(text);
    from_yaml::<MatrixOnly>(&blank)
        .ok()
        .and_then(|m| m.matrix)
        .map(|m| (m.value.clone(), Loc::of(&m)))
        .unwrap_or_default()
}

/// The variables every script has per address family, besides its own `per_family:`:
/// `family` (`ipv4`, `ipv6`, `ipv4-mapped`) and `mss`, the SUT's MSS on the 1500-byte link
/// (1460, 1440; the mapped family's is IPv4's, as its packets are).
fn builtin_family_vars(f: Family) -> [(&'static str, String); 2] {
    let mss = match f {
        Family::V4 | Family::V4Mapped => 1460,
        Family::V6 => 1440,
    };
    [("family", f.name().to_string()), ("mss", mss.to_string())]
}

/// The per-family variables of a script, if it uses any: for each family, its values.
fn family_vars(text: &str, matrix: &Matrix) -> Option<Vec<(Family, BTreeMap<String, String>)>> {
    let own = from_yaml::<MatrixOnly>(&matrix::blank_variables(text))
        .ok()
        .and_then(|m| m.per_family)
        .map(|p| p.value)
        .unwrap_or_default();
    let defined_by_matrix = |n: &str| {
        matrix
            .0
            .iter()
            .any(|p| p.name == n || p.values.iter().any(|(_, v)| v.contains_key(n)))
    };
    let uses = |n: &str| text.contains(&format!("${{{n}}}")) && !defined_by_matrix(n);
    let builtin = builtin_family_vars(Family::V4).map(|(n, _)| n);
    if !own.keys().any(|n| uses(n)) && !builtin.iter().any(|n| uses(n)) {
        return None;
    }
    Some(
        Family::ALL
            .iter()
            .map(|&f| {
                let mut vars: BTreeMap<String, String> = builtin_family_vars(f)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                for (k, v) in &own {
                    let value = match f {
                        Family::V4 => &v.ipv4,
                        Family::V6 => &v.ipv6,
                        Family::V4Mapped => v.ipv4_mapped.as_ref().unwrap_or(&v.ipv4),
                    };
                    vars.insert(k.clone(), sysctl_text(value));
                }
                (f, vars)
            })
            .collect(),
    )
}

/// The lines of a text as YAML counts them (a line ends at "\r\n", "\r" or "\n"): each
/// line's byte offset and text.
fn yaml_lines(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let width = match bytes[i] {
            b'\n' => 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => 2,
            b'\r' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        out.push((start, &text[start..i]));
        i += width;
        start = i;
    }
    out.push((start, &text[start..]));
    out
}

/// The text of a line (1-based), as YAML counts lines.
fn line_text(text: &str, line: u32) -> Option<&str> {
    let i = (line as usize).checked_sub(1)?;
    yaml_lines(text).get(i).map(|(_, l)| *l)
}

/// The line and column (1-based, in characters) of a byte offset.
fn loc_of_offset(text: &str, at: usize) -> Loc {
    let lines = yaml_lines(text);
    let i = lines.partition_point(|(start, _)| *start <= at).max(1) - 1;
    let (start, line) = lines[i];
    let mut end = at.clamp(start, start + line.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Loc {
        line: i as u32 + 1,
        column: text[start..end].chars().count() as u32 + 1,
    }
}

/// The byte offset of a line and column (1-based, in characters), and how many columns lie
/// beyond the end of that line (a position just past the last character).
fn offset_of_loc(text: &str, loc: Loc) -> Option<(usize, u32)> {
    let lines = yaml_lines(text);
    let (start, line) = *lines.get((loc.line as usize).checked_sub(1)?)?;
    let before = loc.column.saturating_sub(1) as usize;
    match line.char_indices().nth(before) {
        Some((i, _)) => Some((start + i, 0)),
        None => {
            let past = before - line.chars().count();
            Some((start + line.len(), past as u32))
        }
    }
}

/// Error construction with access to the source text.
#[derive(Clone, Copy)]
struct Cx<'a> {
    file: &'a Path,
    /// The text being parsed: the file as written, or with a combination's values in.
    text: &'a str,
    /// The file as written; errors point into it.
    written: &'a str,
    /// Where `text` differs from `written`.
    expansions: Option<&'a matrix::Expansions>,
    matrix: &'a Matrix,
    combo: &'a Combination,
    /// The alternative being lowered: steps with another `alt:` are left out.
    alt: Option<&'a str>,
    /// Every alternative the scenario declares.
    alt_names: &'a [String],
}

impl Cx<'_> {
    /// An error at a place in `text`, reported at the same place in the file as written and
    /// naming the matrix combination it arose in.
    fn error(&self, loc: Loc, message: impl Into<String>) -> ScriptError {
        let loc = self.written_loc(loc);
        let source_line = line_text(self.written, loc.line).map(str::to_string);
        let mut message = message.into();
        if !self.combo.params.is_empty() {
            message = format!("{message} (matrix combination {})", self.combo.suffix());
        }
        ScriptError {
            file: self.file.to_path_buf(),
            loc,
            message,
            source_line,
        }
    }

    /// A place in `text` as a place in the file as written.
    fn written_loc(&self, loc: Loc) -> Loc {
        let Some(expansions) = self.expansions else {
            return loc;
        };
        if loc.line == 0 {
            return loc;
        }
        let Some((offset, past)) = offset_of_loc(self.text, loc) else {
            return loc;
        };
        let at = loc_of_offset(self.written, expansions.written_offset(offset));
        Loc {
            line: at.line,
            column: at.column + past,
        }
    }

    fn at<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> ScriptError {
        self.error(Loc::of(s), message)
    }

    fn yaml_error(&self, e: &serde_saphyr::Error) -> ScriptError {
        let loc = e.location().map(Loc::from_location).unwrap_or_default();
        let message = e.without_snippet().to_string();
        // The library prefixes its own location; ours is in front already.
        let mut message = strip_location_suffix(&message);
        if message.starts_with("invalid boolean") {
            // YAML 1.1's yes/no/on/off are words in scripts (`wscale: off`).
            message = "expected true or false".into();
        }
        self.error(loc, message)
    }
}

fn strip_location_suffix(m: &str) -> String {
    let first = m.lines().next().unwrap_or(m);
    // The library's advice on its own options means nothing to a script author.
    let first = first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first);
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// The scenario, once per alternative when it names some: the first's steps are the
/// scenario's, and the alternatives are kept only where this combination's steps differ
/// between them (elsewhere every stack is held to the same steps).
fn lower_alternatives(
    cx: &Cx,
    raw: &RawScenario,
    default_group: &str,
) -> Result<Scenario, ScriptError> {
    let Some(alts) = &raw.alternatives else {
        return lower(cx, raw, default_group);
    };
    let mut names: Vec<&String> = alts.value.keys().collect();
    for n in &names {
        if !(alternative_conforms(n) || n.as_str() == "linux") {
            return Err(cx.at(
                alts,
                format!("alternative `{n}`: expected `rfc`, `rfc-NAME` (what an RFC asks) or `linux` (Linux's departure)"),
            ));
        }
    }
    if !names.iter().any(|n| alternative_conforms(n)) {
        return Err(cx.at(
            alts,
            "`alternatives` needs an `rfc` alternative: the behaviour the RFC asks for",
        ));
    }
    // RFC alternatives first: a stack is held to them before Linux's.
    names.sort_by_key(|n| (!alternative_conforms(n), n.to_string()));
    let all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut lowered = Vec::new();
    for name in names {
        let alt = &alts.value[name];
        let sc = lower(
            &Cx {
                alt: Some(name),
                alt_names: &all,
                ..*cx
            },
            raw,
            default_group,
        )?;
        lowered.push((
            Alternative {
                name: name.clone(),
                says: alt.value.says.clone(),
                steps: sc.steps.clone(),
            },
            sc,
        ));
    }
    let same =
        |a: &[Step], b: &[Step]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.loc == y.loc);
    let differ = lowered
        .windows(2)
        .any(|w| !same(&w[0].0.steps, &w[1].0.steps));
    let mut iter = lowered.into_iter();
    let (first_alt, mut sc) = iter.next().expect("an rfc alternative is there");
    if differ {
        sc.alternatives = std::iter::once(first_alt)
            .chain(iter.map(|(a, _)| a))
            .collect();
    }
    Ok(sc)
}

/// Requirement ids as the script gives them, each one the registry has.
fn check_reqs(cx: &Cx, names: &Spanned<raw::Names>) -> Result<Vec<String>, ScriptError> {
    let list = names.value.list();
    if list.is_empty() {
        return Err(cx.at(
            names,
            "`req`: expected one requirement id or a list of them, not an empty list",
        ));
    }
    list.into_iter()
        .map(|id| match crate::requirements::find(&id) {
            Some(r) => Ok(r.id.to_string()),
            None => {
                let near = crate::requirements::near(&id);
                let hint = match near.is_empty() {
                    true => "see `halfclose coverage` for the ids".to_string(),
                    false => format!("ids of that RFC: {}", near.join(", ")),
                };
                Err(cx.at(names, format!("unknown requirement `{id}`; {hint}")))
            }
        })
        .collect()
}

fn lower(cx: &Cx, raw: &RawScenario, default_group: &str) -> Result<Scenario, ScriptError> {
    let name = check_name(cx, &raw.name, "name")? + &cx.combo.suffix();
    if name.len() > MAX_TRIAL_NAME {
        return Err(cx.at(
            &raw.name,
            format!(
                "the trial name `{}…` is {} characters, more than the {MAX_TRIAL_NAME} a capture's file name may have: shorten the name or the matrix values",
                name.chars().take(40).collect::<String>(),
                name.len()
            ),
        ));
    }
    let group = match &raw.group {
        Some(g) => check_name(cx, g, "group")?,
        None => default_group.to_string(),
    };
    let listed_families = raw
        .families
        .as_deref()
        .map(|l| lower_families(cx, l))
        .transpose()?;
    let families = listed_families.clone().unwrap_or(Family::ALL.to_vec());
    let setup_raw = raw.setup.as_ref();
    let setup = lower_setup(cx, setup_raw.map(|s| &s.value))?;
    let open_loc = setup_raw
        .and_then(|s| s.value.open.as_ref().map(Loc::of))
        .unwrap_or_else(|| Loc::of(&raw.name));
    let sockopts = lower_sockopts(
        cx,
        setup_raw
            .map(|s| s.value.sockopts.as_slice())
            .unwrap_or(&[]),
    )?;
    if setup.open == Open::None && !sockopts.is_empty() {
        let at = setup_raw.map(Loc::of).unwrap_or_default();
        return Err(cx.error(at, "`sockopts` needs `open: passive` or `open: active`; with `open: none` call setsockopt() in the steps"));
    }
    let mut steps = open_steps(&setup, &sockopts, open_loc);
    if raw.steps.value.is_empty() {
        return Err(cx.at(&raw.steps, "a scenario needs at least one step"));
    }
    let default_reqs = match &raw.req {
        Some(r) => check_reqs(cx, r)?,
        None => Vec::new(),
    };
    for s in &raw.steps.value {
        if let Some(step) = lower_step(cx, s, &default_reqs)? {
            steps.push(step);
        }
    }
    check_flow(cx, &steps, &setup.connections)?;
    check_fits_link(cx, &steps, &setup, &families)?;
    Ok(Scenario {
        file: cx.file.to_path_buf(),
        name,
        group,
        summary: raw.summary.value.trim().to_string(),
        refs: raw.refs.iter().map(|r| r.value.clone()).collect(),
        tags: raw.tags.clone(),
        families,
        listed_families,
        variant: None,
        ignore: raw.ignore.clone(),
        setup,
        steps,
        alternatives: Vec::new(),
        running_alternative: None,
    })
}

fn check_name(cx: &Cx, s: &Spanned<String>, what: &str) -> Result<String, ScriptError> {
    let v = &s.value;
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-');
    if !ok {
        return Err(cx.at(
            s,
            format!(
                "{what} `{}` must be lowercase letters, digits and dashes (at most 100), like active-close",
                v.chars().take(100).collect::<String>()
            ),
        ));
    }
    Ok(v.clone())
}

fn lower_families(cx: &Cx, list: &[Spanned<String>]) -> Result<Vec<Family>, ScriptError> {
    let mut out = Vec::new();
    for f in list {
        let Some(fam) = Family::from_name(&f.value) else {
            return Err(cx.at(
                f,
                format!(
                    "unknown family `{}`; expected ipv4, ipv6 or ipv4-mapped",
                    f.value
                ),
            ));
        };
        if !out.contains(&fam) {
            out.push(fam);
        }
    }
    Ok(out)
}

fn lower_setup(cx: &Cx, raw: Option<&RawSetup>) -> Result<Setup, ScriptError> {
    let default = RawSetup::default();
    let raw = raw.unwrap_or(&default);
    let open = match raw.open.as_ref().map(|o| (o, o.value.as_str())) {
        None | Some((_, "passive")) => Open::Passive,
        Some((_, "active")) => Open::Active,
        Some((_, "none")) => Open::None,
        Some((o, other)) => {
            return Err(cx.at(o, format!("unknown open `{other}`; expected passive (SUT listens), active (SUT connects) or none")))
        }
    };
    let mut sysctls = Vec::new();
    for (key, value) in &raw.sysctls {
        sysctls.push((check_sysctl(cx, key, value)?, sysctl_text(&value.value)));
    }
    let sut_port = port(cx, raw.sut_port.as_ref(), 8080)?;
    let peer_port = port(cx, raw.peer_port.as_ref(), 40000)?;
    let mtu = match &raw.mtu {
        // 1280: IPv6's minimum link MTU; above 1500 the peer's frames would be jumbo frames.
        Some(m) if !(1280..=limits::LINK_MTU as u32).contains(&m.value) => {
            return Err(cx.at(
                m,
                format!(
                    "`mtu` is 1280 (IPv6's minimum) to {} bytes",
                    limits::LINK_MTU
                ),
            ))
        }
        Some(m) => Some(m.value),
        None => None,
    };
    let call_timeout = match &raw.call_timeout {
        Some(t) if t.value.0 < Duration::from_millis(1) => {
            return Err(cx.at(
                t,
                "`call_timeout` must be at least 1ms: it is how long a call may take to return (default 2s)",
            ))
        }
        Some(t) => t.value.0,
        None => DEFAULT_CALL_TIMEOUT,
    };
    let p = raw.peer.as_ref();
    let d = PeerConfig::default();
    let peer = PeerConfig {
        isn: p.and_then(|p| p.isn).unwrap_or(d.isn),
        win: p.and_then(|p| p.win).unwrap_or(d.win),
        mss: p.and_then(|p| p.mss).unwrap_or(d.mss),
        wscale: p.and_then(|p| p.wscale).map_or(d.wscale, |w| w.0),
        sack: p.and_then(|p| p.sack).unwrap_or(d.sack),
        timestamps: p.and_then(|p| p.timestamps).unwrap_or(d.timestamps),
    };
    let peer_isn = peer.isn;
    Ok(Setup {
        open,
        sysctls,
        peer,
        sut_port,
        peer_port,
        connections: lower_connections(cx, raw, sut_port, peer_port, peer_isn)?,
        final_quiet: raw.final_quiet.map_or(DEFAULT_FINAL_QUIET, |d| d.0),
        call_timeout,
        mtu,
    })
}

/// `conn` from the setup, then the named ones. Each other connection gets its own ISN so the
/// captures tell them apart.
fn lower_connections(
    cx: &Cx,
    raw: &RawSetup,
    sut_port: u16,
    peer_port: u16,
    isn: u32,
) -> Result<Vec<ConnDef>, ScriptError> {
    let mut out = vec![ConnDef {
        name: DEFAULT_CONN.into(),
        sut_port,
        peer_port,
        isn,
    }];
    for (i, (name, spanned)) in raw.connections.iter().enumerate() {
        if name == DEFAULT_CONN
            || name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(cx.at(spanned, format!("connection name `{name}` must be lowercase letters, digits or _, and not `conn`")));
        }
        let c = &spanned.value;
        out.push(ConnDef {
            name: name.clone(),
            sut_port: port(cx, c.sut_port.as_ref(), sut_port)?,
            peer_port: port(cx, Some(&c.peer_port), 0)?,
            isn: c
                .isn
                .unwrap_or(isn.wrapping_add(1_000_000 * (i as u32 + 1))),
        });
    }
    Ok(out)
}

/// A port a script gives (or the default): 1 to 65535.
fn port(cx: &Cx, given: Option<&Spanned<u16>>, default: u16) -> Result<u16, ScriptError> {
    match given {
        Some(p) if p.value == 0 => Err(cx.at(
            p,
            "port 0 is no port (binding it picks a random one); expected 1 to 65535",
        )),
        Some(p) => Ok(p.value),
        None => Ok(default),
    }
}

fn sysctl_text(v: &SysctlValue) -> String {
    match v {
        SysctlValue::Int(i) => i.to_string(),
        SysctlValue::Text(t) => t.clone(),
    }
}

fn check_sysctl(cx: &Cx, key: &str, value: &Spanned<SysctlValue>) -> Result<String, ScriptError> {
    if !key.starts_with("net.") {
        return Err(cx.at(value, format!("sysctl `{key}` is not per network namespace; expected a net.* key like net.ipv4.tcp_fin_timeout")));
    }
    if let Some(why) = limits::not_settable(key) {
        return Err(cx.at(value, why));
    }
    if let SysctlValue::Text(t) = &value.value {
        if let Some(why) = limits::bad_sysctl_value(t) {
            return Err(cx.at(value, format!("sysctl `{key}`: {why}")));
        }
    }
    if !crate::topology::sysctl_exists(key) {
        return Err(cx.at(
            value,
            format!(
                "unknown sysctl `{key}` (no /proc/sys/{} on this kernel)",
                key.replace('.', "/")
            ),
        ));
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    let writable = std::fs::metadata(&path).map_or(true, |m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o222 != 0
    });
    if !writable {
        return Err(cx.at(
            value,
            format!("sysctl `{key}` is read-only: the kernel reports it, nothing sets it"),
        ));
    }
    Ok(key.to_string())
}

fn lower_sockopts(cx: &Cx, raw: &[Spanned<String>]) -> Result<Vec<SockOpt>, ScriptError> {
    raw.iter()
        .map(|s| {
            call::parse_sockopt_text(&s.value).map_err(|e| {
                cx.error(
                    inner_loc(cx, s, e.offset),
                    format!("{e}; expected e.g. `SO_LINGER, 1, 0`"),
                )
            })
        })
        .collect()
}

/// The location of a character inside a scalar: exact when the scalar is written on one line
/// as it reads (plain, or quoted without escapes: the kinds scripts use for calls), the
/// scalar's start otherwise (a folded or escaped scalar's characters are not its columns).
fn inner_loc(cx: &Cx, s: &Spanned<String>, offset: usize) -> Loc {
    let base = Loc::of(s);
    let line = line_text(cx.text, base.line).unwrap_or("");
    let rest: String = line
        .chars()
        .skip(base.column.saturating_sub(1) as usize)
        .collect();
    let quoted = rest.starts_with(['"', '\'']);
    let body = if quoted { &rest[1..] } else { &rest[..] };
    if !body.starts_with(s.value.as_str()) {
        return base;
    }
    Loc {
        line: base.line,
        column: base.column + offset as u32 + u32::from(quoted),
    }
}

/// The steps the `open:` shorthand stands for, so the engine has one way to do everything.
fn open_steps(setup: &Setup, sockopts: &[SockOpt], loc: Loc) -> Vec<Step> {
    let step = |action| Step {
        loc,
        name: None,
        action,
        implicit: true,
        reqs: vec![crate::requirements::SETUP.to_string()],
    };
    let call = |text: &str| {
        let c = call::parse_call(text).expect("built-in call text parses");
        step(Action::Call {
            call: c,
            background: false,
        })
    };
    let fd = if setup.open == Open::Active {
        "conn"
    } else {
        "lsn"
    };
    let setsockopts = sockopts.iter().map(|o| {
        let mut c =
            call::parse_call(&format!("setsockopt({fd}, SO_KEEPALIVE, 0)")).expect("parses");
        c.func = Func::SetSockOpt(*o);
        c.text = format!("setsockopt({fd}, {o:?})");
        step(Action::Call {
            call: c,
            background: false,
        })
    });
    let syn = |flags: &str, seq: i64, ack: Option<i64>| SendSpec {
        refs: Vec::new(),
        conn: DEFAULT_CONN.into(),
        flags: flags.parse().expect("flags"),
        seq: Some(SeqSpec::Rel(seq)),
        ack: ack.map(SeqSpec::Rel),
        win: None,
        payload: Vec::new(),
        options: None,
        delay: Duration::ZERO,
        since: None,
        drop: false,
    };
    let expect = |flags: &str, seq: i64, ack: Option<i64>| ExpectSpec {
        refs: Vec::new(),
        conn: DEFAULT_CONN.into(),
        flags: flags.parse().expect("flags"),
        maybe_flags: TcpFlags::default(),
        seq: Some(SeqSpec::Rel(seq)),
        ack: ack.map(SeqSpec::Rel),
        win: None,
        len: Some(0),
        data: None,
        options: None,
        window: Window {
            after: None,
            within: DEFAULT_WITHIN,
            since: None,
            retransmission: None,
            timer: None,
        },
        drop: false,
    };
    let mut out = Vec::new();
    match setup.open {
        Open::None => {}
        Open::Passive => {
            out.push(call("socket() = lsn"));
            out.extend(setsockopts);
            out.push(call("bind(lsn)"));
            out.push(call("listen(lsn, 16)"));
            out.push(step(Action::Send(syn("S", 0, None))));
            out.push(step(Action::Expect(expect("S.", 0, Some(1)))));
            out.push(step(Action::Send(syn(".", 1, Some(1)))));
            out.push(call("accept(lsn) = conn"));
        }
        Open::Active => {
            out.push(call("socket() = conn"));
            out.extend(setsockopts);
            // Bound first so the connection's 4-tuple is known before the SYN.
            out.push(call("bind(conn)"));
            let mut connect = call("connect(conn)");
            connect.name = Some("connect".into());
            if let Action::Call { background, .. } = &mut connect.action {
                *background = true;
            }
            out.push(connect);
            out.push(step(Action::Expect(expect("S", 0, None))));
            out.push(step(Action::Send(syn("S.", 0, Some(1)))));
            out.push(step(Action::Expect(expect(".", 1, Some(1)))));
            let window = Window {
                after: None,
                within: setup.call_timeout,
                since: None,
                retransmission: None,
                timer: None,
            };
            out.push(step(Action::Await {
                name: "connect".into(),
                window,
            }));
        }
    }
    out
}

fn lower_step(
    cx: &Cx,
    s: &Spanned<RawStep>,
    default_reqs: &[String],
) -> Result<Option<Step>, ScriptError> {
    let r = &s.value;
    if let Some(a) = &r.alt {
        let Some(current) = cx.alt else {
            return Err(cx.at(a, "`alt`: the scenario declares no `alternatives`"));
        };
        let list = a.value.list();
        if let Some(bad) = list.iter().find(|n| !cx.alt_names.contains(n)) {
            return Err(cx.at(
                a,
                format!(
                    "`alt`: no alternative `{bad}` is declared; expected one of {}",
                    cx.alt_names.join(", ")
                ),
            ));
        }
        if !list.iter().any(|n| n == current) {
            return Ok(None);
        }
    }
    if let Some(w) = &r.when {
        if !w
            .value
            .check(cx.matrix, cx.combo)
            .map_err(|e| cx.at(w, e))?
        {
            return Ok(None);
        }
    }
    let actions = [
        r.send.is_some(),
        r.expect.is_some(),
        r.quiet.is_some(),
        r.call.is_some(),
        r.await_.is_some(),
        r.state.is_some(),
        r.wait.is_some(),
        r.leave.is_some(),
        r.transfer.is_some(),
        r.receive.is_some(),
        r.transitions.is_some(),
    ];
    match actions.iter().filter(|a| **a).count() {
        1 => {}
        0 => {
            return Err(cx.at(
                s,
                "a step needs one action: send, expect, quiet, call, await, state, leave, transfer, receive, transitions or wait",
            ))
        }
        _ => {
            return Err(cx.at(
                s,
                "a step has one action; this one has several (split it into one step per action)",
            ))
        }
    }
    let modifier_misplaced = |what: &str, ok: bool, at: Option<Loc>| -> Result<(), ScriptError> {
        match at {
            Some(loc) if !ok => Err(cx.error(
                loc,
                format!(
                    "`{what}` belongs to {}",
                    match what {
                        "background" => "a `call` step",
                        _ => "an `await` step (for send/expect put it inside the braces)",
                    }
                ),
            )),
            _ => Ok(()),
        }
    };
    modifier_misplaced(
        "background",
        r.call.is_some(),
        r.background.as_ref().map(Loc::of),
    )?;
    for (what, at) in [
        ("after", r.after.as_ref().map(Loc::of)),
        ("within", r.within.as_ref().map(Loc::of)),
        ("since", r.since.as_ref().map(Loc::of)),
    ] {
        modifier_misplaced(what, r.await_.is_some(), at)?;
    }
    let action = lower_action(cx, r)?;
    let name = match &r.name {
        Some(n) => Some(check_name(cx, n, "step name")?),
        None => None,
    };
    if matches!(
        action,
        Action::Call {
            background: true,
            ..
        }
    ) && name.is_none()
    {
        return Err(cx.at(
            s,
            "a background call needs a `name:` so an `await` step can check its result",
        ));
    }
    let reqs = match &r.req {
        Some(q) => check_reqs(cx, q)?,
        None => default_reqs.to_vec(),
    };
    Ok(Some(Step {
        loc: Loc::of(s),
        name,
        action,
        implicit: false,
        reqs,
    }))
}

fn lower_action(cx: &Cx, r: &RawStep) -> Result<Action, ScriptError> {
    if let Some(send) = &r.send {
        return lower_send(cx, send).map(Action::Send);
    }
    if let Some(expect) = &r.expect {
        return lower_expect(cx, expect).map(Action::Expect);
    }
    if let Some(q) = &r.quiet {
        return Ok(Action::Quiet(q.value.0));
    }
    if let Some(w) = &r.wait {
        return Ok(Action::Wait(w.value.0));
    }
    if let Some(c) = &r.call {
        let call = call::parse_call(&c.value)
            .map_err(|e| cx.error(inner_loc(cx, c, e.offset), e.message))?;
        let background = r.background.as_ref().is_some_and(|b| b.value);
        return Ok(Action::Call { call, background });
    }
    if let Some(a) = &r.await_ {
        // A result here is a natural slip: say where it goes instead of "no such call".
        if let Some(at) = a.value.find(['=', '(']) {
            let name = a.value[..at].trim();
            let (loc, message) = match a.value.as_bytes()[at] {
                // inner_loc counts characters, as the call lexer does.
                b'=' => (inner_loc(cx, a, a.value[..at].chars().count()), format!("`await` takes only the background call's name: the expected result goes on that call's own line (`call: …() {}`), and `await: {name}` checks it", a.value[at..].trim())),
                _ => (Loc::of(a), "`await` takes the background call's `name:`, not the call itself".to_string()),
            };
            return Err(cx.error(loc, message));
        }
        let window = Window {
            after: r.after.as_ref().map(|d| d.value.0),
            within: r
                .within
                .as_ref()
                .map_or(DEFAULT_CALL_TIMEOUT, |d| d.value.0),
            since: r.since.as_ref().map(|s| s.value.clone()),
            retransmission: None,
            timer: None,
        };
        return Ok(Action::Await {
            name: a.value.clone(),
            window,
        });
    }
    if let Some(l) = &r.leave {
        return lower_leave(cx, l);
    }
    if let Some(t) = &r.transitions {
        if t.value.is_empty() {
            return Err(cx.at(
                t,
                "`transitions` lists the states in order, like [ESTABLISHED, FIN_WAIT_1]",
            ));
        }
        let states = t
            .value
            .iter()
            .map(|s| parse_state(cx, s, &s.value))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Action::Transitions(states));
    }
    if let Some(t) = &r.transfer {
        let conn = check_conn(cx, t, t.value.conn.as_deref())?;
        if t.value.bytes == 0 || t.value.bytes > 16 << 20 {
            return Err(cx.at(t, "`bytes` must be 1 to 16 MiB"));
        }
        if let Some(seg) = t.value.segment.as_ref().filter(|s| s.value == 0) {
            return Err(cx.at(seg, "`segment` is the bytes per segment: at least 1"));
        }
        return Ok(Action::Transfer {
            bytes: t.value.bytes as usize,
            segment: t.value.segment.as_ref().map(|s| s.value),
            conn,
        });
    }
    if let Some(rc) = &r.receive {
        return lower_receive(cx, rc).map(Action::Receive);
    }
    let st = r.state.as_ref().expect("one action is present");
    lower_state(cx, st).map(Action::State)
}

fn lower_receive(cx: &Cx, rc: &Spanned<raw::RawReceive>) -> Result<ReceiveSpec, ScriptError> {
    let r = &rc.value;
    if r.bytes == 0 || r.bytes > 16 << 20 {
        return Err(cx.at(rc, "`bytes` must be 1 to 16 MiB"));
    }
    if let Some(w) = r
        .window
        .as_ref()
        .filter(|w| w.value == 0 || w.value > 1 << 30)
    {
        return Err(cx.at(
            w,
            "`window` is the bytes the peer offers: 1 to 1 GiB (a zero window is `zero_at`)",
        ));
    }
    if let Some(z) = r.zero_at.as_ref().filter(|z| z.value >= r.bytes) {
        return Err(cx.at(z, "`zero_at` must come before the last byte"));
    }
    match (&r.zero_at, &r.reopen_after) {
        (Some(z), None) => {
            return Err(cx.at(
                z,
                "`zero_at` needs `reopen_after: DURATION` (when the window reopens)",
            ))
        }
        (None, Some(a)) => return Err(cx.at(a, "`reopen_after` belongs with `zero_at`")),
        _ => {}
    }
    if let Some(a) = r
        .reopen_after
        .as_ref()
        .filter(|a| a.value.0 > Duration::from_secs(60))
    {
        return Err(cx.at(a, "`reopen_after` is at most 60s"));
    }
    Ok(ReceiveSpec {
        bytes: r.bytes as usize,
        window: r.window.as_ref().map(|w| w.value),
        zero_at: r.zero_at.as_ref().map(|z| z.value as usize),
        reopen_after: r
            .reopen_after
            .as_ref()
            .map_or(Duration::ZERO, |a| a.value.0),
        conn: check_conn(cx, rc, r.conn.as_deref())?,
    })
}

fn parse_state(
    cx: &Cx,
    at: &Spanned<impl Sized>,
    name: &str,
) -> Result<Option<TcpState>, ScriptError> {
    if name.eq_ignore_ascii_case("CLOSED") {
        return Ok(None);
    }
    name.parse::<TcpState>()
        .map(Some)
        .map_err(|e| cx.at(at, format!("{e} (or CLOSED: no socket left)")))
}

fn lower_state(cx: &Cx, st: &Spanned<raw::RawState>) -> Result<StateCheck, ScriptError> {
    let want = parse_state(cx, st, &st.value.is)?;
    let timer = match &st.value.timer {
        Some(t) if t.contains("..") => {
            let (lo, hi) = parse_range(t).map_err(|e| cx.at(st, e))?;
            Some(TimerCheck::Range(lo, hi))
        }
        Some(t) => Some(TimerCheck::Armed(parse_armed(t).map_err(|e| cx.at(st, e))?)),
        None => None,
    };
    if timer.is_some() && want.is_none() {
        return Err(cx.at(st, "a CLOSED connection has no timer to check"));
    }
    let conn = check_conn(cx, st, st.value.conn.as_deref())?;
    let since = st.value.since.clone();
    if since.is_some() && !matches!(timer, Some(TimerCheck::Armed(_))) {
        return Err(cx.at(
            st,
            "`since` says when a timer was armed: use it with `timer: time-wait` or `timer: DURATION`",
        ));
    }
    Ok(StateCheck {
        want,
        timer,
        conn,
        since,
    })
}

/// `time-wait` (the stack profile's) or a length like `3s` (a timer the script set).
fn parse_armed(text: &str) -> Result<ArmedTimer, String> {
    if text == "time-wait" {
        return Ok(ArmedTimer::TimeWait);
    }
    values::parse_duration(text).map(ArmedTimer::Fixed).map_err(|e| {
        format!("{e}; a timer is `time-wait` (the stack's), a length like `3s`, or a range MIN..MAX")
    })
}

/// `58s..60s`
fn parse_range(text: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = text
        .split_once("..")
        .ok_or_else(|| format!("timer range `{text}` needs MIN..MAX, like 58s..60s"))?;
    let (lo, hi) = (values::parse_duration(lo)?, values::parse_duration(hi)?);
    if lo > hi {
        return Err(format!("timer range `{text}` is empty"));
    }
    Ok((lo, hi))
}

fn lower_leave(cx: &Cx, l: &Spanned<raw::RawLeave>) -> Result<Action, ScriptError> {
    let r = &l.value;
    let state = parse_state(cx, l, &r.state)?.ok_or_else(|| {
        cx.at(
            l,
            "a connection cannot leave CLOSED; name the state it is in",
        )
    })?;
    let timer = match &r.timer {
        Some(t) => Some(parse_armed(t).map_err(|e| cx.at(l, e))?),
        None => None,
    };
    let derived = match (r.retransmission, timer) {
        (Some(_), Some(_)) => {
            return Err(cx.at(
                l,
                "`retransmission` and `timer` are two different windows; keep one",
            ))
        }
        (Some(n), None) if !(1..=16).contains(&n) => {
            return Err(cx.at(l, "`retransmission` counts from 1 to 16"))
        }
        (r, t) => r.is_some() || t.is_some(),
    };
    if derived && (r.after.is_some() || r.within.is_some()) {
        return Err(cx.at(
            l,
            "`retransmission` and `timer` take their window from the timer profile; drop `after` and `within`",
        ));
    }
    let within = match r.within {
        Some(w) => w.0,
        None if derived => Duration::ZERO,
        None => {
            return Err(cx.at(
                l,
                "`leave` needs `within` (and maybe `after`), `timer: time-wait` or `timer: DURATION`, or `retransmission: N`",
            ))
        }
    };
    if r.after.is_some_and(|a| a.0 > within) {
        return Err(cx.at(l, "`after` is later than `within`: the window is empty"));
    }
    let window = Window {
        after: r.after.map(|d| d.0),
        within,
        since: r.since.clone(),
        retransmission: r.retransmission,
        timer,
    };
    Ok(Action::Leave {
        state,
        window,
        conn: check_conn(cx, l, r.conn.as_deref())?,
    })
}

/// A connection name a step uses; the list of connections is checked in `check_flow`.
fn check_conn<T>(_cx: &Cx, _at: &Spanned<T>, name: Option<&str>) -> Result<String, ScriptError> {
    Ok(name.unwrap_or(DEFAULT_CONN).to_string())
}

fn lower_options(
    cx: &Cx,
    raw: &Option<Vec<Spanned<String>>>,
) -> Result<Option<Vec<OptSpec>>, ScriptError> {
    let Some(list) = raw else { return Ok(None) };
    let mut out = Vec::new();
    for o in list {
        out.push(values::parse_option(&o.value).map_err(|e| cx.at(o, e))?);
        let len = opt_specs_len(&out);
        if len > limits::TCP_MAX_OPTIONS {
            return Err(cx.at(
                o,
                format!(
                    "the options take {len} bytes up to here, more than the {} a TCP header has room for",
                    limits::TCP_MAX_OPTIONS
                ),
            ));
        }
    }
    Ok(Some(out))
}

/// The bytes a list of options takes in the TCP header (a `ts` the peer fills in is one
/// timestamp option).
fn opt_specs_len(list: &[OptSpec]) -> usize {
    let options: Vec<crate::wire::TcpOption> = list.iter().map(OptSpec::shape).collect();
    limits::options_len(&options)
}

/// Every segment the peer sends must fit the link in each family the scenario runs over;
/// `halfclose run` could not send it otherwise.
fn check_fits_link(
    cx: &Cx,
    steps: &[Step],
    setup: &Setup,
    families: &[Family],
) -> Result<(), ScriptError> {
    for s in steps.iter().filter(|s| !s.implicit) {
        let (payload, listed, syn, what) = match &s.action {
            Action::Send(x) => (
                x.payload.len(),
                x.options.as_deref().map(opt_specs_len),
                x.flags.contains(TcpFlags::SYN),
                "this segment's data",
            ),
            Action::Transfer {
                segment: Some(n), ..
            } => (*n as usize, None, false, "`segment`"),
            _ => continue,
        };
        let options = limits::sent_options_len(listed, syn, setup.peer.timestamps);
        for &family in families {
            let mtu = setup.mtu.map_or(limits::LINK_MTU, |m| m as usize);
            let max = limits::max_payload_on(mtu, family, options);
            if payload > max {
                return Err(cx.error(
                    s.loc,
                    format!(
                        "{what} ({payload} bytes) does not fit one segment on the {mtu}-byte link over {family}: at most {max} bytes with {options} bytes of TCP options; split it into several segments, or use `transfer`",
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn lower_send(cx: &Cx, s: &Spanned<RawSend>) -> Result<SendSpec, ScriptError> {
    let r = &s.value;
    let payload = match (&r.len, &r.data) {
        (Some(l), Some(_)) => return Err(cx.at(l, "give `len` or `data`, not both")),
        (Some(l), None) if l.value > 1 << 20 => {
            return Err(cx.at(
                l,
                "len above 1 MiB; a segment carries at most one MSS anyway",
            ))
        }
        (Some(l), None) => call::filler(l.value as usize),
        (None, Some(d)) => d.value.as_bytes().to_vec(),
        (None, None) => Vec::new(),
    };
    if !r.flags.value.1.is_empty() {
        return Err(cx.at(
            &r.flags,
            "a sent segment's flags are exact; `?` is for expect",
        ));
    }
    let options = lower_options(cx, &r.options)?;
    if let Some(o) = options
        .iter()
        .flatten()
        .find(|o| matches!(o, OptSpec::FastOpen(FoSpec::AnyCookie, _)))
    {
        let at = r
            .options
            .as_ref()
            .and_then(|l| l.iter().find(|x| matches!(x.value.trim(), "fo" | "foexp")));
        let msg = format!(
            "`{o}`: the peer sends a cookie it knows: `fo request`, `fo COOKIE` or `fo @name` (or foexp …)"
        );
        return Err(match at {
            Some(x) => cx.at(x, msg),
            None => cx.at(s, msg),
        });
    }
    let mut refs = Vec::new();
    let seq = num_field(cx, &r.seq, NumField::Seq, false, &mut refs)?;
    let ack = num_field(cx, &r.ack, NumField::Ack, false, &mut refs)?;
    let win = num_field(cx, &r.win, NumField::Win, false, &mut refs)?;
    Ok(SendSpec {
        refs,
        conn: r
            .conn
            .as_ref()
            .map_or(DEFAULT_CONN.to_string(), |c| c.value.clone()),
        flags: r.flags.value.0,
        seq,
        ack,
        win,
        payload,
        options,
        delay: r.delay.map_or(Duration::ZERO, |d| d.0),
        since: r.since.as_ref().map(|s| s.value.clone()),
        drop: r.drop.unwrap_or(false),
    })
}

fn lower_expect(cx: &Cx, s: &Spanned<RawExpect>) -> Result<ExpectSpec, ScriptError> {
    let r = &s.value;
    if let (Some(a), Some(w)) = (r.after, r.within) {
        if a.0 > w.0 {
            return Err(cx.at(s, "`after` is later than `within`: the window is empty"));
        }
    }
    if let Some(n) = &r.retransmission {
        if r.after.is_some() || r.within.is_some() {
            return Err(cx.at(
                n,
                "`retransmission` takes its window from the timer model; drop `after` and `within`",
            ));
        }
        if !(1..=16).contains(&n.value) {
            return Err(cx.at(
                n,
                "`retransmission` counts from 1 (the first retransmission) to 16",
            ));
        }
    }
    let data = r.data.as_ref().map(|d| d.as_bytes().to_vec());
    if let (Some(len), Some(d)) = (r.len, &data) {
        if len as usize != d.len() {
            return Err(cx.at(
                s,
                format!("`len: {len}` disagrees with `data` ({} bytes)", d.len()),
            ));
        }
    }
    let mut refs = Vec::new();
    let seq = num_field(cx, &r.seq, NumField::Seq, true, &mut refs)?;
    let ack = num_field(cx, &r.ack, NumField::Ack, true, &mut refs)?;
    let win = num_field(cx, &r.win, NumField::Win, true, &mut refs)?;
    Ok(ExpectSpec {
        refs,
        conn: r
            .conn
            .as_ref()
            .map_or(DEFAULT_CONN.to_string(), |c| c.value.clone()),
        flags: r.flags.value.0,
        maybe_flags: r.flags.value.1,
        seq,
        ack,
        win,
        len: r.len.or(data.as_ref().map(|d| d.len() as u32)),
        data,
        options: lower_options(cx, &r.options)?,
        window: Window {
            after: r.after.map(|d| d.0),
            within: r.within.map_or(DEFAULT_WITHIN, |d| d.0),
            since: r.since.as_ref().map(|s| s.value.clone()),
            retransmission: r.retransmission.as_ref().map(|n| n.value),
            timer: None,
        },
        drop: r.drop.unwrap_or(false),
    })
}

/// A field's value, or a reference kept in `refs` (a capture only in an `expect`).
fn num_field<T: Copy>(
    cx: &Cx,
    f: &Option<Spanned<values::Field<T>>>,
    which: NumField,
    expect: bool,
    refs: &mut Vec<(NumField, NumRef)>,
) -> Result<Option<T>, ScriptError> {
    match f.as_ref().map(|s| (s, &s.value)) {
        None => Ok(None),
        Some((_, values::Field::Val(v))) => Ok(Some(*v)),
        Some((at, values::Field::Ref(r))) => {
            check_capture(cx, at, r, expect)?;
            refs.push((which, r.clone()));
            Ok(None)
        }
    }
}

fn check_capture<T>(cx: &Cx, at: &Spanned<T>, r: &NumRef, expect: bool) -> Result<(), ScriptError> {
    match r {
        NumRef::Bind(n) if !expect => Err(cx.at(
            at,
            format!("`={n}` captures a value the SUT sends: it belongs in an `expect`"),
        )),
        _ => Ok(()),
    }
}

/// Checks that names, anchors, descriptors and background calls are used in a sensible order.
fn check_flow(cx: &Cx, steps: &[Step], conns: &[ConnDef]) -> Result<(), ScriptError> {
    let mut names: HashSet<&str> = HashSet::new();
    // Which named steps are the peer's segments (true) and which the SUT's (false).
    let mut segments: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
    let mut captured: HashSet<&str> = HashSet::new();
    let mut fds: HashSet<String> = HashSet::new();
    let mut pending: Vec<&str> = Vec::new();
    for s in steps {
        if let Some(c) = step_conn(s).filter(|c| !conns.iter().any(|d| d.name == *c)) {
            let known: Vec<&str> = conns.iter().map(|d| d.name.as_str()).collect();
            return Err(cx.error(
                s.loc,
                format!(
                    "connection `{c}` is not defined; known: {} (add it under setup.connections)",
                    known.join(", ")
                ),
            ));
        }
        let since = match &s.action {
            Action::Send(x) => x.since.as_deref(),
            Action::Expect(e) => e.window.since.as_deref(),
            Action::Await { window, .. } | Action::Leave { window, .. } => window.since.as_deref(),
            Action::State(check) => check.since.as_deref(),
            _ => None,
        };
        if let Some(anchor) = since {
            if !names.contains(anchor) {
                return Err(cx.error(s.loc, format!("`since: {anchor}` names no earlier step; give a step `name: {anchor}` first")));
            }
        }
        check_option_refs(cx, s, &segments)?;
        let refs = match &s.action {
            Action::Send(x) => x.refs.as_slice(),
            Action::Expect(x) => x.refs.as_slice(),
            _ => &[],
        };
        for (field, r) in refs {
            match r {
                NumRef::Use(n, _) if !captured.contains(n.as_str()) => {
                    return Err(cx.error(s.loc, format!("`{}: ${{{n}…}}` uses a value no earlier `expect` captured; capture it first with `{}: ={n}`", field.name(), field.name())));
                }
                _ => {}
            }
        }
        for (_, r) in refs {
            if let NumRef::Bind(n) = r {
                captured.insert(n.as_str());
            }
        }
        match (&s.action, &s.name) {
            (Action::Send(_), Some(n)) => {
                segments.insert(n, true);
            }
            (Action::Expect(_), Some(n)) => {
                segments.insert(n, false);
            }
            _ => {}
        }
        match &s.action {
            Action::Call { call, background } => {
                check_fds(cx, s, call, &mut fds)?;
                if *background {
                    pending.push(s.name.as_deref().unwrap_or(""));
                }
            }
            Action::Await { name, .. } => match pending.iter().position(|p| p == name) {
                Some(i) => {
                    pending.remove(i);
                }
                None => {
                    return Err(cx.error(
                        s.loc,
                        format!("`await: {name}` names no earlier background call still running"),
                    ))
                }
            },
            _ => {}
        }
        if let Some(n) = &s.name {
            if !names.insert(n) {
                return Err(cx.error(s.loc, format!("step name `{n}` is used twice")));
            }
        }
    }
    if let Some(p) = pending.first() {
        let s = steps
            .iter()
            .find(|s| s.name.as_deref() == Some(p))
            .expect("pending came from a step");
        return Err(cx.error(
            s.loc,
            format!("background call `{p}` is never awaited; add a step `await: {p}`"),
        ));
    }
    Ok(())
}

/// Options that refer to named segments (`ts ecr @fin`, `fo @synack`) need an earlier
/// segment of the right side: a TSval echoed is the other side's, one counted on is the same
/// side's, and a cookie comes from the SUT.
fn check_option_refs(
    cx: &Cx,
    s: &Step,
    segments: &std::collections::HashMap<&str, bool>,
) -> Result<(), ScriptError> {
    let (options, in_send) = match &s.action {
        Action::Send(x) => (&x.options, true),
        Action::Expect(x) => (&x.options, false),
        _ => return Ok(()),
    };
    for o in options.iter().flatten() {
        let wants: Vec<(&str, bool, &str)> = match o {
            OptSpec::Ts { val, ecr } => {
                let mut v = Vec::new();
                if let TsRef::Of(n) = val {
                    v.push((n.as_str(), in_send, "its TSval"));
                }
                if let TsRef::Of(n) = ecr {
                    v.push((n.as_str(), !in_send, "the TSval it echoes"));
                }
                v
            }
            OptSpec::FastOpen(FoSpec::Of(n), _) => vec![(n.as_str(), false, "the cookie")],
            _ => continue,
        };
        for (name, from_peer, what) in wants {
            let side = |p: bool| {
                if p {
                    "a `send` (the peer's)"
                } else {
                    "an `expect` (the SUT's)"
                }
            };
            match segments.get(name) {
                Some(p) if *p == from_peer => {}
                Some(_) => {
                    return Err(cx.error(
                        s.loc,
                        format!(
                            "`{o}`: {what} comes from {}, and `{name}` is not one",
                            side(from_peer)
                        ),
                    ))
                }
                None => {
                    return Err(cx.error(
                        s.loc,
                        format!(
                            "`{o}` names no earlier segment `{name}`; give {} `name: {name}` first",
                            side(from_peer)
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The connection a step acts on, if it acts on one.
fn step_conn(s: &Step) -> Option<&str> {
    match &s.action {
        Action::Send(x) => Some(&x.conn),
        Action::Expect(x) => Some(&x.conn),
        Action::State(x) => Some(&x.conn),
        Action::Leave { conn, .. } | Action::Transfer { conn, .. } => Some(conn),
        Action::Receive(r) => Some(&r.conn),
        _ => None,
    }
}

fn check_fds(cx: &Cx, s: &Step, c: &Call, fds: &mut HashSet<String>) -> Result<(), ScriptError> {
    if c.func != Func::Socket && !fds.contains(&c.fd) {
        return Err(cx.error(s.loc, format!(
            "descriptor `{}` does not exist yet; it comes from `open:`, socket() = {0}, accept() = {0} or dup() = {0}", c.fd
        )));
    }
    if let Outcome::NewFd(n) = &c.outcome {
        fds.insert(n.clone());
    }
    Ok(())
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
