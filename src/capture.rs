//! One pcapng file per trial: every frame the peer sent or saw, in order, with a comment.
//!
//! The file holds one section header (naming halfclose as the writing application), one
//! Ethernet interface (the peer's end of the veth pair) and one enhanced packet block per
//! frame. Each block carries the frame's direction in `epb_flags` and the harness's note on
//! it (usually [`crate::wire::describe`] output, later amended with a verdict) as
//! `opt_comment`, so `wireshark`/`tshark` show the trial as the harness understood it.
//!
//! Timestamps are nanoseconds. pcap-file 2.0 always writes an EPB timestamp as
//! `Duration::as_nanos()`, whatever the interface says, while readers assume microseconds
//! unless the interface declares `if_tsresol`; so the interface here always carries
//! `if_tsresol = 9`, which makes the two agree. (pcap-file's reader likewise always reads
//! the raw value as nanoseconds, so a read-back test only proves the option is there, not
//! that readers honour it; tshark does, see the tests.)

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};

/// `if_tsresol` value for 10^-9 seconds.
const NANOSECONDS: u8 = 9;
/// pcapng option lengths are 16 bits. pcap-file 2.0 writes a longer value with its length
/// silently truncated, which corrupts the file, so longer text is cut here first.
const MAX_OPTION_LEN: usize = u16::MAX as usize;
/// `epb_flags` bits 0-1: 01 inbound, 10 outbound.
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

/// Which way a frame went, from the peer's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by the peer to the system under test: outbound.
    ToSut,
    /// Sent by the system under test and received by the peer: inbound.
    FromSut,
}

impl Direction {
    fn epb_flags(self) -> u32 {
        match self {
            Direction::ToSut => EPB_OUTBOUND,
            Direction::FromSut => EPB_INBOUND,
        }
    }
}

#[derive(Clone, Debug)]
struct Record {
    at: SystemTime,
    dir: Direction,
    frame: Vec<u8>,
    comment: String,
}

/// The frames of one trial, kept in memory until the trial ends.
#[derive(Clone, Debug)]
pub struct Capture {
    interface_name: String,
    description: String,
    records: Vec<Record>,
    /// Comments on the whole file: the verdict, the state trace, timer measurements.
    notes: Vec<String>,
}

impl Capture {
    /// An empty capture of the interface `interface_name`; `description` goes into the
    /// interface's `if_description` (the trial's name is a good one).
    pub fn new(interface_name: &str, description: &str) -> Capture {
        Capture {
            interface_name: interface_name.to_string(),
            description: description.to_string(),
            records: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a frame; `at` is its kernel timestamp (CLOCK_REALTIME). Returns its index,
    /// for [`Capture::set_comment`] once the harness knows more about it.
    pub fn push(
        &mut self,
        at: SystemTime,
        dir: Direction,
        frame: Vec<u8>,
        comment: String,
    ) -> usize {
        self.records.push(Record {
            at,
            dir,
            frame,
            comment,
        });
        self.records.len() - 1
    }

    /// Replaces a frame's comment. Panics if `index` did not come from [`Capture::push`].
    pub fn set_comment(&mut self, index: usize, comment: String) {
        self.records[index].comment = comment;
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The accessors below panic if `index` did not come from [`Capture::push`].
    pub fn comment(&self, index: usize) -> &str {
        &self.records[index].comment
    }

    pub fn direction(&self, index: usize) -> Direction {
        self.records[index].dir
    }

    pub fn frame(&self, index: usize) -> &[u8] {
        &self.records[index].frame
    }

    pub fn timestamp(&self, index: usize) -> SystemTime {
        self.records[index].at
    }

    /// Writes the capture as pcapng to `path`, creating parent directories.
    pub fn write_pcapng(&self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, self.to_pcapng()?)
    }

    /// The pcapng file as bytes. Built in memory: a trial's capture is small, and a file
    /// that failed halfway would be worse than none.
    pub fn to_pcapng(&self) -> io::Result<Vec<u8>> {
        let mut writer = PcapNgWriter::with_section_header(Vec::new(), self.section_header())
            .map_err(io::Error::other)?;
        writer
            .write_pcapng_block(self.interface())
            .map_err(io::Error::other)?;
        // Frames are pushed by two threads (sends, receptions); a reader wants time order.
        let mut order: Vec<&Record> = self.records.iter().collect();
        order.sort_by_key(|r| r.at);
        for record in order {
            writer
                .write_pcapng_block(packet_block(record))
                .map_err(io::Error::other)?;
        }
        Ok(writer.into_inner())
    }

    /// Adds a comment on the whole capture (Wireshark: Statistics → Capture File Properties).
    pub fn add_note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn section_header(&self) -> SectionHeaderBlock<'static> {
        let application = format!("halfclose {}", env!("CARGO_PKG_VERSION"));
        let mut options = vec![SectionHeaderOption::UserApplication(Cow::Owned(
            application,
        ))];
        for note in &self.notes {
            options.push(SectionHeaderOption::Comment(Cow::Owned(
                truncated(note).to_string(),
            )));
        }
        SectionHeaderBlock {
            endianness: Endianness::native(),
            options,
            ..SectionHeaderBlock::default()
        }
    }

    fn interface(&self) -> InterfaceDescriptionBlock<'static> {
        let mut options = Vec::new();
        if !self.interface_name.is_empty() {
            let name = truncated(&self.interface_name).to_string();
            options.push(InterfaceDescriptionOption::IfName(Cow::Owned(name)));
        }
        if !self.description.is_empty() {
            let description = truncated(&self.description).to_string();
            options.push(InterfaceDescriptionOption::IfDescription(Cow::Owned(
                description,
            )));
        }
        options.push(InterfaceDescriptionOption::IfTsResol(NANOSECONDS));
        // Snap length 0 means "no limit" in pcapng: frames are stored whole.
        InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options,
        }
    }
}

fn packet_block(record: &Record) -> EnhancedPacketBlock<'_> {
    let mut options = vec![EnhancedPacketOption::Flags(record.dir.epb_flags())];
    // An empty opt_comment would show as an empty comment in Wireshark; leave it out.
    if !record.comment.is_empty() {
        options.push(EnhancedPacketOption::Comment(Cow::Borrowed(truncated(
            &record.comment,
        ))));
    }
    EnhancedPacketBlock {
        interface_id: 0,
        timestamp: since_epoch(record.at),
        original_len: record.frame.len() as u32,
        data: Cow::Borrowed(&record.frame),
        options,
    }
}

/// pcapng cannot store times before 1970; such a clock is broken anyway, so clamp to 0.
fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// `text` cut to fit one pcapng option, on a character boundary.
fn truncated(text: &str) -> &str {
    if text.len() <= MAX_OPTION_LEN {
        return text;
    }
    let mut end = MAX_OPTION_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn sample() -> Capture {
        let mut capture = Capture::new("hc-peer0", "ipv4/fin_wait_2_timeout");
        capture.push(
            at(1_700_000_000, 123_456_789),
            Direction::ToSut,
            vec![1; 60],
            "S seq 0".into(),
        );
        capture.push(
            at(1_700_000_000, 123_999_001),
            Direction::FromSut,
            vec![2; 61],
            "S. seq 0".into(),
        );
        capture.push(
            at(1_700_000_001, 1),
            Direction::ToSut,
            vec![3; 54],
            String::new(),
        );
        capture
    }

    /// Enhanced packet blocks of a pcapng file, after checking its header blocks.
    fn read_back(bytes: &[u8]) -> Vec<EnhancedPacketBlock<'static>> {
        let mut reader = PcapNgReader::new(bytes).expect("section header");
        let application = format!("halfclose {}", env!("CARGO_PKG_VERSION"));
        assert!(reader
            .section()
            .options
            .contains(&SectionHeaderOption::UserApplication(application.into())));
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.expect("well-formed block") {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, DataLink::ETHERNET);
                    assert!(idb
                        .options
                        .contains(&InterfaceDescriptionOption::IfTsResol(9)));
                    assert!(idb
                        .options
                        .contains(&InterfaceDescriptionOption::IfName("hc-peer0".into())));
                    assert!(idb
                        .options
                        .contains(&InterfaceDescriptionOption::IfDescription(
                            "ipv4/fin_wait_2_timeout".into()
                        )));
                }
                Block::EnhancedPacket(epb) => packets.push(epb.into_owned()),
                other => panic!("unexpected block {other:?}"),
            }
        }
        assert_eq!(reader.interfaces().len(), 1);
        packets
    }

    #[test]
    fn write_and_read_back() {
        let mut capture = sample();
        capture.set_comment(1, "S. seq 0 ack 1 (expected)".into());
        let dir = std::env::temp_dir().join(format!("halfclose-capture-{}", std::process::id()));
        let path = dir.join("nested/trial.pcapng");
        capture.write_pcapng(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();

        let packets = read_back(&bytes);
        assert_eq!(packets.len(), 3);
        for (i, epb) in packets.iter().enumerate() {
            assert_eq!(epb.interface_id, 0);
            assert_eq!(
                UNIX_EPOCH + epb.timestamp,
                capture.timestamp(i),
                "to the nanosecond"
            );
            assert_eq!(&epb.data[..], capture.frame(i));
            assert_eq!(epb.original_len as usize, capture.frame(i).len());
            let flags = match capture.direction(i) {
                Direction::FromSut => 1,
                Direction::ToSut => 2,
            };
            assert!(epb.options.contains(&EnhancedPacketOption::Flags(flags)));
            let comments: Vec<_> = epb
                .options
                .iter()
                .filter_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                })
                .collect();
            let want: Vec<_> = Some(capture.comment(i).to_string())
                .filter(|c| !c.is_empty())
                .into_iter()
                .collect();
            assert_eq!(comments, want);
        }
        assert_eq!(capture.comment(1), "S. seq 0 ack 1 (expected)");
    }

    #[test]
    fn raw_timestamp_is_in_nanoseconds() {
        // Bytes 0..28 are the EPB header once the SHB and IDB are skipped; check the raw
        // 64-bit value, since pcap-file's reader would agree with its writer either way.
        let mut capture = Capture::new("p", "");
        capture.push(
            at(1_700_000_000, 5),
            Direction::ToSut,
            vec![0; 14],
            String::new(),
        );
        let bytes = capture.to_pcapng().unwrap();
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let shb_len = word(4) as usize;
        let idb_len = word(shb_len + 4) as usize;
        let epb = shb_len + idb_len;
        assert_eq!(word(epb), 6, "enhanced packet block");
        let raw = (u64::from(word(epb + 12)) << 32) | u64::from(word(epb + 16));
        assert_eq!(raw, 1_700_000_000_000_000_005);
    }

    #[test]
    fn empty_capture_and_odd_inputs() {
        let capture = Capture::new("", "");
        assert!(capture.is_empty());
        let bytes = capture.to_pcapng().unwrap();
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        assert!(matches!(
            reader.next_block(),
            Some(Ok(Block::InterfaceDescription(_)))
        ));
        assert!(reader.next_block().is_none());

        // Pre-1970 clamps to 0; a comment longer than an option can hold is cut, not corrupt.
        let mut capture = Capture::new("p", "d");
        let long = "é".repeat(40_000);
        capture.push(
            UNIX_EPOCH - Duration::from_secs(1),
            Direction::FromSut,
            vec![],
            long.clone(),
        );
        let packets = read_back_loose(&capture.to_pcapng().unwrap());
        assert_eq!(packets[0].timestamp, Duration::ZERO);
        let comment = packets[0].options.iter().find_map(|o| match o {
            EnhancedPacketOption::Comment(c) => Some(c.len()),
            _ => None,
        });
        assert_eq!(comment, Some(65534));
        assert_eq!(capture.len(), 1);
    }

    fn read_back_loose(bytes: &[u8]) -> Vec<EnhancedPacketBlock<'static>> {
        let mut reader = PcapNgReader::new(bytes).unwrap();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            if let Block::EnhancedPacket(epb) = block.unwrap() {
                packets.push(epb.into_owned());
            }
        }
        packets
    }
}
