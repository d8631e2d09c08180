//! Running step components: one wasmtime engine, compiled components cached
//! on disk by sha256 and engine settings, one store per step call with only
//! the step's grants preopened read-only, a deadline and a memory limit.
//! Nothing here knows about the CLI or the journal.

mod component_file;
mod host;
mod host_fs;
mod walk;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Instance, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

pub use component_file::{MAX_COMPONENT_BYTES, read_component};
pub use host::{
    ActionSink, HASH_PROGRESS, HostCtx, LogSink, PlanSink, ProgressSink, http_get_status,
};
pub use walk::{ListingState, WALK_MAX_DEPTH, WalkState};

/// Host bindings for the `mend:runbook/step-core` world: the `step` world
/// without `validate`, which is looked up by name (a step built before it
/// existed still loads).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "step-core",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "mend:runbook/files.walk": super::WalkState,
            "mend:runbook/files.listing": super::ListingState,
        },
    });
}

pub use bindings::mend::runbook::types as wit;

/// How often the epoch ticks: the granularity of step deadlines.
const TICK: Duration = Duration::from_millis(10);

/// The most a step may hand the host in one host call or one result
/// (wasmtime's hostcall fuel, in bytes of the host's copy): a bound on what
/// the host allocates for a step, whatever its `memory` limit.
pub const HOSTCALL_BYTES: usize = 128 << 20;

/// Why a step call did not return normally. Each names the step and the rule.
#[derive(Debug, thiserror::Error)]
pub enum StepFault {
    #[error("step `{step}` was killed at its deadline of {} (runbook `timeout`)", human_duration(*limit))]
    Deadline { step: String, limit: Duration },
    #[error(
        "step `{step}` asked for {} of memory and was stopped at its limit of {} (runbook `memory`)",
        mend_human::human_bytes(*asked as u64),
        mend_human::human_bytes(*limit as u64)
    )]
    Memory {
        step: String,
        asked: usize,
        limit: usize,
    },
    #[error(
        "step `{step}` ran out of stack (recursion too deep or without end) and was stopped; make the recursion bounded or iterative"
    )]
    Stack { step: String },
    #[error(
        "step `{step}` handed the host more than {} in one call and was stopped; pass large data as files in a grant",
        mend_human::human_bytes(HOSTCALL_BYTES as u64)
    )]
    TooMuchData { step: String },
    #[error("step `{step}` crashed: {message}")]
    Trap { step: String, message: String },
}

fn human_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A compiled step, ready to instantiate.
#[derive(Clone)]
pub struct LoadedStep {
    /// sha256 of the component's bytes.
    pub sha256: String,
    /// What it imports (`mend:runbook/files@0.1.0`, ...), sorted.
    pub imports: Vec<String>,
    pre: bindings::StepCorePre<StepState>,
}

/// The wasmtime engine and what it has loaded.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StepState>,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, LoadedStep>>,
    _ticker: Ticker,
}

struct Ticker(Arc<std::sync::atomic::AtomicBool>);
impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Limits for one step call.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub memory: u64,
}

/// The state of one store: WASI, the resource table, the memory limiter and
/// what the host helpers need.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    host: HostCtx,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past the step's limit and remembers the request.
struct Limiter {
    max: usize,
    denied: Option<usize>,
    /// The largest memory the step grew to, bytes.
    peak: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.denied = Some(desired);
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes reached",
                self.max
            )));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl Sandbox {
    /// An engine with epoch deadlines, and a cache of compiled components in
    /// `cache_dir` (none: compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Sandbox> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::StepCore::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("mend-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(Sandbox {
            engine,
            linker,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            _ticker: Ticker(stop),
        })
    }

    /// The key of a compiled artifact: the component and the engine's
    /// compatibility hash, which covers wasmtime's version and settings (an
    /// artifact only loads into a matching engine).
    fn cache_key(&self, sha256: &str) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{sha256}-{:016x}.cwasm", h.finish())
    }

    /// Compile (or load from the cache) a component. `label` names it in errors.
    pub fn load(&self, label: &str, bytes: &[u8]) -> Result<LoadedStep> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(hit) = self.loaded.lock().expect("not poisoned").get(&sha256) {
            return Ok(hit.clone());
        }
        let component = self.compile(label, bytes, &sha256)?;
        let imports = self.imports_of(&component);
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!(
                "{label}: it asks for something mend does not offer ({e:#}); a step may import mend:runbook/* and WASI 0.2 interfaces only"
            )
        })?;
        let pre = bindings::StepCorePre::new(pre).map_err(|e| {
            anyhow::anyhow!(
                "{label}: not a mend step (it must export describe, plan and verify): {e:#}"
            )
        })?;
        let step = LoadedStep {
            sha256: sha256.clone(),
            imports,
            pre,
        };
        self.loaded
            .lock()
            .expect("not poisoned")
            .insert(sha256, step.clone());
        Ok(step)
    }

    /// What a component imports: the interfaces it can ask the host for
    /// (`mend:runbook/files@0.1.0`, `wasi:filesystem/types@0.2.x`, ...).
    pub fn imports(&self, label: &str, bytes: &[u8]) -> Result<Vec<String>> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = self.compile(label, bytes, &sha256)?;
        Ok(self.imports_of(&component))
    }

    fn imports_of(&self, component: &Component) -> Vec<String> {
        let mut names: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort();
        names
    }

    fn compile(&self, label: &str, bytes: &[u8], sha256: &str) -> Result<Component> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(self.cache_key(sha256)));
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the file was written by `serialize` below, keyed by the
            // component's sha256, wasmtime's version and the engine settings;
            // the cache directory is the operator's own.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(c) => {
                    tracing::debug!(step = label, cache = %path.display(), "compiled component from the cache");
                    return Ok(c);
                }
                Err(e) => tracing::warn!("ignoring unusable cache entry {}: {e:#}", path.display()),
            }
        }
        if let Some(problem) = component_file::shape_problem(bytes) {
            anyhow::bail!("{label}: {problem}");
        }
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            anyhow::anyhow!("{label}: not a valid component (truncated or corrupt?): {e:#}")
        })?;
        tracing::info!(
            step = label,
            bytes = bytes.len(),
            ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        if let Some(path) = &cached {
            // Best effort: a cache that cannot be written only costs time.
            let write = || -> Result<()> {
                let dir = path.parent().expect("cache file has a parent");
                std::fs::create_dir_all(dir)?;
                let tmp = dir.join(format!(".{}.tmp{}", sha256, std::process::id()));
                std::fs::write(&tmp, component.serialize()?)?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            };
            if let Err(e) = write() {
                tracing::debug!("cannot cache compiled component: {e:#}");
            }
        }
        Ok(component)
    }

    /// Instantiate a step with its grants preopened read-only at `/<grant>`.
    async fn instantiate(
        &self,
        step: &LoadedStep,
        host: HostCtx,
        limits: Limits,
    ) -> Result<(Store<StepState>, bindings::StepCore, Instance)> {
        let mut wasi = WasiCtx::builder();
        // File calls run on tokio's blocking threads, not on this one: a
        // call the kernel blocks (opening a FIFO a step found in its grant)
        // then cannot keep the step's deadline timer from firing. Blocking
        // this thread was 1.5-2x faster per call, but a hang is not a cost.
        wasi.allow_blocking_current_thread(false);
        for g in host.grants.iter() {
            wasi.preopened_dir(&g.root, format!("/{}", g.name), FsPerms::ReadOnly)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "grant `{}`: cannot open {}: {e:#}",
                        g.name,
                        g.root.display()
                    )
                })?;
        }
        wasi.wall_clock(RunClock::at(host.now));
        let state = StepState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                max: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                denied: None,
                peak: 0,
            },
            host,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(HOSTCALL_BYTES);
        // The deadline must be set before instantiating: it starts at 0. One
        // tick more, as the ticker runs free: never early, at most a tick late.
        store.set_epoch_deadline(ticks(limits.timeout) + 1);
        store.epoch_deadline_trap();
        let instance = step
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await?;
        let step = bindings::StepCore::new(&mut store, &instance)?;
        Ok((store, step, instance))
    }

    /// Ask a step who it is.
    pub async fn describe(
        &self,
        step: &LoadedStep,
        host: HostCtx,
        limits: Limits,
    ) -> Result<wit::StepInfo, StepFault> {
        match self.call(step, host, limits, Request::Describe).await? {
            (Reply::Describe(info), _) => Ok(info),
            _ => unreachable!("describe answers describe"),
        }
    }

    /// Plan a step. The host context comes back with its logs.
    pub async fn plan(
        &self,
        step: &LoadedStep,
        host: HostCtx,
        limits: Limits,
        cx: wit::Context,
        params: String,
    ) -> Result<(Result<wit::Plan, wit::StepError>, HostCtx), StepFault> {
        match self
            .call(step, host, limits, Request::Plan(cx, params))
            .await?
        {
            (Reply::Plan(mut plan), mut host) => {
                // Handed over without a sink: they come first.
                if let Ok(p) = &mut plan
                    && !host.emitted.is_empty()
                {
                    let mut all = std::mem::take(&mut host.emitted);
                    all.append(&mut p.actions);
                    p.actions = all;
                }
                Ok((plan, host))
            }
            _ => unreachable!("plan answers plan"),
        }
    }

    /// Verify a step after its actions.
    pub async fn verify(
        &self,
        step: &LoadedStep,
        host: HostCtx,
        limits: Limits,
        cx: wit::Context,
        params: String,
    ) -> Result<(Result<Vec<wit::Check>, wit::StepError>, HostCtx), StepFault> {
        match self
            .call(step, host, limits, Request::Verify(cx, params))
            .await?
        {
            (Reply::Verify(checks), host) => Ok((checks, host)),
            _ => unreachable!("verify answers verify"),
        }
    }

    /// Ask a step whether its `with` is right, without it looking at
    /// anything: every problem it finds. `None` when the step exports no
    /// `validate` (built before it existed).
    pub async fn validate(
        &self,
        step: &LoadedStep,
        host: HostCtx,
        limits: Limits,
        cx: wit::Context,
        params: String,
    ) -> Result<Option<Vec<wit::StepError>>, StepFault> {
        match self
            .call(step, host, limits, Request::Validate(cx, params))
            .await?
        {
            (Reply::Validate(problems), _) => Ok(problems),
            _ => unreachable!("validate answers validate"),
        }
    }

    async fn call(
        &self,
        step: &LoadedStep,
        host: HostCtx,
        limits: Limits,
        req: Request,
    ) -> Result<(Reply, HostCtx), StepFault> {
        let id = host.step_id.clone();
        let mut host = host;
        host.deadline = Some(std::time::Instant::now() + limits.timeout);
        host.planning = matches!(req, Request::Plan(..));
        let (mut store, inst, raw) = self
            .instantiate(step, host, limits)
            .await
            .map_err(|e| fault(&id, limits, CallError::Trap(format!("{e:#}"))))?;
        let run = async {
            Ok(match req {
                Request::Describe => Reply::Describe(inst.call_describe(&mut store).await?),
                Request::Plan(cx, p) => Reply::Plan(inst.call_plan(&mut store, &cx, &p).await?),
                Request::Verify(cx, p) => {
                    Reply::Verify(inst.call_verify(&mut store, &cx, &p).await?)
                }
                Request::Validate(cx, p) => {
                    type Validate<'a> = (&'a wit::Context, &'a str);
                    match raw
                        .get_typed_func::<Validate, (Vec<wit::StepError>,)>(&mut store, "validate")
                    {
                        // Built before `validate`: plan will check.
                        Err(_) => Reply::Validate(None),
                        Ok(f) => {
                            Reply::Validate(Some(f.call_async(&mut store, (&cx, &p)).await?.0))
                        }
                    }
                }
            })
        };
        // The epoch deadline stops guest code; this one also stops a step
        // blocked in an async host call (a WASI sleep or poll), on time.
        let outcome: Result<wasmtime::Result<Reply>, _> =
            tokio::time::timeout(limits.timeout, run).await;
        let denied = store.data().limiter.denied;
        store.data_mut().host.memory_peak = store.data().limiter.peak;
        store.data_mut().host.finish_log();
        let e = match outcome {
            Ok(Ok(reply)) => return Ok((reply, store.into_data().host)),
            Err(_) => CallError::Deadline,
            Ok(Err(e)) if e.downcast_ref::<host::PastDeadline>().is_some() => CallError::Deadline,
            Ok(Err(e)) => match (denied, e.downcast_ref::<wasmtime::Trap>()) {
                (Some(asked), _) => CallError::Memory(asked),
                (_, Some(wasmtime::Trap::Interrupt)) => CallError::Deadline,
                (_, Some(wasmtime::Trap::StackOverflow)) => CallError::Stack,
                // wasmtime says so in words only.
                _ if format!("{e:#}")
                    .contains("fuel allocated for hostcalls has been exhausted") =>
                {
                    CallError::TooMuchData
                }
                _ => CallError::Trap(format!("{e:#}")),
            },
        };
        Err(fault(&id, limits, e))
    }
}

enum Request {
    Describe,
    Plan(wit::Context, String),
    Verify(wit::Context, String),
    Validate(wit::Context, String),
}

enum Reply {
    Describe(wit::StepInfo),
    Plan(Result<wit::Plan, wit::StepError>),
    Verify(Result<Vec<wit::Check>, wit::StepError>),
    Validate(Option<Vec<wit::StepError>>),
}

enum CallError {
    Deadline,
    Stack,
    TooMuchData,
    Memory(usize),
    Trap(String),
}

fn fault(step: &str, limits: Limits, e: CallError) -> StepFault {
    let step = step.to_string();
    match e {
        CallError::Deadline => StepFault::Deadline {
            step,
            limit: limits.timeout,
        },
        CallError::Stack => StepFault::Stack { step },
        CallError::TooMuchData => StepFault::TooMuchData { step },
        CallError::Memory(asked) => StepFault::Memory {
            step,
            asked,
            limit: usize::try_from(limits.memory).unwrap_or(usize::MAX),
        },
        CallError::Trap(e) => StepFault::Trap {
            step,
            message: mend_human::shown(&e, 4096),
        },
    }
}

/// The wall clock a step reads through WASI (`SystemTime::now()`): the
/// run's clock (`--now`, else the time the run started), moving on from the
/// moment the step's call began, so it agrees with the host's `now`.
struct RunClock {
    base: Duration,
    started: std::time::Instant,
}

impl RunClock {
    fn at(now: i64) -> RunClock {
        RunClock {
            base: Duration::from_secs(u64::try_from(now).unwrap_or(0)),
            started: std::time::Instant::now(),
        }
    }
}

impl wasmtime_wasi::HostWallClock for RunClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        self.base + self.started.elapsed()
    }
}

fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / TICK.as_millis()).max(1) as u64
}
