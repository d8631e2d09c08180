//! Rewriting a runbook file in place for `mend step upgrade`: one step's
//! `uses`, `sha256` and `capabilities` change; every other byte stays
//! (comments, alignment, order, the trailing comments of those lines).

use toml_edit::{Array, DocumentMut, Item, Value};

/// `source` with step `step`'s three pins replaced. A multi-line
/// `capabilities` array is rewritten onto one line.
pub fn rewrite_step(
    source: &str,
    step: &str,
    uses: &str,
    sha256: &str,
    capabilities: &[String],
) -> Result<String, String> {
    let mut doc: DocumentMut = source.parse().map_err(|e| format!("{e}"))?;
    let steps = doc
        .get_mut("steps")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or("the runbook has no [[steps]]")?;
    let table = steps
        .iter_mut()
        .find(|t| t.get("id").and_then(Item::as_str) == Some(step))
        .ok_or_else(|| format!("the runbook has no step `{step}`"))?;
    let mut caps = Array::new();
    for c in capabilities {
        caps.push(c.as_str());
    }
    for (key, new) in [
        ("uses", Value::from(uses)),
        ("sha256", Value::from(sha256)),
        ("capabilities", Value::Array(caps)),
    ] {
        match table.get_mut(key).and_then(Item::as_value_mut) {
            Some(old) => {
                let decor = old.decor().clone();
                *old = new;
                *old.decor_mut() = decor;
            }
            None => {
                table.insert(key, Item::Value(new));
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_lines_change_and_keep_their_comments() {
        let src = "# top\n[runbook]\nname = \"r\"   # kept\n\n# the step\n[[steps]]\nid      = \"a\"\nuses    = \"oci://h/n/x:1.0.0\"   # was a file\nsha256  = \"aa\"\ncapabilities = [\"mend:runbook/log\"]  # reviewed\n\n  [steps.with]\n  path = \"media\"    # grant\n\n[[steps]]\nid = \"b\"\nuses = \"oci://h/n/x:1.0.0\"\nsha256 = \"aa\"\n";
        let out = rewrite_step(
            src,
            "a",
            "oci://h/n/x:1.1.0",
            "bb",
            &["mend:runbook/log".into(), "mend:runbook/probe".into()],
        )
        .unwrap();
        let changed: Vec<(&str, &str)> = src
            .lines()
            .zip(out.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(src.lines().count(), out.lines().count());
        assert_eq!(
            changed,
            [
                (
                    "uses    = \"oci://h/n/x:1.0.0\"   # was a file",
                    "uses    = \"oci://h/n/x:1.1.0\"   # was a file"
                ),
                ("sha256  = \"aa\"", "sha256  = \"bb\""),
                (
                    "capabilities = [\"mend:runbook/log\"]  # reviewed",
                    "capabilities = [\"mend:runbook/log\", \"mend:runbook/probe\"]  # reviewed"
                ),
            ]
        );
        assert!(rewrite_step(src, "zz", "u", "s", &[]).is_err());
    }
}
