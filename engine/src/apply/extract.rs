//! Unpacking tar archives entry by entry through cap-std, so an archive can
//! no more leave its grant than a step can: `..`, absolute names and links
//! that point outside are refused.

use std::io::{Read, Write};
use std::path::{Component, Path};

use anyhow::{Context as _, Result, bail};
use cap_std::fs::PermissionsExt as _;
use cap_std::fs::{OpenOptions, Permissions};

use crate::grants::Resolved;
use crate::plan::Format;

/// Extract `archive` into the new directory `dst`.
pub fn extract(
    archive: &Resolved,
    dst: &Resolved,
    format: Format,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let shown = format!("{}/{}", archive.grant.name, archive.rel);
    let file = super::fsops::open_regular(&archive.grant.dir, &archive.rel_path(), &shown)
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
        if path.as_os_str().is_empty() {
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
                f.set_permissions(Permissions::from_mode(mode))?;
                drop(f);
                // The archive's times, as tar -x keeps them. Durability comes
                // from one syncfs when the whole archive is out.
                if let Ok(mtime) = entry.header().mtime() {
                    super::fsops::set_times(&out, &path, mtime as i64, 0)?;
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
