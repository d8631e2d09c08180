//! Users and groups of this machine, looked up through the C library (so
//! NSS sources such as LDAP or systemd-userdb answer too): who a runbook's
//! command runs as.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// A user, resolved: what a command that runs as it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// The primary group (the user's own, or the runbook's `group`).
    pub gid: u32,
    /// Every group the user is in, the primary one included.
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// A passwd entry: (uid, gid, home).
fn passwd(name: &str) -> Result<Option<(u32, u32, PathBuf)>, String> {
    let c = CString::new(name).map_err(|_| format!("user name {name:?} contains a NUL"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives `pw`'s
        // strings, which are copied before it is dropped.
        let rc = unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up user `{name}`: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        if out.is_null() {
            return Ok(None);
        }
        // SAFETY: getpwnam_r filled `pw` with strings inside `buf`.
        let home = unsafe { CStr::from_ptr(pw.pw_dir) };
        return Ok(Some((pw.pw_uid, pw.pw_gid, path_of(home))));
    }
}

/// A group's gid, by name.
pub fn group_id(name: &str) -> Result<Option<u32>, String> {
    let c = CString::new(name).map_err(|_| format!("group name {name:?} contains a NUL"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `passwd`.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 22 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up group `{name}`: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        return Ok((!out.is_null()).then_some(gr.gr_gid));
    }
}

/// Every group `name` is in, with `gid` first (what `initgroups` would set).
fn group_list(name: &str, gid: u32) -> Result<Vec<u32>, String> {
    let c = CString::new(name).map_err(|_| format!("user name {name:?} contains a NUL"))?;
    let mut n: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most
        // that many and says how many it needs when they do not fit.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= n || count > 65_536 {
            return Err(format!("cannot list the groups of user `{name}`"));
        }
        n = count;
    }
}

/// Look up `user` (and `group`, which replaces the user's primary group).
/// `Ok(None)`: no such user; an unknown group is an error naming it.
pub fn lookup(user: &str, group: Option<&str>) -> Result<Option<Account>, String> {
    let Some((uid, primary, home)) = passwd(user)? else {
        return Ok(None);
    };
    let gid = match group {
        None => primary,
        Some(g) => {
            group_id(g)?.ok_or_else(|| format!("there is no group `{g}` on this machine"))?
        }
    };
    let mut groups = group_list(user, gid)?;
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    Ok(Some(Account {
        name: user.to_string(),
        uid,
        gid,
        groups,
        home,
    }))
}

/// The home directory of the user mend runs as (for commands that name no
/// `user`): from the passwd entry of its uid, else `/`.
pub fn own_home() -> PathBuf {
    let uid = rustix::process::geteuid().as_raw();
    let mut buf = vec![0u8; 4096];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `passwd`.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return PathBuf::from("/");
    }
    // SAFETY: filled by getpwuid_r, inside `buf`.
    let home = unsafe { CStr::from_ptr(pw.pw_dir) };
    path_of(home)
}

fn path_of(c: &CStr) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_are_found_and_a_made_up_user_is_not() {
        let root = lookup("root", None).unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let nobody = lookup("nobody", None).unwrap().expect("nobody exists");
        assert_eq!(nobody.uid, 65534);
        assert!(!nobody.groups.contains(&0), "{:?}", nobody.groups);
        assert_eq!(lookup("no-such-user-mend-test", None).unwrap(), None);
        let e = lookup("root", Some("no-such-group-mend-test")).unwrap_err();
        assert!(e.contains("no group `no-such-group-mend-test`"), "{e}");
        let with = lookup("nobody", Some("root")).unwrap().unwrap();
        assert_eq!(with.gid, 0);
    }
}
