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

/// A step's parameters: the struct the runbook's `with` table becomes.
/// Derive it with `#[derive(Params, Deserialize)]` (see
/// [`macro@crate::Params`]) rather than by hand.
pub trait Params: serde::de::DeserializeOwned {
    /// One spec per `with` key: its kind, whether it is required, its
    /// default and its help. The host checks the runbook against these.
    fn specs() -> Vec<ParamSpec>;
    /// When the table does not parse: the key whose value does not fit its
    /// field, and why. (The derive tries each field's own type.)
    fn field_at_fault(
        _map: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<(&'static str, String)> {
        None
    }
}

/// The parameters of a step that takes none.
#[derive(serde::Deserialize, mend_sdk_derive::Params)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Parse the host's JSON `with` object into the step's own type, filling in
/// defaults from its specs (the host fills them too; a native test may not).
pub(crate) fn parse<S: Step>(json: &str) -> Result<S::Params, StepError> {
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| StepError {
        message: format!("parameters are not a JSON object: {e}"),
        hint: None,
        param: None,
    })?;
    if let Some(map) = value.as_object_mut() {
        for spec in <S::Params as Params>::specs() {
            if let (false, Some(default)) = (map.contains_key(&spec.name), &spec.default)
                && let Ok(v) = serde_json::from_str(default)
            {
                map.insert(spec.name.clone(), v);
            }
        }
    }
    let at_fault = value
        .as_object()
        .and_then(<S::Params as Params>::field_at_fault);
    serde_json::from_value(value).map_err(|e| {
        let hint = Some(format!(
            "see the parameters of `{}` with `mend step inspect`",
            crate::__private::name::<S>()
        ));
        match at_fault {
            // Named from the field whose type refused the value.
            Some((param, why)) => StepError {
                message: format!("parameter `{param}`: {why}"),
                hint,
                param: Some(param.to_string()),
            },
            None => {
                let text = e.to_string();
                // serde names a missing or unknown key in backquotes, and a
                // field's own parser (`deserialize_with`) may: the first
                // backquoted word that is one of the step's keys.
                let keys: Vec<String> = <S::Params as Params>::specs()
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                let named = |prefix: &str| {
                    text.split(prefix)
                        .nth(1)
                        .and_then(|r| r.split('`').next())
                        .map(str::to_string)
                };
                let param = named("unknown field `")
                    .or_else(|| named("missing field `"))
                    .or_else(|| {
                        text.split('`')
                            .skip(1)
                            .step_by(2)
                            .find(|w| keys.iter().any(|k| k == w))
                            .map(str::to_string)
                    });
                StepError {
                    message: format!("bad parameters: {text}"),
                    hint,
                    param,
                }
            }
        }
    })
}
