extern crate std;

use alloc::string::ToString;
use alloc::vec;
use std::collections::BTreeMap;

use launcher_api::{RefusalKind, Reply};

use super::*;

/// A launcher with a memory limit, answering as the real one does (xen/launcher/src/apps.rs).
#[derive(Default)]
struct Launcher {
    domains: BTreeMap<String, AppDomain>,
    next_domid: u32,
    memory_left: u32,
    log: Vec<String>,
}

impl Launcher {
    fn new(memory: u32) -> Launcher {
        Launcher {
            memory_left: memory,
            next_domid: 10,
            ..Launcher::default()
        }
    }

    fn event(&self, name: &str, state: AppState) -> Event {
        Event {
            name: name.into(),
            domid: self.domains.get(name).and_then(|d| d.domid),
            state,
        }
    }

    fn apply(&mut self, op: &Op) -> (Result<Reply, Refusal>, Vec<Event>) {
        self.log.push(
            alloc::format!("{op:?}")
                .split_whitespace()
                .next()
                .unwrap()
                .to_string(),
        );
        match op {
            Op::Create { name, spec } => {
                if spec.memory_mib > self.memory_left {
                    return (Err(Refusal::new(RefusalKind::OverLimit, "memory")), vec![]);
                }
                self.memory_left -= spec.memory_mib;
                self.next_domid += 1;
                self.domains.insert(
                    name.clone(),
                    AppDomain {
                        name: name.clone(),
                        domid: Some(self.next_domid),
                        state: AppState::Created,
                        spec: spec.clone(),
                    },
                );
                (Ok(Reply::Done), vec![self.event(name, AppState::Created)])
            }
            Op::Start { name } => {
                self.domains.get_mut(name).unwrap().state = AppState::Running;
                (Ok(Reply::Done), vec![self.event(name, AppState::Running)])
            }
            Op::Stop { name, .. } => {
                let event = self.event(name, AppState::Halted);
                self.end(name, AppState::Halted);
                (Ok(Reply::Done), vec![event])
            }
            Op::Destroy { name } => {
                let event = self.event(name, AppState::Destroyed);
                self.end(name, AppState::Halted);
                self.domains.remove(name);
                (Ok(Reply::Done), vec![event])
            }
            Op::Hello { .. } | Op::List => unreachable!(),
        }
    }

    fn end(&mut self, name: &str, state: AppState) {
        let domain = self.domains.get_mut(name).unwrap();
        if domain.domid.take().is_some() {
            self.memory_left += domain.spec.memory_mib;
        }
        domain.state = state;
    }

    /// The domain crashes on its own.
    fn crash(&mut self, name: &str) -> Event {
        let event = self.event(name, AppState::Crashed("exited with status 101".into()));
        self.end(name, event.state.clone());
        event
    }
}

fn config(memory_mib: u32) -> DomainConfig {
    DomainConfig {
        name: "echo".into(),
        activate: true,
        kernel: topics::volumemgr::Extent {
            offset_mib: 0,
            size_mib: 4,
        },
        memory_mib,
        vcpus: 1,
        cmdline: String::new(),
        disks: vec![],
        network: None,
        generation: 0,
    }
}

/// Runs the reconciler against the launcher until it has nothing to do; returns the requests.
fn settle(
    r: &mut Reconciler,
    launcher: &mut Launcher,
    configs: &BTreeMap<String, DomainConfig>,
) -> Vec<String> {
    let start = launcher.log.len();
    for _ in 0..20 {
        let Some(action) = r.next_action(configs.iter().map(|(k, v)| (k.as_str(), v))) else {
            return launcher.log[start..].to_vec();
        };
        let name = action_name(&action).to_string();
        let config = configs.get(&name);
        let (result, events) = launcher.apply(&action);
        match result {
            Ok(_) => {
                if let (Op::Create { .. }, Some(config)) = (&action, config) {
                    r.created(&name, config);
                }
            }
            Err(refusal) => r.refused(&action, config, &refusal),
        }
        events.into_iter().for_each(|e| r.event(e));
    }
    panic!("no steady state: {:?}", launcher.log);
}

fn configs(list: &[(&str, DomainConfig)]) -> BTreeMap<String, DomainConfig> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn an_activated_app_is_created_then_started_and_left_alone() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let c = configs(&[("a1", config(32))]);
    assert_eq!(settle(&mut r, &mut l, &c), ["Create", "Start"]);
    let status = r.status("a1", &c["a1"]);
    assert_eq!(status.state, DomainState::Running);
    assert_eq!(status.domid, Some(11));
    assert_eq!(status.boots, 1);
    assert!(settle(&mut r, &mut l, &c).is_empty(), "steady");
}

#[test]
fn a_new_generation_restarts_the_domain() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let mut c = configs(&[("a1", config(32))]);
    settle(&mut r, &mut l, &c);
    c.get_mut("a1").unwrap().generation = 1;
    assert_eq!(settle(&mut r, &mut l, &c), ["Stop", "Create", "Start"]);
    let status = r.status("a1", &c["a1"]);
    assert_eq!(
        (status.state, status.generation, status.boots),
        (DomainState::Running, 1, 2)
    );
    assert_eq!(status.domid, Some(12));
}

#[test]
fn deactivate_halts_and_activate_boots_again() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let mut c = configs(&[("a1", config(32))]);
    settle(&mut r, &mut l, &c);
    c.get_mut("a1").unwrap().activate = false;
    assert_eq!(settle(&mut r, &mut l, &c), ["Stop"]);
    assert_eq!(r.status("a1", &c["a1"]).state, DomainState::Halted);
    c.get_mut("a1").unwrap().activate = true;
    assert_eq!(settle(&mut r, &mut l, &c), ["Create", "Start"]);
    // A config that was never activated gets nothing.
    let mut off = config(8);
    off.activate = false;
    let c = configs(&[("a1", c["a1"].clone()), ("a2", off)]);
    assert!(settle(&mut r, &mut l, &c).is_empty());
    assert_eq!(r.status("a2", &c["a2"]).state, DomainState::Halted);
}

#[test]
fn a_crash_stays_down_until_the_generation_changes() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let mut c = configs(&[("a1", config(32))]);
    settle(&mut r, &mut l, &c);
    let event = l.crash("a1");
    r.event(event);
    assert!(settle(&mut r, &mut l, &c).is_empty(), "zedmanager decides");
    let status = r.status("a1", &c["a1"]);
    assert_eq!(status.state, DomainState::Crashed);
    assert_eq!(status.error, "exited with status 101");
    assert_eq!(status.domid, None);
    c.get_mut("a1").unwrap().generation = 1;
    assert_eq!(settle(&mut r, &mut l, &c), ["Create", "Start"]);
    assert_eq!(r.status("a1", &c["a1"]).state, DomainState::Running);
}

#[test]
fn a_refusal_is_an_error_for_that_app_only_and_is_not_repeated() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let mut c = configs(&[("a1", config(32)), ("big", config(100))]);
    assert_eq!(settle(&mut r, &mut l, &c), ["Create", "Start", "Create"]);
    assert_eq!(r.status("a1", &c["a1"]).state, DomainState::Running);
    let big = r.status("big", &c["big"]);
    assert_eq!(
        (big.state, big.error.as_str()),
        (DomainState::Error, "memory")
    );
    assert!(settle(&mut r, &mut l, &c).is_empty(), "not asked again");
    // A smaller configuration is tried.
    c.get_mut("big").unwrap().memory_mib = 16;
    assert_eq!(settle(&mut r, &mut l, &c), ["Create", "Start"]);
    assert_eq!(r.status("big", &c["big"]).state, DomainState::Running);
}

#[test]
fn a_deleted_app_is_destroyed_and_forgotten() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let c = configs(&[("a1", config(32)), ("a2", config(16))]);
    settle(&mut r, &mut l, &c);
    let c = configs(&[("a2", config(16))]);
    assert_eq!(settle(&mut r, &mut l, &c), ["Destroy"]);
    assert!(!l.domains.contains_key("a1"));
    assert_eq!(l.memory_left, 48);
    assert!(!r.apps.contains_key("a1"));
}

#[test]
fn a_restarted_domainmgr_adopts_running_domains() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let mut c = configs(&[("a1", config(32))]);
    settle(&mut r, &mut l, &c);
    let mut fresh = Reconciler::new();
    fresh.welcome(l.domains.values().cloned().collect());
    assert!(settle(&mut fresh, &mut l, &c).is_empty(), "left running");
    assert_eq!(fresh.status("a1", &c["a1"]).state, DomainState::Running);
    c.get_mut("a1").unwrap().generation = 5;
    assert_eq!(settle(&mut fresh, &mut l, &c), ["Stop", "Create", "Start"]);
}

#[test]
fn a_key_that_cannot_name_a_domain_is_an_error() {
    let (mut r, mut l) = (Reconciler::new(), Launcher::new(64));
    let c = configs(&[("Not A Name", config(8))]);
    assert!(settle(&mut r, &mut l, &c).is_empty());
    assert_eq!(
        r.status("Not A Name", &c["Not A Name"]).state,
        DomainState::Error
    );
}

#[test]
fn a_refusal_from_a_stale_view_is_not_an_error() {
    let mut r = Reconciler::new();
    let c = configs(&[("a1", config(8))]);
    let action = r
        .next_action(c.iter().map(|(k, v)| (k.as_str(), v)))
        .unwrap();
    r.refused(
        &action,
        Some(&c["a1"]),
        &Refusal::new(RefusalKind::Exists, "has a domain"),
    );
    assert_eq!(r.status("a1", &c["a1"]).state, DomainState::Pending);
    assert!(
        r.next_action(c.iter().map(|(k, v)| (k.as_str(), v)))
            .is_some(),
        "asked again"
    );
}
