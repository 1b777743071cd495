//! SR-IOV virtual functions made at boot (`[[sriov]]`), before the plan.
//!
//! The kernel makes a physical function's (PF) virtual functions (VFs) when its
//! `sriov_numvfs` is written, and refuses that while the PF has no driver: the PF's
//! driver is loaded first, the module the kernel's alias table gives for its
//! `modalias` (`vfio-early initramfs` puts that module in the image). Before the count,
//! `sriov_drivers_autoprobe` is written 0: the new VFs then get no driver when they
//! appear, so a host VF driver (`igbvf`, `iavf`, `ixgbevf`) cannot take the ones the
//! config hands to vfio-pci before their `driver_override` is set. The VFs are then
//! ordinary devices for the planner (by address, or `vf = [...]` under their PF's
//! address), under every rule it has.
//!
//! Once the binder is done, [`restore`] gives `sriov_drivers_autoprobe` its old value
//! back and offers every VF still without a driver to the drivers (`drivers_probe`), as
//! the kernel would have when it made them; udev's coldplug loads their driver later
//! in the boot, as for any device.
//!
//! A PF that has VFs already keeps them: a different non-zero count is reported, never
//! changed (the kernel only changes a count through 0, which removes every VF under
//! whatever uses them). Every write is bounded and read back.

use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::cmdline::Cmdline;
use crate::config::SriovEntry;
use crate::host::Host;
use crate::modules;
use crate::pci::{Device, Sriov};
use crate::plan::Topology;
use crate::record::{SriovOutcome, SriovRecord};
#[cfg(feature = "tools")]
use crate::report::{Finding, Status};

/// What to do with one `[[sriov]]` entry, given its PF as the kernel shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make the VFs (`sriov_numvfs` is 0 now).
    Make,
    /// The PF has the count asked for already: nothing to do.
    Already,
    /// The PF has another non-zero count: kept, and reported.
    Keep(u16),
}

/// Decides one entry (pure).
///
/// # Errors
/// Why the entry cannot be carried out: no device there, not a PF, too many VFs asked.
pub fn decide(entry: &SriovEntry, pf: Option<&Device>) -> Result<Step, String> {
    let a = entry.address;
    let Some(pf) = pf else {
        return Err(format!("no device at {a}"));
    };
    if let Some(id) = entry.id {
        if !id.matches(pf) {
            return Err(format!(
                "the device at {a} is {}, not {id}; refusing rather than guessing",
                pf.id()
            ));
        }
    }
    match &pf.sriov {
        Some(Sriov::Pf {
            totalvfs, numvfs, ..
        }) => {
            if entry.vfs > *totalvfs {
                Err(format!(
                    "{a} can make at most {totalvfs} VFs (sriov_totalvfs), not {}",
                    entry.vfs
                ))
            } else if *numvfs == entry.vfs {
                Ok(Step::Already)
            } else if *numvfs != 0 {
                Ok(Step::Keep(*numvfs))
            } else {
                Ok(Step::Make)
            }
        }
        Some(Sriov::Vf { pf, index }) => Err(format!(
            "{a} is VF {index} of {pf}, not a physical function; name the PF"
        )),
        None => Err(format!(
            "{a} is not an SR-IOV physical function (no sriov_totalvfs)"
        )),
    }
}

/// The VFs of `pf`, by index.
fn vfs_in(pf: &Device) -> Vec<crate::pci::PciAddress> {
    match &pf.sriov {
        Some(Sriov::Pf { vfs, .. }) => vfs.clone(),
        _ => Vec::new(),
    }
}

/// Carries out the `[[sriov]]` entries on the host (`dry_run`: decides only). Returns
/// what happened to each; the caller reads the topology again when any VF was made.
pub(crate) fn make(
    host: &Host,
    cmdline: &Cmdline,
    entries: &[SriovEntry],
    topo: &Topology,
    timeout: Duration,
    dry_run: bool,
) -> Vec<SriovRecord> {
    entries
        .iter()
        .map(|e| {
            let pf = topo.devices.iter().find(|d| d.address == e.address);
            let mut r = SriovRecord {
                address: e.address,
                requested: e.vfs,
                numvfs: None,
                outcome: SriovOutcome::Refused,
                pf_driver: pf.and_then(|d| d.driver.clone()),
                loaded: None,
                autoprobe_was: None,
                vfs: Vec::new(),
                error: None,
            };
            if let Some(Sriov::Pf {
                numvfs,
                drivers_autoprobe,
                ..
            }) = pf.and_then(|d| d.sriov.as_ref())
            {
                r.numvfs = Some(*numvfs);
                r.autoprobe_was = *drivers_autoprobe;
            }
            match (decide(e, pf), pf) {
                (Err(why), _) => {
                    warn!("[[sriov]] line {}: {why}; no VF made", e.line);
                    r.outcome = SriovOutcome::Refused;
                    r.error = Some(why);
                }
                (Ok(Step::Already), Some(pf)) => {
                    info!("{}: {} VFs there already", e.address, e.vfs);
                    r.outcome = SriovOutcome::Already;
                    r.vfs = vfs_in(pf);
                }
                (Ok(Step::Keep(n)), Some(pf)) => {
                    let why = format!(
                        "{} has {n} VFs already, the config asks for {}: kept (the agent never changes a count; write 0, then {}, to its sriov_numvfs to change it)",
                        e.address, e.vfs, e.vfs
                    );
                    warn!("{why}");
                    r.outcome = SriovOutcome::Kept;
                    r.error = Some(why);
                    r.vfs = vfs_in(pf);
                }
                (Ok(Step::Make), Some(_)) if dry_run => r.outcome = SriovOutcome::ToMake,
                (Ok(Step::Make), Some(pf)) => match make_one(host, cmdline, e, pf, topo, timeout, &mut r)
                {
                    Ok(()) => r.outcome = SriovOutcome::Made,
                    Err(why) => {
                        error!("{}: {why}; no VF made", e.address);
                        r.outcome = SriovOutcome::Failed;
                        r.error = Some(why);
                    }
                },
                (Ok(_), None) => unreachable_none(&mut r),
            }
            r
        })
        .collect()
}

/// `decide` answers an error without a device, so this is never reached; recorded as a
/// failure rather than a panic at boot.
fn unreachable_none(r: &mut SriovRecord) {
    r.outcome = SriovOutcome::Failed;
    r.error = Some("no device".to_owned());
}

/// Waits, within `bound`, until `cond` holds.
fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn make_one(
    host: &Host,
    cmdline: &Cmdline,
    e: &SriovEntry,
    pf: &Device,
    topo: &Topology,
    timeout: Duration,
    r: &mut SriovRecord,
) -> Result<(), String> {
    let a = e.address;
    // The kernel refuses sriov_numvfs on a PF without a driver.
    if pf.driver.is_none() {
        let Some(module) = topo.claimants.get(&a) else {
            return Err(format!(
                "it has no driver, and no module of this kernel claims it (its modalias {}); the kernel makes VFs only with the PF's driver bound",
                pf.modalias.as_deref().unwrap_or("is unknown")
            ));
        };
        modules::load_module(host, cmdline, module, timeout.saturating_mul(3))
            .map_err(|x| format!("loading its driver {module}: {x}"))?;
        r.loaded = Some(module.clone());
        if !wait_until(timeout, || host.exists(a.attr("driver"))) {
            return Err(format!(
                "{module} was loaded, but no driver took it within {} ms",
                timeout.as_millis()
            ));
        }
        r.pf_driver = host.link_name(a.attr("driver"));
    }
    let autoprobe = a.attr("sriov_drivers_autoprobe");
    if r.autoprobe_was == Some(true) {
        host.write_bounded(&autoprobe, "0", timeout)
            .map_err(|x| x.to_string())?;
    }
    let put_back = |host: &Host| {
        if r.autoprobe_was == Some(true) {
            if let Err(x) = host.write_bounded(&autoprobe, "1", timeout) {
                error!("{a}: sriov_drivers_autoprobe could not be put back to 1: {x}");
            }
        }
    };
    // Making VFs adds devices (config space, BARs, sysfs): bounded like a module load.
    if let Err(x) = host.write_bounded(
        a.attr("sriov_numvfs"),
        &e.vfs.to_string(),
        timeout.saturating_mul(3),
    ) {
        put_back(host);
        return Err(x.to_string());
    }
    let got = host
        .read_attr(a.attr("sriov_numvfs"))
        .and_then(|v| v.trim().parse::<u16>().ok());
    r.numvfs = got;
    if got != Some(e.vfs) {
        put_back(host);
        return Err(format!(
            "sriov_numvfs reads back {} after writing {}",
            got.map_or_else(|| "nothing".to_owned(), |n| n.to_string()),
            e.vfs
        ));
    }
    r.vfs = (0..e.vfs)
        .map_while(|i| host.link_name(a.attr(&format!("virtfn{i}")))?.parse().ok())
        .collect();
    info!(
        "{a}: made {} VFs (sriov_numvfs read back {}{}): {}",
        e.vfs,
        e.vfs,
        r.loaded
            .as_deref()
            .map(|m| format!(", PF driver {m} loaded"))
            .unwrap_or_default(),
        r.vfs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// After the bind: `sriov_drivers_autoprobe` back to what it was, and every VF the
/// agent made that still has no driver (not selected, or refused) offered to the
/// drivers, as the kernel would have when it made it.
pub(crate) fn restore(host: &Host, made: &[SriovRecord], timeout: Duration) {
    for r in made.iter().filter(|r| r.outcome == SriovOutcome::Made) {
        let a = r.address;
        if r.autoprobe_was != Some(true) {
            continue;
        }
        if let Err(e) = host.write_bounded(a.attr("sriov_drivers_autoprobe"), "1", timeout) {
            error!("{a}: sriov_drivers_autoprobe could not be put back to 1: {e}");
            continue;
        }
        let mut probed = 0;
        for v in &r.vfs {
            if host.exists(v.attr("driver")) {
                continue;
            }
            // drivers_probe never reports whether a driver took it; a VF whose driver
            // is not loaded yet gets it from udev's coldplug.
            match host.write_bounded("sys/bus/pci/drivers_probe", &v.to_string(), timeout) {
                Ok(()) => probed += 1,
                Err(e) => warn!("{v}: offering it to its driver: {e}"),
            }
        }
        info!("{a}: sriov_drivers_autoprobe back to 1; {probed} VFs offered to their drivers");
    }
}

/// What `check` says of each `[[sriov]]` entry: the PF's VF count against the
/// config, each VF with its driver, and what the boot did (from its record).
#[cfg(feature = "tools")]
pub fn findings(
    entries: &[SriovEntry],
    devices: &[Device],
    record: &[SriovRecord],
) -> Vec<Finding> {
    entries
        .iter()
        .map(|e| {
            let check = format!("sriov {}", e.address);
            let pf = devices.iter().find(|d| d.address == e.address);
            let boot = record.iter().find(|r| r.address == e.address);
            let at_boot = boot.map_or_else(
                || "no boot record".to_owned(),
                |r| match r.outcome {
                    SriovOutcome::Made => format!(
                        "made at boot{}",
                        r.loaded
                            .as_deref()
                            .map(|m| format!(" after loading {m}"))
                            .unwrap_or_default()
                    ),
                    SriovOutcome::Already => "there before the agent ran".to_owned(),
                    o => format!(
                        "at boot: {}{}",
                        o.as_str(),
                        r.error.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
                    ),
                },
            );
            let (numvfs, totalvfs, autoprobe, vfs) = match pf.map(|d| (&d.sriov, d)) {
                None => {
                    return Finding::new(check, Status::Fail, format!("no device at {}", e.address))
                }
                Some((Some(Sriov::Pf { numvfs, totalvfs, drivers_autoprobe, vfs }), _)) => {
                    (*numvfs, *totalvfs, *drivers_autoprobe, vfs)
                }
                Some(_) => {
                    return Finding::new(
                        check,
                        Status::Fail,
                        format!("{} is not an SR-IOV physical function", e.address),
                    )
                }
            };
            let list: Vec<String> = vfs
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let drv = devices
                        .iter()
                        .find(|d| d.address == *a)
                        .and_then(|d| d.driver.as_deref())
                        .unwrap_or("no driver");
                    format!("VF {i} {a} on {drv}")
                })
                .collect();
            let pf_driver = pf.and_then(|d| d.driver.as_deref()).unwrap_or("no driver");
            let detail = format!(
                "PF on {pf_driver}, {numvfs} of {totalvfs} VFs (config: {}), {at_boot}{}{}",
                e.vfs,
                if list.is_empty() { "" } else { ": " },
                list.join(", ")
            );
            if autoprobe == Some(false) && boot.is_some_and(|r| r.autoprobe_was == Some(true)) {
                return Finding::new(check, Status::Warn, format!("{detail}; sriov_drivers_autoprobe was left 0"))
                    .hint("the boot did not finish: write 1 to its sriov_drivers_autoprobe");
            }
            match numvfs {
                n if n == e.vfs => Finding::new(check, Status::Pass, detail),
                0 => Finding::new(check, Status::Fail, detail)
                    .hint("the boot log (dmesg | grep vfio-early) says why no VF was made"),
                _ => Finding::new(check, Status::Warn, detail).hint(format!(
                    "another count was there at boot and was kept; write 0, then {}, to its sriov_numvfs",
                    e.vfs
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciAddress;

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn pf(totalvfs: u16, numvfs: u16) -> Device {
        Device {
            sriov: Some(Sriov::Pf {
                totalvfs,
                numvfs,
                drivers_autoprobe: Some(true),
                vfs: Vec::new(),
            }),
            ..Device::new(
                addr("0000:01:00.0"),
                (0x8086, 0x10c9),
                0x020000,
                Some(3),
                Some("igb"),
            )
        }
    }

    fn entry(vfs: u16) -> SriovEntry {
        SriovEntry {
            line: 1,
            address: addr("0000:01:00.0"),
            vfs,
            id: None,
        }
    }

    #[test]
    fn a_zero_count_is_made_an_equal_one_is_left_another_is_kept() {
        assert_eq!(decide(&entry(2), Some(&pf(7, 0))), Ok(Step::Make));
        assert_eq!(decide(&entry(2), Some(&pf(7, 2))), Ok(Step::Already));
        assert_eq!(decide(&entry(2), Some(&pf(7, 4))), Ok(Step::Keep(4)));
    }

    #[test]
    fn refusals_say_why() {
        let e = decide(&entry(8), Some(&pf(7, 0))).unwrap_err();
        assert!(e.contains("at most 7 VFs"), "{e}");
        let e = decide(&entry(1), None).unwrap_err();
        assert!(e.contains("no device at 0000:01:00.0"), "{e}");
        let plain = Device::new(
            addr("0000:01:00.0"),
            (0x8086, 0x10d3),
            0x020000,
            Some(3),
            None,
        );
        let e = decide(&entry(1), Some(&plain)).unwrap_err();
        assert!(e.contains("not an SR-IOV physical function"), "{e}");
        let vf = Device {
            sriov: Some(Sriov::Vf {
                pf: addr("0000:01:00.0"),
                index: 1,
            }),
            ..plain.clone()
        };
        let e = decide(&entry(1), Some(&vf)).unwrap_err();
        assert!(e.contains("is VF 1 of 0000:01:00.0"), "{e}");
        let wrong_id = SriovEntry {
            id: Some("8086:1521".parse().unwrap()),
            ..entry(1)
        };
        let e = decide(&wrong_id, Some(&pf(7, 0))).unwrap_err();
        assert!(e.contains("is 8086:10c9, not 8086:1521"), "{e}");
    }
}
