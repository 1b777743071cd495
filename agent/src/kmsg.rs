//! The kernel log, as `/dev/kmsg` gives it.
//!
//! Each read of `/dev/kmsg` returns one record:
//!
//! ```text
//! 6,339,5140900,-;DMAR: Intel(R) Virtualization Technology for Directed I/O
//!  SUBSYSTEM=pci
//!  DEVICE=+pci:0000:00:03.0
//! ```
//!
//! The header is `facility*8+level,seq,usec,flags[,more fields];` and then the text,
//! with non-printable bytes escaped as `\xNN`. Lines starting with a space that follow
//! are the record's dictionary (`KEY=value`). [`parse`] reads any number of records
//! from a string (a fixture file or a dump); [`read`] takes them from a host: on the
//! live system it opens `/dev/kmsg` non-blocking and reads until `EAGAIN`, so it
//! never waits for new messages; in a fixture `dev/kmsg` is a plain file of records.

use std::borrow::Cow;
use std::io::Read;

use crate::host::{Host, HostError, HostResult};

/// Where the log is, relative to the host root.
pub const PATH: &str = "dev/kmsg";

/// One kernel log record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Syslog level, 0 (emerg) to 7 (debug).
    pub level: u8,
    /// Syslog facility (0 = kernel, 1 = user, as written by agents through /dev/kmsg).
    pub facility: u32,
    /// Sequence number: 0 for the first record of the boot.
    pub seq: u64,
    /// Microseconds since boot.
    pub usec: u64,
    /// The text, with `\xNN` escapes decoded.
    pub text: String,
    /// Dictionary entries (`SUBSYSTEM=pci`, `DEVICE=+pci:0000:00:03.0`).
    pub dict: Vec<(String, String)>,
}

impl Record {
    /// A dictionary value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.dict
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `[    1.234567] text`, as `dmesg` prints it.
    pub fn dmesg_line(&self) -> String {
        format!(
            "[{:5}.{:06}] {}",
            self.usec / 1_000_000,
            self.usec % 1_000_000,
            self.text
        )
    }
}

/// Parses the header line of one record; `None` when it is not a record.
pub fn parse_record(line: &str) -> Option<Record> {
    let (prio, seq, usec, text) = split_record(line)?;
    Some(Record {
        level: u8::try_from(prio & 7).unwrap_or(7),
        facility: prio >> 3,
        seq,
        usec,
        text: unescape(text).into_owned(),
        dict: Vec::new(),
    })
}

/// The header fields (priority, sequence, microseconds) and the raw text of one
/// record line.
fn split_record(line: &str) -> Option<(u32, u64, u64, &str)> {
    let (header, text) = line.split_once(';')?;
    let mut fields = header.split(',');
    let prio: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let usec: u64 = fields.next()?.parse().ok()?;
    // The flags field ('-', 'c', '+') must be there; more fields may follow.
    fields.next()?;
    Some((prio, seq, usec, text.trim_end_matches(['\n', '\r'])))
}

/// Parses every record in `text`; lines that are neither records nor continuations
/// are ignored.
pub fn parse(text: &str) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for line in text.lines() {
        if let Some(cont) = line.strip_prefix(' ') {
            if let (Some(last), Some((k, v))) = (out.last_mut(), cont.split_once('=')) {
                last.dict.push((k.to_owned(), unescape(v).into_owned()));
            }
            continue;
        }
        if let Some(r) = parse_record(line) {
            out.push(r);
        }
    }
    out
}

/// Decodes the kernel's `\xNN` escapes (it escapes `\` itself and non-printables);
/// text without any is borrowed as it is.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains("\\x") {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 4 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Reads every record the host's kernel log holds now, without waiting for more.
///
/// Live: `/dev/kmsg` opened `O_RDONLY | O_NONBLOCK`; each `read` returns one record;
/// `EPIPE` (a record was overwritten while reading) is skipped; `EAGAIN` ends. An
/// unreadable log (`dmesg_restrict` for non-root users) is an error. In a fixture the
/// file is read whole.
pub fn read(host: &Host) -> HostResult<Vec<Record>> {
    if !host.is_live() {
        return host.read(PATH).map(|t| parse(&t));
    }
    read_device(host)
}

/// Reads the host's kernel log once, in one pass, handing each record's sequence
/// number and text (escapes decoded) to `visit` as it comes; nothing is kept. Live:
/// `/dev/kmsg` as [`read`] reads it; in a fixture, the file.
pub fn scan(host: &Host, mut visit: impl FnMut(u64, &str)) -> HostResult<()> {
    let mut line = |l: &str| {
        if let Some((_, seq, _, text)) = split_record(l) {
            visit(seq, &unescape(text));
        }
    };
    if !host.is_live() {
        host.read(PATH)?.lines().for_each(&mut line);
        return Ok(());
    }
    // Each read is one record: its first line is the header and text, the rest its
    // dictionary.
    each_device_record(host, |bytes| {
        if let Some(first) = String::from_utf8_lossy(bytes).lines().next() {
            line(first);
        }
    })
}

fn read_device(host: &Host) -> HostResult<Vec<Record>> {
    let mut out = Vec::new();
    each_device_record(host, |bytes| {
        out.extend(parse(&String::from_utf8_lossy(bytes)));
    })?;
    Ok(out)
}

/// Opens `/dev/kmsg` non-blocking and hands each record to `each` until `EAGAIN`.
fn each_device_record(host: &Host, mut each: impl FnMut(&[u8])) -> HostResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = host.path(PATH);
    let io = |e| HostError::Io {
        path: path.clone(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(io)?;
    // A record is at most 8 KiB (CONSOLE_EXT_LOG_MAX) with its dictionary.
    let mut buf = vec![0u8; 8192];
    let mut any = false;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                any = true;
                each(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                if !any {
                    return Err(io(e));
                }
                break;
            }
        }
    }
    Ok(())
}

/// Whether the log still reaches back to the start of the boot: the first record
/// the kernel writes has sequence number 0.
pub fn from_boot(records: &[Record]) -> bool {
    records.first().is_some_and(|r| r.seq == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_text_and_dictionary() {
        let t = "6,339,5140900,-;DMAR: Intel(R) Virtualization Technology for Directed I/O\n\
                 4,400,6000000,-,caller=T1;vfio-pci 0000:00:03.0: BAR 0: can't reserve\n \
                 SUBSYSTEM=pci\n DEVICE=+pci:0000:00:03.0\n\
                 garbage\n\
                 14,401,7000000,c;vfio-early: bound\n";
        let r = parse(t);
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].level, r[0].facility, r[0].seq, r[0].usec),
            (6, 0, 339, 5_140_900)
        );
        assert_eq!(r[1].get("DEVICE"), Some("+pci:0000:00:03.0"));
        assert_eq!(r[1].dict.len(), 2);
        assert_eq!((r[2].level, r[2].facility), (6, 1));
        assert_eq!(
            r[0].dmesg_line(),
            "[    5.140900] DMAR: Intel(R) Virtualization Technology for Directed I/O"
        );
    }

    #[test]
    fn decodes_escapes_and_rejects_non_records() {
        let r = parse_record("6,1,2,-;a\\x5cb\\x0ac\\xzz").unwrap();
        assert_eq!(r.text, "a\\b\nc\\xzz");
        for bad in ["", "no header", "6,1;x", "x,1,2,-;t", "6,1,2;t"] {
            assert!(parse_record(bad).is_none(), "{bad:?}");
        }
        assert!(from_boot(&parse("6,0,0,-;Linux version 6.1.0\n")));
        assert!(!from_boot(&parse("6,9000,0,-;later\n")));
    }

    #[test]
    fn scans_in_one_pass_what_parse_reads() {
        let t = "6,0,0,-;Linux version 6.1.0\n \
                 SUBSYSTEM=pci\n\
                 not a record\n\
                 4,7,9,-,caller=T1;a\\x5cb\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(dir.path().join(PATH), t).unwrap();
        let mut seen = Vec::new();
        scan(&Host::new(dir.path()), |seq, text| {
            seen.push((seq, text.to_owned()));
        })
        .unwrap();
        let parsed: Vec<(u64, String)> = parse(t).into_iter().map(|r| (r.seq, r.text)).collect();
        assert_eq!(seen, parsed);
        assert_eq!(seen[1], (7, "a\\b".to_owned()));
        assert!(scan(&Host::new(dir.path().join("nope")), |_, _| {}).is_err());
    }

    #[test]
    fn reads_a_fixture_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(
            dir.path().join(PATH),
            "6,0,0,-;Linux version 6.1.0-28-amd64\n",
        )
        .unwrap();
        let recs = read(&Host::new(dir.path())).unwrap();
        assert_eq!(recs[0].text, "Linux version 6.1.0-28-amd64");
        assert!(read(&Host::new(dir.path().join("nope"))).is_err());
    }
}
