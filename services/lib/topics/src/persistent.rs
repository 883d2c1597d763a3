//! The persistent topics: what the vault keeps (EVE's `/persist` tables).
//!
//! Every topic declared with [`Topic::persistent`](crate::Topic::persistent) belongs here, in
//! both lists: [`TOPICS`] (what the vault's image declares it follows) and
//! [`for_each_persistent_topic!`] (how it follows each with its own types). Unit tests check
//! that they agree and that each is persistent.

use crate::{core_data, counter, logs, volumemgr, zedagent, zedmanager, TopicDecl};

/// Every persistent topic, as an image declares it.
pub const TOPICS: &[TopicDecl] = &[
    counter::COUNT.decl(),
    zedagent::IDENTITY.decl(),
    zedagent::CHECKPOINT.decl(),
    zedagent::INFO_QUEUE.decl(),
    logs::QUEUE.decl(),
    volumemgr::ALLOCATION.decl(),
    zedmanager::APP_RECORD.decl(),
    core_data::EVENTS.decl(),
];

/// Calls `$visit!(&topic)` for every persistent topic (a macro, so that `$visit` can be generic
/// over each topic's key and message types).
#[macro_export]
macro_rules! for_each_persistent_topic {
    ($visit:ident) => {
        $visit!(&$crate::counter::COUNT);
        $visit!(&$crate::zedagent::IDENTITY);
        $visit!(&$crate::zedagent::CHECKPOINT);
        $visit!(&$crate::zedagent::INFO_QUEUE);
        $visit!(&$crate::logs::QUEUE);
        $visit!(&$crate::volumemgr::ALLOCATION);
        $visit!(&$crate::zedmanager::APP_RECORD);
        $visit!(&$crate::core_data::EVENTS);
    };
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use crate::Persistence;

    #[test]
    fn both_lists_name_the_same_persistent_topics() {
        let mut visited = Vec::new();
        macro_rules! collect {
            ($topic:expr) => {
                visited.push($topic.decl())
            };
        }
        for_each_persistent_topic!(collect);
        assert_eq!(visited, super::TOPICS);
        assert!(super::TOPICS
            .iter()
            .all(|t| t.persistence == Persistence::Persistent));
    }
}
