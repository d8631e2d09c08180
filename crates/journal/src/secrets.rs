//! Secret params (`secret = true`): their values stay in the journal's
//! `params_json` (a resume needs them), and everything that shows a run
//! (show, report, watch, serve) passes its text through a [`Redact`], which
//! replaces every occurrence of a secret value with `***`. Masking the
//! text, not one field, also catches a secret interpolated into a step's
//! `with`, a path, a summary or an error.
//!
//! Only values of [`MIN_MASKED`] bytes or more are masked in free text: a
//! one-byte secret `a` would mask every `a` of every path and message. A
//! secret param's own field (`param pin = ***`, `params_json`) is masked
//! whatever its length; a shorter one is warned of at load
//! ([`Redact::too_short`]).

use serde_json::Value;

use crate::{ActionRecord, EventRecord, RunInputs, RunRecord, StepRecord};

/// What a secret's value is shown as.
pub const MASK: &str = "***";

/// The shortest secret value masked in free text (bytes). Shorter ones are
/// masked only in their own field: as a substring they match too much.
pub const MIN_MASKED: usize = 4;

/// The secret values of one run (or one loaded runbook).
#[derive(Clone, Debug, Default)]
pub struct Redact {
    /// Longest first, so a value that contains another is masked whole.
    values: Vec<String>,
}

impl Redact {
    /// From the values themselves (those under [`MIN_MASKED`] bytes mask
    /// nothing).
    pub fn new(values: impl IntoIterator<Item = String>) -> Redact {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_MASKED)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redact { values }
    }

    /// The secrets of a run's journaled inputs.
    pub fn of_inputs(inputs: &RunInputs) -> Redact {
        Redact::new(
            inputs
                .sets
                .iter()
                .filter(|(k, _)| inputs.secrets.contains(k))
                .map(|(_, v)| v.clone()),
        )
    }

    /// The secrets of a run, from its `params_json`.
    pub fn of_run(run: &RunRecord) -> Redact {
        serde_json::from_str::<RunInputs>(&run.params_json)
            .map(|i| Redact::of_inputs(&i))
            .unwrap_or_default()
    }

    /// The secret params, of `(name, value)` pairs, whose value is set but
    /// too short to mask in free text: each deserves a warning.
    pub fn too_short<'a>(
        secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, usize)> {
        secrets
            .into_iter()
            .filter(|(_, v)| !v.is_empty() && v.len() < MIN_MASKED)
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect()
    }

    /// The warning for a secret param `name` of `len` bytes.
    pub fn too_short_warning(name: &str, len: usize) -> String {
        let bytes = if len == 1 { "byte" } else { "bytes" };
        format!(
            "warning: secret param `{name}` is {len} {bytes} long, shorter than {MIN_MASKED} \
             bytes: it shows as {MASK} where params are shown, but it cannot be masked inside \
             step output (paths, messages); give it {MIN_MASKED} bytes or more"
        )
    }

    /// `params_json` with each secret param's value `***`, whatever its
    /// length (text that does not parse is returned as it is).
    pub fn params_json(json: &str) -> String {
        let Ok(mut inputs) = serde_json::from_str::<RunInputs>(json) else {
            return json.to_string();
        };
        if inputs.secrets.is_empty() {
            return json.to_string();
        }
        for (k, v) in inputs.sets.iter_mut() {
            if inputs.secrets.contains(k) {
                *v = MASK.to_string();
            }
        }
        serde_json::to_string(&inputs).unwrap_or_else(|_| json.to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds another's values.
    pub fn extend(&mut self, other: &Redact) {
        let all = self.values.drain(..).chain(other.values.iter().cloned());
        *self = Redact::new(all.collect::<Vec<_>>());
    }

    /// `s` with every secret value replaced by `***`.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Masks every string (and object key) of a JSON value in place.
    pub fn json(&self, v: &mut Value) {
        if self.is_empty() {
            return;
        }
        match v {
            Value::String(s) => *s = self.text(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.json(x)),
            Value::Object(o) => {
                let old = std::mem::take(o);
                for (k, mut x) in old {
                    self.json(&mut x);
                    o.insert(self.text(&k), x);
                }
            }
            _ => {}
        }
    }

    /// A run's params as shown: secret ones `***`, whatever their value.
    pub fn params(run: &RunRecord) -> Vec<(String, String)> {
        let inputs = serde_json::from_str::<RunInputs>(&run.params_json).unwrap_or_default();
        let r = Redact::of_inputs(&inputs);
        inputs
            .sets
            .iter()
            .map(|(k, v)| {
                let shown = if inputs.secrets.contains(k) {
                    MASK.to_string()
                } else {
                    r.text(v)
                };
                (k.clone(), shown)
            })
            .collect()
    }

    /// A run record fit to show: secret params masked in its inputs (by
    /// field, then as text) and secret values in its error.
    pub fn run(&self, mut run: RunRecord) -> RunRecord {
        run.params_json = Redact::params_json(&run.params_json);
        if self.is_empty() {
            return run;
        }
        run.params_json = self.text(&run.params_json);
        run.error = run.error.map(|e| self.text(&e));
        run
    }

    /// A step fit to show (its plan, error and names masked).
    pub fn step(&self, mut s: StepRecord) -> StepRecord {
        if self.is_empty() {
            return s;
        }
        s.step_id = self.text(&s.step_id);
        s.plan_json = s.plan_json.map(|p| self.text(&p));
        s.error = s.error.map(|e| self.text(&e));
        s
    }

    /// An action fit to show.
    pub fn action(&self, mut a: ActionRecord) -> ActionRecord {
        if self.is_empty() {
            return a;
        }
        a.action_json = self.text(&a.action_json);
        a.undo_json = a.undo_json.map(|u| self.text(&u));
        a.error = a.error.map(|e| self.text(&e));
        a
    }

    /// An event fit to show.
    pub fn event(&self, mut e: EventRecord) -> EventRecord {
        if !self.is_empty() {
            e.message = self.text(&e.message);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redact::new(["hunter2".to_string(), "hunter22x".into(), String::new()]);
        assert_eq!(r.text("a hunter22x b hunter2 c"), "a *** b *** c");
        let mut v = serde_json::json!({"k hunter2": ["hunter2", 3, {"x": "-hunter2-"}]});
        r.json(&mut v);
        assert_eq!(v, serde_json::json!({"k ***": ["***", 3, {"x": "-***-"}]}));
        assert_eq!(Redact::new([String::new()]).text("abc"), "abc");
    }

    #[test]
    fn a_short_value_masks_no_text_but_its_own_field() {
        let r = Redact::new(["a".to_string(), "abc".into(), "hunter2".into()]);
        assert_eq!(r.text("data/a/abc/hunter2"), "data/a/abc/***");
        let json = r#"{"sets":[["pin","a"],["host","db1"]],"secrets":["pin"]}"#;
        let masked = Redact::params_json(json);
        let v: Value = serde_json::from_str(&masked).unwrap();
        assert_eq!(v["sets"][0][1], "***");
        assert_eq!(v["sets"][1][1], "db1");
        assert_eq!(
            Redact::too_short([("pin", "a"), ("token", "hunter2"), ("unset", "")]),
            vec![("pin".to_string(), 1)]
        );
    }
}
