//! Dependency order: every channel's server starts before its client, so that a client finds the
//! server's end of the channel when it looks.

use std::collections::HashMap;

use crate::manifest::Manifest;

/// Services that depend on each other in a circle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The services left unordered (in manifest order): each is on, or waits for, a cycle.
    pub services: Vec<String>,
}

/// The order in which to start the manifest's services: servers before their clients, otherwise
/// manifest order. Channels naming unknown services are ignored (validation reports them).
pub fn start_order(manifest: &Manifest) -> Result<Vec<String>, Cycle> {
    let names: Vec<&str> = manifest.services.keys().map(String::as_str).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut waiting_for = vec![0usize; names.len()];
    let mut clients_of: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for channel in &manifest.channels {
        let (Some(&server), Some(&client)) = (
            index.get(channel.server.as_str()),
            index.get(channel.client.as_str()),
        ) else {
            continue;
        };
        if server != client {
            clients_of[server].push(client);
            waiting_for[client] += 1;
        }
    }

    let mut order = Vec::with_capacity(names.len());
    let mut started = vec![false; names.len()];
    // Kahn's algorithm, always taking the earliest ready service in manifest order.
    while let Some(next) = (0..names.len()).find(|&i| !started[i] && waiting_for[i] == 0) {
        started[next] = true;
        order.push(names[next].to_string());
        for &client in &clients_of[next] {
            waiting_for[client] -= 1;
        }
    }
    if order.len() == names.len() {
        Ok(order)
    } else {
        let services = (0..names.len())
            .filter(|&i| !started[i])
            .map(|i| names[i].to_string())
            .collect();
        Err(Cycle { services })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(services: &[&str], channels: &[(&str, &str)]) -> Manifest {
        let mut text = String::new();
        for s in services {
            text += &format!("[services.{s}]\nimage = \"{s}\"\nmemory = 8\n");
        }
        for (i, (server, client)) in channels.iter().enumerate() {
            text += &format!(
                "[[channels]]\nname = \"c{i}\"\nserver = \"{server}\"\nclient = \"{client}\"\n"
            );
        }
        Manifest::parse(&text).unwrap()
    }

    #[test]
    fn keeps_manifest_order_without_channels() {
        assert_eq!(
            start_order(&manifest(&["c", "a", "b"], &[])).unwrap(),
            ["c", "a", "b"]
        );
    }

    #[test]
    fn starts_servers_before_clients() {
        let m = manifest(&["api", "log", "bus"], &[("bus", "api"), ("log", "bus")]);
        assert_eq!(start_order(&m).unwrap(), ["log", "bus", "api"]);
    }

    #[test]
    fn a_server_with_many_clients_comes_first() {
        let m = manifest(&["a", "b", "hub"], &[("hub", "a"), ("hub", "b")]);
        assert_eq!(start_order(&m).unwrap(), ["hub", "a", "b"]);
    }

    #[test]
    fn reports_the_services_of_a_cycle() {
        let m = manifest(
            &["free", "x", "y", "z", "after"],
            &[("x", "y"), ("y", "z"), ("z", "x"), ("z", "after")],
        );
        assert_eq!(
            start_order(&m).unwrap_err().services,
            ["x", "y", "z", "after"]
        );
    }
}
