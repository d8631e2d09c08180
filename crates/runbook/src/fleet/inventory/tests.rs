//! The inventory parser's tests.

use super::*;

fn parse(s: &str) -> Result<Inventory, Vec<Diagnostic>> {
    Inventory::parse(Path::new("fleet.toml"), s)
}

const GOOD: &str = r#"
[fleet]
name = "hachyderm"
journal = "postgres://mend@db/mend"
[ssh]
config = "ssh_config"
[rollout]
batches = [1, 1, "50%", "rest"]
max_failures = 1
[groups.cdn]
params = { nginx = "/usr/sbin/nginx", port = 443 }
[groups.web]
[hosts.cdn1]
ssh = "root@cdn1.example.org"
groups = ["cdn"]
params = { live = "/etc/letsencrypt/live/cdn1" }
[hosts.web1]
ssh = "web1"
groups = ["web"]
mend = "/usr/local/bin/mend"
"#;

#[test]
fn a_full_inventory_parses_in_file_order_with_params_merged() {
    let inv = parse(GOOD).unwrap();
    assert_eq!(inv.name.as_deref(), Some("hachyderm"));
    assert_eq!(
        inv.journal,
        JournalTarget::Postgres("postgres://mend@db/mend".into())
    );
    assert_eq!(inv.ssh_config, Some(PathBuf::from("ssh_config")));
    assert_eq!(
        inv.batches,
        [
            BatchSize::Count(1),
            BatchSize::Count(1),
            BatchSize::Percent(50),
            BatchSize::Rest
        ]
    );
    assert_eq!(inv.max_failures, 1);
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["cdn1", "web1"]);
    let cdn1 = &inv.hosts[0];
    assert_eq!(cdn1.params["nginx"], "/usr/sbin/nginx");
    assert_eq!(cdn1.params["port"], "443");
    assert_eq!(cdn1.params["live"], "/etc/letsencrypt/live/cdn1");
    assert_eq!(cdn1.mend, "mend");
    assert_eq!(inv.hosts[1].mend, "/usr/local/bin/mend");
    assert_eq!(inv.select(&["cdn".into()]).unwrap().len(), 1);
    assert_eq!(inv.select(&[]).unwrap().len(), 2);
    let e = inv.select(&["cdx".into()]).unwrap_err();
    assert!(e[0].to_string().contains("did you mean `cdn`?"), "{e:?}");
}

#[test]
fn an_unknown_key_is_refused_at_its_line_and_column_with_a_suggestion() {
    let e = parse("[hosts.h1]\nssh = \"h1\"\ngroup = [\"cdn\"]\n").unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (3, 1));
    assert_eq!(e[0].message, "unknown key `group` in [hosts.h1]");
    assert!(
        e[0].hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `groups`?")
    );
    let e = parse("[rollout]\nmax_failure = 1\n[hosts.h1]\nssh = \"h1\"\n").unwrap_err();
    assert!(
        e[0].hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `max_failures`?")
    );
}

#[test]
fn bad_values_are_each_reported_where_they_are() {
    let src = "[rollout]\nbatches = [0, \"rest\", \"150%\"]\nmax_failures = -1\n\
               [groups.a]\nparams = { x = \"1\" }\n[groups.b]\nparams = { x = \"2\" }\n\
               [hosts.h1]\nssh = \"-oProxyCommand=x\"\ngroups = [\"a\", \"b\", \"c\"]\n\
               [hosts.H2]\nmend = \"m\"\n";
    let e = parse(src).unwrap_err();
    let got: Vec<(usize, String)> = e.iter().map(|d| (d.line, d.message.clone())).collect();
    let has = |line: usize, text: &str| {
        assert!(
            got.iter().any(|(l, m)| *l == line && m.contains(text)),
            "no `{text}` at line {line}: {got:#?}"
        )
    };
    has(2, "each batch of `rollout.batches`");
    has(2, "\"rest\" must be the last batch");
    has(3, "`rollout.max_failures` must be an integer, at least 0");
    has(8, "groups `a` and `b` disagree on param `x`");
    has(9, "cannot start with `-`");
    has(10, "unknown group `c`");
    has(11, "host name `H2`");
    has(11, "missing `ssh` in [hosts.H2]");
}

#[test]
fn no_hosts_and_broken_toml_are_errors() {
    let e = parse("[fleet]\nname = \"x\"\n").unwrap_err();
    assert!(e[0].message.contains("no [hosts]"));
    let e = parse("[hosts.h1\nssh = 1\n").unwrap_err();
    assert!(e[0].message.starts_with("invalid TOML"), "{e:?}");
    assert_eq!(e[0].line, 1);
    assert!(looks_like_inventory(GOOD));
    assert!(!looks_like_inventory("[runbook]\nname = \"x\"\n"));
    assert!(looks_like_inventory("[fleet]\nansible = \"hosts.yml\"\n"));
}

#[test]
fn hosts_come_from_an_ansible_inventory_named_in_fleet_or_given_as_the_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("hosts.yml"),
        "all:\n  children:\n    cdn:\n      vars:\n        nginx: /usr/sbin/nginx\n      hosts:\n        cdn1:\n          ansible_host: 10.0.0.1\n          ansible_user: root\n",
    )
    .unwrap();
    let toml = d.path().join("fleet.toml");
    std::fs::write(
        &toml,
        "[fleet]\nname = \"edge\"\nansible = \"hosts.yml\"\n[rollout]\nbatches = [\"rest\"]\n",
    )
    .unwrap();
    let inv = Inventory::load(&toml).unwrap();
    assert_eq!(inv.name.as_deref(), Some("edge"));
    assert_eq!(inv.batches, [BatchSize::Rest]);
    assert_eq!(inv.groups, ["cdn"]);
    assert_eq!(inv.hosts[0].ssh, "root@10.0.0.1");
    assert_eq!(inv.hosts[0].params["nginx"], "/usr/sbin/nginx");
    assert_eq!(inv.select(&["cdn".into()]).unwrap().len(), 1);
    // `-i hosts.yml`: the same hosts, the fleet's defaults.
    let direct = Inventory::load(&d.path().join("hosts.yml")).unwrap();
    assert_eq!(direct.hosts, inv.hosts);
    assert_eq!(direct.batches, [BatchSize::Count(1), BatchSize::Rest]);
    // Two lists of hosts are one too many.
    std::fs::write(
        &toml,
        "[fleet]\nansible = \"hosts.yml\"\n[hosts.h1]\nssh = \"h1\"\n",
    )
    .unwrap();
    let e = Inventory::load(&toml).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (3, 2));
    assert_eq!(e[0].message, "[hosts] and `fleet.ansible` both list hosts");
    // Its errors come with the Ansible file's own place.
    std::fs::write(&toml, "[fleet]\nansible = \"nope.ini\"\n").unwrap();
    let e = Inventory::load(&toml).unwrap_err();
    assert!(
        e[0].message.starts_with("cannot read Ansible inventory"),
        "{e:?}"
    );
}
