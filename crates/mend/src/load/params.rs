//! A step's `with` table against the step's own parameter specs, before
//! anything runs: unknown keys, missing required ones, wrong types; each
//! pointing at the runbook's line.

use mend_host::sandbox::wit::{ParamKind, StepInfo};
use mend_runbook::{Diagnostic, Runbook, Step};

/// Check and fill in defaults; returns the parameters as a JSON object.
pub fn check(runbook: &Runbook, step: &Step, info: &StepInfo) -> Result<String, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut with = step.with.clone();
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    for (key, _) in step.with.iter() {
        if !names.contains(&key.as_str()) {
            let span = step.with_spans.get(key).copied().unwrap_or(step.with_span);
            problems.push(runbook.diagnostic(
                span,
                format!(
                    "step `{}`: `{}` takes no parameter `{key}`",
                    step.id, step.uses
                ),
                Some(format!("its parameters are: {}", names.join(", "))),
            ));
        }
    }
    for spec in &info.params {
        match with.get(&spec.name) {
            None if spec.required => problems.push(runbook.diagnostic(
                step.with_span,
                format!(
                    "step `{}`: `{}` needs the parameter `{}` ({})",
                    step.id, step.uses, spec.name, spec.doc
                ),
                Some(format!(
                    "add `{} = ...` to the step's `with` table",
                    spec.name
                )),
            )),
            None => {
                if let Some(default) = spec
                    .default
                    .as_ref()
                    .and_then(|d| serde_json::from_str(d).ok())
                {
                    with.insert(spec.name.clone(), default);
                }
            }
            Some(value) => {
                let value = coerce(spec.kind, value.clone());
                if fits(spec.kind, &value) {
                    with.insert(spec.name.clone(), value);
                } else {
                    let span = step
                        .with_spans
                        .get(&spec.name)
                        .copied()
                        .unwrap_or(step.with_span);
                    problems.push(runbook.diagnostic(
                        span,
                        format!(
                            "step `{}`: parameter `{}` must be {}, found {}",
                            step.id,
                            spec.name,
                            kind_name(spec.kind),
                            json_kind(&value)
                        ),
                        Some(spec.doc.clone()),
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(serde_json::Value::Object(with).to_string())
    } else {
        Err(problems)
    }
}

/// `${param}` interpolation yields strings: read numbers and booleans
/// written as text as what the step asks for.
fn coerce(kind: ParamKind, v: serde_json::Value) -> serde_json::Value {
    let Some(s) = v.as_str() else { return v };
    let parsed = match kind {
        ParamKind::Integer => s.parse::<i64>().ok().map(serde_json::Value::from),
        ParamKind::Number => s.parse::<f64>().ok().map(serde_json::Value::from),
        ParamKind::Boolean => s.parse::<bool>().ok().map(serde_json::Value::from),
        _ => None,
    };
    parsed.unwrap_or(v)
}

fn fits(kind: ParamKind, v: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match kind {
        ParamKind::String => v.is_string(),
        ParamKind::Integer => v.is_i64() || v.is_u64(),
        ParamKind::Number => v.is_number(),
        ParamKind::Boolean => v.is_boolean(),
        ParamKind::List => matches!(v, V::Array(_)),
        ParamKind::Table => matches!(v, V::Object(_)),
        ParamKind::Any => true,
    }
}

fn kind_name(k: ParamKind) -> &'static str {
    match k {
        ParamKind::String => "a string",
        ParamKind::Integer => "an integer",
        ParamKind::Number => "a number",
        ParamKind::Boolean => "a boolean (true or false)",
        ParamKind::List => "an array",
        ParamKind::Table => "a table",
        ParamKind::Any => "anything",
    }
}

fn json_kind(v: &serde_json::Value) -> String {
    use serde_json::Value as V;
    match v {
        V::Null => "nothing".into(),
        V::Bool(b) => format!("boolean {b}"),
        V::Number(n) => format!("number {n}"),
        V::String(s) => format!("string {s:?}"),
        V::Array(_) => "an array".into(),
        V::Object(_) => "a table".into(),
    }
}
