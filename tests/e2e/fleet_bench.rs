//! A benchmark, ignored by default (it asserts no time, it prints figures):
//! `mend fleet plan` of runbooks/mastodon/maintenance.toml over four real
//! sshd hosts, against what an operator does without it, four sequential
//! `ssh HOST mend plan`, and against four sequential `ssh HOST true` (the
//! cost of a bare connection), all in one run on the same hosts.
//!
//!     cargo test -p mend --test e2e fleet_bench -- --ignored --nocapture

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::mend_bin;
use crate::fleet::Fleet;

const ROUNDS: usize = 9;
const FILES_PER_DIR: usize = 70;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
#[ignore = "a benchmark: cargo test -p mend --test e2e fleet_bench -- --ignored --nocapture"]
fn fleet_bench_plan_over_four_hosts_against_sequential_ssh() {
    let f = Fleet::start(4);
    let rb = format!(
        "{}/../../runbooks/mastodon/maintenance.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    // Each host's Mastodon cache: 3 directories of FILES_PER_DIR files, half
    // of them 40 days old (culled), half new.
    let old = SystemTime::now() - Duration::from_secs(40 * 86_400);
    let system = |i: usize| f.hosts[i].data().join("system");
    for i in 0..4 {
        for d in ["media_attachments", "accounts", "preview_cards"] {
            let dir = system(i).join("cache").join(d);
            std::fs::create_dir_all(&dir).unwrap();
            for n in 0..FILES_PER_DIR {
                let p = dir.join(format!("{n:04}.bin"));
                std::fs::write(&p, vec![b'x'; 1024]).unwrap();
                if n % 2 == 0 {
                    std::fs::File::options()
                        .write(true)
                        .open(&p)
                        .unwrap()
                        .set_modified(old)
                        .unwrap();
                }
            }
        }
    }
    f.inventory("batches = [1, \"rest\"]", &|i| {
        format!("params = {{ system = \"{}\" }}", system(i).display())
    });
    let cfg = f.root().join("ssh_config");
    let ssh = |host: &str, cmd: &[String]| {
        let out = Command::new("ssh")
            .arg("-F")
            .arg(&cfg)
            .arg(host)
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh {host} {cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let fleet_plan = || {
        let p = f.mend(&["fleet", "plan", &rb]);
        assert_eq!(p.code, 0, "{}", p.text());
        assert!(p.stdout.contains("h4  planned"), "{}", p.text());
    };
    let sequential_plan = || {
        for i in 0..4 {
            ssh(
                &f.hosts[i].name,
                &[
                    mend_bin().to_string(),
                    "plan".into(),
                    rb.clone(),
                    "--set".into(),
                    format!("system={}", system(i).display()),
                ],
            );
        }
    };
    let sequential_true = || {
        for h in &f.hosts {
            ssh(&h.name, &["true".into()]);
        }
    };
    // Warm: steps compiled into the shared cache, bundles shipped.
    fleet_plan();
    sequential_plan();
    let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
    // Interleaved, so a burst of load on the machine hits all three.
    for _ in 0..ROUNDS {
        let t = Instant::now();
        fleet_plan();
        a.push(t.elapsed());
        let t = Instant::now();
        sequential_plan();
        b.push(t.elapsed());
        let t = Instant::now();
        sequential_true();
        c.push(t.elapsed());
    }
    let (a, b, c) = (median(a), median(b), median(c));
    println!(
        "fleet bench ({} files per host, median of {ROUNDS}):",
        3 * FILES_PER_DIR
    );
    println!("  mend fleet plan over 4 hosts:          {}", ms(a));
    println!("  4 sequential `ssh HOST mend plan`:     {}", ms(b));
    println!("  4 sequential `ssh HOST true`:          {}", ms(c));
    println!(
        "  mend plan over ssh, per host, beyond a bare ssh: {}",
        ms(b.saturating_sub(c) / 4)
    );
}
