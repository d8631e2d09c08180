//! What undo needs: the state before an action (journaled with its intent),
//! how to undo it once performed, and where an action's trash and staging
//! entries are. The host performs and undoes; the journal keeps these.

use serde::{Deserialize, Serialize};

use crate::Call;

/// Where trash and staging live inside each write grant.
pub const TRASH: &str = ".mend-trash";
/// Copies and extracts are built here, then renamed into place.
pub const STAGING: &str = ".mend-staging";

/// Names an action: its trash and staging entries are derived from it.
#[derive(Clone, Debug)]
pub struct Key<'a> {
    pub run: &'a str,
    pub step: u32,
    pub seq: u32,
}

impl Key<'_> {
    /// Its trash entry, relative to the grant.
    pub fn trash(&self) -> String {
        format!("{TRASH}/{}/{}", self.run, self.leaf())
    }
    /// The name of its entry inside this run's trash or staging folder.
    pub fn leaf(&self) -> String {
        format!("{}-{}", self.step, self.seq)
    }
    /// Its staging entry, relative to the grant.
    pub fn staging(&self) -> String {
        format!("{STAGING}/{}/{}-{}", self.run, self.step, self.seq)
    }
}

/// `rel` inside `top` (a volume mounted in the grant; "" for the grant's
/// root): trash and staging stay on the filesystem of what they hold, so
/// that moving in and out of them is a rename, never a copy.
/// `rel` under `top` (a volume's top inside a grant; "" for the grant's root).
pub fn under(top: &str, rel: String) -> String {
    if top.is_empty() {
        rel
    } else {
        format!("{top}/{rel}")
    }
}

/// The world before an action, journaled with its intent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pre {
    /// Whether the target existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existed: bool,
    /// Inode of the first path of a swap, or of what a rename moves: how a
    /// resumed run or a rollback tells whether it already happened (a
    /// path's existence cannot: a later rename may reuse the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// Directories created by a create-dir, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    /// Modification times of the directories the action changes, restored on undo.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirTimes>,
    /// Taken by this process just before the action (not read back from
    /// the journal by a resume): what is at the target now that was not
    /// then is someone else's, not this run's earlier work.
    #[serde(skip)]
    pub fresh: bool,
}

/// How to undo a performed action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub enum Undo {
    /// Nothing was changed.
    Nothing,
    /// Cannot be undone (a disposable removal, an exec without compensation).
    Irreversible,
    /// Move the trash entry back to `path`.
    Restore { trash: String, path: String },
    /// Rename `from` back to `to`.
    RenameBack { from: String, to: String },
    /// Exchange the two paths again.
    SwapBack { a: String, b: String },
    /// Remove the directories created, innermost first.
    RemoveDirs { dirs: Vec<String> },
    /// Remove the file or tree the action created.
    RemoveCreated { path: String },
    /// Remove the new file, then move the old one back from the trash.
    ReplaceBack { trash: String, path: String },
    /// Run the compensating command.
    Exec { call: Call },
    /// Put back the owners and modes saved before a set-owner or set-mode.
    Attrs { path: String, saved: String },
}

/// A directory's modification time, to put back after an undo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirTimes {
    pub grant: String,
    pub rel: String,
    pub secs: i64,
    pub nanos: u32,
}
