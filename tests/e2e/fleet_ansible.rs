//! `mend fleet plan` with the hosts taken from an Ansible YAML inventory
//! (`[fleet] ansible = ...`), over the four real sshd hosts of
//! [`crate::fleet`]: the same per-host plans as the equivalent fleet.toml.
//! Here the destinations are ansible_host/ansible_port/ansible_user
//! (127.0.0.1 and each sshd's port), not the ssh_config's Host aliases, so
//! ssh really goes where the inventory says.

use crate::common::mend_bin;
use crate::fleet::{Fleet, user};

#[test]
fn fleet_plan_from_an_ansible_inventory_matches_the_fleet_toml_plans() {
    let f = Fleet::start(4);
    f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let rb = f.runbook();
    let r = f.root();

    // Strict host keys still: the hosts' keys under the names ssh now
    // looks up, [127.0.0.1]:PORT.
    let mut known = std::fs::read_to_string(r.join("known_hosts")).unwrap();
    for h in &f.hosts {
        let key = std::fs::read_to_string(h.dir.join("hostkey.pub")).unwrap();
        let mut k = key.split_whitespace();
        known.push_str(&format!(
            "[127.0.0.1]:{} {} {}\n",
            h.port,
            k.next().unwrap(),
            k.next().unwrap()
        ));
    }
    std::fs::write(r.join("known_hosts"), known).unwrap();

    // The same fleet as Ansible has it: the group's parameter in
    // group_vars/, one host's data in host_vars/, the rest inline.
    let mut yml = format!(
        "all:\n  vars:\n    ansible_user: {}\n    mend_path: {}\n  children:\n    cdn:\n      hosts:\n",
        user(),
        mend_bin()
    );
    for (i, h) in f.hosts.iter().enumerate() {
        yml.push_str(&format!(
            "        {}:\n          ansible_host: 127.0.0.1\n          ansible_port: {}\n",
            h.name, h.port
        ));
        if i != 2 {
            yml.push_str(&format!("          data: \"{}\"\n", h.data().display()));
        }
    }
    let a = r.join("ansible");
    std::fs::create_dir_all(a.join("group_vars")).unwrap();
    std::fs::create_dir_all(a.join("host_vars")).unwrap();
    std::fs::write(a.join("hosts.yml"), yml).unwrap();
    std::fs::write(a.join("group_vars/cdn.yml"), "nginx: /bin/true\n").unwrap();
    std::fs::write(
        a.join("host_vars/h3.yml"),
        format!("data: \"{}\"\n", f.hosts[2].data().display()),
    )
    .unwrap();
    std::fs::write(
        r.join("ansible.toml"),
        "[fleet]\nname = \"test\"\nparallel = 4\nansible = \"ansible/hosts.yml\"\n\
         [ssh]\nconfig = \"ssh_config\"\n[rollout]\nbatches = [1, \"rest\"]\n",
    )
    .unwrap();

    let plan = |inv: &str, out: &str| {
        let p = f.mend(&[
            "--json",
            "fleet",
            "plan",
            rb.to_str().unwrap(),
            "-i",
            inv,
            "--out",
            out,
        ]);
        assert_eq!(p.code, 0, "{}", p.text());
        p.json()
    };
    let toml = plan("fleet.toml", "p-toml");
    let ansible = plan("ansible.toml", "p-ansible");
    let hosts = |v: &serde_json::Value| v["hosts"].as_array().unwrap().clone();
    assert_eq!(hosts(&toml).len(), 4);
    for (t, a) in hosts(&toml).iter().zip(hosts(&ansible).iter()) {
        assert!(t["plan"].is_object(), "{t}");
        assert_eq!(t["host"], a["host"]);
        assert_eq!(timeless(&t["summary"]), timeless(&a["summary"]));
        assert_eq!(
            timeless(&t["plan"]),
            timeless(&a["plan"]),
            "host {}",
            t["host"]
        );
    }
    assert_eq!(toml["batches"], ansible["batches"]);
    // Not the drift table: hosts planned in different seconds differ in
    // their snapshot's name, a row that comes and goes with the clock.
}

/// A plan with what moves between two plans of one host taken seconds
/// apart blanked: the snapshot's time (in its name and facts) and the free
/// space the summary reports. Everything else must be equal.
fn timeless(plan: &serde_json::Value) -> String {
    let s = plan.to_string();
    let shapes = ["ddddddddTddddddZ", "dddd-dd-ddTdd:dd:ddZ"];
    let fits = |w: &[u8], shape: &str| {
        w.len() == shape.len()
            && w.iter().zip(shape.bytes()).all(|(c, k)| match k {
                b'd' => c.is_ascii_digit(),
                k => *c == k,
            })
    };
    let b = s.as_bytes();
    let (mut out, mut i) = (String::new(), 0);
    'next: while i < b.len() {
        for shape in shapes {
            if i + shape.len() <= b.len() && fits(&b[i..i + shape.len()], shape) {
                out.push_str("TIME");
                i += shape.len();
                continue 'next;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    // "..., 24.3 GB free there": the disk is shared with the other test.
    let mut cut = String::new();
    let mut rest = out.as_str();
    while let Some(k) = rest.find("with headroom, ") {
        cut.push_str(&rest[..k]);
        let tail = &rest[k..];
        let e = tail
            .find(" free there")
            .map(|e| e + " free there".len())
            .unwrap_or(tail.len());
        rest = &tail[e..];
    }
    cut.push_str(rest);
    cut
}
