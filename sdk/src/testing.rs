//! Test a step's planning natively: a fake host with files, a clock and
//! canned probe answers, and helpers that call a step as the engine would.
//!
//! ```ignore
//! let host = FakeHost::new(1_700_000_000)
//!     .grant("cache", Access::Write)
//!     .file("cache/a.png", 1_000, 1_600_000_000);
//! let plan = mend_sdk::testing::plan::<CacheCull>(&host, serde_json::json!({"days": 7})).unwrap();
//! assert_eq!(mend_sdk::testing::lines(&plan), ["remove cache/a.png"]);
//! ```
//!
//! [`lines`], [`describe`] and [`removed`] say actions in the engine's words
//! (the ones `mend plan` prints), so a step's test asserts what the
//! operator will read.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{
    Access, Action, ActionKind, Algorithm, Check, Context, Entry, EntryKind, GrantInfo, Host,
    HostError, Level, Output, Plan, Space, Step, StepError,
};

#[derive(Clone, Debug)]
enum Node {
    File {
        data: Vec<u8>,
        size: u64,
        mtime: i64,
    },
    Dir {
        mtime: i64,
    },
    Symlink {
        target: String,
        mtime: i64,
    },
}

/// An in-memory host: grants, files, directories, symlinks, a fixed clock,
/// canned probe and HTTP answers. Logs are kept for assertions.
#[derive(Default)]
pub struct FakeHost {
    now: i64,
    grants: Vec<GrantInfo>,
    commands: Vec<String>,
    nodes: BTreeMap<String, Node>,
    probes: BTreeMap<String, Output>,
    urls: BTreeMap<String, u16>,
    free: BTreeMap<String, Space>,
    digests: BTreeMap<(String, Algorithm), String>,
    mounts: Vec<String>,
    logs: RefCell<Vec<(Level, String)>>,
}

impl FakeHost {
    /// A host whose clock reads `now` (seconds since the Unix epoch).
    pub fn new(now: i64) -> Self {
        FakeHost {
            now,
            ..Default::default()
        }
    }
    /// Grant a directory (its root exists, empty).
    pub fn grant(mut self, name: &str, access: Access) -> Self {
        self.grants.push(GrantInfo {
            name: name.to_string(),
            access,
            disposable: false,
        });
        self.nodes
            .insert(name.to_string(), Node::Dir { mtime: self.now });
        self
    }
    /// Grant a disposable (cache) directory, writable.
    pub fn disposable_grant(mut self, name: &str) -> Self {
        self = self.grant(name, Access::Write);
        self.grants.last_mut().expect("just pushed").disposable = true;
        self
    }
    /// Allow a command name.
    pub fn command(mut self, name: &str) -> Self {
        self.commands.push(name.to_string());
        self
    }
    fn parents(&mut self, path: &str) {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = &path[..at + i];
            self.nodes
                .entry(dir.to_string())
                .or_insert(Node::Dir { mtime: self.now });
            at += i + 1;
        }
    }
    /// A file of `size` bytes (zeros are not stored) modified at `mtime`.
    pub fn file(mut self, path: &str, size: u64, mtime: i64) -> Self {
        self.parents(path);
        let node = Node::File {
            data: Vec::new(),
            size,
            mtime,
        };
        self.nodes.insert(path.to_string(), node);
        self
    }
    /// A file with content.
    pub fn file_with(mut self, path: &str, data: impl Into<Vec<u8>>, mtime: i64) -> Self {
        self.parents(path);
        let data = data.into();
        let size = data.len() as u64;
        self.nodes
            .insert(path.to_string(), Node::File { data, size, mtime });
        self
    }
    /// An empty directory.
    pub fn dir(mut self, path: &str, mtime: i64) -> Self {
        self.parents(path);
        self.nodes.insert(path.to_string(), Node::Dir { mtime });
        self
    }
    /// A symlink (never followed by walk).
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.parents(path);
        let node = Node::Symlink {
            target: target.to_string(),
            mtime: self.now,
        };
        self.nodes.insert(path.to_string(), node);
        self
    }
    /// What `probe(command, args)` answers (args joined by spaces).
    pub fn probe_answer(mut self, command: &str, args: &[&str], status: i32, stdout: &str) -> Self {
        let key = probe_key(command, args);
        let out = Output {
            status,
            stdout: stdout.to_string(),
            stderr: String::new(),
        };
        self.probes.insert(key, out);
        self
    }
    /// What `http_status(url)` answers.
    pub fn url(mut self, url: &str, status: u16) -> Self {
        self.urls.insert(url.to_string(), status);
        self
    }
    /// What `free_space` answers for paths in `grant`.
    pub fn free(mut self, grant: &str, available: u64, total: u64) -> Self {
        self.free
            .insert(grant.to_string(), Space { available, total });
        self
    }
    /// What `digest(path, algorithm)` answers for a file the test declared
    /// (with [`FakeHost::file`] or [`FakeHost::file_with`]): the hex digest
    /// as the host gives it. A path with no file is `NotFound` whatever is canned.
    pub fn digest_answer(mut self, path: &str, algorithm: Algorithm, hex: &str) -> Self {
        self.digests
            .insert((path.to_string(), algorithm), hex.to_string());
        self
    }
    /// Make a directory the top of a mounted filesystem (a volume).
    pub fn mount(mut self, path: &str) -> Self {
        self.mounts.push(path.trim_end_matches('/').to_string());
        self
    }
    /// Entries below `root` with what compare looks at (the fake host has
    /// no owners: kind, size and mtime).
    fn described(&self, root: &str) -> BTreeMap<String, String> {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, n)| {
                let what = match n {
                    Node::File { size, mtime, .. } => format!("file {size} B, mtime {mtime}"),
                    Node::Dir { mtime } => format!("dir, mtime {mtime}"),
                    Node::Symlink { target, mtime } => format!("link -> {target}, mtime {mtime}"),
                };
                (p[prefix.len()..].to_string(), what)
            })
            .collect()
    }
    /// The context the engine would pass to a step with this host's grants.
    pub fn context(&self, step_id: &str) -> Context {
        Context {
            step_id: step_id.to_string(),
            grants: self.grants.clone(),
            commands: self.commands.clone(),
            now: self.now,
        }
    }
    /// Messages logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }
    fn granted(&self, path: &str) -> Result<(), HostError> {
        // The engine's rules, so a step's test sees what a real run would.
        if path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(HostError::Invalid(format!(
                "{path}: paths are GRANT/relative, without `..` or a leading `/`"
            )));
        }
        let grant = path.split('/').next().unwrap_or("");
        if self.grants.iter().any(|g| g.name == grant) {
            Ok(())
        } else {
            Err(HostError::Denied(format!("{path}: no grant `{grant}`")))
        }
    }
}

fn probe_key(command: &str, args: &[&str]) -> String {
    std::iter::once(command)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Host for FakeHost {
    fn now(&self) -> i64 {
        self.now
    }
    fn walk(&self, root: &str, each: &mut dyn FnMut(Entry)) -> Result<(), HostError> {
        self.granted(root)?;
        let root = root.trim_end_matches('/');
        if !matches!(self.nodes.get(root), Some(Node::Dir { .. })) {
            return Err(HostError::NotFound(root.to_string()));
        }
        let prefix = format!("{root}/");
        // Depth first, as the host walks: by path component, so `a/b`
        // comes before `a-c` (byte order would put `a-c` between `a` and
        // its tree).
        let mut tree: Vec<(&String, &Node)> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .collect();
        tree.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        for (path, node) in tree {
            let (kind, size, mtime) = match node {
                Node::File { size, mtime, .. } => (EntryKind::File, *size, *mtime),
                Node::Dir { mtime } => (EntryKind::Dir, 0, *mtime),
                Node::Symlink { target, mtime } => {
                    (EntryKind::Symlink, target.len() as u64, *mtime)
                }
            };
            each(Entry {
                path: path.clone(),
                kind,
                size,
                mtime,
                mtime_nanos: 0,
            });
        }
        Ok(())
    }
    fn stat(&self, path: &str) -> Result<Entry, HostError> {
        self.granted(path)?;
        let path = path.trim_end_matches('/');
        let (kind, size, mtime) = match self.nodes.get(path) {
            None => return Err(HostError::NotFound(path.to_string())),
            Some(Node::File { size, mtime, .. }) => (EntryKind::File, *size, *mtime),
            Some(Node::Dir { mtime }) => (EntryKind::Dir, 0, *mtime),
            Some(Node::Symlink { target, mtime }) => {
                (EntryKind::Symlink, target.len() as u64, *mtime)
            }
        };
        Ok(Entry {
            path: path.to_string(),
            kind,
            size,
            mtime,
            mtime_nanos: 0,
        })
    }
    fn digest(&self, path: &str, algorithm: Algorithm) -> Result<String, HostError> {
        self.granted(path)?;
        let canned = self.digests.get(&(path.to_string(), algorithm));
        match (self.nodes.get(path), canned) {
            (None, _) => Err(HostError::NotFound(path.to_string())),
            (Some(Node::File { .. }), Some(hex)) => Ok(hex.clone()),
            _ => Err(HostError::Io(format!(
                "{path}: the fake host does not hash; give a digest_answer or test digests through the engine"
            ))),
        }
    }
    fn free_space(&self, path: &str) -> Result<Space, HostError> {
        self.granted(path)?;
        let grant = path.split('/').next().unwrap_or("");
        Ok(self.free.get(grant).copied().unwrap_or(Space {
            available: u64::MAX / 2,
            total: u64::MAX,
        }))
    }
    fn mount_point(&self, path: &str) -> Result<bool, HostError> {
        self.granted(path)?;
        let path = path.trim_end_matches('/');
        match self.nodes.get(path) {
            None => Err(HostError::NotFound(path.to_string())),
            Some(_) => Ok(self.mounts.iter().any(|m| m == path)),
        }
    }
    fn compare(&self, a: &str, b: &str, max: u32) -> Result<Vec<String>, HostError> {
        self.granted(a)?;
        self.granted(b)?;
        let (ea, eb) = (self.described(a), self.described(b));
        let mut out = Vec::new();
        for (p, m) in &ea {
            match eb.get(p) {
                None => out.push(format!("{p}: missing from {b}")),
                Some(n) if n != m => out.push(format!("{p}: {m} in {a}, {n} in {b}")),
                _ => {}
            }
        }
        for p in eb.keys().filter(|p| !ea.contains_key(*p)) {
            out.push(format!("{p}: in {b}, not in {a}"));
        }
        out.truncate(max as usize);
        Ok(out)
    }
    fn probe(&self, command: &str, args: &[&str]) -> Result<Output, HostError> {
        if !self.commands.iter().any(|c| c == command) {
            return Err(HostError::Denied(format!(
                "command `{command}` not granted"
            )));
        }
        self.probes
            .get(&probe_key(command, args))
            .cloned()
            .ok_or_else(|| {
                HostError::Invalid(format!(
                    "no canned answer for `{}`",
                    probe_key(command, args)
                ))
            })
    }
    fn http_status(&self, url: &str) -> Result<u16, HostError> {
        self.urls
            .get(url)
            .copied()
            .ok_or_else(|| HostError::Denied(format!("url {url} not allowed")))
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, HostError> {
        self.granted(path)?;
        match self.nodes.get(path) {
            Some(Node::File { data, .. }) => Ok(data.clone()),
            Some(_) => Err(HostError::Invalid(format!("{path} is not a file"))),
            None => Err(HostError::NotFound(path.to_string())),
        }
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn progress(&self, _label: &str, _done: u64, _total: u64) {}
}

/// Plan with a step as the engine would: parameters as JSON (defaults filled
/// in from the step's specs), the host's grants in the context.
pub fn plan<S: Step>(host: &FakeHost, params: serde_json::Value) -> Result<Plan, StepError> {
    crate::__private::plan::<S>(&host.context(S::NAME), &params.to_string(), host)
}

/// Validate a step's parameters as `mend lint` would: every problem, none
/// of the host's files looked at.
pub fn validate<S: Step>(host: &FakeHost, params: serde_json::Value) -> Vec<StepError> {
    crate::__private::validate::<S>(&host.context(S::NAME), &params.to_string())
}

/// Verify with a step as the engine would.
pub fn verify<S: Step>(
    host: &FakeHost,
    params: serde_json::Value,
) -> Result<Vec<Check>, StepError> {
    crate::__private::verify::<S>(&host.context(S::NAME), &params.to_string(), host)
}

/// An action as `mend plan` says it: `remove cache/x`, `rename a -> b`,
/// `exec svc stop web (undo: svc start web)`.
pub fn describe(action: &Action) -> String {
    action.to_string()
}

/// Every action of a plan, in order, as `mend plan` says it.
pub fn lines(plan: &Plan) -> Vec<String> {
    plan.actions.iter().map(describe).collect()
}

/// The paths a plan removes, in order, for a step that only removes.
/// Panics, naming it, at an action that is not a removal.
pub fn removed(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match &a.kind {
            ActionKind::Remove(path) => path.clone(),
            _ => panic!("`{}` in a plan expected to only remove", describe(a)),
        })
        .collect()
}
