//! Logging to the kernel log and stderr.
//!
//! At boot the kernel log is the only record a user will ever read, so every `bind`
//! run writes there with the prefix `vfio-early:`. This is a small `log::Log` of our
//! own rather than the `kernlog` crate: kernlog opens `/dev/kmsg` itself (ignoring the
//! host root, so tests could not see the lines) and panics when it cannot, and a boot
//! agent must not panic because `/dev/kmsg` is missing.
//!
//! The kernel lets each open of `/dev/kmsg` write 10 records per 5 seconds unless
//! `printk.devkmsg=on`; the rest are dropped silently. The logger keeps within that
//! budget: it writes the first records up to the budget minus one, counts what it holds
//! back, and [`KmsgLogger::finish`] writes one summary record naming the full log file.
//! stderr and the full log under `run/vfio-early/` always get every line.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::host::Host;

/// Records per open the kernel accepts in a burst (`printk_ratelimit` for devkmsg).
pub(crate) const KMSG_BUDGET: usize = 10;

#[derive(Debug)]
struct State {
    kmsg: Option<File>,
    /// Records still allowed before the summary; `None` when unlimited.
    budget: Option<usize>,
    held_back: usize,
    lines: Vec<String>,
}

/// A logger that writes `vfio-early:` records to `ROOT/dev/kmsg` and to stderr.
#[derive(Debug)]
pub(crate) struct KmsgLogger {
    state: Mutex<State>,
    stderr_level: LevelFilter,
    kmsg_level: LevelFilter,
    /// When the run started: a verbose trace on stderr shows the time since.
    start: std::time::Instant,
}

fn kmsg_priority(level: Level) -> u8 {
    // syslog facility "user" (1) and the matching severity.
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    8 + severity
}

impl KmsgLogger {
    /// Opens `ROOT/dev/kmsg` for appending, unless `kmsg_level` is `Off` (a dry run
    /// does not open it at all). A missing one only disables that output; one that is
    /// not the kernel log (a FIFO, a link, another device: [`Host::open_kmsg`]) does
    /// too, with one line on stderr.
    pub fn new(host: &Host, stderr_level: LevelFilter, kmsg_level: LevelFilter) -> Self {
        let kmsg = if kmsg_level == LevelFilter::Off {
            None
        } else {
            match host.open_kmsg() {
                Ok(k) => k,
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "vfio-early: warning: {e}; nothing goes to the kernel log"
                    );
                    None
                }
            }
        };
        // `printk.devkmsg=on` (or the sysctl) lifts the limit.
        let unlimited = host.read_attr("proc/sys/kernel/printk_devkmsg").as_deref() == Some("on");
        Self {
            state: Mutex::new(State {
                kmsg,
                budget: (!unlimited).then_some(KMSG_BUDGET - 1),
                held_back: 0,
                lines: Vec::new(),
            }),
            stderr_level,
            kmsg_level,
            start: std::time::Instant::now(),
        }
    }

    /// Installs a logger as the global one; returns it for [`KmsgLogger::finish`].
    pub fn install(self) -> &'static Self {
        let logger: &'static Self = Box::leak(Box::new(self));
        let max = logger.stderr_level.max(logger.kmsg_level);
        if log::set_logger(logger).is_ok() {
            log::set_max_level(max);
        }
        logger
    }

    /// Writes the summary record when lines were held back, and the full log to
    /// `run/vfio-early/log`; returns every line logged. A log that cannot be written (a
    /// full `/run`) is reported on stderr and in the kernel log, and leaves no temp file.
    pub fn finish(&self, host: &Host) -> Vec<String> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        if st.held_back > 0 {
            let msg = format!(
                "<{}>vfio-early: {} more line(s) not sent to the kernel log (rate limit); see /{}\n",
                kmsg_priority(Level::Warn),
                st.held_back,
                crate::record::LOG_PATH
            );
            if let Some(k) = st.kmsg.as_mut() {
                let _ = k.write_all(msg.as_bytes());
            }
        }
        let mut text = st.lines.join("\n");
        text.push('\n');
        if let Err(e) = host.write_owned(crate::record::LOG_PATH, text.as_bytes()) {
            let msg = format!("could not write the full log: {e}");
            let _ = writeln!(std::io::stderr(), "vfio-early: warning: {msg}");
            let record = format!("<{}>vfio-early: {msg}\n", kmsg_priority(Level::Warn));
            if let Some(k) = st.kmsg.as_mut() {
                let _ = k.write_all(record.as_bytes());
            }
        }
        st.lines.clone()
    }
}

impl Log for KmsgLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.stderr_level || m.level() <= self.kmsg_level
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = r.args().to_string();
        // One record per line: the kernel would split them anyway, each costing budget.
        let text = text.replace('\n', " ");
        if r.level() <= self.stderr_level {
            // -v and -vv: a trace with the time of each step, to see where a bind or
            // a rollback spent its time.
            // Whole microseconds (no float formatting in the boot agent).
            let at = if self.stderr_level >= LevelFilter::Debug {
                let us = self.start.elapsed().as_micros();
                format!("{:>5}.{:03} ms ", us / 1000, us % 1000)
            } else {
                String::new()
            };
            // One write per line (stderr is unbuffered).
            let line = format!("vfio-early: {at}{}\n", level_word(r.level(), &text));
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.lines.push(format!(
            "{}: {text}",
            r.level().as_str().to_ascii_lowercase()
        ));
        if r.level() > self.kmsg_level || st.kmsg.is_none() {
            return;
        }
        match st.budget {
            Some(0) => st.held_back += 1,
            Some(n) => {
                st.budget = Some(n - 1);
                write_record(&mut st, r.level(), &text);
            }
            None => write_record(&mut st, r.level(), &text),
        }
    }

    fn flush(&self) {}
}

fn level_word(level: Level, text: &str) -> String {
    match level {
        Level::Error => format!("error: {text}"),
        Level::Warn => format!("warning: {text}"),
        _ => text.to_owned(),
    }
}

fn write_record(st: &mut State, level: Level, text: &str) {
    // The kernel caps a record at about 1 kB; keep well within it.
    let mut line = format!("<{}>vfio-early: {text}", kmsg_priority(level));
    if line.len() > 900 {
        let mut cut = 900;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line.push('\n');
    if let Some(k) = st.kmsg.as_mut() {
        let _ = k.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_the_kernel_budget_and_summarises() {
        let t = testing::TestSysfs::new();
        let host = Host::new(t.root());
        let logger = KmsgLogger::new(&host, LevelFilter::Off, LevelFilter::Info);
        for i in 0..25 {
            logger.log(
                &Record::builder()
                    .level(Level::Info)
                    .args(format_args!("line {i}"))
                    .build(),
            );
        }
        let all = logger.finish(&host);
        assert_eq!(all.len(), 25);
        let kmsg = t.read("dev/kmsg");
        let records: Vec<&str> = kmsg.lines().collect();
        assert_eq!(records.len(), KMSG_BUDGET, "{kmsg}");
        assert!(records[0].starts_with("<14>vfio-early: line 0"), "{kmsg}");
        assert!(records[9].contains("16 more line(s)"), "{kmsg}");
        assert_eq!(t.read(crate::record::LOG_PATH).lines().count(), 25);
    }

    #[test]
    fn unlimited_when_devkmsg_is_on_and_levels_map_to_syslog() {
        let t = testing::TestSysfs::new();
        t.file("proc/sys/kernel/printk_devkmsg", "on\n");
        let host = Host::new(t.root());
        let logger = KmsgLogger::new(&host, LevelFilter::Off, LevelFilter::Info);
        for i in 0..12 {
            logger.log(
                &Record::builder()
                    .level(Level::Warn)
                    .args(format_args!("w\n{i}"))
                    .build(),
            );
        }
        logger.log(
            &Record::builder()
                .level(Level::Debug)
                .args(format_args!("hidden"))
                .build(),
        );
        logger.finish(&host);
        let kmsg = t.read("dev/kmsg");
        assert_eq!(kmsg.lines().count(), 12, "{kmsg}");
        assert!(
            kmsg.lines().all(|l| l.starts_with("<12>vfio-early: w ")),
            "{kmsg}"
        );
    }

    #[test]
    fn missing_kmsg_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let logger = KmsgLogger::new(&host, LevelFilter::Off, LevelFilter::Info);
        logger.log(
            &Record::builder()
                .level(Level::Error)
                .args(format_args!("x"))
                .build(),
        );
        assert_eq!(logger.finish(&host), ["error: x"]);
    }
}
