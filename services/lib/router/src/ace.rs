//! Rules from zedagent's table of an app's ACEs (`topics::zedagent::Ace`, EVE's `ACE` as the
//! controller sent it). zedagent checks them with [`rules_of`] before it publishes a
//! configuration (a bad ACE refuses the whole configuration, and the previous one stays);
//! zedrouter builds its rules with the same function.

use alloc::vec::Vec;

use topics::zedagent::Ace;

use crate::acl::{AceAction, Acl, AclError, Direction, Rule};
use crate::wire::Mac;

/// The rule of `ace`, owned by the app with MAC `app` (`None`: no owner, as when only
/// checking).
pub fn rule_of(ace: &Ace, app: Option<Mac>) -> Result<Rule, AclError> {
    let direction = match ace.direction {
        0 => Direction::Both,
        1 => Direction::Ingress,
        2 => Direction::Egress,
        other => {
            return Err(AclError {
                id: ace.id,
                reason: alloc::format!("unknown direction {other}"),
            })
        }
    };
    let matches: Vec<(&str, &str)> = ace
        .matches
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let actions: Vec<AceAction> = ace
        .actions
        .iter()
        .map(|a| AceAction {
            drop: a.drop,
            limit: a.limit,
            limit_rate: a.limit_rate,
            limit_unit: a.limit_unit.clone(),
            limit_burst: a.limit_burst,
            portmap: a.portmap,
            app_port: a.app_port,
        })
        .collect();
    let mut rule = Rule::from_ace(ace.id, &ace.name, &matches, &actions, direction)?;
    rule.app = app;
    Ok(rule)
}

/// The rules of an interface's ACEs, in order, checked together (no port mapped twice).
pub fn rules_of(aces: &[Ace], app: Option<Mac>) -> Result<Vec<Rule>, AclError> {
    let rules = aces
        .iter()
        .map(|a| rule_of(a, app))
        .collect::<Result<Vec<_>, _>>()?;
    Acl::check(&rules)?;
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Action;
    use alloc::string::ToString;
    use alloc::vec;
    use topics::zedagent::AceAction as TopicAction;

    fn ace(id: i32, matches: &[(&str, &str)], action: TopicAction, direction: i32) -> Ace {
        Ace {
            id,
            name: "n".into(),
            matches: matches
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            actions: vec![action],
            direction,
        }
    }

    #[test]
    fn aces_become_owned_rules_and_bad_ones_name_themselves() {
        let map = TopicAction {
            portmap: true,
            app_port: 7,
            ..Default::default()
        };
        let limit = TopicAction {
            limit: true,
            limit_rate: 10,
            limit_unit: "m".into(),
            limit_burst: 3,
            ..Default::default()
        };
        let aces = vec![
            ace(1, &[("protocol", "tcp"), ("lport", "8080")], map.clone(), 0),
            ace(2, &[("host", "example.com")], limit, 2),
        ];
        let rules = rules_of(&aces, Some([2, 0, 0, 0, 0, 1])).unwrap();
        assert_eq!(rules[0].action, Action::PortMap { app_port: 7 });
        assert_eq!(
            rules[1].action,
            Action::Limit {
                rate: 10,
                unit_ms: 60_000,
                burst: 3
            }
        );
        assert_eq!(rules[1].direction, Direction::Egress);
        assert!(rules.iter().all(|r| r.app == Some([2, 0, 0, 0, 0, 1])));

        let twice = vec![
            aces[0].clone(),
            ace(3, &[("protocol", "tcp"), ("lport", "8080")], map, 0),
        ];
        assert_eq!(rules_of(&twice, None).unwrap_err().id, 3);
        let bad_port = ace(4, &[("fport", "http")], TopicAction::default(), 0);
        let e = rules_of(&[bad_port], None).unwrap_err();
        assert_eq!(e.id, 4);
        assert!(e.to_string().contains("fport"), "{e}");
        let bad_dir = ace(5, &[], TopicAction::default(), 9);
        assert!(rules_of(&[bad_dir], None)
            .unwrap_err()
            .reason
            .contains("direction"));
    }
}
