//! The firmware's word on which IOMMU a machine has: the ACPI table that describes
//! it (`DMAR` for Intel VT-d, `IVRS` for AMD-Vi, `IORT` for an Arm SMMU). A value the
//! evidence ([`crate::iommu`]) and the command-line judge ([`crate::cmdline_check`])
//! both speak of, so it lives below both.

use std::fmt;

/// The ACPI tables directory, relative to the host root.
pub(crate) const ACPI_TABLES: &str = "sys/firmware/acpi/tables";

/// An IOMMU family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Intel VT-d (ACPI `DMAR`).
    Intel,
    /// AMD-Vi (ACPI `IVRS`).
    Amd,
    /// Arm SMMU (ACPI `IORT`).
    Arm,
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Intel => "Intel VT-d",
            Self::Amd => "AMD-Vi",
            Self::Arm => "Arm SMMU",
        })
    }
}

impl Vendor {
    /// The ACPI table that describes this IOMMU.
    pub(crate) fn acpi_table(self) -> &'static str {
        match self {
            Self::Intel => "DMAR",
            Self::Amd => "IVRS",
            Self::Arm => "IORT",
        }
    }
}
