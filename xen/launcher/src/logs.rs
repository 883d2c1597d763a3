//! The log channels: every service's log lines to the node's logs pillar (docs/logs.md).
//!
//! A manifest that names its collector (`logs = "logs"`) gets one raw channel between each
//! other service and it, derived here like the bus channels: the service's kernel sends its
//! log lines on it (it calls it `log`), the collector reads them (it calls it `log-<service>`,
//! the channel's node-wide name, and lists its sources from its channel names). As with the
//! bus, the service listed first in the manifest is the vchan server, so the log channels add
//! no start-order constraint that the bus channels between the same pair do not already have.

use crate::manifest::{Channel, Manifest};

/// What the service side calls its log channel.
pub const SERVICE_SIDE: &str = "log";

/// The ring order of a log channel (8 KiB each way: a few dozen lines in flight).
pub const RING_ORDER: u8 = 13;

/// What `service` calls the log channel `channel`.
pub fn name_for<'a>(channel: &'a Channel, service: &str) -> &'a str {
    if channel.name.strip_prefix("log-") == Some(service) {
        SERVICE_SIDE
    } else {
        &channel.name
    }
}

/// The log channels the manifest's `logs` asks for (none without it).
pub fn derive(manifest: &Manifest) -> Result<Vec<Channel>, Vec<String>> {
    let Some(collector) = &manifest.logs else {
        return Ok(Vec::new());
    };
    let Some(position) = manifest.services.get_index_of(collector) else {
        return Err(vec![format!(
            "no service named `{collector}` collects the logs"
        )]);
    };
    let mut errors = Vec::new();
    let mut channels = Vec::new();
    for (index, service) in manifest.services.keys().enumerate() {
        if service == collector {
            continue;
        }
        let name = format!("log-{service}");
        if !crate::manifest::is_good_name(&name) {
            errors.push(format!(
                "`{name}` is not a channel name: shorten `{service}`"
            ));
        }
        let named = |c: &Channel| c.name_for(service) == SERVICE_SIDE || c.name == name;
        if manifest.channels_of(service).any(named) {
            errors.push(format!(
                "`{service}` already has a channel called `log` or `{name}`"
            ));
        }
        let (server, client) = if index < position {
            (service.clone(), collector.clone())
        } else {
            (collector.clone(), service.clone())
        };
        channels.push(Channel {
            name,
            server,
            client,
            ring_order: RING_ORDER,
            topics: Vec::new(),
            log: true,
        });
    }
    if errors.is_empty() {
        Ok(channels)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(text).unwrap()
    }

    const NODE: &str = r#"
        logs = "logs"
        [services.vault]
        image = "vault"
        memory = 16
        [services.logs]
        image = "logs"
        memory = 16
        [services.late]
        image = "late"
        memory = 16
    "#;

    #[test]
    fn every_other_service_gets_a_log_channel_to_the_collector() {
        let node = manifest(NODE);
        let channels = derive(&node).unwrap();
        let names: Vec<(&str, &str, &str)> = channels
            .iter()
            .map(|c| (c.name.as_str(), c.server.as_str(), c.client.as_str()))
            .collect();
        // The one listed first serves, as on the bus.
        assert_eq!(
            names,
            [("log-vault", "vault", "logs"), ("log-late", "logs", "late")]
        );
        for channel in &channels {
            let service = channel.name.strip_prefix("log-").unwrap();
            assert_eq!(channel.name_for(service), "log");
            assert_eq!(channel.name_for("logs"), channel.name);
        }
    }

    #[test]
    fn the_wiring_lists_them_under_each_sides_name_and_the_order_has_no_cycle() {
        let mut node = manifest(NODE);
        let channels = derive(&node).unwrap();
        node.channels.extend(channels);
        assert_eq!(
            crate::order::start_order(&node).unwrap(),
            ["vault", "logs", "late"]
        );
        let domids: HashMap<String, u32> = [("vault", 1), ("logs", 2), ("late", 3)]
            .into_iter()
            .map(|(s, d)| (s.to_string(), d))
            .collect();
        let list = |service: &str, domid: u32| {
            let wiring = crate::wiring::service_wiring(&node, service, &domids);
            let path = format!("/local/domain/{domid}/data/lichen/channels");
            wiring
                .writes
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(list("vault", 1), "log");
        assert_eq!(list("logs", 2), "log-vault log-late");
        assert_eq!(list("late", 3), "log");
    }

    #[test]
    fn a_missing_collector_or_a_clashing_name_is_refused() {
        let node = manifest("logs = \"nobody\"\n[services.a]\nimage = \"a\"\nmemory = 8\n");
        assert!(derive(&node).unwrap_err()[0].contains("no service named `nobody`"));
        let node = manifest(
            "logs = \"b\"\n[services.a]\nimage = \"a\"\nmemory = 8\n\
             [services.b]\nimage = \"b\"\nmemory = 8\n\
             [[channels]]\nname = \"log\"\nserver = \"a\"\nclient = \"b\"\n",
        );
        assert!(derive(&node).unwrap_err()[0].contains("already has a channel called `log`"));
        assert!(
            derive(&manifest("[services.a]\nimage = \"a\"\nmemory = 8\n"))
                .unwrap()
                .is_empty()
        );
    }
}
