//! `mend fleet install` over real sshd hosts, and the refusal of a host
//! whose mend is another version, at plan time and at run time, naming the
//! host and both versions, with nothing changed anywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::mend_bin;
use crate::fleet::Fleet;

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A mend of another version: a script that says so.
fn old_mend(at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::write(at, "#!/bin/sh\necho 'mend 0.0.9'\n").unwrap();
    std::fs::set_permissions(at, PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn fleet_install_puts_the_controllers_mend_where_missing_or_other_then_plans() {
    let f = Fleet::start(3);
    let rb = f.runbook();
    // h1: another version; h2: none at all; h3: this controller's.
    let at = |i: usize| f.hosts[i].dir.join("bin/mend");
    old_mend(&at(0));
    f.inventory("batches = [1, \"rest\"]", &|i| {
        if i < 2 {
            format!(
                "mend = \"{}\"\nparams = {{ data = \"{}\" }}",
                at(i).display(),
                f.hosts[i].data().display()
            )
        } else {
            String::new()
        }
    });
    let before: Vec<_> = (0..3).map(|i| f.snapshot(i)).collect();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap()]);
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout.contains(&format!(
            "h1  refused: {} is \"mend 0.0.9\", this controller is \"mend {}\": `mend fleet install` puts this one there",
            at(0).display(),
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        plan.text()
    );
    assert!(
        plan.stdout.contains("h2  refused: ") && plan.stdout.contains("--version` failed"),
        "{}",
        plan.text()
    );
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&f.snapshot(i), b, "h{} changed", i + 1);
    }

    let inst = f.mend(&["fleet", "install"]);
    assert_eq!(inst.code, 0, "{}", inst.text());
    assert!(
        inst.stdout.contains(&format!(
            "h1  installed: {} (was \"mend 0.0.9\")",
            at(0).display()
        )),
        "{}",
        inst.text()
    );
    assert!(
        inst.stdout
            .contains(&format!("h2  installed: {} (was missing)", at(1).display())),
        "{}",
        inst.text()
    );
    assert!(inst.stdout.contains("h3  already there"), "{}", inst.text());
    let mine = sha256(Path::new(&mend_bin()));
    for i in [0, 1] {
        assert_eq!(sha256(&at(i)), mine, "h{}", i + 1);
        let mode = std::fs::metadata(at(i)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // No temporary file left beside it.
        let names: Vec<_> = std::fs::read_dir(at(i).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mend")]);
    }
    // Again: nothing to do.
    let again = f.mend(&["fleet", "install"]);
    assert_eq!(again.code, 0, "{}", again.text());
    assert_eq!(
        again.stdout.matches("already there").count(),
        3,
        "{}",
        again.text()
    );

    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());

    // h2's mend changes after the review: `fleet run` refuses before it
    // starts anything anywhere, naming h2 and both versions.
    old_mend(&at(1));
    let reviewed: Vec<_> = (0..3).map(|i| f.snapshot(i)).collect();
    let run = f.mend(&["fleet", "run", "p"]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains(&format!(
            "1 host cannot run this plan, nothing was started:\n  h2: {} is \"mend 0.0.9\", this controller is \"mend {}\"",
            at(1).display(),
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        run.text()
    );
    for (i, b) in reviewed.iter().enumerate() {
        assert_eq!(&f.snapshot(i), b, "h{} changed", i + 1);
    }
    let hist = f.mend(&["fleet", "history"]);
    assert!(!hist.stdout.contains("running"), "{}", hist.text());
    assert!(!hist.stdout.contains("committed"), "{}", hist.text());
}
