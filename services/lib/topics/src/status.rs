//! The topics that describe the node's state: what `diag` shows.
//!
//! Every topic whose objects tell an operator how the node is doing belongs here, in both
//! lists: [`TOPICS`] (what diag's image declares it subscribes to) and
//! [`for_each_status_topic!`] (how diag subscribes to each with its own types). A unit test
//! checks that they agree. A status message type implements `Display`: one line per object.

use crate::{
    counter, domainmgr, downloader, logs, ping, pong, template, vault, volumemgr, zedagent,
    zedmanager, zedrouter, TopicDecl,
};

/// Every status topic, as an image declares it.
pub const TOPICS: &[TopicDecl] = &[
    ping::SEQ.decl(),
    pong::ACK.decl(),
    template::STATUS.decl(),
    counter::COUNT.decl(),
    vault::STATUS.decl(),
    zedagent::STATUS.decl(),
    domainmgr::DOMAIN_STATUS.decl(),
    zedmanager::APP_INSTANCE_STATUS.decl(),
    logs::STATUS.decl(),
    downloader::DOWNLOAD_STATUS.decl(),
    volumemgr::VOLUME_STATUS.decl(),
    zedrouter::NETWORK_INSTANCE_STATUS.decl(),
];

/// Calls `$visit!(&topic)` for every status topic (a macro, so that `$visit` can be generic
/// over each topic's key and message types).
#[macro_export]
macro_rules! for_each_status_topic {
    ($visit:ident) => {
        $visit!(&$crate::ping::SEQ);
        $visit!(&$crate::pong::ACK);
        $visit!(&$crate::template::STATUS);
        $visit!(&$crate::counter::COUNT);
        $visit!(&$crate::vault::STATUS);
        $visit!(&$crate::zedagent::STATUS);
        $visit!(&$crate::domainmgr::DOMAIN_STATUS);
        $visit!(&$crate::zedmanager::APP_INSTANCE_STATUS);
        $visit!(&$crate::logs::STATUS);
        $visit!(&$crate::downloader::DOWNLOAD_STATUS);
        $visit!(&$crate::volumemgr::VOLUME_STATUS);
        $visit!(&$crate::zedrouter::NETWORK_INSTANCE_STATUS);
    };
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    #[test]
    fn both_lists_name_the_same_topics() {
        let mut visited = Vec::new();
        macro_rules! collect {
            ($topic:expr) => {
                visited.push($topic.decl())
            };
        }
        for_each_status_topic!(collect);
        assert_eq!(visited, super::TOPICS);
    }
}
