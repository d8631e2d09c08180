//! Words for hints: "did you mean" and lists of what is valid.

/// "`a`, `b`, `c`", or "(none)".
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = ((word.chars().count() + 1) / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_found_and_strangers_are_not() {
        assert_eq!(edit_distance("disposible", "disposable"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let keys = ["path", "access", "disposable"];
        assert_eq!(suggest("disposible", keys), Some("disposable"));
        assert_eq!(suggest("acess", keys), Some("access"));
        assert_eq!(suggest("owner", keys), None);
        assert_eq!(list(["a", "b"]), "`a`, `b`");
        assert_eq!(list([]), "(none)");
    }
}
