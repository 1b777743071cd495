//! The record of a boot run, left in `/run/vfio-early/record.json` for `check`.
//!
//! `/run` survives the switch from the initramfs to the real root, so after boot the
//! record tells what the agent saw and did, and with which config. The format is
//! versioned; readers ignore fields they do not know.

use serde::{Deserialize, Serialize};

use crate::host::{Host, HostResult};

/// Where the record lives, relative to the host root.
pub const PATH: &str = "run/vfio-early/record.json";
/// The full log of the run (the kernel log gets a summary when over budget).
pub(crate) const LOG_PATH: &str = "run/vfio-early/log";
/// The largest record [`Record::load`] reads (a record is a few KiB; the config text
/// in it is at most 256 KiB).
pub const MAX_SIZE: u64 = 4 << 20;
/// Format version.
pub(crate) const VERSION: u32 = 1;

/// What happened to one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// PCI address.
    pub address: String,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// The planned action (`bind`, `already-bound`, `skip`, `refuse`).
    pub action: String,
    /// The plan's reasons.
    pub reasons: Vec<String>,
    /// The driver before the agent acted.
    pub driver_before: Option<String>,
    /// The driver after (read back from the `driver` link).
    pub driver_after: Option<String>,
    /// `bound`, `rolled-back`, `failed`, or empty when nothing was attempted.
    pub outcome: String,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

/// One hugepage reservation (sizes in kB, as sysfs names them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageRecord {
    /// Page size, e.g. `2M`, `1G`.
    pub size: String,
    /// Page size in kB.
    pub size_kb: u64,
    /// NUMA node, or none for the whole system.
    pub node: Option<u32>,
    /// Pages asked for.
    pub requested: u64,
    /// Pages the kernel gave (read back); absent on a dry run.
    pub obtained: Option<u64>,
    /// Notes: refusals, shortfall advice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The whole record of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub version: u32,
    /// `vfio-early` version.
    pub agent_version: String,
    /// Kernel release the run saw.
    pub kernel: Option<String>,
    /// Seconds since boot when the run started (`/proc/uptime`).
    pub uptime_s: Option<f64>,
    /// The config file used.
    pub config_path: String,
    /// Its text, to compare with the file on disk later (a stale initramfs).
    pub config_text: Option<String>,
    /// The config error, if the config could not be used.
    pub config_error: Option<String>,
    /// The kill-switch parameter, when it stopped the run.
    pub disabled_by: Option<String>,
    /// Whether vfio-pci was there or how it was loaded.
    pub vfio_pci: Option<String>,
    /// One line on the IOMMU as seen at boot.
    pub iommu_verdict: Option<String>,
    /// Devices planned and acted on.
    pub devices: Vec<DeviceRecord>,
    /// Hugepage reservations.
    pub hugepages: Vec<HugepageRecord>,
    /// Problems that concern no single device.
    pub warnings: Vec<String>,
    /// Failures.
    pub errors: Vec<String>,
}

impl Record {
    /// An empty record for this agent.
    pub fn new(host: &Host) -> Self {
        Self {
            version: VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel: host.kernel_release(),
            uptime_s: host
                .read_attr("proc/uptime")
                .and_then(|u| u.split_whitespace().next().and_then(|s| s.parse().ok())),
            ..Self::default()
        }
    }

    /// Writes the record under the host root.
    pub fn save(&self, host: &Host) -> HostResult<()> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        host.write_owned(PATH, &json)
    }

    /// Reads the record a boot run left, if any.
    pub fn load(host: &Host) -> Option<Self> {
        serde_json::from_str(&host.read_limited(PATH, MAX_SIZE).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.path().join("proc/sys/kernel/osrelease"), "6.1.0-x\n").unwrap();
        let host = Host::new(dir.path());
        let mut r = Record::new(&host);
        r.devices.push(DeviceRecord {
            address: "0000:01:00.0".into(),
            outcome: "bound".into(),
            ..Default::default()
        });
        r.save(&host).unwrap();
        assert!(dir.path().join(PATH).is_file());
        let back = Record::load(&host).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.kernel.as_deref(), Some("6.1.0-x"));
    }
}
