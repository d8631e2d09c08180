use std::path::Path;

use super::*;

/// Write `files` (path, text) under a fresh directory.
fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, text) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// name, destination, groups, params.
type Flat = (String, String, Vec<String>, Vec<(String, String)>);

fn hosts(r: &Resolved) -> Vec<Flat> {
    r.hosts
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                h.ssh.clone(),
                h.groups.clone(),
                h.params.clone().into_iter().collect(),
            )
        })
        .collect()
}

/// The errors of loading `file` of `d`, rendered, paths made relative.
fn errors(d: &tempfile::TempDir, file: &str) -> String {
    let e = match load(&d.path().join(file)) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e) => e,
    };
    let prefix = format!("{}/", d.path().display());
    e.iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

const YAML: &str = r#"all:
  vars:
    tier: all
    region: eu
  hosts:
    solo:
      ansible_host: 10.0.0.9
  children:
    web:
      vars:
        tier: web
      hosts:
        web[1:2]:
          ansible_user: deploy
    cdn:
      vars:
        tier: cdn
        nginx: /usr/sbin/nginx
        workers: 4
      hosts:
        cdn01.example.org:2222:
        cdn02.example.org:
          tier: host
      children:
        cdn_eu:
          vars:
            tier: cdn_eu
          hosts:
            cdn03:
              ansible_host: "::1"
              ansible_port: 22
              mend_path: /opt/mend
"#;

const INI: &str = r#"# the same inventory, INI
solo ansible_host=10.0.0.9

[web]
web[1:2] ansible_user=deploy

[web:vars]
tier=web

[cdn]
cdn01.example.org:2222
cdn02.example.org tier="host"   # a comment

[cdn:vars]
tier = cdn
nginx=/usr/sbin/nginx
workers=4

[cdn_eu]
cdn03 ansible_host=::1 ansible_port=22 mend_path=/opt/mend

[cdn_eu:vars]
tier=cdn_eu

[cdn:children]
cdn_eu

[all:vars]
tier=all
region=eu
"#;

#[test]
fn the_ini_and_yaml_forms_of_one_inventory_resolve_identically() {
    let d = dir(&[("hosts.yml", YAML), ("hosts", INI)]);
    let y = load(&d.path().join("hosts.yml")).unwrap();
    let i = load(&d.path().join("hosts")).unwrap();
    assert_eq!(hosts(&y), hosts(&i));
    assert_eq!(y.groups, i.groups);
    assert_eq!(y.groups, ["web", "cdn", "cdn_eu", "ungrouped"]);
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        hosts(&y),
        [
            (
                "solo".into(),
                "10.0.0.9".into(),
                s(&["ungrouped"]),
                vec![p("region", "eu"), p("tier", "all")]
            ),
            (
                "web1".into(),
                "deploy@web1".into(),
                s(&["web"]),
                vec![p("region", "eu"), p("tier", "web")]
            ),
            (
                "web2".into(),
                "deploy@web2".into(),
                s(&["web"]),
                vec![p("region", "eu"), p("tier", "web")]
            ),
            (
                "cdn01.example.org".into(),
                "ssh://cdn01.example.org:2222".into(),
                s(&["cdn"]),
                vec![
                    p("nginx", "/usr/sbin/nginx"),
                    p("region", "eu"),
                    p("tier", "cdn"),
                    p("workers", "4")
                ]
            ),
            (
                "cdn02.example.org".into(),
                "cdn02.example.org".into(),
                s(&["cdn"]),
                vec![
                    p("nginx", "/usr/sbin/nginx"),
                    p("region", "eu"),
                    p("tier", "host"),
                    p("workers", "4")
                ]
            ),
            (
                "cdn03".into(),
                "ssh://[::1]:22".into(),
                s(&["cdn", "cdn_eu"]),
                vec![
                    p("nginx", "/usr/sbin/nginx"),
                    p("region", "eu"),
                    p("tier", "cdn_eu"),
                    p("workers", "4")
                ]
            ),
        ]
    );
    assert_eq!(y.hosts[5].mend, "/opt/mend");
    assert_eq!(y.hosts[0].mend, "mend");
}

#[test]
fn precedence_is_all_then_groups_by_depth_then_name_then_host() {
    // b_peer and a_peer are both at depth 1: the later name wins; the
    // child (depth 2) beats both; the host beats the child.
    let ini = "[a_peer]\nh1\nh2\nh3\n[b_peer]\nh1\nh2\nh3\n[child]\nh2\nh3 x=host\n\
               [a_peer:children]\nchild\n[all:vars]\nx=all\ny=all\n[a_peer:vars]\nx=a\n\
               [b_peer:vars]\nx=b\n[child:vars]\nx=child\n";
    let d = dir(&[("inv.ini", ini)]);
    let r = load(&d.path().join("inv.ini")).unwrap();
    let x: Vec<&str> = r.hosts.iter().map(|h| h.params["x"].as_str()).collect();
    assert_eq!(x, ["b", "child", "host"]);
    assert!(r.hosts.iter().all(|h| h.params["y"] == "all"));
}

#[test]
fn group_vars_and_host_vars_files_and_directories_layer_over_the_inventory() {
    let d = dir(&[
        ("inv/hosts.yml", YAML),
        // Files beat the inventory's group vars (Ansible's order), by
        // depth too: cdn_eu's file over cdn's directory.
        ("inv/group_vars/all.yml", "region: us\n"),
        (
            "inv/group_vars/cdn/10-nginx.yml",
            "nginx: /opt/nginx\ntier: cdn-file\n",
        ),
        ("inv/group_vars/cdn/20-more.yaml", "workers: 8\n"),
        ("inv/group_vars/cdn_eu", "tier: eu-file\n"),
        // Host vars files beat everything.
        ("inv/host_vars/web1.yml", "tier: web1-file\n"),
        (
            "inv/host_vars/cdn02.example.org/a.yml",
            "tier: cdn02-file\n",
        ),
    ]);
    let r = load(&d.path().join("inv/hosts.yml")).unwrap();
    let get = |h: &str, k: &str| r.hosts.iter().find(|x| x.name == h).unwrap().params[k].clone();
    assert_eq!(get("solo", "region"), "us");
    assert_eq!(get("solo", "tier"), "all");
    assert_eq!(get("web1", "tier"), "web1-file");
    assert_eq!(get("web2", "tier"), "web");
    assert_eq!(get("cdn01.example.org", "tier"), "cdn-file");
    assert_eq!(get("cdn01.example.org", "nginx"), "/opt/nginx");
    assert_eq!(get("cdn01.example.org", "workers"), "8");
    // The inventory's own host var loses to the host_vars file.
    assert_eq!(get("cdn02.example.org", "tier"), "cdn02-file");
    assert_eq!(get("cdn03", "tier"), "eu-file");
}

#[test]
fn ranges_expand_as_ansible_does() {
    assert_eq!(
        expand("cdn[01:04]").unwrap(),
        ["cdn01", "cdn02", "cdn03", "cdn04"]
    );
    assert_eq!(
        expand("db-[a:c].x").unwrap(),
        ["db-a.x", "db-b.x", "db-c.x"]
    );
    assert_eq!(expand("n[1:9:4]").unwrap(), ["n1", "n5", "n9"]);
    assert_eq!(
        expand("r[1:2]-[a:b]").unwrap(),
        ["r1-a", "r1-b", "r2-a", "r2-b"]
    );
    assert!(expand("bad[4:1]").is_err());
    assert!(expand("bad[1:").is_err());
    assert_eq!(split_port("cdn[01:04]:2222"), ("cdn[01:04]", Some("2222")));
    assert_eq!(split_port("fe80::1"), ("fe80::1", None));
}

#[test]
fn a_vault_value_is_refused_where_it_is() {
    let d = dir(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    h1:\n      db_password: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        6162\n",
        ),
        ("g/hosts.yml", "all:\n  hosts:\n    h1:\n"),
        ("g/group_vars/all.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n"),
    ]);
    assert_eq!(
        errors(&d, "hosts.yml"),
        "error: variable `db_password` is vault-encrypted\n --> hosts.yml:4:20\n  |\n4 |       db_password: !vault |\n  |                    ^^^^^^^^\n  = help: mend does not decrypt Ansible Vault: give the secret to the runbook another way (a file its step reads), or keep it where mend does not read it"
    );
    assert_eq!(
        errors(&d, "g/hosts.yml"),
        "error: a vault-encrypted file\n --> g/group_vars/all.yml:1:1\n  |\n1 | $ANSIBLE_VAULT;1.1;AES256\n  | ^\n  = help: mend does not decrypt Ansible Vault: give the secret to the runbook another way (a file its step reads), or keep it where mend does not read it"
    );
}

/// The refusal of `host`'s parameter `key`, rendered, paths made relative.
fn refused(d: &tempfile::TempDir, file: &str, host: &str, key: &str) -> Option<String> {
    let r = load(&d.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    let h = r.hosts.iter().find(|h| h.name == host).unwrap();
    let prefix = format!("{}/", d.path().display());
    let r = h
        .refused
        .get(key)
        .map(|d| d.to_string().replace(&prefix, ""));
    // Never both: a refused value is not passed.
    assert!(r.is_none() || !h.params.contains_key(key), "{key} passed");
    r
}

/// Lists and dicts are common in group_vars (users, limits) that no runbook
/// reads: the inventory loads; only a runbook that declares such a variable
/// as a parameter is refused, at the value's place (`fleet plan`, exit 2).
#[test]
fn a_list_or_dict_var_is_refused_only_for_a_parameter_a_runbook_declares() {
    let d = dir(&[
        (
            "a.yml",
            "all:\n  vars:\n    users: [alice, bob]\n  hosts:\n    h1:\n    h2:\n      users: alice\n",
        ),
        ("b.ini", "h1 users=['alice','bob']\n"),
        ("c/hosts", "h1\n"),
        ("c/host_vars/h1.yml", "limits:\n  nofile: 1024\nzone: eu\n"),
    ]);
    assert_eq!(
        refused(&d, "a.yml", "h1", "users").unwrap(),
        "error: variable `users` is a list: a mend parameter is a string, number or boolean\n --> a.yml:3:12\n  |\n3 |     users: [alice, bob]\n  |            ^^^^^^^^^^^\n  = help: make it a scalar, or give the parameter with --set"
    );
    // A host's own scalar wins over the group's list, as in Ansible.
    assert_eq!(refused(&d, "a.yml", "h2", "users"), None);
    let r = load(&d.path().join("a.yml")).unwrap();
    assert_eq!(r.hosts[1].params["users"], "alice");
    assert_eq!(
        refused(&d, "b.ini", "h1", "users").unwrap(),
        "error: variable `users` is a list or dict: a mend parameter is a string, number or boolean\n --> b.ini:1:10\n  |\n1 | h1 users=['alice','bob']\n  |          ^^^^^^^^^^^^^^^\n  = help: make it a scalar, or give the parameter with --set"
    );
    let e = refused(&d, "c/hosts", "h1", "limits").unwrap();
    assert!(
        e.starts_with("error: variable `limits` is a dict: a mend parameter is a string, number or boolean\n --> c/host_vars/h1.yml:2:3"),
        "{e}"
    );
    let r = load(&d.path().join("c/hosts")).unwrap();
    assert_eq!(r.hosts[0].params["zone"], "eu");
    // Only the declared ones count.
    let declared: BTreeSet<String> = ["zone".to_string()].into();
    assert!(r.hosts[0].refused_params(&declared).is_empty());
    let declared: BTreeSet<String> = ["zone".to_string(), "limits".to_string()].into();
    let got = r.hosts[0].refused_params(&declared);
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .message
            .starts_with("host `h1`: variable `limits` is a dict"),
        "{}",
        got[0].message
    );
}

#[test]
fn an_inventory_plugin_file_is_refused_with_the_export_command() {
    let d = dir(&[(
        "aws_ec2.yml",
        "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
    )]);
    assert_eq!(
        errors(&d, "aws_ec2.yml"),
        "error: an inventory plugin file: mend reads static inventories only\n --> aws_ec2.yml:1:1\n  |\n1 | plugin: amazon.aws.aws_ec2\n  | ^^^^^^\n  = help: export it: ansible-inventory -i FILE --list --yaml > hosts.yml, and point mend at hosts.yml"
    );
}

#[test]
fn a_group_cycle_is_refused_in_both_forms() {
    let d = dir(&[
        (
            "c.ini",
            "[a]\nh1\n[a:children]\nb\n[b:children]\nc\n[c:children]\na\n",
        ),
        (
            "c.yml",
            "all:\n  children:\n    a:\n      hosts:\n        h1:\n      children:\n        b:\n          children:\n            a:\n",
        ),
    ]);
    assert_eq!(
        errors(&d, "c.ini"),
        "error: group cycle: a -> b -> c -> a\n --> c.ini:8:1\n  |\n8 | a\n  | ^\n  = help: a group cannot contain itself; remove one of these children"
    );
    let e = errors(&d, "c.yml");
    assert!(
        e.starts_with("error: group cycle: a -> b -> a\n --> c.yml:9:13"),
        "{e}"
    );
}

#[test]
fn bad_ini_lines_ports_and_names_are_refused_each_at_its_place() {
    let d = dir(&[(
        "bad.ini",
        "[web:hosts]\nw1\n[web:child]\nx\n[db]\ndb[3:1]\ndb1 ansible_port=http\nDB_2!\ndb3 stray\n",
    )]);
    let e = errors(&d, "bad.ini");
    let has = |s: &str| assert!(e.contains(s), "no `{s}` in:\n{e}");
    has("error: unknown section kind `:child`\n --> bad.ini:3:6");
    has(
        "error: `[3:1]` is no host range: numbers or single letters, start <= end\n --> bad.ini:6:1",
    );
    has("error: expected key=value after host `db3`, found `stray`\n --> bad.ini:9:5");
    // Positions are checked first; names and ports after the file parsed.
    let d = dir(&[("p.ini", "db1 ansible_port=http\nDB_2!\n")]);
    let e = errors(&d, "p.ini");
    assert_eq!(
        e,
        "error: host `db1`: ansible_port \"http\" is not a port\n --> p.ini:1:18\n  |\n1 | db1 ansible_port=http\n  |                  ^^^^\n  = help: a number from 1 to 65535\n\
         error: host name `DB_2!`: letters, digits, `.`, `-` and `_`, starting with a letter or digit\n --> p.ini:2:1\n  |\n2 | DB_2!\n  | ^^^^^\n  = help: name the host with an alias and give the address as ansible_host: `web1 ansible_host=ADDRESS`"
    );
}

#[test]
fn an_empty_or_unreadable_inventory_says_so() {
    let d = dir(&[("empty.yml", "all:\n  children:\n    web:\n")]);
    assert_eq!(
        errors(&d, "empty.yml"),
        "error: the Ansible inventory has no hosts\n --> empty.yml\n  = help: add hosts under a group's `hosts:` (YAML) or a [group] section (INI)"
    );
    let e = load(Path::new("/nonexistent/hosts.yml")).err().unwrap();
    assert!(e[0].message.starts_with("cannot read Ansible inventory"));
}
