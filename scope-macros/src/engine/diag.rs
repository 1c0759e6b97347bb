//! Collecting diagnostics: every error found is kept and reported together, and unknown names
//! get a "did you mean" from the valid ones.

use proc_macro2::{Span, TokenStream};
use std::fmt::Display;

/// The errors found so far, reported all at once.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records an error at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// True when nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// `Ok(value)` when nothing was recorded, else every error.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, syn::Error> {
        match self.combined {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }

    /// The errors as `compile_error!` invocations (empty when there are none).
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.combined
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// A message followed by a `help:` line, laid out the way rustc lays out its own help.
pub(crate) fn with_help(message: impl Display, help: impl Display) -> String {
    format!("{message}\n= help: {help}")
}

/// The valid name closest to `unknown`, if any is close enough to be a likely typo.
pub(crate) fn suggest<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_ascii_lowercase();
    valid
        .iter()
        .map(|candidate| (edit_distance(&unknown, candidate), *candidate))
        .filter(|(distance, candidate)| {
            // One edit per three letters, at least one, is what a typo looks like.
            *distance <= (candidate.len() / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring letters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut table = vec![0_usize; (a.len() + 1) * width];
    for (i, cell) in table.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in table.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[(i - 1) * width + j] + 1)
                .min(table[i * width + j - 1] + 1)
                .min(table[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[(i - 2) * width + j - 2] + 1);
            }
            table[i * width + j] = best;
        }
    }
    table[a.len() * width + b.len()]
}

/// `a, b, c` with each name in backticks.
pub(crate) fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &[
        "timeout",
        "name",
        "tracer",
        "concurrency",
        "metrics",
        "retry",
    ];

    #[test]
    fn typos_find_their_key() {
        assert_eq!(suggest("timout", KEYS), Some("timeout"));
        assert_eq!(suggest("tiemout", KEYS), Some("timeout"));
        assert_eq!(suggest("concurency", KEYS), Some("concurrency"));
        assert_eq!(suggest("Metrics", KEYS), Some("metrics"));
    }

    #[test]
    fn unrelated_names_get_no_suggestion() {
        assert_eq!(suggest("deadline", KEYS), None);
        assert_eq!(suggest("x", KEYS), None);
        assert_eq!(suggest("", KEYS), None);
    }

    #[test]
    fn distance_counts_swaps_as_one_edit() {
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn errors_are_combined() {
        let mut errors = Errors::default();
        assert!(errors.is_empty());
        errors.at(Span::call_site(), "first");
        errors.at(Span::call_site(), "second");
        let text = errors.to_compile_errors().to_string();
        assert!(text.contains("first") && text.contains("second"));
        assert!(errors.finish(()).is_err());
    }
}
