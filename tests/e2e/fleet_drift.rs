//! Drift across a fleet (issue 17, Hachyderm's `.env.production` case): the
//! shipped `runbooks/mastodon/fleet-drift.toml` planned over four real sshd
//! hosts (the harness of `fleet.rs`), two of which say `S3_ENABLED=FALSE`
//! and one of those `3_BUCKET=` for `S3_BUCKET=`.

use crate::common::{mend_bin, repo};
use crate::fleet::Fleet;

const GOOD: &str = "# Generated with mastodon:setup\n\
LOCAL_DOMAIN=hachyderm.io\n\
DB_HOST=db1.hachyderm.internal\n\
export S3_ENABLED=true\n\
S3_BUCKET='files.hachyderm.io'\n";

#[test]
fn fleet_drift_names_the_hosts_whose_env_differs_and_fails_the_plan() {
    let f = Fleet::start(4);
    let mut inv = "[fleet]\nname = \"hachyderm\"\nparallel = 4\n[ssh]\nconfig = \"ssh_config\"\n\
         [rollout]\nbatches = [1, \"rest\"]\n"
        .to_string();
    for (i, h) in f.hosts.iter().enumerate() {
        let live = h.data().join("mastodon");
        let cron = h.data().join("cron.d");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&cron).unwrap();
        let env = match i {
            // h2: S3 switched off, in a later line (the last one wins).
            1 => format!("{GOOD}S3_ENABLED=FALSE\n"),
            // h4: switched off, and the bucket's key lost its S.
            3 => GOOD
                .replace("export S3_ENABLED=true", "S3_ENABLED=FALSE")
                .replace("S3_BUCKET=", "3_BUCKET="),
            _ => GOOD.to_string(),
        };
        std::fs::write(live.join(".env.production"), env).unwrap();
        // h1 is the database host: its WAL-cleanup job is there.
        let job = if i == 0 {
            std::fs::write(
                cron.join("pg-wal-cleanup"),
                "17 3 * * * postgres mend run /etc/mend/wal-archive-cleanup.toml\n",
            )
            .unwrap();
            "pg-wal-cleanup"
        } else {
            ""
        };
        inv.push_str(&format!(
            "[hosts.{n}]\nssh = \"{n}\"\nmend = \"{m}\"\nparams = {{ live = \"{l}\", cron = \"{c}\", wal_cleanup_job = \"{job}\" }}\n",
            n = h.name,
            m = mend_bin(),
            l = live.display(),
            c = cron.display(),
        ));
    }
    std::fs::write(f.root().join("fleet.toml"), inv).unwrap();
    let before: Vec<_> = (0..4).map(|i| f.snapshot(i).0).collect();
    let rb = repo("runbooks/mastodon/fleet-drift.toml");
    let plan = f.mend(&["fleet", "plan", &rb, "-i", "fleet.toml", "--out", "p"]);
    assert_eq!(plan.code, 1, "{}", plan.text());
    let out = &plan.stdout;

    // Per host: h1 and h3 plan, h2 and h4 fail, with the failed checks named.
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("  {name}  ")))
            .unwrap_or_else(|| panic!("no line for {name}: {}", plan.text()))
            .to_string()
    };
    assert!(line("h1").contains("planned: 0 actions"), "{}", plan.text());
    assert!(line("h3").contains("planned: 0 actions"), "{}", plan.text());
    let h2 = line("h2");
    assert!(
        h2.contains("plan failed: env: 1 of 4 checks FAILED")
            && h2.contains("S3_ENABLED is \"FALSE\", not \"true\""),
        "{}",
        plan.text()
    );
    let h4 = line("h4");
    assert!(
        h4.contains("plan failed: env: 2 of 4 checks FAILED")
            && h4.contains("S3_ENABLED is \"FALSE\", not \"true\"")
            && h4.contains(
                "no S3 bucket (a typo in the key?) (live/.env.production: S3_BUCKET is not set)"
            ),
        "{}",
        plan.text()
    );

    // The drift table: a row for the env step's failure naming h2 and h4
    // only, and the S3_ENABLED fact as h1 and h3 read it.
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("drift"))
        .collect();
    assert!(!table.is_empty(), "no drift table: {}", plan.text());
    let row = |key: &str| {
        table
            .iter()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no drift row {key}: {}", plan.text()))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let failed = row("env (plan)");
    assert_eq!(failed.matches('✗').count(), 2, "{}", plan.text());
    let fact = row("env dotenv:live/.env.production:S3_ENABLED");
    assert!(
        fact.ends_with("true (none) true (none)"),
        "{fact}\n{}",
        plan.text()
    );
    // A step that failed records no facts: its cells say (none).
    let domain = row("env dotenv:live/.env.production:LOCAL_DOMAIN");
    assert!(
        domain.ends_with("hachyderm.io (none) hachyderm.io (none)"),
        "{domain}"
    );
    // Only h1 has the cleanup job param; every host's cron check passed.
    assert!(!out.contains("wal-cleanup (plan)"), "{}", plan.text());

    // A plan changes nothing on any host.
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&f.snapshot(i).0, b, "{} changed", f.hosts[i].name);
    }
}

#[test]
fn fleet_drift_fails_the_database_host_without_its_wal_cleanup_job() {
    let f = Fleet::start(1);
    let h = &f.hosts[0];
    let live = h.data().join("mastodon");
    let cron = h.data().join("cron.d");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&cron).unwrap();
    std::fs::write(live.join(".env.production"), GOOD).unwrap();
    std::fs::write(
        f.root().join("fleet.toml"),
        format!(
            "[fleet]\nname = \"hachyderm\"\n[ssh]\nconfig = \"ssh_config\"\n[rollout]\nbatches = [\"rest\"]\n\
             [hosts.h1]\nssh = \"h1\"\nmend = \"{m}\"\nparams = {{ live = \"{l}\", cron = \"{c}\", wal_cleanup_job = \"pg-wal-cleanup\" }}\n",
            m = mend_bin(),
            l = live.display(),
            c = cron.display(),
        ),
    )
    .unwrap();
    let rb = repo("runbooks/mastodon/fleet-drift.toml");
    let plan = f.mend(&["fleet", "plan", &rb, "-i", "fleet.toml"]);
    assert_eq!(plan.code, 1, "{}", plan.text());
    assert!(
        plan.stdout.contains(
            "wal-cleanup: 1 of 1 check FAILED: the WAL-cleanup cron job is missing (cron/pg-wal-cleanup does not exist)"
        ),
        "{}",
        plan.text()
    );
}
