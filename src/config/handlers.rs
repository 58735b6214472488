//! Event handler specs as written in the config file (`event_handlers`), Serf's syntax:
//! `TYPE[,TYPE...][:NAME]=COMMAND`, e.g. `member-join,member-leave=/etc/shoal/lb.sh` or
//! `user:deploy=/usr/local/bin/deploy`. Parsing and matching only: running them is
//! `agent::handlers`. Handlers come from the config file alone, never from the API.

use serde::Serialize;

/// What a handler runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandlerType {
    MemberJoin,
    MemberLeave,
    MemberFailed,
    MemberUpdate,
    MemberReap,
    /// The guard changed state.
    Guard,
    /// A service's health guard changed state (instance health rides in `member-update`).
    Health,
    /// A user event (`:NAME` filters by name).
    User,
    /// A query (`:NAME` filters by name); the handler's output is the answer.
    Query,
}

impl HandlerType {
    pub const ALL: [HandlerType; 9] = [
        HandlerType::MemberJoin,
        HandlerType::MemberLeave,
        HandlerType::MemberFailed,
        HandlerType::MemberUpdate,
        HandlerType::MemberReap,
        HandlerType::Guard,
        HandlerType::Health,
        HandlerType::User,
        HandlerType::Query,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HandlerType::MemberJoin => "member-join",
            HandlerType::MemberLeave => "member-leave",
            HandlerType::MemberFailed => "member-failed",
            HandlerType::MemberUpdate => "member-update",
            HandlerType::MemberReap => "member-reap",
            HandlerType::Guard => "guard",
            HandlerType::Health => "health",
            HandlerType::User => "user",
            HandlerType::Query => "query",
        }
    }

    fn parse(s: &str) -> Option<HandlerType> {
        HandlerType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One configured handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandlerSpec {
    /// What it runs on (`*` or no type: every type but queries).
    pub types: Vec<HandlerType>,
    /// For `user` and `query`: only events or queries of this name.
    pub name: Option<String>,
    /// Run with `sh -c`.
    pub command: String,
    /// The line as written (for logs and metrics).
    pub spec: String,
}

impl HandlerSpec {
    pub fn parse(s: &str) -> Result<HandlerSpec, String> {
        let bad = |why: &str| {
            format!(
                "event handler {s:?}: {why} (expected TYPE[,TYPE][:NAME]=COMMAND, types: {})",
                HandlerType::ALL.map(|t| t.as_str()).join(", ")
            )
        };
        let (head, command) = match s.split_once('=') {
            Some((h, c)) if !h.contains(' ') && !h.contains('/') => (h.trim(), c.trim()),
            _ => ("*", s.trim()),
        };
        if command.is_empty() {
            return Err(bad("no command"));
        }
        let (types, name) = match head.split_once(':') {
            Some((t, n)) => (t, Some(n.to_string())),
            None => (head, None),
        };
        let types: Vec<HandlerType> = if types == "*" || types.is_empty() {
            HandlerType::ALL
                .into_iter()
                .filter(|t| *t != HandlerType::Query)
                .collect()
        } else {
            types
                .split(',')
                .map(|t| HandlerType::parse(t.trim()).ok_or_else(|| bad("unknown type")))
                .collect::<Result<_, _>>()?
        };
        if let Some(n) = &name {
            shoal_core::check_name(n).map_err(|e| bad(&e.to_string()))?;
            if !types
                .iter()
                .all(|t| matches!(t, HandlerType::User | HandlerType::Query))
            {
                return Err(bad(":NAME applies to user and query only"));
            }
        }
        Ok(HandlerSpec {
            types,
            name,
            command: command.to_string(),
            spec: s.to_string(),
        })
    }

    /// Whether this handler runs on an event of type `t` (named `name` for user events and
    /// queries).
    pub fn wants(&self, t: HandlerType, name: Option<&str>) -> bool {
        self.types.contains(&t)
            && match (&self.name, name) {
                (Some(want), Some(n)) => want == n,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }

    /// The query name it answers (`*`: every one), if it handles queries.
    pub fn query_name(&self) -> Option<String> {
        self.types
            .contains(&HandlerType::Query)
            .then(|| self.name.clone().unwrap_or_else(|| "*".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serf_syntax() {
        let h = HandlerSpec::parse("member-join,member-leave=/bin/lb.sh up").unwrap();
        assert_eq!(
            h.types,
            vec![HandlerType::MemberJoin, HandlerType::MemberLeave]
        );
        assert_eq!(h.command, "/bin/lb.sh up");
        assert!(h.wants(HandlerType::MemberJoin, None));
        assert!(!h.wants(HandlerType::User, Some("x")));
        let u = HandlerSpec::parse("user:deploy=deploy.sh").unwrap();
        assert!(u.wants(HandlerType::User, Some("deploy")));
        assert!(!u.wants(HandlerType::User, Some("other")));
        let all = HandlerSpec::parse("/usr/bin/handle-all").unwrap();
        assert!(all.wants(HandlerType::Guard, None));
        assert!(
            !all.wants(HandlerType::Query, Some("q")),
            "queries only when named"
        );
        assert_eq!(
            HandlerSpec::parse("query:uptime=uptime")
                .unwrap()
                .query_name(),
            Some("uptime".into())
        );
        assert!(HandlerSpec::parse("member-joined=x").is_err());
        assert!(HandlerSpec::parse("guard:x=y").is_err());
        assert!(HandlerSpec::parse("user=").is_err());
    }
}
