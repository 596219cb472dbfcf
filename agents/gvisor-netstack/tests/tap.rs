//! The gVisor agent on a real TAP device (needs root): the smoltcp agent's TAP tests, run
//! against this package's agent. The test plays the remote TCP peer with hand-built frames
//! (a passive open and an active close, every state event checked) and hands the agent a
//! TUN device, which it must refuse.
#![cfg(not(no_gvisor_agent))]

#[path = "../../smoltcp/tests/tap.rs"]
mod tap;
