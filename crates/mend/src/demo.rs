//! A sandbox Mastodon instance, generated deterministically: what `mend
//! demo` runs the bundled maintenance runbook on, and what the tests of
//! that runbook use.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// The runbook the demo runs, as shipped in runbooks/.
pub const MAINTENANCE: &str = include_str!("../../../runbooks/mastodon/maintenance.toml");

const DAY: u64 = 86_400;

/// Generate `root/mastodon/public/system` with remote caches of mixed ages and
/// some local media, deterministically. Returns (files, bytes) written.
pub fn generate(root: &Path, now: SystemTime) -> anyhow::Result<(u64, u64)> {
    let system = root.join("mastodon/public/system");
    let (mut files, mut bytes) = (0, 0);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let trees: [(&str, usize, u64); 5] = [
        ("cache/media_attachments/files", 240, 60_000),
        ("cache/accounts/avatars", 120, 8_000),
        ("cache/accounts/headers", 60, 30_000),
        ("cache/preview_cards/images", 90, 20_000),
        ("media_attachments/files", 40, 80_000), // local media: never culled
    ];
    for (dir, n, size) in trees {
        for i in 0..n {
            let r = next();
            let sub = system
                .join(dir)
                .join(format!("{:03}/{:03}", r % 7, (r >> 8) % 5));
            std::fs::create_dir_all(&sub)?;
            let path = sub.join(format!(
                "{:016x}.{}",
                r,
                if i % 3 == 0 { "png" } else { "jpg" }
            ));
            let len = size / 2 + (r >> 16) % size;
            std::fs::write(&path, vec![(r & 0xff) as u8; len as usize])?;
            let age = Duration::from_secs((r >> 24) % (60 * DAY));
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(now - age)?;
            files += 1;
            bytes += len;
        }
    }
    Ok((files, bytes))
}

/// Files and bytes under `p` (everything, trash included).
pub fn tree_bytes(p: &Path) -> (u64, u64) {
    let mut stack = vec![p.to_path_buf()];
    let (mut n, mut b) = (0, 0);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
                b += md.len();
            }
        }
    }
    (n, b)
}
