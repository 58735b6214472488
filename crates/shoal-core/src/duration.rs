//! The duration syntax of config files, flags and scenarios: one or more `<number><unit>`
//! parts ("500ms", "30s", "5m", "1h30m", "1.5s"), parsed by `humantime` (which also takes
//! the long units, "5min", "2 hours"). Owns the bound and the error an operator reads; must
//! not hold any state.

use std::time::Duration;

/// The longest duration any setting takes (about 31 years): past it a value is a typo.
const MAX: Duration = Duration::from_secs(1_000_000_000);

/// Parses a duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`
/// and humantime's long forms ("500ms", "30s", "5m", "1h30m", "1.5s").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like 500ms, 30s, 5m or 1h".into());
    }
    match humantime::parse_duration(t) {
        Ok(d) if d <= MAX => Ok(d),
        _ => Err(format!(
            "{s:?} is not a duration; write it like 500ms, 30s, 5m or 1h30m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        let ms = |v| Duration::from_millis(v);
        for (text, want) in [
            ("500ms", ms(500)),
            ("30s", ms(30_000)),
            ("1.5s", ms(1_500)),
            ("5m", ms(300_000)),
            ("5min", ms(300_000)),
            ("1h30m", ms(5_400_000)),
            ("2d", ms(172_800_000)),
            (" 10s ", ms(10_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn typos_are_refused_with_the_forms_to_use() {
        for bad in [
            "",
            "30",
            "s",
            "-1s",
            "1.2.3s",
            "1e3s",
            "10 parsecs",
            "99999999999d",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("500ms"), "{bad}: {e}");
        }
    }
}
