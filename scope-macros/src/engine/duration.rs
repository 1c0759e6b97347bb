//! Duration literals, parsed at compile time: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`,
//! `"1_000ms"`, `"1.5s"`.
//!
//! Grammar: one or more `NUMBER UNIT` parts, units from largest to smallest with none repeated,
//! optionally separated by spaces (also between a number and its unit). `NUMBER` is decimal digits with `_` separators between
//! digits and an optional fraction (`1.5s`). Units: `h`, `m`, `s`, `ms`, `us`, `ns`.
//!
//! Pure and total: every input gives a value or a [`DurationError`], never a panic.

use std::fmt;
use std::time::Duration;

/// The forms shown in diagnostics.
pub(crate) const VALID_FORMS: &str =
    "\"500ms\", \"30s\", \"5m\", \"1h\", \"1m30s\", \"1_500ms\", \"1.5s\"";

/// Why a duration literal was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Nothing but whitespace.
    Empty,
    /// A number with no unit after it (`"30"`).
    MissingUnit {
        /// The number as written.
        number: String,
    },
    /// A unit that is not one of the supported ones.
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// A unit with no number before it, or a character that starts neither.
    ExpectedNumber {
        /// What was found instead.
        found: String,
    },
    /// A number that is not well formed (`"1__0s"`, `"1.s"`, `"_1s"`).
    BadNumber {
        /// The number as written.
        number: String,
    },
    /// Units out of order or repeated (`"30s1m"`, `"1s1s"`).
    UnitOrder {
        /// The unit that came too late.
        unit: String,
    },
    /// More than `u64::MAX` seconds.
    Overflow,
    /// A leading `-` (`"-1s"`).
    Negative,
    /// An exponent (`"1e3ms"`).
    Scientific,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("the duration is empty"),
            DurationError::MissingUnit { number } => {
                write!(
                    f,
                    "`{number}` has no unit (write `{number}s`, `{number}ms`, ...)"
                )
            }
            DurationError::UnknownUnit { unit: name } if is_unit(&name.to_lowercase()) => write!(
                f,
                "unknown unit `{name}`; units are lowercase: `{}`",
                name.to_lowercase()
            ),
            DurationError::UnknownUnit { unit } => write!(
                f,
                "unknown unit `{unit}`; the units are h, m, s, ms, us and ns"
            ),
            DurationError::Negative => f.write_str("durations can't be negative"),
            DurationError::Scientific => f.write_str(
                "scientific notation isn't supported; write the digits out (`1000ms`) or pick \
                 a larger unit (`1s`)",
            ),
            DurationError::ExpectedNumber { found } => {
                write!(f, "expected a number, found `{found}`")
            }
            DurationError::BadNumber { number } => write!(
                f,
                "`{number}` is not a number (digits, `_` only between digits, one optional `.`)"
            ),
            DurationError::UnitOrder { unit } => write!(
                f,
                "`{unit}` comes after a smaller or the same unit; write units from largest to \
                 smallest, each once"
            ),
            DurationError::Overflow => f.write_str("the duration is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Nanoseconds in one unit, and the unit's rank (larger units rank higher).
fn unit(name: &str) -> Option<(u128, u8)> {
    Some(match name {
        "h" => (3_600_000_000_000, 6),
        "m" => (60_000_000_000, 5),
        "s" => (1_000_000_000, 4),
        "ms" => (1_000_000, 3),
        "us" => (1_000, 2),
        "ns" => (1, 1),
        _ => return None,
    })
}

/// True when `name` is one of the units.
pub(crate) fn is_unit(name: &str) -> bool {
    unit(name).is_some()
}

/// Parses a duration literal; see the module docs for the grammar.
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if rest.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let mut total_nanos: u128 = 0;
    let mut last_rank = u8::MAX;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            let found: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
            return Err(DurationError::ExpectedNumber { found });
        }
        // A space may stand between a number and its unit (`"30 s"`).
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit_name, after) = after.split_at(unit_len);
        if unit_name.is_empty() {
            return Err(DurationError::MissingUnit {
                number: number.to_owned(),
            });
        }
        let Some((unit_nanos, rank)) = unit(unit_name) else {
            if unit_name.eq_ignore_ascii_case("e")
                && after.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
            {
                return Err(DurationError::Scientific);
            }
            return Err(DurationError::UnknownUnit {
                unit: unit_name.to_owned(),
            });
        };
        if rank >= last_rank {
            return Err(DurationError::UnitOrder {
                unit: unit_name.to_owned(),
            });
        }
        last_rank = rank;
        let nanos = number_nanos(number, unit_nanos)?;
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or(DurationError::Overflow)?;
        rest = after.trim_start();
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    let subsec = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, subsec))
}

/// `number` (digits, `_`, one `.`) times `unit_nanos`, rounded down to whole nanoseconds.
fn number_nanos(number: &str, unit_nanos: u128) -> Result<u128, DurationError> {
    let bad = || DurationError::BadNumber {
        number: number.to_owned(),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let whole_digits = digits(whole).ok_or_else(bad)?;
    let mut nanos: u128 = 0;
    for digit in whole_digits {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit)))
            .ok_or(DurationError::Overflow)?;
    }
    nanos = nanos
        .checked_mul(unit_nanos)
        .ok_or(DurationError::Overflow)?;
    if let Some(fraction) = fraction {
        let fraction_digits = digits(fraction).ok_or_else(bad)?;
        // Each fraction digit is worth a tenth of the previous one; digits below a nanosecond
        // are dropped.
        let mut scale = unit_nanos;
        for digit in fraction_digits {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos = nanos
                .checked_add(u128::from(digit) * scale)
                .ok_or(DurationError::Overflow)?;
        }
    }
    Ok(nanos)
}

/// The digits of `text`, where `_` may only stand between two digits; `None` if malformed.
fn digits(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes[0] == b'_' || bytes[bytes.len() - 1] == b'_' {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut previous_underscore = false;
    for &b in bytes {
        match b {
            b'0'..=b'9' => {
                out.push(b - b'0');
                previous_underscore = false;
            }
            b'_' if !previous_underscore => previous_underscore = true,
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        match parse(text) {
            Ok(d) => d,
            Err(e) => panic!("{text:?} should parse, got: {e}"),
        }
    }

    #[test]
    fn single_units() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("7us"), Duration::from_micros(7));
        assert_eq!(ok("9ns"), Duration::from_nanos(9));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn combinations_add_up() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3s4ms"), Duration::new(3723, 4_000_000));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok("  10ms "), Duration::from_millis(10));
    }

    #[test]
    fn underscores_and_fractions() {
        assert_eq!(ok("1_500ms"), Duration::from_millis(1500));
        assert_eq!(ok("1_000_000ns"), Duration::from_millis(1));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.25h"), Duration::from_secs(900));
        assert_eq!(ok("1.0000000009s"), Duration::new(1, 0));
    }

    #[test]
    fn missing_or_unknown_units_are_named() {
        assert_eq!(
            parse("30"),
            Err(DurationError::MissingUnit {
                number: "30".into()
            })
        );
        assert_eq!(
            parse("30sec"),
            Err(DurationError::UnknownUnit { unit: "sec".into() })
        );
        assert_eq!(
            parse("1m30"),
            Err(DurationError::MissingUnit {
                number: "30".into()
            })
        );
        assert_eq!(
            parse("s"),
            Err(DurationError::ExpectedNumber { found: "s".into() })
        );
        assert_eq!(parse("   "), Err(DurationError::Empty));
        assert_eq!(parse("-1s"), Err(DurationError::Negative));
        assert_eq!(parse(" -0.5ms"), Err(DurationError::Negative));
    }

    #[test]
    fn common_slips_get_their_own_message() {
        assert_eq!(parse("1e3ms"), Err(DurationError::Scientific));
        assert_eq!(parse("2E-1s"), Err(DurationError::Scientific));
        let upper = parse("30S").unwrap_err();
        assert_eq!(upper, DurationError::UnknownUnit { unit: "S".into() });
        assert!(upper.to_string().contains("units are lowercase: `s`"));
        assert!(
            parse("30sec")
                .unwrap_err()
                .to_string()
                .contains("the units are h, m, s")
        );
        assert!(parse("1em").is_err());
    }

    #[test]
    fn malformed_numbers() {
        for text in ["_1s", "1_s", "1__0s", "1.s", ".5s", "1.2.3s"] {
            assert!(
                matches!(parse(text), Err(DurationError::BadNumber { .. })),
                "{text:?} -> {:?}",
                parse(text)
            );
        }
    }

    #[test]
    fn units_go_from_largest_to_smallest_once() {
        assert_eq!(
            parse("30s1m"),
            Err(DurationError::UnitOrder { unit: "m".into() })
        );
        assert_eq!(
            parse("1s1s"),
            Err(DurationError::UnitOrder { unit: "s".into() })
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert_eq!(
            parse("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow)
        );
        assert_eq!(parse("18446744073709551616s"), Err(DurationError::Overflow));
        assert_eq!(ok("18446744073709551615s"), Duration::new(u64::MAX, 0));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "", "é", "1é", "1hé", "1.", ".", "_", "ms1", "\u{0}", "1h\u{0}",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn a_space_may_separate_a_number_from_its_unit() {
        assert_eq!(ok("1 s"), Duration::from_secs(1));
        assert_eq!(
            parse("30 seconds"),
            Err(DurationError::UnknownUnit {
                unit: "seconds".into()
            })
        );
    }
}
