//! Who starts a run, and on which host: recorded with the run, shown in
//! its header (show, report, serve), so the people watching an incident
//! know whose hands are on it.

/// `SUDO_USER` when mend runs under sudo (the person, not root), else the
/// name of the real uid from /etc/passwd, else `uid N`.
pub fn user() -> String {
    let uid = rustix::process::getuid().as_raw();
    let by_uid = name_of(uid).unwrap_or_else(|| format!("uid {uid}"));
    match std::env::var("SUDO_USER") {
        Ok(s) if !s.is_empty() && s != by_uid => format!("{s} (as {by_uid})"),
        _ => by_uid,
    }
}

/// This machine's node name.
pub fn host() -> String {
    let u = rustix::system::uname();
    u.nodename().to_string_lossy().into_owned()
}

fn name_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_named() {
        assert_eq!(super::name_of(0).as_deref(), Some("root"));
        assert!(!super::host().is_empty());
    }
}
