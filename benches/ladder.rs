//! `cargo bench --bench ladder`: how long a ladder takes to build from a capture's bytes and
//! to draw, as text and as SVG, for a capture the size of a 64 KB transfer (about 100 data
//! segments and their ACKs, with calls and state changes). Prints median and p99 of each.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halfclose::capture::{Capture, Direction};
use halfclose::ladder::{svg, text, Event, Kind, Ladder, StepRef};
use halfclose::topology::{PEER_MAC, SUT_MAC};
use halfclose::wire::{emit_tcp, Endpoints, TcpFlags, TcpRepr};

const RUNS: usize = 300;

fn capture(segments: u32) -> Capture {
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let sut = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let t0 = UNIX_EPOCH + Duration::from_secs(1_764_691_200);
    let at = |us: u32| t0 + Duration::from_micros(u64::from(us));
    let mut c = Capture::new("hc-peer", "halfclose peer, trial ipv4::bench::transfer");
    for i in 0..segments {
        let data = TcpRepr {
            src_port: 40000,
            dst_port: 8080,
            seq: 1 + i * 1448,
            ack: 1,
            flags: TcpFlags::ACK,
            window: 512,
            payload: vec![0; 1448],
            ..TcpRepr::default()
        };
        let frame = emit_tcp(
            PEER_MAC,
            SUT_MAC,
            Endpoints {
                src: peer,
                dst: sut,
            },
            &data,
        );
        c.push(
            at(i * 100),
            Direction::ToSut,
            frame,
            format!("sent by step 3 (b.yaml:{i}): . seq {}", 1 + i * 1448),
        );
        let ack = TcpRepr {
            src_port: 8080,
            dst_port: 40000,
            seq: 1,
            ack: 1 + (i + 1) * 1448,
            flags: TcpFlags::ACK,
            window: 512,
            ..TcpRepr::default()
        };
        let frame = emit_tcp(
            SUT_MAC,
            PEER_MAC,
            Endpoints {
                src: sut,
                dst: peer,
            },
            &ack,
        );
        c.push(
            at(i * 100 + 40),
            Direction::FromSut,
            frame,
            "ACK taken in by the transfer of step 3 (b.yaml:9)".into(),
        );
        let ev = Event {
            at: at(i * 100 + 50),
            kind: Kind::Call,
            step: Some(StepRef { step: 4, line: 10 }),
            text: "read(conn, 1448)".into(),
        };
        c.add_note(ev.note());
    }
    c.add_note("verdict: passed".into());
    c
}

fn stats(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<28} median {:>9.3} ms   p99 {:>9.3} ms   ({} runs)",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        times.len()
    );
}

fn time<T>(f: impl Fn() -> T) -> Vec<Duration> {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect()
}

fn main() {
    let c = capture(100);
    let bytes = c.to_pcapng().expect("pcapng");
    let ladder = Ladder::from_pcapng(&bytes).expect("ladder");
    println!(
        "capture: {} frames, {} bytes; ladder: {} rows",
        c.len(),
        bytes.len(),
        ladder.rows.len()
    );
    let started = SystemTime::now();
    stats(
        "ladder from pcapng bytes",
        time(|| Ladder::from_pcapng(&bytes).unwrap()),
    );
    stats("text ladder", time(|| text::render(&ladder)));
    stats(
        "SVG ladder",
        time(|| svg::render(&ladder, svg::Links { anchors: true })),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average while measuring: {} (took {:.1} s)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        started.elapsed().unwrap_or_default().as_secs_f64()
    );
}
