//! Go `time.Duration` text: parsing as `time.ParseDuration` does and printing as
//! `Duration.String()` does, so a KubeletConfiguration's `cacheTTL: 2m0s` means the same here.

use std::time::Duration;

/// Go durations are an int64 of nanoseconds; anything larger does not exist in Go.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a duration string was rejected. Every variant carries the original input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("invalid duration {input:?}: missing unit (one of ns, us, µs, ms, s, m, h)")]
    MissingUnit { input: String },
    #[error("invalid duration {input:?}: unknown unit {unit:?} (one of ns, us, µs, ms, s, m, h)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error("invalid duration {0:?}: out of range")]
    Overflow(String),
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a duration in Go's `time.ParseDuration` syntax (`2m`, `5m0s`, `1h30m`, `1.5h`,
/// `500ms`, `0`). Negative durations are rejected: no field of the configuration can use one.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(s.to_owned());
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        // "." alone, or a unit with no number in front of it.
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_number
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(DurationError::MissingUnit { input: s.to_owned() });
        }
        let (unit_text, after_unit) = after_number.split_at(unit_len);
        let unit = unit_nanos(unit_text).ok_or_else(|| DurationError::UnknownUnit {
            input: s.to_owned(),
            unit: unit_text.to_owned(),
        })?;

        let overflow = || DurationError::Overflow(s.to_owned());
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole * 10 + u128::from(d - b'0');
            if whole > MAX_NANOS {
                return Err(overflow());
            }
        }
        let mut value = whole.checked_mul(unit).ok_or_else(overflow)?;
        // Digits past nanosecond precision of the largest unit cannot change the result.
        let mut numerator: u128 = 0;
        let mut scale: u128 = 1;
        for d in frac_digits.bytes().take(20) {
            numerator = numerator * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        value += numerator * unit / scale;
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > MAX_NANOS {
            return Err(overflow());
        }
        rest = after_unit;
    }
    if negative && total != 0 {
        return Err(DurationError::Negative(s.to_owned()));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(secs, nanos))
}

/// Prints `d` as Go's `Duration.String()` does (`2m0s`, `30s`, `1h0m0s`, `500ms`, `0s`), so
/// the output parses back to the same value with [`parse_go_duration`].
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}\u{b5}s", with_fraction(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", with_fraction(nanos, 6));
    }
    let seconds_part = with_fraction(nanos % 60_000_000_000, 9);
    let minutes = nanos / 60_000_000_000;
    let hours = minutes / 60;
    match (hours, minutes) {
        (0, 0) => format!("{seconds_part}s"),
        (0, m) => format!("{m}m{seconds_part}s"),
        (h, m) => format!("{h}h{}m{seconds_part}s", m % 60),
    }
}

/// `value / 10^digits` in decimal, without trailing zeros or a bare point.
fn with_fraction(value: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_go_forms() {
        let cases: &[(&str, Duration)] = &[
            ("2m", Duration::from_secs(120)),
            ("30s", Duration::from_secs(30)),
            ("5m0s", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("-0s", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("10ns", Duration::from_nanos(10)),
            ("10us", Duration::from_micros(10)),
            ("10\u{b5}s", Duration::from_micros(10)),
            ("10\u{3bc}s", Duration::from_micros(10)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            (".5s", Duration::from_millis(500)),
            ("5.s", Duration::from_secs(5)),
            ("1.000000001s", Duration::new(1, 1)),
            ("0.1234567891s", Duration::new(0, 123_456_789)),
            ("2m0.5s", Duration::from_millis(120_500)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (text, want) in cases {
            assert_eq!(ok(text), *want, "{text}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Invalid(String::new())));
        assert_eq!(parse_go_duration("-"), Err(DurationError::Invalid("-".into())));
        assert_eq!(parse_go_duration("."), Err(DurationError::Invalid(".".into())));
        assert_eq!(parse_go_duration("s"), Err(DurationError::Invalid("s".into())));
        assert_eq!(
            parse_go_duration("5"),
            Err(DurationError::MissingUnit { input: "5".into() })
        );
        assert_eq!(
            parse_go_duration("1m5"),
            Err(DurationError::MissingUnit { input: "1m5".into() })
        );
        assert_eq!(
            parse_go_duration("5d"),
            Err(DurationError::UnknownUnit {
                input: "5d".into(),
                unit: "d".into()
            })
        );
        assert_eq!(
            parse_go_duration("2 minutes"),
            Err(DurationError::UnknownUnit {
                input: "2 minutes".into(),
                unit: " minutes".into()
            })
        );
        assert_eq!(parse_go_duration("-5s"), Err(DurationError::Negative("-5s".into())));
        assert_eq!(parse_go_duration("-1.5h"), Err(DurationError::Negative("-1.5h".into())));
        assert_eq!(
            parse_go_duration("3000000h"),
            Err(DurationError::Overflow("3000000h".into()))
        );
        assert_eq!(
            parse_go_duration("99999999999999999999999999999999999999999s"),
            Err(DurationError::Overflow(
                "99999999999999999999999999999999999999999s".into()
            ))
        );
        assert!(parse_go_duration(" 5s").is_err());
        assert!(parse_go_duration("5s ").is_err());
        assert!(parse_go_duration("5S").is_err());
    }

    #[test]
    fn error_text_quotes_input() {
        let e = parse_go_duration("2 minutes").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid duration \"2 minutes\": unknown unit \" minutes\" (one of ns, us, µs, ms, s, m, h)")
        );
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1_500), "1.5\u{b5}s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::new(3723, 4_005_006), "1h2m3.004005006s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(*d), *want);
            assert_eq!(ok(want), *d, "round trip of {want}");
        }
    }
}
