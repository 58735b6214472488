//! The duration syntax of config files, flags and scenarios: one or more `<number><unit>`
//! parts ("500ms", "30s", "5m", "1h30m"). A pure parser; must not hold any state.

use std::time::Duration;

/// Parses a duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`
/// ("500ms", "30s", "5m", "1h30m", "1.5s").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like 500ms, 30s, 5m or 1h".into());
    }
    let bad = || format!("{s:?} is not a duration; write it like 500ms, 30s, 5m or 1h30m");
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => num / 1000.0,
            "s" => num,
            "m" | "min" => num * 60.0,
            "h" => num * 3600.0,
            "d" => num * 86400.0,
            _ => return Err(bad()),
        };
        if !secs.is_finite() || secs > 1e9 {
            return Err(bad());
        }
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
}
