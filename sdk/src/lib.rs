//! Write a [mend](https://example.invalid/mend) runbook step.
//!
//! A step is a WebAssembly component that looks at the directories its runbook
//! grants it (read-only) and returns a [`Plan`]: the actions the host should take.
//! The host shows the plan, performs it, journals it and can undo it; the step
//! never writes anything itself.
//!
//! ```ignore
//! use mend_sdk::prelude::*;
//!
//! #[derive(Params, Deserialize)]
//! pub struct Tidy {
//!     /// GRANT/path of the file to remove
//!     path: String,
//! }
//!
//! struct Step;
//! impl mend_sdk::Step for Step {
//!     type Params = Tidy;
//!     fn plan(_cx: &Context, p: Tidy, _host: &dyn Host) -> Result<Plan, StepError> {
//!         Ok(Plan::builder().remove(&p.path, "asked to").build())
//!     }
//! }
//! mend_sdk::export_step!(Step);
//! ```
//!
//! The step's name, version and summary are its crate's (`Cargo.toml`'s
//! `name` without a `step-` prefix, `version`, `description`) unless it sets
//! [`Step::NAME`], [`Step::VERSION`] or [`Step::SUMMARY`]. Its parameters are
//! the fields of its `Params` struct: see [`macro@Params`].
//!
//! A step crate is a `cdylib` built with `cargo build --target wasm32-wasip2`; the
//! result is already a component. Its planning can be tested natively with
//! [`testing::FakeHost`], without wasm and without the engine.
#![deny(missing_docs)]

extern crate self as mend_sdk;

mod describe;
mod host;
mod params;
mod plan;
pub mod testing;
/// UTC times for names and plans (`utc_stamp`, `time_in_name`, ...).
pub use mend_human::time;

/// The generated bindings for the `mend:runbook/step` world. Step authors
/// should not need them; they are public for the export macro.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
        default_bindings_module: "mend_sdk::bindings",
        runtime_path: "mend_sdk::__private::wit_bindgen::rt",
    });
}

pub use bindings::mend::runbook::files::{Algorithm, Entry, EntryKind, Listed, Space};
pub use bindings::mend::runbook::log::Level;
pub use bindings::mend::runbook::probe::Output;
pub use bindings::mend::runbook::types::{
    Access, Action, ActionKind, ArchiveArgs, ArchiveFormat, Check, CommandCall, Context, CopyArgs,
    ExecArgs, ExtractArgs, Fact, GrantInfo, HostError, ParamKind, ParamSpec, Plan, RenameArgs,
    SetModeArgs, SetOwnerArgs, StepError, StepInfo, SwapArgs, WriteFileArgs,
};
pub use host::{Host, HostErrorExt, WasmHost, tree_size};
pub use mend_human::{copy_headroom, files_text, human_bytes, human_count};
pub use mend_sdk_derive::Params;
pub use params::{NoParams, ParamSpecExt, Params};
pub use plan::{FIRST_HAND_OVER, PlanBuilder, STREAM_BATCH, StepErrorExt};

/// Everything a step usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Access, Algorithm, ArchiveFormat, Check, Context, Entry, EntryKind, Host, HostError,
        HostErrorExt, Level, Listed, NoParams, ParamSpec, ParamSpecExt, Params, Plan, PlanBuilder,
        Step, StepError, StepErrorExt, copy_headroom, files_text, human_bytes, human_count,
        tree_size,
    };
    pub use serde::Deserialize;
}

/// A runbook step: what it takes, and how it plans.
pub trait Step {
    /// The step's parameters, parsed from the runbook's `with` table
    /// (defaults filled in first): a struct with `#[derive(Params,
    /// Deserialize)]`, or [`NoParams`].
    type Params: Params;
    /// Short name, e.g. `cache-cull`; bundled steps are used as `std:NAME`.
    /// Empty (the default): the crate's name without a `step-` prefix.
    const NAME: &'static str = "";
    /// The step's own version. Empty (the default): the crate's version.
    const VERSION: &'static str = "";
    /// One line: what the step does. Empty (the default): the crate's
    /// description.
    const SUMMARY: &'static str = "";

    /// Decide what to do. Grants are read-only here; return actions instead.
    fn plan(cx: &Context, params: Self::Params, host: &dyn Host) -> Result<Plan, StepError>;

    /// Check the parameters as `plan` would, without the host: what is
    /// wrong in the runbook itself (a misspelt kind, a key the step does
    /// not know, a command the step was not granted). `mend lint` calls
    /// it before any step plans, and `plan` refuses what it finds; each
    /// error's [`StepErrorExt::param`] is a path into `with`
    /// (`checks[2].cert.days`) so the error points at that line. The
    /// parameters have been parsed into `Params` already. Default: nothing
    /// more to check.
    fn validate(_cx: &Context, _params: &Self::Params) -> Vec<StepError> {
        Vec::new()
    }

    /// After the actions were applied: check that they worked. The host
    /// retries a failing verify as the runbook's `retry` says.
    fn verify(
        _cx: &Context,
        _params: Self::Params,
        _host: &dyn Host,
    ) -> Result<Vec<Check>, StepError> {
        Ok(Vec::new())
    }
}

/// Export a type that implements [`Step`] as the component's `step` world.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        #[doc(hidden)]
        pub struct __MendStepExport;
        impl $crate::bindings::Guest for __MendStepExport {
            fn describe() -> $crate::StepInfo {
                // The step crate's own package fields, for what it does not set.
                $crate::__private::describe::<$step>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }
            fn plan(
                cx: $crate::Context,
                params: ::std::string::String,
            ) -> ::std::result::Result<$crate::Plan, $crate::StepError> {
                $crate::__private::plan::<$step>(&cx, &params, &$crate::WasmHost)
            }
            fn verify(
                cx: $crate::Context,
                params: ::std::string::String,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Check>, $crate::StepError> {
                $crate::__private::verify::<$step>(&cx, &params, &$crate::WasmHost)
            }
            fn validate(
                cx: $crate::Context,
                params: ::std::string::String,
            ) -> ::std::vec::Vec<$crate::StepError> {
                $crate::__private::validate::<$step>(&cx, &params)
            }
        }
        // Only a wasm build exports the world: a native build (unit tests)
        // links no component exports.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_step_world!(__MendStepExport);
    };
}

/// What the host learns from a step's `describe`, as it will see it (its
/// crate's name, version and description filled in), for native tests:
/// `let info = mend_sdk::step_info!(MyStep);`.
#[macro_export]
macro_rules! step_info {
    ($step:ty) => {
        $crate::__private::describe::<$step>(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_DESCRIPTION"),
        )
    };
}

/// Glue used by [`export_step!`] and [`testing`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
    pub use wit_bindgen;

    use crate::{Check, Context, Host, Params, Plan, Step, StepError, StepInfo};

    /// What a step sets, else its crate's package fields.
    pub fn describe<S: Step>(package: &str, version: &str, description: &str) -> StepInfo {
        let or = |set: &str, crate_: &str| if set.is_empty() { crate_ } else { set }.to_string();
        StepInfo {
            name: or(S::NAME, package.strip_prefix("step-").unwrap_or(package)),
            version: or(S::VERSION, version),
            summary: or(S::SUMMARY, description),
            params: <S::Params as Params>::specs(),
        }
    }

    /// The step's name as messages say it (its `NAME`, else `this step`).
    pub fn name<S: Step>() -> &'static str {
        if S::NAME.is_empty() {
            "this step"
        } else {
            S::NAME
        }
    }

    pub fn plan<S: Step>(cx: &Context, params: &str, host: &dyn Host) -> Result<Plan, StepError> {
        let params = crate::params::parse::<S>(params)?;
        // Never a plan on parameters the step itself calls wrong.
        if let Some(e) = S::validate(cx, &params).into_iter().next() {
            return Err(e);
        }
        // In a component, builders hand their actions to the host as they fill.
        #[cfg(target_arch = "wasm32")]
        {
            let emit: crate::plan::Emit =
                Box::new(|actions| crate::bindings::mend::runbook::plan_sink::emit(&actions));
            crate::plan::streaming(emit, || S::plan(cx, params, host))
        }
        #[cfg(not(target_arch = "wasm32"))]
        S::plan(cx, params, host)
    }

    /// Every problem with the parameters: the parse's, else the step's own.
    pub fn validate<S: Step>(cx: &Context, params: &str) -> Vec<StepError> {
        match crate::params::parse::<S>(params) {
            Ok(p) => S::validate(cx, &p),
            Err(e) => vec![e],
        }
    }

    pub fn verify<S: Step>(
        cx: &Context,
        params: &str,
        host: &dyn Host,
    ) -> Result<Vec<Check>, StepError> {
        let params = crate::params::parse::<S>(params)?;
        S::verify(cx, params, host)
    }
}
