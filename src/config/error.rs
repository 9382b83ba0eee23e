//! The configuration error type: every problem found in one file, each with where it is,
//! what was found and how to fix it; and the byte-offset to line:column conversion.

use std::fmt;
use std::path::{Path, PathBuf};

/// All problems found in one configuration file, in file order. `Display` prints every one,
/// then a count.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// At least one problem, sorted by line and column.
    pub problems: Vec<Problem>,
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// 1-based line of the bad value; 0 when the problem is the file itself (unreadable).
    pub line: usize,
    /// 1-based column, in characters; 0 together with `line == 0`.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The offending value as written, when there is one.
    pub value: Option<String>,
    /// A concrete way to fix it.
    pub fix: String,
}

impl Problem {
    /// A problem located at byte `offset` of `text`.
    pub(super) fn at(
        text: &str,
        offset: usize,
        message: impl Into<String>,
        value: Option<String>,
        fix: impl Into<String>,
    ) -> Problem {
        let (line, column) = line_column(text, offset);
        Problem {
            line,
            column,
            message: message.into(),
            value,
            fix: fix.into(),
        }
    }

    /// A problem with the file as a whole (it cannot be read), with no position.
    pub(super) fn file(message: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            line: 0,
            column: 0,
            message: message.into(),
            value: None,
            fix: fix.into(),
        }
    }
}

impl ConfigError {
    /// Sorts `problems` into file order; the sort is stable, so problems found at the same
    /// place keep the order they were found in.
    pub(super) fn new(path: &Path, mut problems: Vec<Problem>) -> ConfigError {
        problems.sort_by_key(|p| (p.line, p.column));
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    }

    pub(super) fn single(path: &Path, problem: Problem) -> ConfigError {
        ConfigError::new(path, vec![problem])
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        for p in &self.problems {
            if p.line == 0 {
                writeln!(f, "{path}: error: {}", p.message)?;
            } else {
                writeln!(f, "{path}:{}:{}: error: {}", p.line, p.column, p.message)?;
            }
            if let Some(value) = &p.value {
                writeln!(f, "    found: {value}")?;
            }
            writeln!(f, "    fix: {}", p.fix)?;
        }
        let n = self.problems.len();
        writeln!(
            f,
            "{n} {} in {path}",
            if n == 1 { "error" } else { "errors" }
        )
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `offset` in `text`. An offset past the end
/// gives the position just after the last character; one inside a character counts as that
/// character. Never panics.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "é" is two bytes but one column: the '=' after "bé " is column 4.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 10_000), (3, 1));
        assert_eq!(line_column("", 3), (1, 1));
    }

    #[test]
    fn display_prints_every_problem_then_the_count() {
        let text = "x\n[[service]]\nweight = 0\n";
        let err = ConfigError::new(
            Path::new("rm.toml"),
            vec![
                Problem::at(text, 23, "second", None, "fix two"),
                Problem::at(text, 0, "first", Some("0".into()), "fix one"),
            ],
        );
        assert_eq!(
            err.to_string(),
            "rm.toml:1:1: error: first\n    found: 0\n    fix: fix one\n\
             rm.toml:3:10: error: second\n    fix: fix two\n\
             2 errors in rm.toml\n"
        );
        let one = ConfigError::single(Path::new("x.toml"), Problem::file("gone", "look"));
        assert_eq!(
            one.to_string(),
            "x.toml: error: gone\n    fix: look\n1 error in x.toml\n"
        );
    }
}
