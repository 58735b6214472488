//! A check as configured (`CheckSpec`: the JSON of `PUT /v1/services` `checks`, the config
//! file's `[[services.checks]]`, the CLI's `--check`) and as run (`CheckDef`: validated,
//! durations parsed, the id resolved).
//!
//! Owns the contract's field names and every validation with its message. Pure: no I/O.

use super::parse_duration;
use serde::{Deserialize, Serialize};
use shoal_core::Health;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

/// Most checks on one service.
pub const MAX_CHECKS_PER_SERVICE: usize = 8;
/// Most checks on one agent.
pub const MAX_CHECKS: usize = 256;
/// Longest check id.
pub const MAX_ID_LEN: usize = 64;
/// Longest HTTP check URL.
pub const MAX_URL_LEN: usize = 2048;
/// Most argv items of an exec check, longest item, and their total size.
pub const MAX_ARGV: usize = 64;
pub const MAX_ARG_LEN: usize = 4096;
pub const MAX_ARGV_BYTES: usize = 16 * 1024;
/// Bounds on interval, TTL and timeout.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most consecutive results a threshold may ask for.
pub const MAX_THRESHOLD: u32 = 100;

/// `{"id"?, "http": URL | "tcp": "IP:PORT" | "exec": [argv...] | "ttl": "30s", "interval"?,
/// "timeout"?, "success_before_passing"?, "failures_before_critical"?, "initial_status"?,
/// "tls_skip_verify"?}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_before_passing: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures_before_critical: Option<u32>,
    /// Status until the first result (default `critical`, as Consul).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_status: Option<Health>,
    /// An `https://` check takes any certificate (Consul's name); default: verified against
    /// the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
}

/// What an `http` check asks: the URL (`http://` or `https://`), and for https whether the
/// certificate is left unverified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    pub uri: hyper::Uri,
    pub tls_skip_verify: bool,
}

/// What a check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp(SocketAddr),
    Exec(Vec<String>),
    /// The app reports within this long, or the check turns critical.
    Ttl(Duration),
}

impl CheckKind {
    pub fn word(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Exec(_) => "exec",
            CheckKind::Ttl(_) => "ttl",
        }
    }
}

/// A validated check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDef {
    pub id: String,
    pub service: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub success_before_passing: u32,
    pub failures_before_critical: u32,
    pub initial: Health,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("check {check} of service {service:?}: {msg}")]
    Invalid {
        service: String,
        check: String,
        msg: String,
    },
    #[error(
        "service {0:?} has more than {MAX_CHECKS_PER_SERVICE} checks; combine them in one exec check"
    )]
    TooMany(String),
    #[error("this agent would run more than {MAX_CHECKS} checks")]
    TooManyOnAgent,
    #[error("check id {0:?} is used twice; give each check its own \"id\"")]
    Duplicate(String),
    #[error("no check {0:?} on this agent; see its checks with GET /v1/checks")]
    NotFound(String),
    #[error(
        "check {id:?} is an {kind} check: only ttl checks take updates through /v1/checks/{{id}}/pass|warn|fail"
    )]
    NotTtl { id: String, kind: &'static str },
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

fn duration(v: &Option<String>, what: &str) -> Result<Option<Duration>, String> {
    match v {
        None => Ok(None),
        Some(s) => parse_duration(s)
            .map(Some)
            .map_err(|m| format!("{what}: {m}")),
    }
}

fn within(d: Duration, lo: Duration, hi: Duration, what: &str) -> Result<Duration, String> {
    if d < lo || d > hi {
        return Err(format!(
            "{what} is {d:?}; it must be between {lo:?} and {hi:?}"
        ));
    }
    Ok(d)
}

fn threshold(v: Option<u32>, what: &str) -> Result<u32, String> {
    match v {
        None | Some(0) => Ok(1),
        Some(n) if n <= MAX_THRESHOLD => Ok(n),
        Some(n) => Err(format!("{what} is {n}; the limit is {MAX_THRESHOLD}")),
    }
}

fn http_uri(url: &str) -> Result<hyper::Uri, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("http URL is over {MAX_URL_LEN} bytes"));
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("http {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("http {url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("http {url:?} has no host"));
    }
    Ok(uri)
}

fn argv(v: &[String]) -> Result<Vec<String>, String> {
    if v.is_empty() || v[0].is_empty() {
        return Err(
            "exec needs a program: an argv array like [\"/usr/bin/check\", \"--quick\"] (not a \
             shell string)"
                .into(),
        );
    }
    if v.len() > MAX_ARGV {
        return Err(format!(
            "exec has {} arguments; the limit is {MAX_ARGV}",
            v.len()
        ));
    }
    let mut total = 0usize;
    for a in v {
        if a.len() > MAX_ARG_LEN {
            return Err(format!("an exec argument is over {MAX_ARG_LEN} bytes"));
        }
        if a.contains('\0') {
            return Err("an exec argument contains a NUL byte".into());
        }
        total += a.len();
    }
    if total > MAX_ARGV_BYTES {
        return Err(format!("exec arguments total over {MAX_ARGV_BYTES} bytes"));
    }
    Ok(v.to_vec())
}

impl CheckSpec {
    /// Validates the check number `index` (0-based) of `service` into a `CheckDef`.
    pub fn resolve(&self, service: &str, index: usize) -> Result<CheckDef, CheckError> {
        let id = match &self.id {
            Some(id) => id.clone(),
            None if index == 0 => format!("service:{service}"),
            None => format!("service:{service}:{}", index + 1),
        };
        let label = match &self.id {
            Some(id) => format!("{id:?}"),
            None => format!("#{}", index + 1),
        };
        let invalid = |msg: String| CheckError::Invalid {
            service: service.to_string(),
            check: label.clone(),
            msg,
        };
        if !valid_id(&id) {
            return Err(invalid(format!(
                "id {id:?} is invalid: 1 to {MAX_ID_LEN} bytes of letters, digits, '.', '_', \
                 '-', ':'"
            )));
        }
        let kinds = [
            self.http.is_some(),
            self.tcp.is_some(),
            self.exec.is_some(),
            self.ttl.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            return Err(invalid(
                "give exactly one of \"http\" (URL), \"tcp\" (IP:PORT), \"exec\" (argv array) \
                 or \"ttl\" (duration)"
                    .into(),
            ));
        }
        let interval = duration(&self.interval, "interval").map_err(invalid)?;
        let timeout = duration(&self.timeout, "timeout").map_err(invalid)?;
        if self.tls_skip_verify.is_some()
            && !self
                .http
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        {
            return Err(invalid(
                "tls_skip_verify goes with an https:// URL only".into(),
            ));
        }
        let kind = if let Some(u) = &self.http {
            CheckKind::Http(HttpCheck {
                uri: http_uri(u).map_err(invalid)?,
                tls_skip_verify: self.tls_skip_verify.unwrap_or(false),
            })
        } else if let Some(t) = &self.tcp {
            let a: SocketAddr = t.parse().map_err(|_| {
                invalid(format!(
                    "tcp {t:?} is not IP:PORT (for example 127.0.0.1:5432)"
                ))
            })?;
            if a.port() == 0 {
                return Err(invalid(format!("tcp {t:?} has port 0")));
            }
            CheckKind::Tcp(a)
        } else if let Some(v) = &self.exec {
            CheckKind::Exec(argv(v).map_err(invalid)?)
        } else {
            let ttl = duration(&self.ttl, "ttl")
                .map_err(invalid)?
                .unwrap_or_default();
            if interval.is_some() || timeout.is_some() {
                return Err(invalid(
                    "a ttl check has no interval or timeout: the app reports within the ttl".into(),
                ));
            }
            CheckKind::Ttl(within(ttl, MIN_INTERVAL, MAX_INTERVAL, "ttl").map_err(invalid)?)
        };
        let interval = within(
            interval.unwrap_or(DEFAULT_INTERVAL),
            MIN_INTERVAL,
            MAX_INTERVAL,
            "interval",
        )
        .map_err(invalid)?;
        let timeout = within(
            timeout.unwrap_or(DEFAULT_TIMEOUT),
            MIN_TIMEOUT,
            MAX_TIMEOUT,
            "timeout",
        )
        .map_err(invalid)?;
        Ok(CheckDef {
            id,
            service: service.to_string(),
            kind,
            interval,
            timeout,
            success_before_passing: threshold(
                self.success_before_passing,
                "success_before_passing",
            )
            .map_err(invalid)?,
            failures_before_critical: threshold(
                self.failures_before_critical,
                "failures_before_critical",
            )
            .map_err(invalid)?,
            initial: self.initial_status.unwrap_or(Health::Critical),
        })
    }
}

/// Validates every check of `service` (count, each check, ids unique within the service).
pub fn resolve_all(service: &str, specs: &[CheckSpec]) -> Result<Vec<CheckDef>, CheckError> {
    if specs.len() > MAX_CHECKS_PER_SERVICE {
        return Err(CheckError::TooMany(service.to_string()));
    }
    let mut out: Vec<CheckDef> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let d = s.resolve(service, i)?;
        if out.iter().any(|o| o.id == d.id) {
            return Err(CheckError::Duplicate(d.id));
        }
        out.push(d);
    }
    Ok(out)
}

/// Validates the checks of every service (ids unique on the agent).
pub fn resolve_services<'a>(
    services: impl IntoIterator<Item = (&'a str, &'a [CheckSpec])>,
) -> Result<Vec<(String, Vec<CheckDef>)>, CheckError> {
    let mut out: Vec<(String, Vec<CheckDef>)> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut total = 0usize;
    for (service, specs) in services {
        if specs.is_empty() {
            continue;
        }
        let defs = resolve_all(service, specs)?;
        total += defs.len();
        if total > MAX_CHECKS {
            return Err(CheckError::TooManyOnAgent);
        }
        for d in &defs {
            if !ids.insert(d.id.clone()) {
                return Err(CheckError::Duplicate(d.id.clone()));
            }
        }
        out.push((service.to_string(), defs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> CheckSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn valid_checks_resolve_with_defaults() {
        let d = spec(r#"{"http":"http://127.0.0.1:8080/health"}"#)
            .resolve("web", 0)
            .unwrap();
        assert_eq!(d.id, "service:web");
        assert_eq!(d.interval, DEFAULT_INTERVAL);
        assert_eq!(d.initial, Health::Critical);
        assert_eq!(
            (d.success_before_passing, d.failures_before_critical),
            (1, 1)
        );
        let d = spec(r#"{"id":"db-port","tcp":"127.0.0.1:5432","interval":"2s","timeout":"500ms","failures_before_critical":3,"initial_status":"passing"}"#)
            .resolve("db", 1)
            .unwrap();
        assert_eq!(d.kind, CheckKind::Tcp("127.0.0.1:5432".parse().unwrap()));
        assert_eq!(d.failures_before_critical, 3);
        assert_eq!(d.initial, Health::Passing);
        let d = spec(r#"{"ttl":"30s"}"#).resolve("app", 2).unwrap();
        assert_eq!(d.id, "service:app:3");
        assert_eq!(d.kind, CheckKind::Ttl(Duration::from_secs(30)));
        let d = spec(r#"{"exec":["/bin/true"]}"#).resolve("x", 0).unwrap();
        assert_eq!(d.kind, CheckKind::Exec(vec!["/bin/true".into()]));
    }

    #[test]
    fn invalid_checks_say_why() {
        let err = |json: &str| spec(json).resolve("web", 0).unwrap_err().to_string();
        assert!(err(r#"{}"#).contains("exactly one"));
        assert!(err(r#"{"http":"http://a/","tcp":"1.2.3.4:5"}"#).contains("exactly one"));
        assert!(err(r#"{"http":"http://a/","tls_skip_verify":true}"#).contains("https:// URL only"));
        assert!(err(r#"{"http":"ftp://a/"}"#).contains("http://"));
        assert!(err(r#"{"http":"not a url"}"#).contains("not a URL"));
        assert!(err(r#"{"tcp":"localhost:80"}"#).contains("IP:PORT"));
        assert!(err(r#"{"tcp":"127.0.0.1:0"}"#).contains("port 0"));
        assert!(err(r#"{"exec":[]}"#).contains("argv"));
        assert!(err(r#"{"exec":["sh -c 'x'"],"interval":"1ms"}"#).contains("interval"));
        assert!(err(r#"{"ttl":"30s","interval":"5s"}"#).contains("no interval"));
        assert!(err(r#"{"ttl":"soon"}"#).contains("not a duration"));
        assert!(err(r#"{"http":"http://a/","timeout":"1h"}"#).contains("timeout"));
        assert!(err(r#"{"id":"bad id","ttl":"1s"}"#).contains("invalid"));
        assert!(err(r#"{"ttl":"1s","failures_before_critical":1000}"#).contains("limit"));
        let many = vec!["a".to_string(); MAX_ARGV + 1];
        let s = CheckSpec {
            exec: Some(many),
            ..CheckSpec::default()
        };
        assert!(s
            .resolve("web", 0)
            .unwrap_err()
            .to_string()
            .contains("limit"));
        assert!(serde_json::from_str::<CheckSpec>(r#"{"script":"x"}"#).is_err());
        let two = [
            spec(r#"{"id":"a","ttl":"1s"}"#),
            spec(r#"{"id":"a","ttl":"2s"}"#),
        ];
        assert_eq!(
            resolve_all("web", &two),
            Err(CheckError::Duplicate("a".into()))
        );
    }
}
