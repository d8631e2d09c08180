//! fleet.toml's tables, key by key: the parser below and `mend schema
//! --fleet` read the same declarations.

use crate::format::{Kind, Place, Table, key, required, table};

/// The whole file.
pub static TOP: Table = table(
    "the inventory",
    Place::Top,
    &[
        key(
            "fleet",
            Kind::Table(&FLEET),
            "The fleet's name, journal and parallelism.",
        ),
        key("ssh", Kind::Table(&SSH), "How the system's ssh is called."),
        key(
            "rollout",
            Kind::Table(&ROLLOUT),
            "The batches a run goes through and the failures it tolerates.",
        ),
        key(
            "groups",
            Kind::Named {
                of: &Kind::Table(&GROUP),
                dotted: false,
            },
            "Named groups of hosts, with the parameters they share.",
        ),
        key(
            "hosts",
            Kind::Named {
                of: &Kind::Table(&HOST),
                dotted: false,
            },
            "The hosts, by name, in rollout order (or `ansible` in [fleet]).",
        ),
    ],
);

pub static FLEET: Table = table(
    "[fleet]",
    Place::Header,
    &[
        key("name", Kind::Ident, "The fleet's name."),
        key(
            "journal",
            Kind::NonEmpty,
            "\"postgres://...\": a shared journal (fleet history and the fleet-wide lock); omit for the controller's own.",
        ),
        key(
            "parallel",
            Kind::Attempts,
            "How many hosts are reached at once (default 8).",
        ),
        key(
            "ansible",
            Kind::NonEmpty,
            "An Ansible inventory (INI, or YAML for .yml/.yaml) to take the hosts and groups from, instead of [hosts] and [groups] (relative to fleet.toml).",
        ),
    ],
);

pub static SSH: Table = table(
    "[ssh]",
    Place::Header,
    &[key(
        "config",
        Kind::NonEmpty,
        "An ssh_config file passed as `ssh -F` (relative to fleet.toml); default: ssh's own.",
    )],
);

pub static ROLLOUT: Table = table(
    "[rollout]",
    Place::Header,
    &[
        key(
            "batches",
            Kind::NonEmptyArray(&Kind::Either(&Kind::Attempts, &Kind::NonEmpty)),
            "Batch sizes in order: a count, \"N%\" of the fleet, or \"rest\"; the last repeats. Default [1, \"rest\"]: a canary, then the rest.",
        ),
        key(
            "max_failures",
            Kind::Count,
            "Before each batch the rollout stops if more hosts failed so far, over the whole run (default 0).",
        ),
    ],
);

pub static GROUP: Table = table(
    "[group]",
    Place::Header,
    &[
        key(
            "params",
            Kind::Named {
                of: &Kind::Scalar,
                dotted: false,
            },
            "Runbook parameters for the group's hosts (as --set).",
        ),
        key("doc", Kind::Str, "One line for the operator."),
    ],
);

pub static HOST: Table = table(
    "[host]",
    Place::Header,
    &[
        required(
            "ssh",
            Kind::NonEmpty,
            "",
            "The destination, anything `ssh` accepts: \"root@cdn1.example.org\", a Host of ssh_config.",
        ),
        key("groups", Kind::Strings, "The groups it belongs to."),
        key(
            "mend",
            Kind::NonEmpty,
            "mend's path on the host (default \"mend\", found on PATH).",
        ),
        key(
            "params",
            Kind::Named {
                of: &Kind::Scalar,
                dotted: false,
            },
            "Runbook parameters for this host (over its groups').",
        ),
    ],
);
