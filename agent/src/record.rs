//! The record of a boot run, left in `/run/vfio-early/record.json` for `check`.
//!
//! `/run` survives the switch from the initramfs to the real root, so after boot the
//! record tells what the agent saw and did, and with which config. The format is
//! versioned; readers ignore fields they do not know.

use serde::{Deserialize, Serialize};

use crate::host::{Host, HostResult};
use crate::pci::PciAddress;
pub use crate::plan::Action;

/// Where the record lives, relative to the host root.
pub const PATH: &str = "run/vfio-early/record.json";
/// The full log of the run (the kernel log gets a summary when over budget).
pub(crate) const LOG_PATH: &str = "run/vfio-early/log";
/// The largest record [`Record::load`] reads (a record is a few KiB; the config text
/// in it is at most 256 KiB).
pub const MAX_SIZE: u64 = 4 << 20;
/// Format version.
pub(crate) const VERSION: u32 = 1;

/// What the run did to one device, as the record spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceOutcome {
    /// Planned for binding, not attempted (yet).
    #[default]
    #[serde(rename = "")]
    Pending,
    /// Now on vfio-pci.
    Bound,
    /// Its group failed and was put back as it was found.
    RolledBack,
    /// The attempt failed before anything changed (vfio-pci not available).
    Failed,
    /// The planner refused it.
    Refused,
    /// Not selected, and nothing to do.
    Skipped,
    /// Already on vfio-pci when the run started.
    AlreadyBound,
}

impl DeviceOutcome {
    /// The record's spelling (empty for [`DeviceOutcome::Pending`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "",
            Self::Bound => "bound",
            Self::RolledBack => "rolled-back",
            Self::Failed => "failed",
            Self::Refused => "refused",
            Self::Skipped => "skipped",
            Self::AlreadyBound => "already-bound",
        }
    }

    /// What a planned action comes to before anything is attempted.
    pub fn planned(action: Action) -> Self {
        match action {
            Action::Bind => Self::Pending,
            Action::Refuse => Self::Refused,
            Action::Skip => Self::Skipped,
            Action::AlreadyBound => Self::AlreadyBound,
        }
    }
}

impl std::fmt::Display for DeviceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// PCI address.
    pub address: PciAddress,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// The planned action.
    pub action: Action,
    /// The plan's reasons.
    pub reasons: Vec<String>,
    /// The driver before the agent acted.
    pub driver_before: Option<String>,
    /// The driver after (read back from the `driver` link).
    pub driver_after: Option<String>,
    /// What came of it.
    pub outcome: DeviceOutcome,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

impl DeviceRecord {
    /// The record of a device as planned, before anything is attempted.
    pub fn planned(address: PciAddress, action: Action) -> Self {
        Self {
            address,
            iommu_group: None,
            action,
            reasons: Vec::new(),
            driver_before: None,
            driver_after: None,
            outcome: DeviceOutcome::planned(action),
            error: None,
        }
    }
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

/// The bind plan's JSON document (`bind --dry-run --json`, documented in README), which
/// `detach --json` extends.
#[derive(Debug, Serialize)]
pub(crate) struct PlanDoc<'a> {
    /// Format version.
    pub version: u32,
    /// The config file.
    pub config: String,
    /// The kill-switch parameter, when it stopped the run.
    pub disabled_by: Option<String>,
    /// The config error, if the config could not be used.
    pub config_error: Option<String>,
    /// One line on the IOMMU.
    pub iommu: Option<String>,
    /// The plan, per device.
    pub devices: &'a [crate::plan::DevicePlan],
    /// The hugepage reservations planned.
    pub hugepages: &'a [HugepageRecord],
    /// The `[[sriov]]` entries, as a dry run sees them (left out when none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub sriov: &'a [SriovRecord],
    /// Problems that concern no single device.
    pub warnings: &'a [String],
}

/// What became of one `[[sriov]]` entry (JSON: the kebab-case name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SriovOutcome {
    /// The agent made the VFs.
    Made,
    /// The PF had the count asked for already.
    Already,
    /// The PF had another non-zero count: kept.
    Kept,
    /// The entry cannot be carried out (no such PF, too many VFs).
    #[default]
    Refused,
    /// A write or the PF's driver failed; autoprobe was put back.
    Failed,
    /// A dry run: the VFs would be made.
    ToMake,
}

impl SriovOutcome {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Made => "made",
            Self::Already => "already",
            Self::Kept => "kept",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::ToMake => "to-make",
        }
    }
}

/// What the agent did with one `[[sriov]]` entry (VFs made at boot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SriovRecord {
    /// The physical function.
    pub address: PciAddress,
    /// VFs the config asks for.
    pub requested: u16,
    /// `sriov_numvfs` read back after the agent acted (or as found).
    pub numvfs: Option<u16>,
    /// What became of it.
    pub outcome: SriovOutcome,
    /// The PF's driver once the VFs were made, and the module loaded for it.
    pub pf_driver: Option<String>,
    /// The module the agent loaded for the PF, when it had no driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<String>,
    /// `sriov_drivers_autoprobe` as found (restored after the bind).
    pub autoprobe_was: Option<bool>,
    /// The VFs, by index.
    pub vfs: Vec<PciAddress>,
    /// What went wrong, or why the count was kept.
    pub error: Option<String>,
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
    /// SR-IOV PFs whose VFs the config makes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sriov: Vec<SriovRecord>,
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
            outcome: DeviceOutcome::Bound,
            ..DeviceRecord::planned("0000:01:00.0".parse().unwrap(), Action::Bind)
        });
        r.save(&host).unwrap();
        assert!(dir.path().join(PATH).is_file());
        let back = Record::load(&host).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.kernel.as_deref(), Some("6.1.0-x"));
    }

    #[test]
    fn every_spelling_round_trips() {
        for (a, text) in [
            (Action::Bind, "bind"),
            (Action::AlreadyBound, "already-bound"),
            (Action::Skip, "skip"),
            (Action::Refuse, "refuse"),
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("{text:?}"));
            assert_eq!(
                serde_json::from_str::<Action>(&format!("{text:?}")).unwrap(),
                a
            );
            assert_eq!(a.as_str(), text);
        }
        for o in [
            DeviceOutcome::Pending,
            DeviceOutcome::Bound,
            DeviceOutcome::RolledBack,
            DeviceOutcome::Failed,
            DeviceOutcome::Refused,
            DeviceOutcome::Skipped,
            DeviceOutcome::AlreadyBound,
        ] {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("{:?}", o.as_str()));
            assert_eq!(serde_json::from_str::<DeviceOutcome>(&json).unwrap(), o);
        }
        assert!(serde_json::from_str::<DeviceOutcome>("\"bounded\"").is_err());
        // `check` words an SR-IOV outcome with as_str: it must be the JSON's spelling.
        for o in [
            SriovOutcome::Made,
            SriovOutcome::Already,
            SriovOutcome::Kept,
            SriovOutcome::Refused,
            SriovOutcome::Failed,
            SriovOutcome::ToMake,
        ] {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("{:?}", o.as_str()));
            assert_eq!(serde_json::from_str::<SriovOutcome>(&json).unwrap(), o);
        }
    }

    /// Records the string-typed agent wrote (the captured boots' and one with every
    /// spelling) parse, and serialise back to the same bytes.
    #[test]
    fn old_records_parse_and_write_back_byte_for_byte() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let mut texts: Vec<String> = ["check-uefi-intel-bound", "check-uefi-none-refused"]
            .iter()
            .map(|n| std::fs::read_to_string(fixtures.join(n).join(PATH)).unwrap())
            .collect();
        let device = |addr: &str, action: &str, outcome: &str| {
            format!(
                r#"    {{
      "address": "{addr}",
      "iommu_group": 3,
      "action": "{action}",
      "reasons": [],
      "driver_before": "radeon",
      "driver_after": null,
      "outcome": "{outcome}",
      "error": null
    }}"#
            )
        };
        let devices = [
            device("0000:01:00.0", "bind", "rolled-back"),
            device("0000:01:00.1", "bind", "failed"),
            device("0000:01:00.2", "bind", ""),
            device("0000:02:00.0", "skip", "skipped"),
            device("0000:03:00.0", "refuse", "refused"),
            device("0000:04:00.0", "already-bound", "already-bound"),
            device("0000:04:00.1", "bind", "bound"),
        ];
        texts.push(format!(
            "{{\n  \"version\": 1,\n  \"agent_version\": \"0.1.0\",\n  \"kernel\": null,\n  \
             \"uptime_s\": null,\n  \"config_path\": \"/etc/vfio-early.toml\",\n  \
             \"config_text\": null,\n  \"config_error\": null,\n  \"disabled_by\": null,\n  \
             \"vfio_pci\": null,\n  \"iommu_verdict\": null,\n  \"devices\": [\n{}\n  ],\n  \
             \"hugepages\": [],\n  \"warnings\": [],\n  \"errors\": []\n}}",
            devices.join(",\n")
        ));
        for text in &texts {
            let r: Record = serde_json::from_str(text).unwrap();
            assert!(!r.devices.is_empty());
            assert_eq!(serde_json::to_string_pretty(&r).unwrap(), text.trim_end());
        }
        let r: Record = serde_json::from_str(&texts[2]).unwrap();
        let outcomes: Vec<DeviceOutcome> = r.devices.iter().map(|d| d.outcome).collect();
        assert_eq!(
            outcomes,
            [
                DeviceOutcome::RolledBack,
                DeviceOutcome::Failed,
                DeviceOutcome::Pending,
                DeviceOutcome::Skipped,
                DeviceOutcome::Refused,
                DeviceOutcome::AlreadyBound,
                DeviceOutcome::Bound
            ]
        );
    }
}
