//! An Ansible inventory's lists and dicts (users, limits: common in
//! group_vars) are refused only where the runbook declares them as
//! parameters: over a real sshd host, a plan that reads none of them runs,
//! one that declares such a variable is refused at its place, exit 2, with
//! nothing changed on the host.

use crate::common::mend_bin;
use crate::fleet::Fleet;

#[test]
fn fleet_ansible_a_list_var_is_refused_only_when_the_runbook_declares_it() {
    let f = Fleet::start(1);
    let r = f.root();
    let h = &f.hosts[0];
    // Destinations by name: ssh_config (the harness's) knows h1.
    std::fs::write(
        r.join("fleet.toml"),
        "[fleet]\nname = \"t\"\nansible = \"hosts.yml\"\n[ssh]\nconfig = \"ssh_config\"\n[rollout]\nbatches = [1]\n",
    )
    .unwrap();
    std::fs::write(
        r.join("hosts.yml"),
        format!(
            "all:\n  vars:\n    mend_path: {}\n    users: [alice, bob]\n    limits:\n      nofile: 1024\n  hosts:\n    h1:\n      data: \"{}\"\n",
            mend_bin(),
            h.data().display()
        ),
    )
    .unwrap();
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(plan.stdout.contains("h1  planned"), "{}", plan.text());

    // A runbook that declares `users`: refused where the list is written.
    let text = std::fs::read_to_string(&rb).unwrap().replace(
        "[params]\n",
        "[params]\nusers = { default = \"\", doc = \"who may log in\" }\n",
    );
    let rb2 = r.join("with-users.toml");
    std::fs::write(&rb2, text).unwrap();
    let before = f.snapshot(0);
    let plan = f.mend(&["fleet", "plan", rb2.to_str().unwrap()]);
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stderr.contains(
            "host `h1`: variable `users` is a list: a mend parameter is a string, number or boolean"
        ) && plan.stderr.contains("hosts.yml:4:12")
            && plan.stderr.contains("give the parameter with --set"),
        "{}",
        plan.text()
    );
    assert!(!plan.stderr.contains("limits"), "{}", plan.text());
    assert_eq!(f.snapshot(0), before, "h1 changed");
}
