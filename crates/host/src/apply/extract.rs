//! Unpacking tar archives entry by entry through cap-std, so an archive can
//! no more leave its grant than a step can: `..`, absolute names and links
//! that point outside are refused.
//!
//! What `tar -xp` as root keeps is kept: owners (the user and group of the
//! entry's name on this host, else its number, as GNU tar), modes,
//! modification times of files and directories (a directory's once its
//! contents are in), hard links as links, extended attributes written as
//! PAX `SCHILY.xattr.*` records, times before 1970 and long user and group
//! names from PAX records, and the archive root's own attributes.

use std::io::{Read, Write};
use std::path::{Component, Path};

use anyhow::{Context as _, Result, bail};
use cap_std::fs::PermissionsExt as _;
use cap_std::fs::{OpenOptions, Permissions};

use crate::grants::Resolved;
use mend_plan::Format;

/// Extract `archive` into the new directory `dst`.
pub fn extract(
    archive: &Resolved,
    dst: &Resolved,
    format: Format,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let shown = format!("{}/{}", archive.grant.name, archive.rel);
    let file = crate::files::open_regular(&archive.grant.dir, &archive.rel_path(), &shown)
        .with_context(|| format!("open {shown}"))?;
    // tar reads 512-byte headers one at a time: buffer them, or each is a
    // system call (the copy bench saw 3x tar's time without this).
    // Progress is the archive's bytes read: exact whatever the compression.
    let file = std::io::BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: file,
            progress,
        },
    );
    let reader: Box<dyn Read> = match format {
        Format::Tar => Box::new(file),
        Format::TarGz => Box::new(flate2::bufread::GzDecoder::new(file)),
        Format::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    };
    let mut made: std::collections::HashSet<std::path::PathBuf> = Default::default();
    // The links this archive made, by path: a later entry may not go
    // through one, and every one is resolved through the others at the end.
    let mut links: std::collections::HashMap<std::path::PathBuf, std::path::PathBuf> =
        Default::default();
    let mut owners = Owners::default();
    // Directories' attributes, applied deepest first once all is out.
    let mut dirs: Vec<DirAttrs> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    dst.grant.dir.create_dir(dst.rel_path())?;
    let out = dst.grant.dir.open_dir(dst.rel_path())?;
    let mut tar = tar::Archive::new(reader);
    let what = format!("{}/{}", archive.grant.name, archive.rel);
    for entry in tar.entries().with_context(|| format!("read {what}"))? {
        let mut entry = entry.with_context(|| format!("read {what}"))?;
        let path = entry.path()?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            bail!(
                "{what}: entry `{}` leaves the archive's directory; refusing it",
                path.display()
            );
        }
        let path = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect::<std::path::PathBuf>();
        let pax = pax_of(&mut entry)?;
        let owner = owners.of(entry.header(), &pax);
        // A time before 1970 (or after 2242) is only in the PAX record.
        let mtime = pax
            .mtime
            .or_else(|| entry.header().mtime().ok().map(|t| t as i64));
        let xattrs = pax.xattrs;
        if path.as_os_str().is_empty() {
            // The archive's root (`./`): its attributes are the directory's.
            if entry.header().entry_type() == tar::EntryType::Directory {
                let mode = entry.header().mode().unwrap_or(0o755) & 0o7777;
                dirs.push((path, mode, owner, mtime.unwrap_or(0)));
            }
            continue;
        }
        if let Some(link) = path.ancestors().skip(1).find(|a| links.contains_key(*a)) {
            bail!(
                "{what}: entry `{}` goes through `{}`, a symlink the archive made; mend never unpacks through a link",
                path.display(),
                link.display()
            );
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !made.contains(parent)
        {
            out.create_dir_all(parent)?;
            made.insert(parent.to_path_buf());
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                out.create_dir_all(&path)?;
                out.set_permissions(&path, Permissions::from_mode(mode | 0o700))?;
                made.insert(path.clone());
                if !xattrs.is_empty() {
                    let d = out.open_dir(&path)?.open(".")?;
                    set_xattrs(&d, &xattrs)?;
                }
                dirs.push((path.clone(), mode, owner, mtime.unwrap_or(0)));
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target: std::path::PathBuf = target
                    .components()
                    .filter(|c| matches!(c, Component::Normal(_)))
                    .collect();
                if target.as_os_str().is_empty()
                    || entry.link_name()?.is_some_and(|t| {
                        t.components()
                            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
                    })
                {
                    bail!(
                        "{what}: hard link `{}` names `{}`, which is not in the archive; refusing it",
                        path.display(),
                        target.display()
                    );
                }
                out.hard_link(&target, &out, &path).with_context(|| {
                    format!("{what}: link {} to {}", path.display(), target.display())
                })?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut opts = OpenOptions::new();
                opts.write(true).create_new(true);
                let mut f = out
                    .open_with(&path, &opts)
                    .with_context(|| format!("{what}: write {}", path.display()))?;
                loop {
                    let n = entry.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n])?;
                }
                if let Some((uid, gid)) = owner {
                    rustix::fs::fchown(
                        &f,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                    )
                    .with_context(|| format!("{what}: give {} to {uid}:{gid}", path.display()))?;
                }
                // After chown, which clears set-user-ID bits.
                f.set_permissions(Permissions::from_mode(mode))?;
                set_xattrs(&f, &xattrs)?;
                drop(f);
                // The archive's times, as tar -x keeps them. Durability comes
                // from one syncfs when the whole archive is out.
                if let Some(mtime) = mtime {
                    super::fsops::set_times(&out, &path, mtime, 0)?;
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_absolute() || escapes(&path, &target) {
                    bail!(
                        "{what}: symlink `{}` -> `{}` points out of the archive; refusing it",
                        path.display(),
                        target.display()
                    );
                }
                out.symlink_contents(&target, &path)?;
                links.insert(path.clone(), target);
                let (parent, leaf) = (
                    path.parent().unwrap_or(Path::new("")),
                    path.file_name().unwrap_or_default(),
                );
                let pdir = if parent.as_os_str().is_empty() {
                    out.try_clone()?
                } else {
                    out.open_dir(parent)?
                };
                if let Some((uid, gid)) = owner {
                    rustix::fs::chownat(
                        &pdir,
                        leaf,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )?;
                }
                if let Some(mtime) = mtime {
                    super::fsops::set_times(&out, &path, mtime, 0)?;
                }
            }
            other => bail!(
                "{what}: entry `{}` is a {other:?}, which mend does not extract",
                path.display()
            ),
        }
    }
    // Each link checked where it landed and through the links made since:
    // `x -> d/up/..` is harmless word by word, not once `d/up -> ..` exists.
    for (link, target) in &links {
        if let Err(why) = resolve(link, target, &links) {
            bail!(
                "{what}: symlink `{}` -> `{}` points out of the archive ({why}); refusing it",
                link.display(),
                target.display()
            );
        }
    }
    // Deepest first: a directory's time is set once nothing more is made in it.
    dirs.sort_by_key(|(p, ..)| std::cmp::Reverse(p.components().count()));
    for (p, mode, owner, mtime) in dirs {
        let d = if p.as_os_str().is_empty() {
            out.open(".")?
        } else {
            out.open_dir(&p)?.open(".")?
        };
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(
                &d,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        rustix::fs::fchmod(&d, rustix::fs::Mode::from_raw_mode(mode))?;
        let t = rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            &d,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
        )?;
    }
    Ok(())
}

/// Follow a link's target from where the link is, through the links the
/// archive made, and fail if it climbs above the archive's root or loops.
fn resolve(
    link: &Path,
    target: &Path,
    links: &std::collections::HashMap<std::path::PathBuf, std::path::PathBuf>,
) -> std::result::Result<(), String> {
    use std::collections::VecDeque;
    let mut at: Vec<std::ffi::OsString> = link
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut rest: VecDeque<Component> = target.components().collect();
    let mut hops = 0;
    while let Some(c) = rest.pop_front() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Err("it climbs above the archive's root".into());
                }
            }
            Component::Normal(n) => {
                let here: std::path::PathBuf = at.iter().chain([&n.to_os_string()]).collect();
                match links.get(&here) {
                    Some(next) => {
                        hops += 1;
                        if next.is_absolute() {
                            return Err(format!("through `{}`, an absolute link", here.display()));
                        }
                        if hops > 40 {
                            return Err("through a loop of links".into());
                        }
                        for c in next.components().rev() {
                            rest.push_front(c);
                        }
                    }
                    None => at.push(n.to_os_string()),
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("it is absolute".into());
            }
        }
    }
    Ok(())
}

/// A directory's path, mode, owner and mtime, set once its contents are in.
type DirAttrs = (std::path::PathBuf, u32, Option<(u32, u32)>, i64);

/// Who an entry belongs to here: the user and group of its names when this
/// host has them, else its numbers (GNU tar's rule). `None` when mend is
/// not root (then files are the extractor's, as `tar -x` leaves them).
#[derive(Default)]
struct Owners {
    dbs: Option<(
        std::collections::HashMap<String, u32>,
        std::collections::HashMap<String, u32>,
    )>,
}

impl Owners {
    fn of(&mut self, h: &tar::Header, pax: &Pax) -> Option<(u32, u32)> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let (users, groups) = self.dbs.get_or_insert_with(|| {
            (
                super::archive::ids_by_name("/etc/passwd"),
                super::archive::ids_by_name("/etc/group"),
            )
        });
        let uid = pax
            .uname
            .as_deref()
            .or_else(|| h.username().ok().flatten())
            .and_then(|n| users.get(n).copied())
            .or_else(|| h.uid().ok().map(|u| u as u32))?;
        let gid = pax
            .gname
            .as_deref()
            .or_else(|| h.groupname().ok().flatten())
            .and_then(|n| groups.get(n).copied())
            .or_else(|| h.gid().ok().map(|g| g as u32))?;
        Some((uid, gid))
    }
}

/// What an entry's PAX records add to its header that the `tar` crate
/// does not apply itself (it does `path`, `linkpath`, `size`, `uid` and
/// `gid`): extended attributes, a time outside the octal field (before
/// 1970), user and group names over 31 bytes.
#[derive(Default)]
struct Pax {
    xattrs: Vec<(String, Vec<u8>)>,
    mtime: Option<i64>,
    uname: Option<String>,
    gname: Option<String>,
}

fn pax_of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Pax> {
    let mut out = Pax::default();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let (Ok(key), value) = (ext.key(), ext.value_bytes()) else {
                continue;
            };
            let text = || std::str::from_utf8(value).ok().map(str::to_owned);
            match key {
                // Seconds, maybe with a fraction: tar keeps whole seconds.
                "mtime" => {
                    out.mtime = text().and_then(|t| t.split('.').next()?.parse().ok());
                }
                "uname" => out.uname = text(),
                "gname" => out.gname = text(),
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        out.xattrs.push((name.to_string(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn set_xattrs(fd: &impl std::os::fd::AsFd, attrs: &[(String, Vec<u8>)]) -> Result<()> {
    for (name, value) in attrs {
        rustix::fs::fsetxattr(fd, name.as_str(), value, rustix::fs::XattrFlags::empty())
            .with_context(|| format!("set the extended attribute {name}"))?;
    }
    Ok(())
}

/// Whether a relative symlink target climbs above the archive's root.
fn escapes(link: &Path, target: &Path) -> bool {
    let mut depth = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// A reader that reports how many bytes it read.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}
