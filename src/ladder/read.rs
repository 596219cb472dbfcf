//! Reading a pcapng back: its frames (time, direction, bytes, comment) and the comments on
//! the whole file. Any pcapng is accepted; one not written by halfclose just has no events.

use std::path::Path;
use std::time::UNIX_EPOCH;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use super::{RawCapture, RawFrame};
use crate::capture::Direction;
use crate::topology;

/// A capture larger than this is refused: a trial's is a few kilobytes (a 64 KB transfer
/// makes ~200 KB), and the whole file is read into memory.
pub const MAX_CAPTURE_BYTES: u64 = 256 << 20;
/// Frames read at most; more make a ladder nobody can read anyway.
const MAX_FRAMES: usize = 100_000;

/// Reads a pcapng file, refusing what is not one (or is too large) with a message naming it.
pub fn read_pcapng_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_CAPTURE_BYTES {
        return Err(format!(
            "{}: {} bytes, more than the {} a capture may have",
            path.display(),
            meta.len(),
            MAX_CAPTURE_BYTES
        ));
    }
    crate::preflight::read_capped(path, MAX_CAPTURE_BYTES).map_err(|e| match e {
        Some(e) => format!("{}: {e}", path.display()),
        None => format!(
            "{}: more than the {MAX_CAPTURE_BYTES} bytes a capture may have",
            path.display()
        ),
    })
}

/// The frames and comments of a pcapng file's bytes.
pub fn parse(bytes: &[u8]) -> Result<RawCapture, String> {
    let mut reader = PcapNgReader::new(bytes).map_err(|e| format!("not a pcapng file: {e}"))?;
    let mut raw = RawCapture::default();
    for option in &reader.section().options {
        if let SectionHeaderOption::Comment(c) = option {
            raw.notes.push(c.to_string());
        }
    }
    let mut block_no = 1;
    while let Some(block) = reader.next_block() {
        block_no += 1;
        let block = block.map_err(|e| format!("block {block_no} is malformed: {e}"))?;
        match block {
            Block::InterfaceDescription(idb) if raw.description.is_empty() => {
                for option in &idb.options {
                    if let InterfaceDescriptionOption::IfDescription(d) = option {
                        raw.description = d.to_string();
                    }
                }
            }
            Block::EnhancedPacket(epb) => {
                if raw.frames.len() >= MAX_FRAMES {
                    return Err(format!("more than {MAX_FRAMES} frames"));
                }
                let mut dir = None;
                let mut comment = String::new();
                for option in &epb.options {
                    match option {
                        EnhancedPacketOption::Flags(f) => dir = direction(*f),
                        EnhancedPacketOption::Comment(c) => comment = c.to_string(),
                        _ => {}
                    }
                }
                let data = epb.data.to_vec();
                raw.frames.push(RawFrame {
                    at: UNIX_EPOCH + epb.timestamp,
                    dir: dir.unwrap_or_else(|| guess_direction(&data)),
                    data,
                    comment,
                });
            }
            Block::SimplePacket(spb) => {
                let data = spb.data.to_vec();
                raw.frames.push(RawFrame {
                    at: UNIX_EPOCH,
                    dir: guess_direction(&data),
                    data,
                    comment: String::new(),
                });
            }
            _ => {}
        }
    }
    Ok(raw)
}

/// `epb_flags` bits 0-1: 01 inbound (from the SUT), 10 outbound (the peer's).
fn direction(flags: u32) -> Option<Direction> {
    match flags & 0b11 {
        0b01 => Some(Direction::FromSut),
        0b10 => Some(Direction::ToSut),
        _ => None,
    }
}

/// No flags: a frame from the peer's MAC is the peer's.
fn guess_direction(data: &[u8]) -> Direction {
    if data.get(6..12) == Some(&topology::PEER_MAC[..]) {
        Direction::ToSut
    } else {
        Direction::FromSut
    }
}
