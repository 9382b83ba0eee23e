//! Durations as written in the config: a number and a unit, repeated (`"500ms"`, `"5s"`,
//! `"65m"`, `"1h"`, `"2d"`, `"1m30s"`). A bare number is an error, never a guess at the unit:
//! sozu's unit-less `Option<u32>` timeouts are the habit this replaces.

use std::time::Duration;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The units as the fixes list them.
pub(super) const UNIT_LIST: &str = "ms, s, m, h, d";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(super) enum DurationError {
    /// `""`.
    #[error("the duration is empty")]
    Empty,
    /// `"5"`: a number with no unit.
    #[error("the duration {number} has no unit")]
    NoUnit {
        /// The number as written.
        number: String,
    },
    /// `"5sec"`, `"5x"`.
    #[error("unknown duration unit \"{unit}\"")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// `"s"`, `"1m s"`, `"-5s"`: something other than a digit where a number must start.
    #[error("expected a number, found '{found}'")]
    ExpectedNumber {
        /// The character found instead.
        found: char,
    },
    /// `"1.5s"`.
    #[error("fractions are not supported in durations")]
    Fraction,
    /// More than `u64::MAX` milliseconds (about 584 million years).
    #[error("the duration is too large")]
    Overflow,
}

impl DurationError {
    /// A concrete fix for this error.
    pub(super) fn fix(&self) -> String {
        match self {
            DurationError::Empty => "write a number and a unit, e.g. \"5s\"".into(),
            DurationError::NoUnit { number } => format!("add a unit, e.g. \"{number}s\""),
            DurationError::UnknownUnit { unit } => match spelled_out(unit) {
                Some(short) => {
                    format!("write \"{unit}\" as \"{short}\"; the units are {UNIT_LIST}")
                }
                None => format!("use one of the units {UNIT_LIST}, e.g. \"90s\" or \"1m30s\""),
            },
            DurationError::ExpectedNumber { .. } => {
                "write numbers and units with nothing in between, e.g. \"1m30s\"".into()
            }
            DurationError::Fraction => {
                "use a smaller unit instead, e.g. \"1500ms\" for 1.5s".into()
            }
            DurationError::Overflow => "use a shorter duration".into(),
        }
    }
}

/// Common spelled-out units and the unit they mean.
fn spelled_out(unit: &str) -> Option<&'static str> {
    let short = match unit.to_ascii_lowercase().as_str() {
        "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => "ms",
        "sec" | "secs" | "second" | "seconds" => "s",
        "min" | "mins" | "minute" | "minutes" => "m",
        "hr" | "hrs" | "hour" | "hours" => "h",
        "day" | "days" => "d",
        other => return UNITS.iter().find(|(u, _)| *u == other).map(|(u, _)| *u),
    };
    Some(short)
}

/// Parses `"1m30s"`-style durations. Units may repeat and come in any order; they add up.
pub(super) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            let found = rest.chars().next().unwrap_or(' ');
            return Err(DurationError::ExpectedNumber { found });
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with(['.', ',']) {
            return Err(DurationError::Fraction);
        }
        let unit_len = after.len() - after.trim_start_matches(|c: char| c.is_alphabetic()).len();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return match after.chars().next() {
                None => Err(DurationError::NoUnit {
                    number: number.to_owned(),
                }),
                Some(found) => Err(DurationError::ExpectedNumber { found }),
            };
        }
        let Some(&(_, millis)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_owned(),
            });
        };
        let n: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        total = n
            .checked_mul(millis)
            .and_then(|part| total.checked_add(part))
            .ok_or(DurationError::Overflow)?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

/// Writes `d` the way the config would (`"1m30s"`, `"10m"`, `"250ms"`, `"0s"`), to whole
/// milliseconds.
pub(super) fn format_duration(d: Duration) -> String {
    let mut millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        let n = millis / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            millis %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn valid_durations() {
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("65m"), Ok(ms(65 * 60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("2d"), Ok(ms(2 * 86_400_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h1m1s1ms"), Ok(ms(3_661_001)));
        assert_eq!(parse_duration("30s1m"), Ok(ms(90_000)));
        assert_eq!(parse_duration("0s"), Ok(ms(0)));
        assert_eq!(parse_duration("007s"), Ok(ms(7_000)));
    }

    #[test]
    fn invalid_durations() {
        use DurationError::*;
        assert_eq!(parse_duration(""), Err(Empty));
        assert_eq!(parse_duration("5"), Err(NoUnit { number: "5".into() }));
        assert_eq!(
            parse_duration("1m30"),
            Err(NoUnit {
                number: "30".into()
            })
        );
        assert_eq!(
            parse_duration("5sec"),
            Err(UnknownUnit { unit: "sec".into() })
        );
        assert_eq!(parse_duration("5x"), Err(UnknownUnit { unit: "x".into() }));
        assert_eq!(parse_duration("5S"), Err(UnknownUnit { unit: "S".into() }));
        assert_eq!(parse_duration("s"), Err(ExpectedNumber { found: 's' }));
        assert_eq!(parse_duration("-5s"), Err(ExpectedNumber { found: '-' }));
        assert_eq!(parse_duration(" 5s"), Err(ExpectedNumber { found: ' ' }));
        assert_eq!(parse_duration("5 s"), Err(ExpectedNumber { found: ' ' }));
        assert_eq!(parse_duration("1m 30s"), Err(ExpectedNumber { found: ' ' }));
        assert_eq!(parse_duration("1.5s"), Err(Fraction));
        assert_eq!(parse_duration("5s!"), Err(ExpectedNumber { found: '!' }));
        assert_eq!(
            parse_duration("5µs"),
            Err(UnknownUnit { unit: "µs".into() })
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(parse_duration("18446744073709551615ms"), Ok(ms(u64::MAX)));
        assert_eq!(
            parse_duration("18446744073709551616ms"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("18446744073709551615ms1ms"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration(&"9".repeat(100)),
            Err(DurationError::NoUnit {
                number: "9".repeat(100)
            })
        );
        assert_eq!(
            parse_duration(&format!("{}d", "9".repeat(100))),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn fixes_are_concrete() {
        assert_eq!(
            parse_duration("5").unwrap_err().fix(),
            "add a unit, e.g. \"5s\""
        );
        let fix = parse_duration("5secs").unwrap_err().fix();
        assert!(fix.contains("write \"secs\" as \"s\""), "{fix}");
        let fix = parse_duration("5q").unwrap_err().fix();
        assert!(fix.contains(UNIT_LIST), "{fix}");
    }

    #[test]
    fn format_round_trips() {
        for text in [
            "0s",
            "250ms",
            "5s",
            "1m30s",
            "10m",
            "1h5m",
            "2d",
            "1d1h1m1s1ms",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn never_panics_on_prefixes() {
        let text = "1d2h3m4s5ms";
        for end in 0..=text.len() {
            let _ = parse_duration(&text[..end]);
        }
        for odd in [
            "é",
            "5é",
            "5sé",
            "\u{0}",
            "5\u{0}s",
            "999999999999999999999999",
        ] {
            let _ = parse_duration(odd);
        }
    }
}
