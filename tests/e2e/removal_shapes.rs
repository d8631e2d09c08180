//! A big cull on the shapes a real cache has, in batches big enough for the
//! removals to go in parallel (`crates/mend/src/run/parallel.rs`): files
//! and folders owned by a service user (nobody:nogroup, 640 and 750), hard
//! links, symlinks owned by that user, and a FIFO and a socket the cull must
//! leave alone. A held trash run rolls back to the same owners, modes and
//! times; a disposable one leaves exactly what is young, and the specials.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use crate::bulk::cull;
use crate::common::*;
use crate::nothing_lost::fix_dir_times;

const NOBODY: u32 = 65_534;
/// The threaded path on any machine (for trash moves, and for unlinks on
/// a machine without 2 free cores, the host otherwise removes one at a
/// time).
const THREADED: &[(&str, &str)] = &[("MEND_REMOVAL_THREADS", "2")];
/// Per folder; six folders: each batch of 2,048 spans several of them.
const FILES: u32 = 700;

fn set_old(p: &Path) {
    // `touch -h`: a symlink's own time, never its target's.
    let ok = std::process::Command::new("touch")
        .args(["-h", "-d", "2026-01-01 00:00:00"])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", p.display());
}

fn chown(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// The cache; returns the names that must be left after a committed cull.
fn cache(f: &Fixture) -> Vec<String> {
    let mut left = vec![".".to_string()];
    for d in 0..6 {
        let dir = f.path(&format!("cache/s{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..FILES {
            let p = dir.join(format!("m{i:04}.bin"));
            std::fs::write(&p, format!("media {d}/{i}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            chown(&p);
            if i % 50 == 0 {
                // young: stays
                left.push(format!("./s{d}/m{i:04}.bin"));
            } else {
                set_old(&p);
            }
        }
        // An old hard link to an old file: both names go, and come back
        // as one inode.
        std::fs::hard_link(dir.join("m0001.bin"), dir.join("link-to-m0001")).unwrap();
        // An old symlink owned by the service user.
        let l = dir.join("latest");
        std::os::unix::fs::symlink("m0002.bin", &l).unwrap();
        chown(&l);
        set_old(&l);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        chown(&dir);
        left.push(format!("./s{d}"));
    }
    // Specials the cull never selects: they stay, and so does their folder.
    let sp = f.path("cache/run");
    std::fs::create_dir_all(&sp).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(sp.join("queue"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    drop(std::os::unix::net::UnixListener::bind(sp.join("socket")).unwrap());
    for p in ["queue", "socket"] {
        chown(&sp.join(p));
        set_old(&sp.join(p));
        left.push(format!("./run/{p}"));
    }
    left.push("./run".into());
    // Directory times fixed last, so a rollback can be compared with times.
    fix_dir_times(f, "cache");
    left.sort();
    left
}

fn left(f: &Fixture) -> Vec<String> {
    let mut got: Vec<String> = tree(&f.path("cache"), false)
        .into_keys()
        .filter(|k| !k.starts_with("./.mend-trash"))
        .collect();
    got.sort();
    got
}

#[test]
fn a_parallel_cull_of_a_service_users_cache_keeps_owners_and_specials() {
    // Trash, held, then rolled back: the same owners, modes, links, times.
    let f = Fixture::new();
    let want = cache(&f);
    let before = tree(&f.path("cache"), true);
    let rb = cull(&f, false);
    let ran = f.mend_env(&["run", "--hold", rb.to_str().unwrap()], THREADED);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(left(&f), want, "only the young files and the specials stay");
    // What stayed is untouched: owner, group and mode of a young file.
    let md = std::fs::metadata(f.path("cache/s3/m0050.bin")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (NOBODY, NOBODY, 0o640)
    );
    let id = history_id(&f);
    let back = f.mend(&["rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");
    let a = std::fs::metadata(f.path("cache/s4/m0001.bin")).unwrap();
    let b = std::fs::metadata(f.path("cache/s4/link-to-m0001")).unwrap();
    assert_eq!(
        (a.ino(), a.nlink()),
        (b.ino(), 2),
        "the hard link came back as a link"
    );

    // Disposable: removed for good, the same names left.
    let f = Fixture::new();
    let want = cache(&f);
    let rb = cull(&f, true);
    let ran = f.mend_env(&["run", rb.to_str().unwrap()], THREADED);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(left(&f), want, "only the young files and the specials stay");
    let sock = std::fs::symlink_metadata(f.path("cache/run/socket")).unwrap();
    assert_eq!((sock.uid(), sock.gid()), (NOBODY, NOBODY));
}
