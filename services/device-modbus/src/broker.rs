//! The MQTT side: command requests from the broker are routed to the device's task; events
//! and responses go out through the client's bounded outbox (`mqtt::client`).

use crate::stats::STATS;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::Ordering::Relaxed;
use edgex::command::{self, CommandRequest};
use kernel::warn;
use mqtt::client::Client;
use mqtt::sync::Signal;
use mqtt::Publish;

/// Commands that may wait for one device; more are refused (503).
const MAX_QUEUED: usize = 64;

/// Commands for one device, handed from the broker task to the device's task.
pub struct Inbox {
    /// The device.
    pub device: String,
    /// Requests waiting.
    pub queue: RefCell<VecDeque<CommandRequest>>,
    /// Set when a request arrives.
    pub signal: Signal,
}

/// What the broker connection shares with the device tasks.
pub struct Bus {
    /// The MQTT client (its outbox holds what waits for the broker).
    pub client: Rc<Client>,
    /// One inbox per device.
    pub inboxes: Vec<Rc<Inbox>>,
    /// The service name in topics.
    pub service: String,
}

impl Bus {
    /// Queues a message for the broker.
    pub fn publish(&self, topic: String, payload: Vec<u8>) {
        self.client.publish(topic, payload);
    }

    /// Handles a message from the broker: a command request for one of the devices.
    pub fn received(&self, publish: Publish) {
        match command::parse(&self.service, &publish.topic, &publish.payload) {
            Ok(request) => match self.inboxes.iter().find(|i| i.device == request.device) {
                Some(inbox) if inbox.queue.borrow().len() >= MAX_QUEUED => {
                    STATS.command_errors.fetch_add(1, Relaxed);
                    let body = command::response(
                        &request.correlation_id,
                        &request.request_id,
                        Err((503, "too many commands waiting for this device")),
                    );
                    self.publish(
                        edgex::event::response_topic(&self.service, &request.request_id),
                        body,
                    );
                }
                Some(inbox) => {
                    inbox.queue.borrow_mut().push_back(request);
                    inbox.signal.notify();
                }
                None => {
                    STATS.command_errors.fetch_add(1, Relaxed);
                    let message = alloc::format!("device `{}` not found", request.device);
                    let body = command::response(
                        &request.correlation_id,
                        &request.request_id,
                        Err((404, &message)),
                    );
                    self.publish(
                        edgex::event::response_topic(&self.service, &request.request_id),
                        body,
                    );
                }
            },
            Err((id, message)) => {
                STATS.command_errors.fetch_add(1, Relaxed);
                warn!("device-modbus: command on {}: {message}", publish.topic);
                if let Some(id) = id {
                    let body = command::response("", &id, Err((400, &message)));
                    self.publish(edgex::event::response_topic(&self.service, &id), body);
                }
            }
        }
    }
}
