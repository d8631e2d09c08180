//! The archive as a service's data directory needs it back: a tree with
//! the shapes real servers have (a 640 file of `nobody:nogroup`, links,
//! a 0750 empty directory with an old time, long names, a newline and
//! invalid UTF-8 in names, an xattr, a time before 1970) packed by mend,
//! unpacked by mend's extract and by GNU tar, and listed by GNU tar as it
//! lists its own archive of the same tree.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::grants::{GrantDir, Resolved};
use mend_plan::Format;

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn touch(path: &Path, date: &str) {
    run(Command::new("touch").args(["-h", "-d", date]).arg(path));
}

fn name(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

fn grant(root: &Path) -> GrantDir {
    GrantDir {
        name: "g".into(),
        root: root.to_path_buf(),
        access: mend_runbook::Access::Write,
        disposable: false,
        dir: cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).unwrap(),
    }
}

/// The tree; whether its xattr could be set (the filesystem may refuse
/// `user.*`).
fn tree(s: &Path) -> bool {
    std::fs::create_dir_all(s.join("a")).unwrap();
    std::fs::create_dir(s.join("b")).unwrap();
    std::fs::write(s.join("owned"), "the service's own data\n").unwrap();
    std::fs::set_permissions(s.join("owned"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(s.join("owned"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::symlink("owned", s.join("link")).unwrap();
    std::os::unix::fs::lchown(s.join("link"), Some(65534), Some(65534)).unwrap();
    // Two names of one file, in two directories.
    std::fs::write(s.join("a/one"), "linked\n").unwrap();
    std::fs::hard_link(s.join("a/one"), s.join("b/two")).unwrap();
    std::fs::File::create(s.join("zero")).unwrap();
    // A 101-byte and a 300-byte name in the archive ("./" + ...), and
    // a 270-byte one that is not UTF-8 (PAX, hdrcharset=BINARY).
    let d101 = s.join("p".repeat(20));
    std::fs::create_dir(&d101).unwrap();
    std::fs::write(d101.join("n".repeat(78)), "101\n").unwrap();
    let mut deep = s.to_path_buf();
    for _ in 0..5 {
        deep.push("d".repeat(49));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("x".repeat(48)), "300\n").unwrap();
    std::fs::write(deep.join(name(b"bad\xff-long-name")), "binary\n").unwrap();
    // A link whose target is over 100 bytes (PAX linkpath).
    let target: PathBuf = std::iter::repeat_n("d".repeat(49), 5)
        .chain(["x".repeat(48)])
        .collect();
    std::os::unix::fs::symlink(&target, s.join("far")).unwrap();
    std::fs::write(s.join(name(b"nl\nname")), "newline\n").unwrap();
    std::fs::write(s.join(name(b"bad\xff\xfe")), "not utf-8\n").unwrap();
    std::fs::write(s.join("before-1970"), "old\n").unwrap();
    touch(&s.join("before-1970"), "1969-07-20 20:17:40 UTC");
    std::fs::create_dir(s.join("empty")).unwrap();
    std::fs::set_permissions(s.join("empty"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(s.join("tagged"), "with an xattr\n").unwrap();
    let xattr = rustix::fs::setxattr(
        s.join("tagged").as_path(),
        "user.mend-test",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    touch(&s.join("empty"), "1999-12-31 23:59:59 UTC");
    touch(&s.join("a"), "2001-02-03 04:05:06 UTC");
    xattr
}

/// Every entry under `root` as `find -printf '%U %G %m %T@ %s %n %y %l
/// %p'` says it (the time to the second, as tar keeps it; a directory's
/// size left out, it is the filesystem's), with each file's sha256.
fn meta(root: &Path) -> Vec<String> {
    let out = run(Command::new("find")
        .arg(root)
        .args(["-printf", "%U %G %m %T@ %s %n %y %l\\0%P\\0"]));
    let mut fields = out.split(|&b| b == 0);
    let mut lines = Vec::new();
    while let (Some(attrs), Some(rel)) = (fields.next(), fields.next()) {
        if attrs.is_empty() {
            break;
        }
        let attrs = String::from_utf8(attrs.to_vec()).unwrap();
        let f: Vec<&str> = attrs.splitn(8, ' ').collect();
        let secs = f[3].split('.').next().unwrap();
        let size = if f[6] == "d" { "-" } else { f[4] };
        let p = root.join(OsStr::from_bytes(rel));
        let hash = if f[6] == "f" {
            hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        lines.push(format!(
            "{:?} {} {} {} {secs} {size} {} {} {:?} {hash}",
            OsStr::from_bytes(rel),
            f[0],
            f[1],
            f[2],
            f[5],
            f[6],
            f[7]
        ));
    }
    lines.sort();
    lines
}

/// Packed by mend, brought back by mend's extract and by GNU tar as
/// root (`-xpf --xattrs --numeric-owner`), the tree is what it was:
/// owners, modes, times (before 1970 too), sizes, link counts, links,
/// names, contents and the xattr.
#[test]
fn an_archive_comes_back_whole_through_mend_and_gnu_tar() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving files to nobody needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("src");
    let xattr = tree(&s);
    let g = grant(tmp.path());
    let at = |rel| Resolved { grant: &g, rel };
    super::archive::archive(&at("src"), &at("a.tar.zst"), Format::TarZst, &|_| {}).unwrap();
    let want = meta(&s);
    assert!(want.len() > 20, "{want:#?}");

    super::extract::extract(&at("a.tar.zst"), &at("mend"), Format::TarZst, &|_| {}).unwrap();
    let gnu = tmp.path().join("gnu");
    std::fs::create_dir(&gnu).unwrap();
    run(Command::new("tar")
        .args(["--zstd", "-xpf"])
        .arg(tmp.path().join("a.tar.zst"))
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(&gnu));
    for out in [tmp.path().join("mend"), gnu] {
        assert_eq!(meta(&out), want, "{}", out.display());
        if xattr {
            let mut v = [0u8; 16];
            let n = rustix::fs::getxattr(out.join("tagged").as_path(), "user.mend-test", &mut v)
                .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
            assert_eq!(&v[..n], b"kept", "{}", out.display());
        }
    }
}

/// `tar -tvf` lists mend's archive as it lists GNU tar's own archive of
/// the same tree (read in the same order: inode order, as mend reads):
/// names (directories with their `/`), kinds, modes, owners by name,
/// sizes, times, link targets.
#[test]
fn gnu_tar_lists_mends_archive_as_its_own() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving files to nobody needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("src");
    tree(&s);
    let g = grant(tmp.path());
    let at = |rel| Resolved { grant: &g, rel };
    super::archive::archive(&at("src"), &at("mend.tar.zst"), Format::TarZst, &|_| {}).unwrap();
    run(Command::new("tar")
        .args(["--zstd", "--sort=inode", "-cf"])
        .arg(tmp.path().join("gnu.tar.zst"))
        .arg("-C")
        .arg(&s)
        .arg("."));
    let list = |f: &str| {
        let out = run(Command::new("tar")
            .args(["--zstd", "--full-time", "-tvf"])
            .arg(tmp.path().join(f)));
        let mut lines: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let gnu = list("gnu.tar.zst");
    assert!(gnu.len() > 20, "{gnu:#?}");
    assert_eq!(list("mend.tar.zst"), gnu);
}
