//! The stacks halfclose can test, in one registry: for each, how its trials are wired (veth or
//! TAP), how its SUT is launched (the local kernel, or an agent binary), its timer profile,
//! what it can do beyond the agent protocol's calls, and its expectations file. `run --stack`,
//! `matrix`, the scheduler (through the timer profile) and the report all read a stack from
//! here, so adding a stack is one driver or agent plus one entry in [`REGISTRY`].
//!
//! A [`Stack`] is an entry made ready for a run: for an agent stack, its command and the hello
//! its agent answered (which lists the calls it has).

use std::path::PathBuf;

use crate::script::Scenario;
use crate::sut::agent::{self, AgentLink, Hello};
use crate::timers::TimerProfile;
use crate::topology;

/// How a trial's SUT is attached to the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyKind {
    /// Two namespaces joined by a veth pair; the SUT's calls run in its namespace.
    Veth,
    /// One namespace with a TAP device whose fd the agent inherits (docs/agent-protocol.md).
    Tap,
}

/// How a stack's SUT comes to life for a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// The kernel halfclose runs on, driven by [`crate::sut::KernelSut`].
    LocalKernel,
    /// An agent binary built with halfclose (`cargo build --workspace` puts it beside the
    /// `halfclose` binary), driven by [`crate::sut::AgentSut`].
    AgentBinary(&'static str),
    /// The command `--agent PROGRAM` gave.
    AgentCommand,
}

/// What a stack can do that the agent protocol does not say in a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Scenarios may set per-namespace sysctls: the SUT is a Linux kernel in a namespace the
    /// trial made.
    pub sysctls: bool,
}

/// One stack of the registry.
#[derive(Debug)]
pub struct StackEntry {
    /// As in `--stack` and `matrix --stacks`, and the first word of its agent's `stack`.
    pub name: &'static str,
    /// One line for `--help` and error messages.
    pub about: &'static str,
    pub topology: TopologyKind,
    pub launch: Launch,
    pub profile: &'static TimerProfile,
    pub capabilities: Capabilities,
    /// Its known deviations: a file in the suite's `expectations/` directory.
    pub expectations: &'static str,
}

/// Every stack `--stack` knows, the default first.
pub static REGISTRY: &[StackEntry] = &[
    StackEntry {
        name: "linux",
        about: "the local Linux kernel, in the trial's namespaces",
        topology: TopologyKind::Veth,
        launch: Launch::LocalKernel,
        profile: &TimerProfile::LINUX,
        capabilities: Capabilities { sysctls: true },
        expectations: "linux.yaml",
    },
    StackEntry {
        name: "smoltcp",
        about: "smoltcp 0.14 on a TAP device (agents/smoltcp)",
        topology: TopologyKind::Tap,
        launch: Launch::AgentBinary("halfclose-smoltcp-agent"),
        profile: &TimerProfile::SMOLTCP,
        capabilities: Capabilities { sysctls: false },
        expectations: "smoltcp.yaml",
    },
    StackEntry {
        name: "gvisor",
        about: "gVisor's netstack on a TAP device (agents/gvisor-netstack, Go; built when Go is installed)",
        topology: TopologyKind::Tap,
        launch: Launch::AgentBinary("halfclose-gvisor-agent"),
        profile: &TimerProfile::GVISOR,
        capabilities: Capabilities { sysctls: false },
        expectations: "gvisor.yaml",
    },
    StackEntry {
        name: "lwip",
        about: "lwIP 2.1 (Debian's liblwip) on a TAP device (agents/lwip)",
        topology: TopologyKind::Tap,
        launch: Launch::AgentBinary("halfclose-lwip-agent"),
        profile: &TimerProfile::LWIP,
        capabilities: Capabilities { sysctls: false },
        expectations: "lwip.yaml",
    },
];

/// The entry of a stack behind `--agent PROGRAM` that the registry does not know; its timer
/// profile comes from the agent's hello ([`Hello::profile`]).
pub static CUSTOM_AGENT: StackEntry = StackEntry {
    name: "agent",
    about: "the stack behind --agent PROGRAM",
    topology: TopologyKind::Tap,
    launch: Launch::AgentCommand,
    profile: &TimerProfile::LINUX,
    capabilities: Capabilities { sysctls: false },
    expectations: "",
};

/// The registry's names, for messages: `linux, smoltcp`.
pub fn names() -> String {
    REGISTRY
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The entry named `name`; the error lists the names there are.
pub fn lookup(name: &str) -> Result<&'static StackEntry, String> {
    REGISTRY.iter().find(|e| e.name == name).ok_or_else(|| {
        format!(
            "unknown stack `{name}`: expected one of {} (or --agent PROGRAM for another stack)",
            names()
        )
    })
}

/// The system under test of a run: a registry entry, and for an agent stack its command and
/// hello.
#[derive(Clone, Debug)]
pub struct Stack {
    pub entry: &'static StackEntry,
    /// The agent's command and hello; None for the local kernel.
    pub agent: Option<(Vec<String>, Hello)>,
    /// `--peer-iface IF`: the peer plays on this real interface, and the agent runs wherever
    /// its command puts it (another host, reached over IF).
    pub peer_iface: Option<String>,
    profile: &'static TimerProfile,
}

impl Default for Stack {
    fn default() -> Stack {
        Stack::kernel()
    }
}

impl Stack {
    /// The local kernel.
    pub fn kernel() -> Stack {
        Stack::of(&REGISTRY[0], None)
    }

    fn of(entry: &'static StackEntry, agent: Option<(Vec<String>, Hello)>) -> Stack {
        Stack {
            entry,
            agent,
            peer_iface: None,
            profile: entry.profile,
        }
    }

    /// The stack `--stack NAME` or an agent's argv (`--agent`) names (neither: the local
    /// kernel). An agent
    /// is started once here to read its hello; an `--agent` whose hello names a registry
    /// stack (`smoltcp 0.14`) is that stack, with its timer profile and expectations.
    pub fn resolve(name: Option<&str>, agent_cmd: Option<Vec<String>>) -> Result<Stack, String> {
        let (entry, cmd) = match (name, agent_cmd) {
            (Some(_), Some(_)) => return Err("--stack and --agent: give one".into()),
            (None, None) => return Ok(Stack::kernel()),
            (Some(name), None) => {
                let entry = lookup(name)?;
                match entry.launch {
                    Launch::LocalKernel => return Ok(Stack::of(entry, None)),
                    Launch::AgentBinary(bin) => (Some(entry), vec![sibling_binary(bin)?]),
                    Launch::AgentCommand => {
                        return Err(format!(
                            "stack `{name}` names no agent: use --agent PROGRAM"
                        ))
                    }
                }
            }
            (None, Some(cmd)) => (None, cmd),
        };
        if cmd.first().is_none_or(|p| p.trim().is_empty()) {
            return Err("--agent needs a program".into());
        }
        let hello = agent::probe(&cmd)?;
        Ok(Stack::agent(entry, cmd, hello))
    }

    /// An agent stack: `entry`, or the registry's entry its hello names, else a custom one.
    pub fn agent(entry: Option<&'static StackEntry>, cmd: Vec<String>, hello: Hello) -> Stack {
        let word = hello.stack.split_whitespace().next().unwrap_or("");
        let known = REGISTRY
            .iter()
            .find(|e| e.name == word && e.launch != Launch::LocalKernel);
        match entry.or(known) {
            Some(entry) => Stack::of(entry, Some((cmd, hello))),
            None => Stack {
                entry: &CUSTOM_AGENT,
                profile: hello.profile(),
                agent: Some((cmd, hello)),
                peer_iface: None,
            },
        }
    }

    /// The stack reached over the real interface `iface` (`--peer-iface`): an agent stack
    /// whose agent runs its kernel in a network namespace (docs/agent-protocol.md, `link`).
    pub fn over_iface(mut self, iface: &str) -> Result<Stack, String> {
        match &self.agent {
            Some((_, hello)) if hello.link == AgentLink::Netns => {}
            Some(_) => {
                return Err(
                    "--peer-iface: the agent's stack runs on a TAP device of ours \
                    (its hello has no `\"link\": \"netns\"`), not behind a real interface"
                        .into(),
                )
            }
            None => {
                return Err("--peer-iface needs --agent PROGRAM (the agent on the far side)".into())
            }
        }
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
            return Err(format!("--peer-iface: `{iface}` is not an interface name"));
        }
        self.peer_iface = Some(iface.to_string());
        Ok(self)
    }

    /// How a trial reaches the stack: the entry's topology, or for an agent not in the
    /// registry the one its hello asks for.
    pub fn topology(&self) -> TopologyKind {
        match (&self.agent, self.entry.launch) {
            (Some((_, hello)), Launch::AgentCommand) => match hello.link {
                AgentLink::Tap => TopologyKind::Tap,
                AgentLink::Netns => TopologyKind::Veth,
            },
            _ => self.entry.topology,
        }
    }

    /// Whether scenarios may set sysctls: the kernel in a namespace of ours, or an agent
    /// that applies them in its own.
    fn has_sysctls(&self) -> bool {
        let netns_agent = self.peer_iface.is_none() && self.topology() == TopologyKind::Veth;
        let applies = |(_, h): &(Vec<String>, Hello)| h.sysctls;
        self.entry.capabilities.sysctls || netns_agent || self.agent.as_ref().is_some_and(applies)
    }

    /// One word for file names and expectations: the entry's name, or for a custom agent
    /// the first word of its stack (`mystack 2.1` → `mystack`).
    pub fn short_name(&self) -> &str {
        match (&self.agent, self.entry.launch) {
            (Some((_, hello)), Launch::AgentCommand) => {
                hello.stack.split_whitespace().next().unwrap_or("agent")
            }
            _ => self.entry.name,
        }
    }

    /// The file under a suite's `expectations/` listing this stack's deviations.
    pub fn expectations_file(&self) -> String {
        match self.entry.launch {
            Launch::AgentCommand => format!("{}.yaml", self.short_name()),
            _ => self.entry.expectations.to_string(),
        }
    }

    /// The local kernel, whose captures go straight into the capture directory (another
    /// stack's go into a directory of its name beside them).
    pub fn is_local_kernel(&self) -> bool {
        self.entry.launch == Launch::LocalKernel
    }

    /// The agent's command, for a stack behind one.
    pub fn agent_command(&self) -> Option<&[String]> {
        self.agent.as_ref().map(|(cmd, _)| cmd.as_slice())
    }

    /// The stack's timers.
    pub fn profile(&self) -> &'static TimerProfile {
        self.profile
    }

    /// Whether the scenario sets a Linux setting (a sysctl) this stack does not have: then
    /// the trial is one of Linux's own, not a capability the stack lacks.
    pub fn lacks_settings_of(&self, sc: &Scenario) -> bool {
        !sc.setup.sysctls.is_empty() && !self.has_sysctls()
    }

    /// Why a scenario cannot run on this stack, if it cannot: a capability the stack lacks,
    /// or one this machine lacks for it (a sysctl an unprivileged namespace hides, TAP).
    pub fn missing(&self, sc: &Scenario, family: crate::Family) -> Option<String> {
        if let Some((k, _)) = sc.setup.sysctls.first() {
            if !self.has_sysctls() {
                return Some(format!("sysctl {k} (a Linux kernel setting)"));
            }
        }
        // A trial with alternatives may run any of them: it needs what each of them needs
        // (an RFC alternative that could not run would let Linux's pass unchallenged).
        let variants: Vec<Scenario> = (0..sc.alternatives.len())
            .map(|i| sc.with_alternative(i))
            .collect();
        let each = std::iter::once(sc).chain(variants.iter());
        if let Some((_, hello)) = &self.agent {
            if let Some(m) = each.clone().find_map(|v| hello.missing(v, family)) {
                return Some(m);
            }
        }
        if self.has_sysctls() && self.peer_iface.is_none() {
            let hidden = sc.setup.sysctls.iter();
            if let Some(m) = hidden
                .map(|(k, _)| k)
                .find_map(|k| topology::sysctl_unavailable(k))
            {
                return Some(m);
            }
        }
        match (self.topology(), &self.peer_iface) {
            // The stack behind a TAP owns its link: halfclose sets no MTU there.
            (TopologyKind::Tap, _) if sc.setup.mtu.is_some() => Some(format!(
                "a link MTU of {} (the agent's stack keeps its 1500-byte TAP)",
                sc.setup.mtu.unwrap_or_default()
            )),
            (_, Some(iface)) if sc.setup.mtu.is_some() => Some(format!(
                "a link MTU of {} (the MTU of {iface} is not halfclose's to set)",
                sc.setup.mtu.unwrap_or_default()
            )),
            (TopologyKind::Tap, None) => topology::tap_unavailable(),
            _ => None,
        }
    }
}

/// A binary built with this one (`cargo build --workspace` puts them side by side).
pub fn sibling_binary(name: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dirs: Vec<PathBuf> = exe.parent().into_iter().map(PathBuf::from).collect();
    // From tests/ or examples/, the binaries are one level up.
    if let Some(up) = exe.parent().and_then(|d| d.parent()) {
        dirs.push(up.to_path_buf());
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .ok_or_else(|| {
            format!(
                "{name} is not built beside {}: run `cargo build --release --workspace`",
                exe.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(stack: &str) -> Hello {
        Hello {
            stack: stack.into(),
            calls: vec!["socket".into()],
            ..Hello::default()
        }
    }

    #[test]
    fn names_are_unique_and_the_kernel_comes_first() {
        assert_eq!(REGISTRY[0].launch, Launch::LocalKernel);
        for (i, e) in REGISTRY.iter().enumerate() {
            assert_ne!(
                e.launch,
                Launch::AgentCommand,
                "{}: --agent's, not a stack",
                e.name
            );
            assert!(REGISTRY[..i].iter().all(|o| o.name != e.name), "{}", e.name);
            assert_eq!(e.profile.name, e.name, "a stack's timer profile is its own");
            assert_eq!(e.expectations, format!("{}.yaml", e.name));
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = lookup("lwipp").unwrap_err();
        assert!(e.contains("`lwipp`") && e.contains("linux, smoltcp"), "{e}");
        assert_eq!(lookup("smoltcp").unwrap().topology, TopologyKind::Tap);
    }

    #[test]
    fn an_agent_naming_a_known_stack_is_that_stack() {
        let s = Stack::agent(None, vec!["x".into()], hello("smoltcp 0.14"));
        assert_eq!((s.short_name(), s.profile().name), ("smoltcp", "smoltcp"));
        assert_eq!(s.expectations_file(), "smoltcp.yaml");
        let s = Stack::agent(None, vec!["x".into()], hello("mystack 2"));
        assert_eq!((s.short_name(), s.profile().name), ("mystack", "agent"));
        assert_eq!(s.expectations_file(), "mystack.yaml");
        assert!(!s.is_local_kernel());
        // An agent that calls itself `linux` is not the local kernel.
        let s = Stack::agent(None, vec!["x".into()], hello("linux 6.1"));
        assert_eq!(s.entry.launch, Launch::AgentCommand);
    }

    #[test]
    fn a_kernel_agent_gets_a_namespace_and_may_cross_an_interface() {
        let netns = Hello {
            link: AgentLink::Netns,
            sysctls: true,
            ipv4_mapped: false,
            ..hello("linux 6.1")
        };
        let s = Stack::agent(None, vec!["x".into()], netns);
        assert_eq!(s.topology(), TopologyKind::Veth);
        assert!(s.has_sysctls());
        let remote = s.over_iface("eth1").unwrap();
        assert_eq!(remote.peer_iface.as_deref(), Some("eth1"));
        assert!(
            remote.has_sysctls(),
            "the agent applies them in its own namespace"
        );
        let tap = Stack::agent(None, vec!["x".into()], hello("mystack 1"));
        assert_eq!(tap.topology(), TopologyKind::Tap);
        assert!(!tap.has_sysctls());
        assert!(tap.over_iface("eth1").unwrap_err().contains("TAP"));
        assert!(Stack::kernel()
            .over_iface("eth1")
            .unwrap_err()
            .contains("--agent"));
        let bad = Stack::agent(
            None,
            vec!["x".into()],
            Hello {
                link: AgentLink::Netns,
                ..hello("l")
            },
        );
        assert!(bad
            .over_iface("a/b")
            .unwrap_err()
            .contains("not an interface name"));
    }
}
