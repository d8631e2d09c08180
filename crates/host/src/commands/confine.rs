//! Read-only confinement of `reads` commands with Landlock: the program
//! and everything it starts may read and run anything, but create, write,
//! truncate, remove, rename or link nothing (apart from writing to
//! `/dev/null`). The ruleset is built once in mend and applied between fork
//! and exec.

use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use landlock::{
    ABI, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr,
};

/// The write rights a read command loses: every one that changes the
/// filesystem (ABI 1's writes, `refer` from ABI 2, `truncate` from ABI 3).
/// Device ioctls and connecting to UNIX sockets (`psql` to its server,
/// `systemctl` to systemd) are left alone: they are how reads ask.
fn denied() -> landlock::BitFlags<AccessFs> {
    AccessFs::from_write(ABI::V3)
}

/// Whether reads can be confined here, and if not, why (said once in a plan).
pub enum Support {
    Enforced,
    Missing(String),
}

/// `MEND_LANDLOCK=off` makes mend behave as on a kernel without Landlock,
/// so what a plan says there can be seen (and tested) here.
fn switched_off() -> bool {
    std::env::var("MEND_LANDLOCK").is_ok_and(|v| v == "off")
}

/// What this kernel offers.
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        if switched_off() {
            return Support::Missing("MEND_LANDLOCK=off".to_string());
        }
        // The kernel's Landlock ABI version (landlock_create_ruleset(2)).
        // SAFETY: a null attribute with the VERSION flag only asks.
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32,
            )
        };
        if v < 0 {
            let why = match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EOPNOTSUPP) => {
                    "Landlock is built into this kernel but not enabled (add it to lsm= at boot)"
                }
                _ => "this kernel has no Landlock (Linux 5.13 or later has it)",
            };
            return Support::Missing(why.to_string());
        }
        match ruleset(None, &[]) {
            Ok(_) => Support::Enforced,
            Err(e) => Support::Missing(e),
        }
    })
}

/// A fresh ruleset for one command: read-only everywhere but `/dev/null`
/// and, when given, the command's own scratch directory (`MEND_SCRATCH`:
/// empty when it starts, removed when it ends, so a cache or a temporary
/// file there changes nothing of the world). `Err` when the kernel cannot
/// enforce it.
pub fn ruleset(
    scratch: Option<&std::path::Path>,
    opens: &[std::path::PathBuf],
) -> Result<OwnedFd, String> {
    let null = PathFd::new("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let scratch = scratch
        .map(|d| PathFd::new(d).map_err(|e| format!("cannot open {}: {e}", d.display())))
        .transpose()?;
    // Only files that exist: a rule on a file grants writing to it, never
    // making it (a missing one stays read-only, and the program says so).
    let files: Vec<PathFd> = opens
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .filter_map(|p| PathFd::new(p).ok())
        .collect();
    let made = || -> Result<Option<OwnedFd>, landlock::RulesetError> {
        let mut created = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(denied())?
            .create()?
            .set_compatibility(CompatLevel::BestEffort)
            .add_rule(PathBeneath::new(
                null,
                AccessFs::WriteFile | AccessFs::Truncate,
            ))?;
        if let Some(fd) = scratch {
            created = created.add_rule(PathBeneath::new(fd, denied()))?;
        }
        for fd in files {
            created = created.add_rule(PathBeneath::new(fd, AccessFs::WriteFile))?;
        }
        Ok(created.into())
    };
    match made() {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) => Err("the kernel did not make a Landlock ruleset".to_string()),
        Err(e) => Err(format!(
            "cannot make a Landlock ruleset that denies every write ({e}); Linux 6.2 or later can"
        )),
    }
}

/// The ruleset for a read, its scratch directory writable, or `None` where
/// Landlock is missing (the plan says so once).
pub fn for_read(
    scratch: &std::path::Path,
    opens: &[std::path::PathBuf],
) -> Result<Option<OwnedFd>, String> {
    match support() {
        Support::Enforced => ruleset(Some(scratch), opens).map(Some),
        Support::Missing(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_confines_reads() {
        // CI runs on a kernel with Landlock: this must not be skipped.
        match support() {
            Support::Enforced => {}
            Support::Missing(why) => panic!("reads cannot be confined here: {why}"),
        }
        assert!(
            for_read(std::path::Path::new("/tmp"), &[])
                .unwrap()
                .is_some()
        );
    }
}
