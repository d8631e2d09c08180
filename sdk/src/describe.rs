//! An action in the engine's words (`remove cache/x`, `rename a -> b`,
//! `exec svc stop web (undo: svc start web)`): the SDK's action is turned
//! into the engine's own ([`mend_plan::Action`]) and described by its
//! `Display`, the one `mend plan` uses, so a step's test and the operator's plan can
//! never say an action two ways.

use std::fmt;

use crate::{Action, ActionKind, ArchiveFormat, CommandCall};

impl From<ArchiveFormat> for mend_plan::Format {
    fn from(f: ArchiveFormat) -> Self {
        match f {
            ArchiveFormat::Tar => mend_plan::Format::Tar,
            ArchiveFormat::TarGz => mend_plan::Format::TarGz,
            ArchiveFormat::TarZst => mend_plan::Format::TarZst,
        }
    }
}

fn call(c: &CommandCall) -> mend_plan::Call {
    mend_plan::Call {
        command: c.command.clone(),
        args: c.args.clone(),
    }
}

/// The action as the host receives it from the component (field for field
/// what `mend-host/src/check.rs` makes of the WIT record).
impl From<&ActionKind> for mend_plan::Action {
    fn from(k: &ActionKind) -> Self {
        use mend_plan::Action as A;
        match k {
            ActionKind::Remove(path) => A::Remove { path: path.clone() },
            ActionKind::Rename(a) => A::Rename {
                path: a.src.clone(),
                to: a.dst.clone(),
            },
            ActionKind::Swap(a) => A::Swap {
                path: a.a.clone(),
                with: a.b.clone(),
            },
            ActionKind::CreateDir(path) => A::CreateDir { path: path.clone() },
            ActionKind::WriteFile(a) => A::WriteFile {
                path: a.path.clone(),
                contents: a.contents.clone(),
                mode: a.mode,
            },
            ActionKind::Copy(a) => A::Copy {
                from: a.src.clone(),
                path: a.dst.clone(),
            },
            ActionKind::Extract(a) => A::Extract {
                archive: a.archive.clone(),
                path: a.dst.clone(),
                format: a.format.into(),
            },
            ActionKind::Archive(a) => A::Archive {
                from: a.src.clone(),
                path: a.dst.clone(),
                format: a.format.into(),
            },
            ActionKind::SetOwner(a) => A::SetOwner {
                path: a.path.clone(),
                owner: a.owner.clone(),
                group: a.group.clone(),
                recursive: a.recursive,
            },
            ActionKind::SetMode(a) => A::SetMode {
                path: a.path.clone(),
                mode: a.mode,
                dir_mode: a.dir_mode,
                recursive: a.recursive,
            },
            ActionKind::Exec(a) => A::Exec {
                call: call(&a.call),
                undo: a.undo.as_ref().map(call),
                creates: a.creates.clone(),
            },
        }
    }
}

/// `remove cache/x`, `exec pg_dump ... (creates backups/db.dump)`: what
/// `mend plan` and a saved plan say of the action.
impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        mend_plan::Action::from(self).fmt(f)
    }
}

/// The action's kind and object in the engine's words (its reason is not
/// part of it: the plan shows that in a column of its own).
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{describe, lines, removed};
    use crate::{ArchiveFormat, Plan};

    #[test]
    fn every_kind_is_said_in_the_engines_words() {
        let plan = Plan::builder()
            .remove("cache/x", "r")
            .rename("a/b", "a/c", "r")
            .swap("a/live", "a/new", "r")
            .create_dir("a/d", "r")
            .write_file("a/f", "text", "r")
            .copy("b/snap", "a/copy", "r")
            .extract("b/r.tar.gz", "a/r", ArchiveFormat::TarGz, "r")
            .archive("a/data", "b/data.tar.zst", ArchiveFormat::TarZst, "r")
            .set_owner("a/data", Some("mastodon"), Some("www-data"), true, "r")
            .set_owner("a/f", None, Some("adm"), false, "r")
            .set_mode("a/data", 0o640, Some(0o750), true, "r")
            .exec(
                "svc",
                &["stop", "web"],
                Some(("svc", &["start", "web"])),
                "r",
            )
            .exec("psql", &["-c", "select 1", ""], None, "r")
            .exec_creating("pg_dump", &["-f", "@b/db.dump"], "b/db.dump", "r")
            .remove("cache/\x1b[2J", "r")
            .build();
        assert_eq!(
            lines(&plan),
            [
                "remove cache/x",
                "rename a/b -> a/c",
                "swap a/live <-> a/new",
                "create-dir a/d",
                "write-file a/f",
                "copy b/snap -> a/copy",
                "extract b/r.tar.gz -> a/r",
                "archive a/data -> b/data.tar.zst (tar.zst)",
                "set-owner a/data (recursively) to mastodon:www-data",
                "set-owner a/f to :adm",
                "set-mode a/data (recursively) to 640, directories 750",
                "exec svc stop web (undo: svc start web)",
                "exec psql -c 'select 1' ''",
                "exec pg_dump -f @b/db.dump (creates b/db.dump)",
                "remove cache/\\x1b[2J",
            ]
        );
        assert_eq!(describe(&plan.actions[1]), plan.actions[1].to_string());
    }

    #[test]
    fn removed_lists_removals_and_stops_at_anything_else() {
        let only = Plan::builder()
            .remove("c/a", "r")
            .remove("c/b", "r")
            .build();
        assert_eq!(removed(&only), ["c/a", "c/b"]);
        let mixed = Plan::builder()
            .remove("c/a", "r")
            .rename("c/b", "c/d", "r")
            .build();
        let err = std::panic::catch_unwind(|| removed(&mixed)).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert_eq!(msg, "`rename c/b -> c/d` in a plan expected to only remove");
    }
}
