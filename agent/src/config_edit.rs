//! Merging a proposed `[[device]]` entry into an existing config file, in place: the
//! user's comments, other devices, `[[hugepages]]`, `[memory]` and `[bind]` stay as they
//! were, byte for byte. Pure (text in, text out); `config suggest --write` does the I/O.
//!
//! The proposal replaces the entry that names a function of the same slot (the same
//! card) by address, or is appended after the last `[[device]]` when none does.

use std::str::FromStr;

use toml_edit::{DocumentMut, Item, Table};

use crate::pci::PciAddress;

/// What a merge did to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new `[[device]]` entry for the card, after the existing ones.
    Added,
    /// The entry that named the same card was updated (its other keys and comments kept).
    Updated,
    /// The file already named the card exactly so: nothing to write.
    Unchanged,
}

/// The merged file and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merged {
    /// The whole new file.
    pub text: String,
    /// What the merge did.
    pub change: Change,
    /// The address of the proposal's entry.
    pub address: PciAddress,
}

/// Why the files could not be merged (nothing is written then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MergeError {
    /// The existing file is not TOML.
    #[error("the existing file is not valid TOML, so it cannot be merged into: {0}")]
    Existing(String),
    /// The existing file's `device` is not a list of `[[device]]` tables.
    #[error("the existing file's `device` is not a list of [[device]] tables, so it cannot be merged into")]
    NotTables,
    /// The proposal is not one `[[device]]` entry with an address (a bug).
    #[error("the proposal is not one [[device]] entry with an address")]
    Proposal,
}

/// The keys the proposal sets; an updated entry gets exactly these from it.
const KEYS: [&str; 3] = ["address", "id", "functions"];

/// Merges the first `[[device]]` entry of `proposal` into `existing`.
///
/// # Errors
/// [`MergeError`] when `existing` is not TOML or its `device` is not a list of tables.
pub(crate) fn merge(existing: &str, proposal: &str) -> Result<Merged, MergeError> {
    let prop: DocumentMut = proposal.parse().map_err(|_| MergeError::Proposal)?;
    let mut entry = prop
        .get("device")
        .and_then(Item::as_array_of_tables)
        .and_then(|a| a.get(0))
        .cloned()
        .ok_or(MergeError::Proposal)?;
    let address = address_of(&entry).ok_or(MergeError::Proposal)?;

    let mut doc: DocumentMut = existing
        .parse()
        .map_err(|e: toml_edit::TomlError| MergeError::Existing(e.message().to_owned()))?;
    let Some(item) = doc.get_mut("device") else {
        // No entry yet: the proposal's table goes after everything else, including
        // the comments after the last table (all of the commented example).
        let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
        entry
            .decor_mut()
            .set_prefix(if trailing.is_empty() && !existing.trim().is_empty() {
                "\n".to_owned()
            } else {
                format!("{trailing}{}", separator(&trailing))
            });
        doc.set_trailing("");
        entry.set_position(usize::MAX);
        let mut list = toml_edit::ArrayOfTables::new();
        list.push(entry);
        doc.insert("device", Item::ArrayOfTables(list));
        return Ok(Merged {
            text: doc.to_string(),
            change: Change::Added,
            address,
        });
    };
    let list = item.as_array_of_tables_mut().ok_or(MergeError::NotTables)?;
    let same = list
        .iter_mut()
        .find(|t| address_of(t).is_some_and(|a| a.same_slot(&address)));
    if let Some(same) = same {
        let before = same.to_string();
        for key in KEYS {
            match entry.get(key).and_then(Item::as_value) {
                Some(v) => match same.get_mut(key).and_then(Item::as_value_mut) {
                    // The value only: the key's comments and its place stay.
                    Some(old) => {
                        let decor = old.decor().clone();
                        *old = v.clone();
                        *old.decor_mut() = decor;
                    }
                    None => {
                        same.insert(key, toml_edit::value(v.clone()));
                    }
                },
                None => {
                    same.remove(key);
                }
            }
        }
        let change = if same.to_string() == before {
            Change::Unchanged
        } else {
            Change::Updated
        };
        return Ok(Merged {
            text: doc.to_string(),
            change,
            address,
        });
    }
    // After the last existing entry, whatever follows it in the file.
    let last = list.iter().filter_map(Table::position).max();
    entry.decor_mut().set_prefix("\n");
    entry.set_position(last.unwrap_or(0));
    list.push(entry);
    Ok(Merged {
        text: doc.to_string(),
        change: Change::Added,
        address,
    })
}

/// An entry's `address`, when it has a valid one.
fn address_of(t: &Table) -> Option<PciAddress> {
    t.get("address")
        .and_then(Item::as_str)
        .and_then(|s| PciAddress::from_str(s).ok())
}

/// A blank line before an appended table, unless the file ends in one already.
fn separator(existing: &str) -> &'static str {
    if existing.is_empty() || existing.ends_with("\n\n") {
        ""
    } else if existing.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PROPOSAL: &str = "# /etc/vfio-early.toml, proposed for the card at 0000:01:00.0.\n\
        # Recovery: vfio_early=off.\n\
        \n\
        [[device]]\n\
        # 0000:01:00.0 VGA compatible controller [1002:6779]\n\
        # 0000:01:00.1 Audio device [1002:aa98]\n\
        address = \"0000:01:00.0\"\n\
        id = \"1002:6779\"\n\
        functions = \"slot\"\n";

    const EXISTING: &str = "# My config.\n\
        \n\
        # The NIC for the router VM.\n\
        [[device]]\n\
        address = \"0000:03:00.0\" # the Intel one\n\
        \n\
        # Hugepages for the VM.\n\
        [[hugepages]]\n\
        size = \"1G\"\n\
        count = 4\n\
        \n\
        [memory]\n\
        floor = \"2G\"\n";

    #[test]
    fn adds_a_card_keeping_every_other_line() {
        let m = merge(EXISTING, PROPOSAL).unwrap();
        assert_eq!(m.change, Change::Added);
        assert_eq!(m.address.to_string(), "0000:01:00.0");
        // Everything the user wrote is still there, in order.
        let mut rest = m.text.as_str();
        for line in EXISTING.lines().filter(|l| !l.is_empty()) {
            let at = rest
                .find(line)
                .unwrap_or_else(|| panic!("lost {line:?}:\n{}", m.text));
            rest = &rest[at + line.len()..];
            if line.contains("the Intel one") {
                // The new entry follows the last [[device]], with its comments.
                let new = rest.find("[[device]]\n# 0000:01:00.0 VGA").unwrap();
                assert!(new < rest.find("[[hugepages]]").unwrap(), "{}", m.text);
            }
        }
        assert!(m
            .text
            .contains("address = \"0000:01:00.0\"\nid = \"1002:6779\"\nfunctions = \"slot\"\n"));
        assert!(
            !m.text.contains("proposed for the card"),
            "no second file header"
        );
        let parsed: toml::Value = toml::from_str(&m.text).unwrap();
        assert_eq!(parsed["device"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["hugepages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn updates_the_entry_of_the_same_card() {
        let existing = "[[device]]\n\
            # my GPU\n\
            address = \"0000:01:00.1\" # audio function named\n\
            allow_boot_vga = true\n\
            \n\
            [[device]]\n\
            address = \"0000:03:00.0\"\n";
        let m = merge(existing, PROPOSAL).unwrap();
        assert_eq!(m.change, Change::Updated);
        assert_eq!(
            m.text,
            "[[device]]\n\
             # my GPU\n\
             address = \"0000:01:00.0\" # audio function named\n\
             allow_boot_vga = true\n\
             id = \"1002:6779\"\n\
             functions = \"slot\"\n\
             \n\
             [[device]]\n\
             address = \"0000:03:00.0\"\n"
        );
        let again = merge(&m.text, PROPOSAL).unwrap();
        assert_eq!(again.change, Change::Unchanged);
        assert_eq!(again.text, m.text);
    }

    #[test]
    fn the_commented_example_gets_the_whole_entry() {
        let example = "# [[device]]\n# address = \"0000:01:00.0\"\n";
        let m = merge(example, PROPOSAL).unwrap();
        assert_eq!(m.change, Change::Added);
        assert!(m.text.starts_with(example), "{}", m.text);
        assert!(m.text.ends_with(
            "\n[[device]]\n# 0000:01:00.0 VGA compatible controller [1002:6779]\n# 0000:01:00.1 Audio device [1002:aa98]\naddress = \"0000:01:00.0\"\nid = \"1002:6779\"\nfunctions = \"slot\"\n"
        ), "{}", m.text);
        assert_eq!(merge("", PROPOSAL).unwrap().change, Change::Added);
        let m = merge("[memory]\nfloor = \"2G\"\n", PROPOSAL).unwrap();
        assert!(
            m.text
                .starts_with("[memory]\nfloor = \"2G\"\n\n[[device]]\n"),
            "{}",
            m.text
        );
    }

    #[test]
    fn files_that_cannot_be_merged_are_left_alone() {
        assert!(matches!(
            merge("[[device]\n", PROPOSAL),
            Err(MergeError::Existing(_))
        ));
        assert_eq!(
            merge("device = [{ address = \"0000:01:00.0\" }]\n", PROPOSAL),
            Err(MergeError::NotTables)
        );
        assert_eq!(merge(EXISTING, "x = 1\n"), Err(MergeError::Proposal));
    }
}
