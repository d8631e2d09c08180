//! Building a plan, one action per line. While a step plans, the builder
//! hands its actions to the host every [`STREAM_BATCH`] of them
//! (`plan-sink.emit`; the first hand-overs smaller, see
//! [`FIRST_HAND_OVER`]), so a plan of a million removals never sits whole
//! in the step's memory; the step's code does not change.

use std::cell::RefCell;

use crate::{
    Action, ActionKind, ArchiveArgs, ArchiveFormat, CommandCall, CopyArgs, ExecArgs, ExtractArgs,
    Fact, HostError, Plan, RenameArgs, SetModeArgs, SetOwnerArgs, StepError, SwapArgs,
    WriteFileArgs,
};

/// How many actions a builder holds before it hands them to the host: the
/// host journals removals in batches of this size.
pub const STREAM_BATCH: usize = 2048;

/// The first hand-over's size. The hand-overs then grow (256, 256, 512,
/// 1,024, then [`STREAM_BATCH`]): in `mend run` the host removes each
/// batch of removals as it arrives, while the step plans on, so the first
/// removal waits for 256 actions planned, not 2,048.
pub const FIRST_HAND_OVER: usize = 256;

/// Where a builder hands its actions while a step plans.
pub(crate) type Emit = Box<dyn FnMut(Vec<Action>) -> Result<(), HostError>>;

thread_local! {
    static SINK: RefCell<Option<Emit>> = RefCell::new(None);
}

/// Runs `f` (a step's `plan`) with builders handing their actions to
/// `emit` as they fill; `f`'s plan holds only the ones not handed over.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn streaming<R>(emit: Emit, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SINK.with(|s| s.borrow_mut().take());
        }
    }
    SINK.with(|s| *s.borrow_mut() = Some(emit));
    let _reset = Reset;
    f()
}

impl Plan {
    /// Start an empty plan.
    pub fn builder() -> PlanBuilder {
        PlanBuilder::default()
    }
}

/// Collects actions, summary lines, checks and facts into a [`Plan`].
/// Paths are `GRANT/relative/path`, as walk entries give them.
///
/// In a component, every [`STREAM_BATCH`] actions go to the host as they
/// are added (their order kept): build one plan per `plan` call, as an
/// action handed over cannot be taken back (a plan that returns an error
/// discards them all).
#[derive(Default, Debug)]
pub struct PlanBuilder {
    plan: Option<Plan>,
    /// Actions handed to the host already.
    handed: usize,
    /// The host refused an action handed over: the plan is refused, what
    /// follows is only counted.
    refused: bool,
}

impl PlanBuilder {
    fn plan(&mut self) -> &mut Plan {
        self.plan.get_or_insert_with(|| Plan {
            actions: Vec::new(),
            summary: Vec::new(),
            checks: Vec::new(),
            facts: Vec::new(),
        })
    }

    fn push(self, kind: ActionKind, reason: &str) -> Self {
        self.action(Action {
            kind,
            reason: reason.to_string(),
        })
    }

    /// Hand the actions held to the host, when a step is planning.
    fn hand_over(&mut self) {
        if self.plan().actions.len() < self.handed.clamp(FIRST_HAND_OVER, STREAM_BATCH) {
            return;
        }
        let actions = &mut self.plan.as_mut().expect("made above").actions;
        let handed = SINK.with(|s| {
            // Not planning (a native test): the builder keeps them all.
            let mut sink = s.borrow_mut();
            let emit = sink.as_mut()?;
            let batch = std::mem::take(actions);
            let n = batch.len();
            Some((n, emit(batch)))
        });
        if let Some((n, handed)) = handed {
            self.handed += n;
            // The host has said why; the plan is refused whatever follows.
            self.refused = handed.is_err();
        }
    }

    /// Remove a file, a symlink (not its target) or a tree.
    pub fn remove(self, path: &str, reason: &str) -> Self {
        self.push(ActionKind::Remove(path.to_string()), reason)
    }
    /// Move `src` to `dst` (which must not exist).
    pub fn rename(self, src: &str, dst: &str, reason: &str) -> Self {
        let args = RenameArgs {
            src: src.into(),
            dst: dst.into(),
        };
        self.push(ActionKind::Rename(args), reason)
    }
    /// Exchange two paths atomically.
    pub fn swap(self, a: &str, b: &str, reason: &str) -> Self {
        let args = SwapArgs {
            a: a.into(),
            b: b.into(),
        };
        self.push(ActionKind::Swap(args), reason)
    }
    /// Create a directory and its missing parents.
    pub fn create_dir(self, path: &str, reason: &str) -> Self {
        self.push(ActionKind::CreateDir(path.to_string()), reason)
    }
    /// Write a whole file (the old content is kept for undo).
    pub fn write_file(self, path: &str, contents: impl Into<Vec<u8>>, reason: &str) -> Self {
        let args = WriteFileArgs {
            path: path.into(),
            contents: contents.into(),
            mode: None,
        };
        self.push(ActionKind::WriteFile(args), reason)
    }
    /// Copy a file or tree through a staging path.
    pub fn copy(self, src: &str, dst: &str, reason: &str) -> Self {
        let args = CopyArgs {
            src: src.into(),
            dst: dst.into(),
        };
        self.push(ActionKind::Copy(args), reason)
    }
    /// Unpack an archive into a new directory.
    pub fn extract(self, archive: &str, dst: &str, format: ArchiveFormat, reason: &str) -> Self {
        let args = ExtractArgs {
            archive: archive.into(),
            dst: dst.into(),
            format,
        };
        self.push(ActionKind::Extract(args), reason)
    }
    /// Pack a directory into a new archive file (`Tar` or `TarZst`).
    pub fn archive(self, src: &str, dst: &str, format: ArchiveFormat, reason: &str) -> Self {
        let args = ArchiveArgs {
            src: src.into(),
            dst: dst.into(),
            format,
        };
        self.push(ActionKind::Archive(args), reason)
    }
    /// Give a file or tree to an owner and/or group (names or numbers).
    pub fn set_owner(
        self,
        path: &str,
        owner: Option<&str>,
        group: Option<&str>,
        recursive: bool,
        reason: &str,
    ) -> Self {
        let args = SetOwnerArgs {
            path: path.into(),
            owner: owner.map(str::to_string),
            group: group.map(str::to_string),
            recursive,
        };
        self.push(ActionKind::SetOwner(args), reason)
    }
    /// Set permission bits on a file or tree (`dir_mode` for directories).
    pub fn set_mode(
        self,
        path: &str,
        mode: u32,
        dir_mode: Option<u32>,
        recursive: bool,
        reason: &str,
    ) -> Self {
        let args = SetModeArgs {
            path: path.into(),
            mode,
            dir_mode,
            recursive,
        };
        self.push(ActionKind::SetMode(args), reason)
    }
    /// Run an allowed command; `undo` (command, args) compensates it on rollback.
    pub fn exec(
        self,
        command: &str,
        args: &[&str],
        undo: Option<(&str, &[&str])>,
        reason: &str,
    ) -> Self {
        let call = |c: &str, a: &[&str]| CommandCall {
            command: c.to_string(),
            args: a.iter().map(|s| s.to_string()).collect(),
        };
        let args = ExecArgs {
            call: call(command, args),
            undo: undo.map(|(c, a)| call(c, a)),
            creates: None,
        };
        self.push(ActionKind::Exec(args), reason)
    }
    /// Run an allowed command that creates the file `creates` (`GRANT/path`;
    /// pass it to the command as `@GRANT/path`). The host never runs it over
    /// an existing file and removes the file on rollback.
    pub fn exec_creating(self, command: &str, args: &[&str], creates: &str, reason: &str) -> Self {
        let args = ExecArgs {
            call: CommandCall {
                command: command.to_string(),
                args: args.iter().map(|s| s.to_string()).collect(),
            },
            undo: None,
            creates: Some(creates.to_string()),
        };
        self.push(ActionKind::Exec(args), reason)
    }
    /// A line for the operator, shown above the actions.
    pub fn summary(mut self, line: impl Into<String>) -> Self {
        self.plan().summary.push(line.into());
        self
    }
    /// Announce a check that `verify` will make.
    pub fn check(mut self, line: impl Into<String>) -> Self {
        self.plan().checks.push(line.into());
        self
    }
    /// Record a fact the plan relies on.
    pub fn fact(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.plan().facts.push(Fact {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    /// Add an action built elsewhere.
    pub fn action(mut self, action: Action) -> Self {
        if self.refused {
            self.handed += 1;
            return self;
        }
        self.plan().actions.push(action);
        self.hand_over();
        self
    }
    /// How many actions so far (those handed to the host included).
    pub fn len(&self) -> usize {
        self.handed + self.plan.as_ref().map_or(0, |p| p.actions.len())
    }
    /// Whether no action was added yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The finished plan.
    pub fn build(mut self) -> Plan {
        self.plan();
        self.plan.take().expect("plan exists")
    }
}

/// Constructors for [`StepError`].
pub trait StepErrorExt: Sized {
    /// An error with a message.
    fn new(message: impl Into<String>) -> Self;
    /// Say what the operator can do about it.
    fn hint(self, hint: impl Into<String>) -> Self;
    /// Name the `with` parameter at fault, so the host points at its line.
    fn param(self, name: impl Into<String>) -> Self;
}

impl StepErrorExt for StepError {
    fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            hint: None,
            param: None,
        }
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    fn param(mut self, name: impl Into<String>) -> Self {
        self.param = Some(name.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_keeps_order() {
        let plan = Plan::builder()
            .create_dir("a/x", "one")
            .remove("a/y", "two")
            .summary("s")
            .build();
        assert_eq!(plan.actions.len(), 2);
        assert!(matches!(plan.actions[0].kind, ActionKind::CreateDir(ref p) if p == "a/x"));
        assert_eq!(plan.actions[1].reason, "two");
        assert_eq!(plan.summary, vec!["s".to_string()]);
    }

    #[test]
    fn while_planning_every_batch_goes_to_the_host_in_order() {
        let got = std::rc::Rc::new(RefCell::new(Vec::<Vec<String>>::new()));
        let seen = got.clone();
        let emit: Emit = Box::new(move |batch| {
            let paths = batch.into_iter().map(|a| match a.kind {
                ActionKind::Remove(p) => p,
                _ => panic!("only removals here"),
            });
            seen.borrow_mut().push(paths.collect());
            Ok(())
        });
        let n = 2 * STREAM_BATCH + 5;
        let plan = streaming(emit, || {
            let mut b = Plan::builder();
            for i in 0..n {
                b = b.remove(&format!("g/f{i}"), "old");
                assert_eq!(b.len(), i + 1);
            }
            b.summary("s").build()
        });
        let batches = got.borrow();
        // Growing from FIRST_HAND_OVER to STREAM_BATCH.
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [256, 256, 512, 1024, STREAM_BATCH]
        );
        assert_eq!(plan.actions.len(), 5);
        let mut all: Vec<String> = batches.concat();
        all.extend(plan.actions.into_iter().map(|a| match a.kind {
            ActionKind::Remove(p) => p,
            _ => unreachable!(),
        }));
        let want: Vec<String> = (0..n).map(|i| format!("g/f{i}")).collect();
        assert_eq!(all, want);
        // Outside `plan`, a builder keeps everything.
        let mut b = Plan::builder();
        for i in 0..STREAM_BATCH + 1 {
            b = b.remove(&format!("g/f{i}"), "old");
        }
        assert_eq!(b.build().actions.len(), STREAM_BATCH + 1);
    }

    #[test]
    fn a_refused_batch_stops_the_handing_over() {
        let calls = std::rc::Rc::new(RefCell::new(0));
        let c = calls.clone();
        let emit: Emit = Box::new(move |_| {
            *c.borrow_mut() += 1;
            Err(HostError::Denied("no".into()))
        });
        let plan = streaming(emit, || {
            let mut b = Plan::builder();
            for i in 0..3 * STREAM_BATCH {
                b = b.remove(&format!("g/f{i}"), "old");
            }
            assert_eq!(b.len(), 3 * STREAM_BATCH);
            b.build()
        });
        assert_eq!(*calls.borrow(), 1);
        assert!(plan.actions.is_empty());
    }
}
