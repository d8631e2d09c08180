//! `mend fleet install`: put this controller's own binary on the hosts
//! where mend is missing or of another version. A host needs only `sh` and
//! `sha256sum`: the binary streams over ssh into a temporary file beside
//! its place, is checked against the controller's sha256 there, then
//! renamed into place (a running mend keeps its old file). A host whose
//! `uname -m` is not this controller's architecture is refused: its binary
//! would not run there.

use std::path::PathBuf;

use mend_runbook::fleet::Inventory;
use serde_json::json;

use crate::exit;
use crate::fleet::host::sha256_hex;
use crate::fleet::remote::each;
use crate::fleet::ssh::Ssh;
use crate::outcome::{Failure, Outcome};

/// What became of one host.
#[derive(Clone, Debug, PartialEq)]
pub enum Installed {
    /// Already this version: nothing done.
    Already {
        path: String,
    },
    /// Copied: where, and what was there before (None: nothing).
    Copied {
        path: String,
        was: Option<String>,
    },
    /// Another architecture, or the copy failed there.
    Refused(String),
    Unreachable(String),
}

pub struct HostInstall {
    pub host: String,
    pub result: Installed,
}

pub struct FleetInstall {
    pub version: String,
    pub hosts: Vec<HostInstall>,
}

impl Outcome for FleetInstall {
    fn exit_code(&self) -> i32 {
        let any = |f: fn(&Installed) -> bool| self.hosts.iter().any(|h| f(&h.result));
        if any(|r| matches!(r, Installed::Refused(_))) {
            exit::BAD_INPUT
        } else if any(|r| matches!(r, Installed::Unreachable(_))) {
            exit::UNREACHABLE
        } else {
            exit::SUCCESS
        }
    }
}

/// Whether `uname -m` on a host names the architecture this binary is for
/// (`std::env::consts::ARCH` spells some of them otherwise).
pub fn same_arch(uname: &str, mine: &str) -> bool {
    let u = uname.trim();
    u == mine
        || match mine {
            "aarch64" => u == "arm64",
            "x86" => matches!(u, "i386" | "i486" | "i586" | "i686"),
            "arm" => u.starts_with("armv") || u == "arm",
            "powerpc64" => {
                u == if cfg!(target_endian = "little") {
                    "ppc64le"
                } else {
                    "ppc64"
                }
            }
            _ => false,
        }
}

/// Streamed into `$dir/.mend-install.PID` beside the destination, checked,
/// made executable, renamed into place. A bare name is looked up on the
/// host's PATH, else goes to /usr/local/bin.
const RECEIVE: &str = r#"set -e
dest=$1
case "$dest" in
  /*) ;;
  *) found=$(command -v "$dest" || true); dest=${found:-/usr/local/bin/$dest} ;;
esac
dir=$(dirname "$dest")
mkdir -p "$dir"
tmp="$dir/.mend-install.$$"
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
if ! echo "$2  $tmp" | sha256sum -c --status; then
  echo "the binary arrived damaged: its sha256 is not $2" >&2
  exit 3
fi
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
echo "$dest""#;

pub fn install(inventory: &std::path::Path, hosts: &[String]) -> Result<FleetInstall, Failure> {
    let inv = Inventory::load(inventory).map_err(Failure::BadInput)?;
    let picked = inv.select(hosts).map_err(Failure::BadInput)?;
    let me: PathBuf = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find mend's own binary: {e}"))?;
    let data = std::fs::read(&me)
        .map_err(|e| anyhow::anyhow!("cannot read mend's own binary {}: {e}", me.display()))?;
    let sum = sha256_hex(&data);
    drop(data);
    let version = format!("mend {}", env!("CARGO_PKG_VERSION"));
    let ssh = Ssh::new(inv.ssh_config.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot make ssh's control directory: {e}"))?;
    let results = each(&picked, inv.parallel, |h| {
        let run = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            ssh.run(&h.name, &h.ssh, &argv, None)
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        let uname = match run(&["uname", "-m"]) {
            Err(u) => return Installed::Unreachable(u.text),
            Ok(o) => text(&o.stdout),
        };
        let arch = std::env::consts::ARCH;
        if !same_arch(&uname, arch) {
            return Installed::Refused(format!(
                "the host is {uname:?} (uname -m), this controller's mend is built for {arch:?}: \
                 install a {uname} build of mend {} there by hand",
                env!("CARGO_PKG_VERSION")
            ));
        }
        let was = match run(&[&h.mend, "--version"]) {
            Err(u) => return Installed::Unreachable(u.text),
            Ok(o) if o.status.success() => Some(text(&o.stdout)),
            Ok(_) => None,
        };
        if was.as_deref() == Some(version.as_str()) {
            return Installed::Already {
                path: h.mend.clone(),
            };
        }
        let argv: Vec<String> = ["sh", "-c", RECEIVE, "mend-install", &h.mend, &sum]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = match ssh.run_file(&h.name, &h.ssh, &argv, &me) {
            Err(u) => return Installed::Unreachable(u.text),
            Ok(o) => o,
        };
        if !out.status.success() {
            return Installed::Refused(format!(
                "the copy to {} failed (exit {}): {}",
                h.mend,
                out.status.code().unwrap_or(-1),
                text(&out.stderr)
            ));
        }
        let path = text(&out.stdout);
        // It runs there and says the version.
        match run(&[&path, "--version"]) {
            Err(u) => Installed::Unreachable(u.text),
            Ok(o) if text(&o.stdout) == version => Installed::Copied { path, was },
            Ok(o) => Installed::Refused(format!(
                "{path} was copied but answers {:?} {}",
                text(&o.stdout),
                text(&o.stderr)
            )),
        }
    });
    for h in &picked {
        ssh.close(&h.ssh);
    }
    Ok(FleetInstall {
        version,
        hosts: picked
            .iter()
            .zip(results)
            .map(|(h, result)| HostInstall {
                host: h.name.clone(),
                result,
            })
            .collect(),
    })
}

impl FleetInstall {
    fn line(r: &Installed) -> String {
        match r {
            Installed::Already { path } => format!("already there: {path}"),
            Installed::Copied { path, was: Some(w) } => format!("installed: {path} (was {w:?})"),
            Installed::Copied { path, was: None } => format!("installed: {path} (was missing)"),
            Installed::Refused(t) => format!("refused: {t}"),
            Installed::Unreachable(t) => format!("unreachable: {t}"),
        }
    }

    pub fn render(&self, json: bool) -> i32 {
        let code = self.exit_code();
        if json {
            let hosts: Vec<_> = self
                .hosts
                .iter()
                .map(|h| json!({"host": h.host, "result": Self::line(&h.result)}))
                .collect();
            let v = json!({"version": self.version, "hosts": hosts, "exit_code": code});
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("JSON serializes")
            );
            return code;
        }
        println!(
            "fleet install: {} on {} host{}",
            self.version,
            self.hosts.len(),
            if self.hosts.len() == 1 { "" } else { "s" }
        );
        let w = self.hosts.iter().map(|h| h.host.len()).max().unwrap_or(4);
        for h in &self.hosts {
            println!("  {:<w$}  {}", h.host, Self::line(&h.result));
        }
        code
    }
}

#[cfg(test)]
mod tests {
    use super::same_arch;

    #[test]
    fn uname_names_are_matched_to_rusts_and_others_refused() {
        assert!(same_arch("x86_64\n", "x86_64"));
        assert!(same_arch("arm64", "aarch64"));
        assert!(same_arch("i686", "x86"));
        assert!(same_arch("armv7l", "arm"));
        assert!(!same_arch("aarch64", "x86_64"));
        assert!(!same_arch("x86_64", "aarch64"));
        assert!(!same_arch("", "x86_64"));
    }
}
