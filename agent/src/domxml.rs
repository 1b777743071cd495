//! The PCI host devices of a libvirt domain, read from its XML (what libvirt passes a
//! hook on stdin). Pure: text in, addresses out.
//!
//! ```xml
//! <hostdev mode='subsystem' type='pci' managed='no'>
//!   <source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>
//! </hostdev>
//! ```
//!
//! libvirt writes the numbers in hex with `0x`, but accepts (and a hand-written domain
//! may keep) decimal; `managed` defaults to `no`. Other hostdevs (USB, SCSI, mdev,
//! `mode='capabilities'`) are not PCI functions and are ignored. The `<address>` that
//! is a direct child of `<hostdev>` is the guest-side address and is not read.

use crate::pci::PciAddress;

/// One PCI hostdev of the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hostdev {
    /// The host's PCI address.
    pub address: PciAddress,
    /// `managed='yes'`: libvirt detaches it itself.
    pub managed: bool,
}

/// The domain's PCI hostdevs, in document order; an error names what is wrong.
pub(crate) fn pci_hostdevs(xml: &str) -> Result<Vec<Hostdev>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err(format!(
            "domain XML: the root element is <{}>, not <domain>",
            root.tag_name().name()
        ));
    }
    let mut out = Vec::new();
    for hd in root.descendants().filter(|n| {
        n.has_tag_name("hostdev")
            && n.parent_element()
                .is_some_and(|p| p.has_tag_name("devices"))
    }) {
        if hd.attribute("mode").unwrap_or("subsystem") != "subsystem"
            || hd.attribute("type") != Some("pci")
        {
            continue;
        }
        let managed = match hd.attribute("managed").unwrap_or("no") {
            "yes" | "on" => true,
            "no" | "off" => false,
            other => {
                return Err(format!(
                    "domain XML: hostdev managed='{other}' is neither yes nor no"
                ))
            }
        };
        let Some(addr) = hd
            .children()
            .find(|c| c.has_tag_name("source"))
            .and_then(|s| s.children().find(|c| c.has_tag_name("address")))
        else {
            return Err("domain XML: a PCI hostdev has no <source><address>".to_owned());
        };
        let field = |name: &str, max: u32| -> Result<u32, String> {
            let v = addr
                .attribute(name)
                .unwrap_or(if name == "domain" { "0" } else { "" });
            let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                Some(h) => u32::from_str_radix(h, 16),
                None => v.parse(),
            }
            .map_err(|_| format!("domain XML: hostdev address {name}='{v}' is not a number"))?;
            if n > max {
                return Err(format!(
                    "domain XML: hostdev address {name}='{v}' is out of range"
                ));
            }
            Ok(n)
        };
        let small = |n: u32| u8::try_from(n).unwrap_or(u8::MAX);
        out.push(Hostdev {
            address: PciAddress {
                domain: field("domain", u32::MAX)?,
                bus: small(field("bus", 0xff)?),
                device: small(field("slot", 0x1f)?),
                function: small(field("function", 7)?),
            },
            managed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(h: &[Hostdev]) -> Vec<(String, bool)> {
        h.iter()
            .map(|d| (d.address.to_string(), d.managed))
            .collect()
    }

    #[test]
    fn hex_and_decimal_addresses_and_every_managed_form() {
        let xml = r"<domain type='kvm'><name>win10</name><devices>
          <hostdev mode='subsystem' type='pci' managed='no'>
            <source><address domain='0x0000' bus='0x0a' slot='0x00' function='0x1'/></source>
            <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
          </hostdev>
          <hostdev mode='subsystem' type='pci' managed='yes'>
            <source><address domain='0' bus='10' slot='31' function='7'/></source>
          </hostdev>
          <hostdev mode='subsystem' type='pci'>
            <driver name='vfio'/>
            <source><address bus='0x01' slot='0x00' function='0x0'/></source>
          </hostdev>
        </devices></domain>";
        assert_eq!(
            addrs(&pci_hostdevs(xml).unwrap()),
            [
                ("0000:0a:00.1".to_owned(), false),
                ("0000:0a:1f.7".to_owned(), true),
                ("0000:01:00.0".to_owned(), false),
            ]
        );
    }

    #[test]
    fn non_pci_hostdevs_are_ignored() {
        let xml = r"<domain><devices>
          <hostdev mode='subsystem' type='usb' managed='yes'>
            <source><vendor id='0x046d'/><product id='0xc52b'/></source>
          </hostdev>
          <hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/>
            <address bus='0' target='0' unit='0'/></source></hostdev>
          <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
            <source><address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>
          <hostdev mode='capabilities' type='net'><source><interface>eth0</interface></source></hostdev>
          <interface type='hostdev'><source><address type='pci' domain='0' bus='3' slot='0' function='0'/></source></interface>
        </devices></domain>";
        assert_eq!(pci_hostdevs(xml).unwrap(), []);
    }

    #[test]
    fn bad_documents_are_named() {
        assert!(pci_hostdevs("<domain>")
            .unwrap_err()
            .starts_with("domain XML:"));
        assert!(pci_hostdevs("<network/>")
            .unwrap_err()
            .contains("not <domain>"));
        let e = pci_hostdevs(
            "<domain><devices><hostdev type='pci'><source><address bus='0x100' slot='0' function='0'/></source></hostdev></devices></domain>",
        )
        .unwrap_err();
        assert!(e.contains("bus='0x100'"), "{e}");
        let e = pci_hostdevs(
            "<domain><devices><hostdev type='pci' managed='maybe'><source><address bus='1' slot='0' function='0'/></source></hostdev></devices></domain>",
        )
        .unwrap_err();
        assert!(e.contains("managed='maybe'"), "{e}");
    }
}
