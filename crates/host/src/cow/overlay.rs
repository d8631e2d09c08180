//! The private mount namespace a rehearsal runs in, and the mounts in it:
//! an overlay on each write grant's own path (so the journal, the
//! `MEND_GRANT_*` paths, commands' arguments and absolute symlinks all stay
//! true), a read-only bind on each read grant.
//!
//! The mount calls are the new mount API (fsopen, fsconfig, fsmount,
//! move_mount, open_tree, mount_setattr) through `libc::syscall`: their
//! errors come with the kernel's own words, and an fd for the lower layer
//! keeps it reachable once the overlay hides its path. After mounting, the
//! options are read back from /proc/self/mountinfo: the kernel falls back
//! silently (an upper without xattrs loses redirect_dir, index, metacopy),
//! and a rehearsal on such an overlay could not undo a rename.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that puts a rehearsal's stand-ins directory
/// in its scratch area (on overlays the grants keep their own paths, so
/// there is no copy to put it beside).
pub const STAND_IN_DIR: &str = "MEND_STAND_IN_DIR";

/// One write grant shown as an overlay on its own path.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// The grant's name (for messages and the check's paths).
    pub name: String,
    /// The grant's real directory: the lower layer and the mount point.
    pub grant: PathBuf,
    /// Where the run's changes go.
    pub upper: PathBuf,
    /// overlayfs's own scratch, on the upper's filesystem.
    pub work: PathBuf,
}

/// What the kernel mounted on a grant.
#[derive(Debug)]
pub struct Mounted {
    /// The real directory, readable (opened before the overlay hid it).
    pub lower: OwnedFd,
    /// The effective options (from mountinfo).
    pub options: String,
    /// Hard links are kept across copy-up (`index=on`): link counts can be
    /// compared.
    pub index: bool,
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// The options without which a rehearsal on an overlay proves nothing:
/// redirect_dir (renaming a directory of the lower layer, as a removal into
/// the trash does) and metacopy (a rename or chmod copies no data up).
const REQUIRED: [&str; 2] = ["redirect_dir=on", "metacopy=on"];

/// `cmd` starts in a mount namespace of its own whose mounts receive the
/// machine's but never send to it (MS_SLAVE, recursively), and is killed
/// if the process that started it dies: nothing it mounts is seen outside,
/// and nothing outlives the rehearsal.
pub fn in_private_namespace(cmd: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec only raw syscalls run, on a static C
    // string; no allocation, no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// The mount namespace of a process (its inode), while it lives.
pub fn namespace_of(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// SIGKILL every process still in mount namespace `ns` (a command the run
/// started in its own process group outlives a killed mend and would keep
/// the overlay alive, invisible but busy), until none is left; how many.
pub fn kill_namespace(ns: u64) -> usize {
    let mut killed = 0;
    for _ in 0..200 {
        let mut left = 0;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if namespace_of(pid as u32) == Some(ns) {
                // SAFETY: a plain kill(2) of a pid read from /proc.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        killed += left;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    killed
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

fn fd_or_err(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the syscall returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }
}

fn ok_or_err(r: libc::c_long) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What the kernel said while setting up a filesystem context.
fn fs_log(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: reading into a buffer of its own length.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .to_string(),
        );
    }
    out.join("; ")
}

fn set_string(fs: &OwnedFd, key: &CStr, value: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated strings that outlive the call.
    ok_or_err(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })
}

/// The lower layer by fd (`lowerdir+`, kernel 6.13+), else by its path,
/// escaped as the option string wants (`:`, `,` and `\`).
fn set_lower(fs: &OwnedFd, lower: &OwnedFd, path: &Path) -> io::Result<()> {
    // SAFETY: valid fds and a NUL-terminated key.
    let by_fd = ok_or_err(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FD,
            c"lowerdir+".as_ptr(),
            std::ptr::null::<libc::c_char>(),
            lower.as_raw_fd(),
        )
    });
    if by_fd.is_ok() {
        return by_fd;
    }
    let mut escaped = Vec::new();
    for b in path.as_os_str().as_bytes() {
        if matches!(b, b':' | b',' | b'\\') {
            escaped.push(b'\\');
        }
        escaped.push(*b);
    }
    let escaped = CString::new(escaped)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))?;
    set_string(fs, c"lowerdir", &escaped)
}

/// Make the upper root look like the lower root: the merged root's owner,
/// mode and times are the upper directory's.
pub fn prepare_upper(l: &Layer) -> io::Result<()> {
    std::fs::create_dir_all(&l.upper)?;
    std::fs::create_dir_all(&l.work)?;
    let md = std::fs::metadata(&l.grant)?;
    std::os::unix::fs::chown(&l.upper, Some(md.uid()), Some(md.gid()))?;
    std::fs::set_permissions(
        &l.upper,
        std::os::unix::fs::PermissionsExt::from_mode(md.mode() & 0o7777),
    )?;
    let times = [
        libc::timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        libc::timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    ];
    let up = cstr(&l.upper)?;
    // SAFETY: a NUL-terminated path and two timespecs.
    ok_or_err(unsafe { libc::utimensat(libc::AT_FDCWD, up.as_ptr(), times.as_ptr(), 0) } as _)
}

/// Open a directory `O_PATH` (before anything is mounted on it).
pub fn open_path(p: &Path) -> io::Result<OwnedFd> {
    let c = cstr(p)?;
    // SAFETY: a NUL-terminated path.
    fd_or_err(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    } as _)
}

/// Mount an overlay of `lower` (an `O_PATH` fd on the grant's real
/// directory) onto the grant's path. The error says what the kernel said.
pub fn mount_overlay(lower: &OwnedFd, l: &Layer) -> Result<Mounted, String> {
    let say = |what: &str, e: io::Error, log: String| {
        if log.is_empty() {
            format!("{what}: {e}")
        } else {
            format!("{what}: {e} ({log})")
        }
    };
    // SAFETY: a NUL-terminated filesystem name.
    let fs =
        fd_or_err(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })
            .map_err(|e| say("fsopen(overlay)", e, String::new()))?;
    set_lower(&fs, lower, &l.grant).map_err(|e| say("lowerdir", e, fs_log(&fs)))?;
    let upper = cstr(&l.upper).map_err(|e| e.to_string())?;
    let work = cstr(&l.work).map_err(|e| e.to_string())?;
    set_string(&fs, c"upperdir", &upper).map_err(|e| say("upperdir", e, fs_log(&fs)))?;
    set_string(&fs, c"workdir", &work).map_err(|e| say("workdir", e, fs_log(&fs)))?;
    for (k, v) in [
        (c"redirect_dir", c"on"),
        (c"index", c"on"),
        (c"metacopy", c"on"),
        (c"xino", c"auto"),
    ] {
        set_string(&fs, k, v)
            .map_err(|e| say(&format!("option {}", k.to_string_lossy()), e, fs_log(&fs)))?;
    }
    // SAFETY: a valid fd; the command takes no key or value.
    ok_or_err(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })
    .map_err(|e| say("the kernel refused the overlay", e, fs_log(&fs)))?;
    // SAFETY: a valid fd.
    let m =
        fd_or_err(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
            .map_err(|e| say("fsmount", e, fs_log(&fs)))?;
    let target = cstr(&l.grant).map_err(|e| e.to_string())?;
    // SAFETY: valid fds and NUL-terminated paths.
    ok_or_err(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            m.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map_err(|e| say("move_mount", e, String::new()))?;
    let options = effective_options(&l.grant);
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|k| !options.split(',').any(|o| o == **k))
        .map(|k| k.trim_end_matches("=on"))
        .collect();
    if !missing.is_empty() {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        return Err(format!(
            "the kernel mounted grant {} without {}",
            l.name,
            missing.join(", ")
        ));
    }
    // A readable fd on the real directory: the O_PATH one still reaches it.
    // SAFETY: a valid fd and a NUL-terminated relative path.
    let readable = fd_or_err(unsafe {
        libc::openat(
            lower.as_raw_fd(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    } as _)
    .map_err(|e| format!("reopen the real {}: {e}", l.grant.display()))?;
    Ok(Mounted {
        lower: readable,
        index: options.split(',').any(|o| o == "index=on"),
        options,
    })
}

/// The options of the topmost overlay on `target`, as the kernel reports
/// them, paths left out.
pub fn effective_options(target: &Path) -> String {
    let t = target.as_os_str().as_bytes();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .rev()
        .filter(|l| l.contains(" - overlay "))
        .find(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(t))
        .and_then(|l| l.split(" - overlay ").nth(1))
        .and_then(|r| r.split(' ').nth(1))
        .unwrap_or("")
        .split(',')
        .filter(|o| {
            !["lowerdir", "upperdir", "workdir", "datadir"]
                .iter()
                .any(|p| o.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Mount points strictly inside `dir`: an overlay of `dir` would hide them.
pub fn mounts_inside(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(m))))
        .filter(|m| m != &dir && m.starts_with(&dir))
        .collect()
}

/// A read-only recursive bind of `path` onto itself: the run sees a read
/// grant as it would, and a stand-in writing there gets EROFS.
pub fn bind_read_only(path: &Path) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: a NUL-terminated path.
    let tree = fd_or_err(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    })?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid fd, an empty path, a sized struct.
    ok_or_err(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })?;
    // SAFETY: valid fds and NUL-terminated paths.
    ok_or_err(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            p.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

/// Mount a tmpfs of the rehearsal's own on `at` (in its private mount
/// namespace, so nobody else sees it and it goes with the namespace), or
/// raise the limits of the one already there (`remount`). A tmpfs's size
/// and inode count are caps, not reservations: only what is written takes
/// memory.
pub fn mount_tmpfs(at: &Path, bytes: u64, inodes: u64, remount: bool) -> io::Result<()> {
    let target = cstr(at)?;
    let opts = if remount {
        format!("size={bytes},nr_inodes={inodes}")
    } else {
        format!("size={bytes},nr_inodes={inodes},mode=700")
    };
    let opts = CString::new(opts).expect("no NUL");
    let flags = libc::MS_NOSUID | libc::MS_NODEV | if remount { libc::MS_REMOUNT } else { 0 };
    // SAFETY: NUL-terminated strings that outlive the call.
    ok_or_err(unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            opts.as_ptr().cast(),
        )
    } as _)
}

/// Why a directory cannot hold an upper layer, by its filesystem.
pub fn unfit_upper(dir: &Path) -> Option<String> {
    let st = rustix::fs::statfs(dir).ok()?;
    let kind = st.f_type as u64;
    match kind {
        0x5846_5342 => Some(format!(
            "{} is on XFS, where moving a directory back changes its mtime",
            dir.display()
        )),
        0x858_458f6 => Some(format!(
            "{} is on ramfs, which keeps no extended attributes",
            dir.display()
        )),
        0x794c_7630 | 0x6573_5546 => Some(format!(
            "{} is on an overlay or FUSE filesystem, which cannot hold an upper layer",
            dir.display()
        )),
        _ => None,
    }
}

/// A filesystem's name, for messages (statfs magic).
pub fn fs_name(dir: &Path) -> &'static str {
    match rustix::fs::statfs(dir).map(|s| s.f_type as u64) {
        Ok(0x0102_1994) => "tmpfs",
        Ok(0xef53) => "ext4",
        Ok(0x9123_683e) => "btrfs",
        Ok(0x5846_5342) => "xfs",
        Ok(0x858_458f6) => "ramfs",
        Ok(0x794c_7630) => "overlay",
        Ok(0x6573_5546) => "fuse",
        _ => "an unknown filesystem",
    }
}
