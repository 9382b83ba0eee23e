//! Typo hints: edit distance, "did you mean", and reading the unknown key and the allowed keys
//! out of serde's "unknown field" message.

/// Largest edit distance at which a word is offered as "did you mean".
const MAX_TYPO_DISTANCE: usize = 2;

/// Levenshtein distance between `a` and `b`, counted in characters (`strsim`).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// The candidate closest to `word`, if one is within edit distance 2 (the first on a tie).
/// Comparison ignores ASCII case, so `Passthrough` suggests `passthrough`.
pub(super) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= MAX_TYPO_DISTANCE)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Reads serde's "unknown field `x`, expected `a` or `b`" (or "expected one of `a`, `b`, `c`",
/// or "there are no fields") into the unknown key and the keys allowed in its table.
/// `None` if the message is not of that form.
pub(super) fn unknown_key(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field ")?;
    let mut quoted = rest.split('`').skip(1).step_by(2).map(str::to_owned);
    let key = quoted.next()?;
    Some((key, quoted.collect()))
}

/// `allowed` as "`a`, `b`, `c`".
pub(super) fn key_list(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
    quoted.join(", ")
}

/// The fix for an unknown key: "did you mean" when one allowed key is close, and the list.
pub(super) fn unknown_key_fix(key: &str, allowed: &[&str]) -> String {
    if allowed.is_empty() {
        return format!("remove `{key}`: this table takes no keys");
    }
    let list = key_list(allowed);
    match closest(key, allowed) {
        Some(near) => format!("did you mean `{near}`? The keys allowed here are: {list}"),
        None => format!("remove `{key}` or rename it; the keys allowed here are: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("weight", "weight"), 0);
        assert_eq!(edit_distance("wieght", "weight"), 2);
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn closest_only_within_two_edits() {
        assert_eq!(closest("lisen", &["name", "listen"]), Some("listen"));
        assert_eq!(closest("Passthru", &["passthrough"]), None);
        assert_eq!(
            closest("PASSTHROUG", &["passthrough", "offload"]),
            Some("passthrough")
        );
        assert_eq!(closest("color", &["name", "listen", "mode"]), None);
    }

    #[test]
    fn reads_serde_unknown_field_messages() {
        let (key, allowed) =
            unknown_key("unknown field `wieght`, expected `address` or `weight`").unwrap();
        assert_eq!(key, "wieght");
        assert_eq!(allowed, ["address", "weight"]);
        let (key, allowed) =
            unknown_key("unknown field `x`, expected one of `a`, `b`, `c`").unwrap();
        assert_eq!((key.as_str(), allowed.len()), ("x", 3));
        let (_, allowed) = unknown_key("unknown field `x`, there are no fields").unwrap();
        assert!(allowed.is_empty());
        assert_eq!(unknown_key("invalid type: map, expected a sequence"), None);
    }

    #[test]
    fn fix_names_the_near_key_and_lists_all() {
        let fix = unknown_key_fix("wieght", &["address", "weight"]);
        assert_eq!(
            fix,
            "did you mean `weight`? The keys allowed here are: `address`, `weight`"
        );
        let fix = unknown_key_fix("colour", &["address", "weight"]);
        assert!(fix.starts_with("remove `colour`"), "{fix}");
    }
}
