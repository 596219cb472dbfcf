//! The YAML layer: serde structs that mirror the file one to one. Unknown keys are rejected
//! here, and every value that later checks may complain about keeps its source location.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::matrix::{Matrix, When};
use super::values::{Dur, FlagsSpec, SeqField, WinField};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Spanned<String>,
    pub summary: Spanned<String>,
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    #[serde(default)]
    pub refs: Vec<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub families: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub ignore: Option<String>,
    /// Accepted here; `MatrixOnly` reads it before the variables are substituted.
    #[serde(default)]
    #[allow(dead_code)]
    pub matrix: Option<Spanned<Matrix>>,
    /// Accepted here; `MatrixOnly` reads it before the variables are substituted.
    #[serde(default)]
    #[allow(dead_code)]
    pub per_family: Option<Spanned<PerFamily>>,
    #[serde(default)]
    pub setup: Option<Spanned<RawSetup>>,
    /// The requirements the scenario's assertions check, unless a step names its own.
    #[serde(default)]
    pub req: Option<Spanned<Names>>,
    /// Named behaviours a stack may show (`rfc`, `rfc-…`, `linux`); steps with `alt:` belong
    /// to one of them.
    #[serde(default)]
    pub alternatives: Option<Spanned<BTreeMap<String, Spanned<RawAlternative>>>>,
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

/// One name or a list of names (`req: "RFC 9293 MUST-13"`, `alt: [rfc, linux]`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

impl Names {
    pub fn list(&self) -> Vec<String> {
        match self {
            Names::One(s) => vec![s.clone()],
            Names::Many(v) => v.clone(),
        }
    }
}

/// `alternatives: {linux: {says: "…"}}`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAlternative {
    /// What the stack does in this alternative, in a line.
    pub says: String,
}

/// Only the matrix, read before the variables are known (everything else is ignored here).
#[derive(Deserialize, Debug)]
pub struct MatrixOnly {
    #[serde(default)]
    pub matrix: Option<Spanned<Matrix>>,
    #[serde(default)]
    pub per_family: Option<Spanned<PerFamily>>,
}

/// `per_family: {NAME: {ipv4: VALUE, ipv6: VALUE}}`: variables whose value depends on the
/// address family.
pub type PerFamily = BTreeMap<String, PerFamilyValue>;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PerFamilyValue {
    pub ipv4: SysctlValue,
    pub ipv6: SysctlValue,
    /// The ipv4-mapped family's value; it is IPv4 on the wire, so `ipv4`'s when absent.
    #[serde(default, rename = "ipv4-mapped")]
    pub ipv4_mapped: Option<SysctlValue>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSetup {
    #[serde(default)]
    pub open: Option<Spanned<String>>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, Spanned<SysctlValue>>,
    #[serde(default)]
    pub sockopts: Vec<Spanned<String>>,
    #[serde(default)]
    pub peer: Option<RawPeer>,
    #[serde(default)]
    pub sut_port: Option<Spanned<u16>>,
    #[serde(default)]
    pub peer_port: Option<Spanned<u16>>,
    #[serde(default)]
    pub connections: BTreeMap<String, Spanned<RawConnection>>,
    #[serde(default)]
    pub final_quiet: Option<Dur>,
    #[serde(default)]
    pub call_timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    pub mtu: Option<Spanned<u32>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum SysctlValue {
    Int(i64),
    Text(String),
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub isn: Option<u32>,
    pub win: Option<u16>,
    pub mss: Option<u16>,
    /// A shift count, or `off` for no window scale option.
    pub wscale: Option<WscaleSpec>,
    pub sack: Option<bool>,
    pub timestamps: Option<bool>,
}

/// One step: exactly one action key, plus the modifiers that action allows.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub send: Option<Spanned<RawSend>>,
    pub expect: Option<Spanned<RawExpect>>,
    pub quiet: Option<Spanned<Dur>>,
    pub call: Option<Spanned<String>>,
    #[serde(rename = "await")]
    pub await_: Option<Spanned<String>>,
    pub state: Option<Spanned<RawState>>,
    pub leave: Option<Spanned<RawLeave>>,
    pub transfer: Option<Spanned<RawTransfer>>,
    pub receive: Option<Spanned<RawReceive>>,
    pub wait: Option<Spanned<Dur>>,
    /// `transitions: [SYN_RECV, ESTABLISHED, …]`: the connection's whole state sequence so far.
    pub transitions: Option<Spanned<Vec<Spanned<String>>>>,
    /// Names the step's moment so later steps can measure from it (`since:`).
    pub name: Option<Spanned<String>>,
    /// Matrix combinations the step belongs to.
    pub when: Option<Spanned<When>>,
    /// `call` only: run the call on its own thread and go on; an `await` step checks it.
    pub background: Option<Spanned<bool>>,
    /// `await` only: time window for the call's completion.
    pub after: Option<Spanned<Dur>>,
    pub within: Option<Spanned<Dur>>,
    pub since: Option<Spanned<String>>,
    /// The requirements this step's assertion checks (default: the scenario's `req`).
    pub req: Option<Spanned<Names>>,
    /// The alternatives (`alternatives:`) the step belongs to; without it, all of them.
    pub alt: Option<Spanned<Names>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    pub flags: Spanned<FlagsSpec>,
    pub conn: Option<Spanned<String>>,
    pub seq: Option<Spanned<SeqField>>,
    pub ack: Option<Spanned<SeqField>>,
    pub win: Option<Spanned<WinField>>,
    pub len: Option<Spanned<u32>>,
    pub data: Option<Spanned<String>>,
    pub options: Option<Vec<Spanned<String>>>,
    pub delay: Option<Dur>,
    /// `delay` counts from this named step instead of the previous event.
    pub since: Option<Spanned<String>>,
    pub drop: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub flags: Spanned<FlagsSpec>,
    pub conn: Option<Spanned<String>>,
    pub seq: Option<Spanned<SeqField>>,
    pub ack: Option<Spanned<SeqField>>,
    pub win: Option<Spanned<WinField>>,
    pub len: Option<u32>,
    pub data: Option<String>,
    pub options: Option<Vec<Spanned<String>>>,
    pub after: Option<Dur>,
    pub within: Option<Dur>,
    pub since: Option<Spanned<String>>,
    pub retransmission: Option<Spanned<u32>>,
    pub drop: Option<bool>,
}

/// Another connection of the scenario (`conn` is always there).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    pub peer_port: Spanned<u16>,
    pub sut_port: Option<Spanned<u16>>,
    pub isn: Option<u32>,
}

/// `state: TIME_WAIT`, or `state: {is: TIME_WAIT, timer: 58s..60s, conn: c2}`.
#[derive(Debug, Default)]
pub struct RawState {
    pub is: String,
    pub timer: Option<String>,
    pub since: Option<String>,
    pub conn: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStateMap {
    is: String,
    timer: Option<String>,
    since: Option<String>,
    conn: Option<String>,
}

impl<'de> Deserialize<'de> for RawState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawState;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a state name, or {is: STATE, timer: MIN..MAX | time-wait | DURATION, conn: NAME}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawState, E> {
                Ok(RawState {
                    is: v.to_string(),
                    ..RawState::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawState, A::Error> {
                let m =
                    RawStateMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawState {
                    is: m.is,
                    timer: m.timer,
                    since: m.since,
                    conn: m.conn,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `leave: {state: TIME_WAIT, after: 59s, within: 62s}`
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawLeave {
    pub state: String,
    pub after: Option<Dur>,
    pub within: Option<Dur>,
    /// The state ends when retransmission N would be due: the window from the timer model.
    pub retransmission: Option<u32>,
    /// The state ends when this timer fires (`time-wait`, or a length like `3s`): the window
    /// from the stack's timer profile.
    pub timer: Option<String>,
    pub since: Option<String>,
    pub conn: Option<String>,
}

/// `transfer: {bytes: 65536}`
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTransfer {
    pub bytes: u32,
    pub segment: Option<Spanned<u16>>,
    pub conn: Option<String>,
}

/// `receive: {bytes: 100000, window: 8192, zero_at: 20000, reopen_after: 300ms}`
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawReceive {
    pub bytes: u32,
    pub window: Option<Spanned<u32>>,
    pub zero_at: Option<Spanned<u32>>,
    pub reopen_after: Option<Spanned<Dur>>,
    pub conn: Option<String>,
}

/// `wscale: 7` or `wscale: off`.
#[derive(Debug, Clone, Copy)]
pub struct WscaleSpec(pub Option<u8>);

impl<'de> Deserialize<'de> for WscaleSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = WscaleSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a window scale shift from 0 to 14, or off")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WscaleSpec, E> {
                if v > 14 {
                    return Err(E::custom(format!("window scale {v} is above 14")));
                }
                Ok(WscaleSpec(Some(v as u8)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WscaleSpec, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("a window scale cannot be negative"))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WscaleSpec, E> {
                match v {
                    "off" | "none" => Ok(WscaleSpec(None)),
                    _ => Err(E::custom(format!(
                        "`{v}`: expected a shift from 0 to 14, or off"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}
