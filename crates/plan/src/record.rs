//! The undo data of an action as the journal keeps it: only what the action
//! itself does not already say. A removal of a path 800 bytes long used to
//! store that path three times more (in its undo, its trash entry and its
//! parent's times); here its record is `{"pre":{"times":[[s,n]]},"undo":"restore"}`.
//!
//! Decoding needs the action and its key, and gives back the full [`Pre`]
//! and [`Undo`]. Records in the older, spelled-out form still decode.
//! Encoding is lossless by construction: an undo is written as a bare tag
//! only when decoding that tag gives it back exactly; otherwise whole.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::{Action, DirTimes, Key, Pre, TRASH, Undo};

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    pre: StoredPre,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    undo: Option<StoredUndo>,
}

#[derive(Default, Serialize, Deserialize)]
struct StoredPre {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    existed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ino: Option<u64>,
    /// How many directories a create-dir made: the path and its parents.
    #[serde(default, skip_serializing_if = "is_zero")]
    made: u32,
    /// Times of the parents of the action's paths, in [`parents`] order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    times: Vec<(i64, u32)>,
    /// The older form of the two above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    created: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dirs: Vec<DirTimes>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredUndo {
    Tag(String),
    Full(Undo),
}

/// The directories whose times an action may change: the parents of the
/// paths it changes. (A disposable removal records none: no times at all
/// are stored then.)
fn parents(action: &Action) -> Vec<&str> {
    match action {
        Action::Remove { path }
        | Action::CreateDir { path }
        | Action::WriteFile { path, .. }
        | Action::Copy { path, .. }
        | Action::Extract { path, .. }
        | Action::Archive { path, .. } => vec![path],
        Action::SetOwner { .. } | Action::SetMode { .. } => vec![],
        Action::Rename { path, to } => vec![path, to],
        Action::Swap { path, with } => vec![path, with],
        Action::Exec {
            creates: Some(c), ..
        } => vec![c],
        Action::Exec { .. } => vec![],
    }
}

/// `GRANT/a/b` -> (`GRANT`, `a`): a path's grant and its parent's relative path.
fn grant_and_parent(path: &str) -> (&str, &str) {
    let (grant, rel) = path.split_once('/').unwrap_or((path, ""));
    (grant, rel.rsplit_once('/').map_or("", |(p, _)| p))
}

/// The create-dir's path and its `made - 1` parents, outermost first.
fn made_dirs(path: &str, made: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/');
    for _ in 0..made {
        out.push(p.to_string());
        match p.rsplit_once('/') {
            Some((up, _)) => p = up,
            None => break,
        }
    }
    out.reverse();
    out
}

fn trash_of(path: &str, key: &Key) -> String {
    let grant = path.split('/').next().unwrap_or_default();
    format!("{grant}/{TRASH}/{}/{}", key.run, key.leaf())
}

/// What an undo tag stands for, for this action.
fn expand(tag: &str, action: &Action, key: &Key, pre: &Pre) -> Option<Undo> {
    Some(match (tag, action) {
        ("nothing", _) => Undo::Nothing,
        ("irreversible", _) => Undo::Irreversible,
        ("restore", Action::Remove { path }) => Undo::Restore {
            trash: trash_of(path, key),
            path: path.clone(),
        },
        ("rename-back", Action::Rename { path, to }) => Undo::RenameBack {
            from: to.clone(),
            to: path.clone(),
        },
        ("swap-back", Action::Swap { path, with }) => Undo::SwapBack {
            a: path.clone(),
            b: with.clone(),
        },
        ("remove-dirs", Action::CreateDir { .. }) => Undo::RemoveDirs {
            dirs: pre.created.iter().rev().cloned().collect(),
        },
        (
            "remove-created",
            Action::WriteFile { path, .. }
            | Action::Copy { path, .. }
            | Action::Extract { path, .. }
            | Action::Archive { path, .. }
            | Action::Exec {
                creates: Some(path),
                ..
            },
        ) => Undo::RemoveCreated { path: path.clone() },
        ("attrs", Action::SetOwner { path, .. } | Action::SetMode { path, .. }) => Undo::Attrs {
            path: path.clone(),
            saved: format!("{}.attrs", trash_of(path, key)),
        },
        ("replace-back", Action::WriteFile { path, .. }) => Undo::ReplaceBack {
            trash: trash_of(path, key),
            path: path.clone(),
        },
        ("exec", Action::Exec { undo: Some(u), .. }) => Undo::Exec { call: u.clone() },
        _ => return None,
    })
}

fn tag(undo: &Undo) -> &'static str {
    match undo {
        Undo::Nothing => "nothing",
        Undo::Irreversible => "irreversible",
        Undo::Restore { .. } => "restore",
        Undo::RenameBack { .. } => "rename-back",
        Undo::SwapBack { .. } => "swap-back",
        Undo::RemoveDirs { .. } => "remove-dirs",
        Undo::RemoveCreated { .. } => "remove-created",
        Undo::ReplaceBack { .. } => "replace-back",
        Undo::Exec { .. } => "exec",
        Undo::Attrs { .. } => "attrs",
    }
}

/// The journal's text for an action's state before it and (once it is done)
/// its undo.
pub fn encode(action: &Action, key: &Key, pre: &Pre, undo: Option<&Undo>) -> String {
    let parents = parents(action);
    let compact_times = pre.dirs.len() == parents.len()
        && pre.dirs.iter().zip(&parents).all(|(d, p)| {
            let (grant, rel) = grant_and_parent(p);
            d.grant == grant && d.rel == rel
        });
    let compact_made = match action {
        Action::CreateDir { path } => made_dirs(path, pre.created.len() as u32) == pre.created,
        _ => pre.created.is_empty(),
    };
    let stored_pre = StoredPre {
        existed: pre.existed,
        ino: pre.ino,
        made: if compact_made {
            pre.created.len() as u32
        } else {
            0
        },
        times: if compact_times {
            pre.dirs.iter().map(|d| (d.secs, d.nanos)).collect()
        } else {
            Vec::new()
        },
        created: if compact_made {
            Vec::new()
        } else {
            pre.created.clone()
        },
        dirs: if compact_times {
            Vec::new()
        } else {
            pre.dirs.clone()
        },
    };
    let undo = undo.map(|u| {
        let t = tag(u);
        match expand(t, action, key, pre) {
            Some(e) if &e == u => StoredUndo::Tag(t.to_string()),
            _ => StoredUndo::Full(u.clone()),
        }
    });
    serde_json::to_string(&Stored {
        pre: stored_pre,
        undo,
    })
    .expect("undo data serializes")
}

/// The state before an action and its undo, from the journal's text.
pub fn decode(action: &Action, key: &Key, json: &str) -> Result<(Pre, Option<Undo>)> {
    let stored: Stored = serde_json::from_str(json)?;
    let s = stored.pre;
    let mut pre = Pre {
        existed: s.existed,
        ino: s.ino,
        created: s.created,
        dirs: s.dirs,
        // Read back from the journal: a resume's, not this moment's.
        fresh: false,
    };
    if s.made > 0 {
        let Action::CreateDir { path } = action else {
            bail!("a `made` count on a {} action", action.kind());
        };
        pre.created = made_dirs(path, s.made);
    }
    if !s.times.is_empty() {
        let parents = parents(action);
        if parents.len() != s.times.len() {
            bail!(
                "{} directory times for the {} parents of a {} action",
                s.times.len(),
                parents.len(),
                action.kind()
            );
        }
        pre.dirs = parents
            .iter()
            .zip(s.times)
            .map(|(p, (secs, nanos))| {
                let (grant, rel) = grant_and_parent(p);
                DirTimes {
                    grant: grant.to_string(),
                    rel: rel.to_string(),
                    secs,
                    nanos,
                }
            })
            .collect();
    }
    let undo = match stored.undo {
        None => None,
        Some(StoredUndo::Full(u)) => Some(u),
        Some(StoredUndo::Tag(t)) => Some(expand(&t, action, key, &pre).ok_or_else(|| {
            anyhow::anyhow!("undo `{t}` does not fit a {} action", action.kind())
        })?),
    };
    Ok((pre, undo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key<'static> {
        Key {
            run: "r1",
            step: 2,
            seq: 7,
        }
    }

    #[test]
    fn a_removal_stores_its_path_once() {
        let path = format!("cache/{}/f.jpg", "d".repeat(800));
        let action = Action::Remove { path: path.clone() };
        let pre = Pre {
            dirs: vec![DirTimes {
                grant: "cache".into(),
                rel: "d".repeat(800),
                secs: 5,
                nanos: 6,
            }],
            ..Pre::default()
        };
        let undo = Undo::Restore {
            trash: "cache/.mend-trash/r1/2-7".into(),
            path: path.clone(),
        };
        let json = encode(&action, &key(), &pre, Some(&undo));
        assert!(!json.contains("ddd"), "{json}");
        assert!(json.len() < 64, "{json}");
        let (p, u) = decode(&action, &key(), &json).unwrap();
        assert_eq!(p.dirs, pre.dirs);
        assert_eq!(format!("{u:?}"), format!("{:?}", Some(undo)));
    }

    #[test]
    fn every_kind_round_trips_and_old_records_still_decode() {
        let call = crate::Call {
            command: "c".into(),
            args: vec!["u".into()],
        };
        let t = |g: &str, rel: &str| DirTimes {
            grant: g.into(),
            rel: rel.into(),
            secs: 1,
            nanos: 2,
        };
        let cases: Vec<(Action, Pre, Undo)> = vec![
            (
                Action::Rename {
                    path: "g/a/x".into(),
                    to: "g/b/y".into(),
                },
                Pre {
                    ino: Some(42),
                    dirs: vec![t("g", "a"), t("g", "b")],
                    ..Pre::default()
                },
                Undo::RenameBack {
                    from: "g/b/y".into(),
                    to: "g/a/x".into(),
                },
            ),
            (
                Action::CreateDir {
                    path: "g/n/deep".into(),
                },
                Pre {
                    created: vec!["g/n".into(), "g/n/deep".into()],
                    dirs: vec![t("g", "n")],
                    ..Pre::default()
                },
                Undo::RemoveDirs {
                    dirs: vec!["g/n/deep".into(), "g/n".into()],
                },
            ),
            (
                Action::Exec {
                    call: call.clone(),
                    undo: Some(call.clone()),
                    creates: None,
                },
                Pre::default(),
                Undo::Exec { call: call.clone() },
            ),
            // Not what the tag would give: kept whole.
            (
                Action::Remove { path: "g/z".into() },
                Pre {
                    dirs: vec![t("g", "")],
                    ..Pre::default()
                },
                Undo::Restore {
                    trash: "g/elsewhere".into(),
                    path: "g/z".into(),
                },
            ),
        ];
        for (action, pre, undo) in cases {
            let json = encode(&action, &key(), &pre, Some(&undo));
            let (p, u) = decode(&action, &key(), &json).unwrap();
            assert_eq!(format!("{p:?}"), format!("{pre:?}"), "{json}");
            assert_eq!(format!("{u:?}"), format!("{:?}", Some(undo)), "{json}");
        }
        // The spelled-out form earlier versions wrote.
        let old = r#"{"pre":{"dirs":[{"grant":"g","rel":"a","secs":1,"nanos":2}]},"undo":{"undo":"restore","trash":"g/.mend-trash/r1/2-7","path":"g/a/f"}}"#;
        let action = Action::Remove {
            path: "g/a/f".into(),
        };
        let (p, u) = decode(&action, &key(), old).unwrap();
        assert_eq!(p.dirs, vec![t("g", "a")]);
        assert!(matches!(u, Some(Undo::Restore { ref path, .. }) if path == "g/a/f"));
    }
}
