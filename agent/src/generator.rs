//! Initramfs generators: which one builds this system's images, found from what is
//! installed and configured under the root. `apply` rebuilds with it; `check` names it
//! in its advice (one detection, shared outside `cmd/`).

use crate::host::Host;

/// An initramfs generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    /// dracut (Fedora, RHEL, openSUSE, Gentoo, Void, Ubuntu 25.10+).
    Dracut,
    /// mkinitcpio (Arch and derivatives).
    Mkinitcpio,
    /// initramfs-tools (Debian, Ubuntu up to 25.04).
    #[value(name = "initramfs-tools")]
    InitramfsTools,
}

const BIN_DIRS: [&str; 4] = ["usr/bin", "usr/sbin", "bin", "sbin"];

impl Generator {
    /// Every generator, in the order they are tried.
    pub(crate) const ALL: [Self; 3] = [Self::Dracut, Self::Mkinitcpio, Self::InitramfsTools];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dracut => "dracut",
            Self::Mkinitcpio => "mkinitcpio",
            Self::InitramfsTools => "initramfs-tools",
        }
    }

    /// The command that rebuilds images.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Self::Dracut => "dracut",
            Self::Mkinitcpio => "mkinitcpio",
            Self::InitramfsTools => "update-initramfs",
        }
    }

    /// Files of the generator's own package (not configuration files, which outlive a
    /// removed package).
    fn library_files(self) -> &'static [&'static str] {
        match self {
            Self::Dracut => &[
                "usr/lib/dracut/dracut-functions.sh",
                "usr/share/dracut/dracut-functions.sh",
            ],
            Self::Mkinitcpio => &["usr/lib/initcpio/functions"],
            Self::InitramfsTools => &["usr/share/initramfs-tools/hook-functions"],
        }
    }

    /// Where the vfio-early integration must be for this generator (any one suffices
    /// in each inner list).
    pub(crate) fn integration(self) -> &'static [&'static [&'static str]] {
        match self {
            Self::Dracut => &[&["usr/lib/dracut/modules.d/90vfio-early/module-setup.sh"]],
            Self::Mkinitcpio => &[&[
                "usr/lib/initcpio/install/vfio-early",
                "etc/initcpio/install/vfio-early",
            ]],
            Self::InitramfsTools => &[
                &[
                    "usr/share/initramfs-tools/hooks/vfio-early",
                    "etc/initramfs-tools/hooks/vfio-early",
                ],
                &[
                    "usr/share/initramfs-tools/scripts/init-top/vfio-early",
                    "etc/initramfs-tools/scripts/init-top/vfio-early",
                ],
            ],
        }
    }

    /// Whether its configuration says it is in use: mkinitcpio presets,
    /// `/etc/initramfs-tools/initramfs.conf`, `/etc/dracut.conf` or a dracut drop-in.
    pub fn configured(self, host: &Host) -> bool {
        match self {
            Self::Dracut => {
                host.exists("etc/dracut.conf") || !host.list("etc/dracut.conf.d").is_empty()
            }
            Self::Mkinitcpio => host
                .list("etc/mkinitcpio.d")
                .iter()
                .any(|f| f.ends_with(".preset")),
            Self::InitramfsTools => host.exists("etc/initramfs-tools/initramfs.conf"),
        }
    }

    /// The generator's command, relative to the root, when installed.
    pub fn installed(self, host: &Host) -> Option<String> {
        let bin = BIN_DIRS
            .iter()
            .map(|d| format!("{d}/{}", self.program()))
            .find(|p| host.exists(p))?;
        self.library_files()
            .iter()
            .any(|f| host.exists(f))
            .then_some(bin)
    }
}

/// Why no generator could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// The one asked for is not installed.
    #[error("--generator {}: {} is not installed under {}", .0.name(), .0.program(), .1.display())]
    NotInstalled(Generator, std::path::PathBuf),
    /// None is installed.
    #[error(
        "no initramfs generator found (dracut, mkinitcpio or initramfs-tools); \
         without one the boot never runs vfio-early"
    )]
    NoneFound,
    /// Several are, and none stands out: `--generator` must say (a usage error).
    #[error(
        "several initramfs generators are installed ({}): say which one builds your images \
         with --generator",
        .0.iter().map(|g| g.name()).collect::<Vec<_>>().join(", ")
    )]
    Several(Vec<Generator>),
}

/// Picks the generator: the one asked for, the only one installed, or among several
/// installed the only one with its configuration in `/etc`.
///
/// # Errors
/// None installed, several (asking for `--generator`), or the one asked for is not
/// installed.
pub fn detect(host: &Host, wanted: Option<Generator>) -> Result<(Generator, String), DetectError> {
    if let Some(g) = wanted {
        return g
            .installed(host)
            .map(|p| (g, p))
            .ok_or_else(|| DetectError::NotInstalled(g, host.root().to_path_buf()));
    }
    let found: Vec<(Generator, String)> = Generator::ALL
        .iter()
        .filter_map(|g| g.installed(host).map(|p| (*g, p)))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(DetectError::NoneFound),
        many => {
            // Several packages: the one whose configuration is there builds the images.
            let configured: Vec<&(Generator, String)> =
                many.iter().filter(|(g, _)| g.configured(host)).collect();
            if let [one] = configured.as_slice() {
                return Ok((*one).clone());
            }
            Err(DetectError::Several(many.iter().map(|(g, _)| *g).collect()))
        }
    }
}
