//! RFC 3339 UTC timestamps with milliseconds (`2026-11-26T20:41:03.123Z`), formatted by
//! `humantime` into a fixed-size array, without allocating.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) const LEN: usize = 24;

/// Seconds from the epoch to 10000-01-01T00:00:00Z: the first instant four year digits cannot
/// hold. Later times are written as the last millisecond of 9999.
const YEAR_10000: u64 = 253_402_300_800;

/// Formats `t` as RFC 3339 in UTC with milliseconds (truncated, not rounded). Times before 1970
/// are written as the epoch and times from year 10000 on as the end of 9999, so the result always
/// has the same length (a clock set far off must not break the line format).
pub(crate) fn rfc3339_millis(t: SystemTime) -> [u8; LEN] {
    let t = match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() >= YEAR_10000 => {
            UNIX_EPOCH + Duration::from_millis(YEAR_10000 * 1000 - 1)
        }
        Ok(_) => t,
        Err(_) => UNIX_EPOCH,
    };
    let mut out = *b"1970-01-01T00:00:00.000Z";
    // Always exactly LEN bytes for years 1970..=9999, so the write fits.
    let _ = write!(&mut out[..], "{}", humantime::format_rfc3339_millis(t));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis);
        String::from_utf8(rfc3339_millis(t).to_vec()).expect("ASCII")
    }

    /// Reference values from `date -u -d @SECS`.
    #[test]
    fn known_dates() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_795_725_663, 123), "2026-11-26T20:41:03.123Z");
        // Leap days: divisible by 4, by 400 (2000), and the day after.
        assert_eq!(at(951_825_600, 1), "2000-02-29T12:00:00.001Z");
        assert_eq!(at(951_868_800, 0), "2000-03-01T00:00:00.000Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_709_251_200, 0), "2024-03-01T00:00:00.000Z");
        // 2100 is not a leap year (divisible by 100, not by 400); 2400 is.
        assert_eq!(at(4_107_456_000, 0), "2100-02-28T00:00:00.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(13_574_563_200, 0), "2400-02-29T00:00:00.000Z");
        // Year ends.
        assert_eq!(at(1_703_980_799, 500), "2023-12-30T23:59:59.500Z");
        assert_eq!(at(1_704_067_199, 0), "2023-12-31T23:59:59.000Z");
        assert_eq!(at(1_704_067_200, 0), "2024-01-01T00:00:00.000Z");
        assert_eq!(at(YEAR_10000 - 1, 999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn milliseconds_are_truncated() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_999_999_999);
        assert_eq!(&rfc3339_millis(t), b"1970-01-01T00:00:01.999Z");
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(&rfc3339_millis(before), b"1970-01-01T00:00:00.000Z");
        let after = UNIX_EPOCH + Duration::from_secs(YEAR_10000 + 86_400 * 400);
        assert_eq!(&rfc3339_millis(after), b"9999-12-31T23:59:59.999Z");
    }

    /// Every 13th day from 1970 to 9999 (each month and leap pattern many times over) against a
    /// naive calendar walked one day at a time: fails if a month length or leap rule is off.
    #[test]
    fn days_match_a_naive_calendar() {
        fn is_leap(y: u64) -> bool {
            y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
        }
        fn month_len(y: u64, m: u64) -> u64 {
            match m {
                2 if is_leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        const SECS_PER_DAY: u64 = 86_400;
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..YEAR_10000 / SECS_PER_DAY {
            if days % 13 == 0 {
                let want = format!("{y:04}-{m:02}-{d:02}T00:00:00.000Z");
                assert_eq!(at(days * SECS_PER_DAY, 0), want, "day {days}");
            }
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!((y, m, d), (10000, 1, 1));
    }
}
