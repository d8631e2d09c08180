//! Parameter specs and parsing of the runbook's `with` table.

use crate::{ParamKind, ParamSpec, Step, StepError};

/// Constructors for [`ParamSpec`], so a step declares its parameters in a line each:
/// `ParamSpec::integer("days", "age cut in days").default(30)`.
pub trait ParamSpecExt: Sized {
    /// A parameter of the given kind, optional with no default.
    fn new(name: &str, kind: ParamKind, doc: &str) -> Self;
    /// A string parameter.
    fn string(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::String, doc)
    }
    /// An integer parameter.
    fn integer(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::Integer, doc)
    }
    /// A number (float or integer) parameter.
    fn number(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::Number, doc)
    }
    /// A boolean parameter.
    fn boolean(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::Boolean, doc)
    }
    /// An array parameter.
    fn list(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::List, doc)
    }
    /// A table parameter.
    fn table(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::Table, doc)
    }
    /// A parameter of any type (the step checks it).
    fn any(name: &str, doc: &str) -> Self {
        Self::new(name, ParamKind::Any, doc)
    }
    /// Make it required.
    fn required(self) -> Self;
    /// Give it a default, used when the runbook does not set it.
    fn default(self, value: impl serde::Serialize) -> Self;
}

impl ParamSpecExt for ParamSpec {
    fn new(name: &str, kind: ParamKind, doc: &str) -> Self {
        ParamSpec {
            name: name.to_string(),
            kind,
            required: false,
            default: None,
            doc: doc.to_string(),
        }
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn default(mut self, value: impl serde::Serialize) -> Self {
        self.default = Some(serde_json::to_string(&value).expect("a default serializes to JSON"));
        self
    }
}

/// Parse the host's JSON `with` object into the step's own type, filling in
/// defaults from its specs (the host fills them too; a native test may not).
pub(crate) fn parse<S: Step>(json: &str) -> Result<S::Params, StepError> {
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| StepError {
        message: format!("parameters are not a JSON object: {e}"),
        hint: None,
        param: None,
    })?;
    if let Some(map) = value.as_object_mut() {
        for spec in S::params() {
            if let (false, Some(default)) = (map.contains_key(&spec.name), &spec.default)
                && let Ok(v) = serde_json::from_str(default)
            {
                map.insert(spec.name.clone(), v);
            }
        }
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        // serde names the field in "missing field `x`" and "unknown field `x`".
        let param = text.split('`').nth(1).map(str::to_string);
        StepError {
            message: format!("bad parameters: {text}"),
            hint: Some(format!(
                "see the parameters of `{}` with `mend step inspect`",
                S::NAME
            )),
            param,
        }
    })
}
