//! What an API token may do, in the spirit of Corda's RPC users.

use std::fmt;
use std::str::FromStr;

/// One permission of an API token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `start:<flow>`, or `start:*` for every flow.
    Start(Option<String>),
    /// `read`: instances, their results and journals, pools, flows, metrics.
    Read,
    /// `cancel`: cancel instances.
    Cancel,
    /// `operate`: the hospital, pool resizes, drain.
    Operate,
    /// `publish:<topic>`, or `publish:*`.
    Publish(Option<String>),
}

impl Permission {
    /// Whether holding `self` allows what `needed` allows.
    pub fn covers(&self, needed: &Permission) -> bool {
        match (self, needed) {
            (Permission::Start(None), Permission::Start(_)) => true,
            (Permission::Publish(None), Permission::Publish(_)) => true,
            (a, b) => a == b,
        }
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let scoped = |rest: &str| match rest {
            "" => Err(format!(
                "`{s}`: name a flow or topic after the colon, or `*`"
            )),
            "*" => Ok(None),
            name => Ok(Some(name.to_string())),
        };
        match s.split_once(':') {
            Some(("start", rest)) => scoped(rest).map(Permission::Start),
            Some(("publish", rest)) => scoped(rest).map(Permission::Publish),
            None if s == "read" => Ok(Permission::Read),
            None if s == "cancel" => Ok(Permission::Cancel),
            None if s == "operate" => Ok(Permission::Operate),
            _ => Err(format!(
                "`{s}` is not a permission; use start:<flow>, start:*, read, cancel, operate, \
                 publish:<topic> or publish:*"
            )),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = |s: &Option<String>| s.clone().unwrap_or_else(|| "*".into());
        match self {
            Permission::Start(s) => write!(f, "start:{}", scope(s)),
            Permission::Publish(s) => write!(f, "publish:{}", scope(s)),
            Permission::Read => f.write_str("read"),
            Permission::Cancel => f.write_str("cancel"),
            Permission::Operate => f.write_str("operate"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_print_and_cover() {
        let any: Permission = "start:*".parse().unwrap();
        let one: Permission = "start:hello".parse().unwrap();
        assert!(any.covers(&one) && !one.covers(&any));
        assert!(!one.covers(&Permission::Start(Some("other".into()))));
        assert_eq!(one.to_string(), "start:hello");
        assert!("start:".parse::<Permission>().is_err());
        assert!(
            "admin"
                .parse::<Permission>()
                .unwrap_err()
                .contains("not a permission")
        );
        assert!(!Permission::Read.covers(&Permission::Cancel));
    }
}
