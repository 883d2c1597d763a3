//! The export pipeline, configured like EdgeX's app-service-configurable: filter by device
//! name, filter readings by resource name, transform to JSON, batch by count.
//!
//! Events arrive from the message bus as EdgeX envelopes; one that does not parse is counted
//! and skipped by the caller ([`Pipeline::push`] returns an error), never exported.

use alloc::string::String;
use alloc::vec::Vec;
use edgex::{AddEventRequest, Envelope, Event};

/// The pipeline's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Keep only events of these devices (empty: all).
    pub devices: Vec<String>,
    /// Keep only readings of these resources (empty: all); events left without readings are
    /// dropped.
    pub resources: Vec<String>,
    /// Events per exported message (1: each event alone, as a JSON object; more: a JSON array).
    pub batch: usize,
}

/// Filters, transforms and batches events.
#[derive(Debug)]
pub struct Pipeline {
    settings: Settings,
    pending: Vec<Event>,
    /// Events filtered out.
    pub filtered: u64,
}

impl Pipeline {
    /// A pipeline with `settings` (a batch of 0 counts as 1).
    pub fn new(mut settings: Settings) -> Pipeline {
        settings.batch = settings.batch.max(1);
        Pipeline {
            settings,
            pending: Vec::new(),
            filtered: 0,
        }
    }

    /// Takes a message from the bus; returns the JSON to export when a batch is complete.
    pub fn push(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, serde_json::Error> {
        let envelope: Envelope<AddEventRequest> = serde_json::from_slice(message)?;
        let mut event = envelope.payload.event;
        let s = &self.settings;
        if !s.devices.is_empty() && !s.devices.contains(&event.device_name) {
            self.filtered += 1;
            return Ok(None);
        }
        if !s.resources.is_empty() {
            event
                .readings
                .retain(|r| s.resources.contains(&r.resource_name));
            if event.readings.is_empty() {
                self.filtered += 1;
                return Ok(None);
            }
        }
        self.pending.push(event);
        if self.pending.len() >= self.settings.batch {
            return Ok(self.flush());
        }
        Ok(None)
    }

    /// Exports what is pending (a partial batch), if anything.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            return None;
        }
        let events = core::mem::take(&mut self.pending);
        let json = if self.settings.batch == 1 {
            serde_json::to_vec(&events[0])
        } else {
            serde_json::to_vec(&events)
        };
        json.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use edgex::Reading;

    fn message(device: &str, resources: &[&str]) -> Vec<u8> {
        let readings = resources
            .iter()
            .map(|r| Reading {
                id: "r".into(),
                origin: 1,
                device_name: device.into(),
                resource_name: (*r).into(),
                profile_name: "P".into(),
                value_type: "Int16".into(),
                units: String::new(),
                value: "1".into(),
            })
            .collect();
        let event = Event {
            api_version: "v3".into(),
            id: "e".into(),
            device_name: device.into(),
            profile_name: "P".into(),
            source_name: "S".into(),
            origin: 1,
            readings,
        };
        serde_json::to_vec(&Envelope::new(
            AddEventRequest::new(event),
            String::new(),
            String::new(),
        ))
        .unwrap()
    }

    #[test]
    fn filters_and_batches() {
        let mut p = Pipeline::new(Settings {
            devices: vec!["A".into()],
            resources: vec!["T".into()],
            batch: 2,
        });
        assert_eq!(p.push(&message("B", &["T"])).unwrap(), None);
        assert_eq!(p.push(&message("A", &["H"])).unwrap(), None);
        assert_eq!(p.filtered, 2);
        assert_eq!(p.push(&message("A", &["T", "H"])).unwrap(), None);
        let out = p.push(&message("A", &["T"])).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["readings"].as_array().unwrap().len(), 1);
        assert_eq!(p.flush(), None);
        assert!(p.push(b"{not json").is_err());
    }

    #[test]
    fn single_events_are_objects() {
        let mut p = Pipeline::new(Settings::default());
        let out = p.push(&message("A", &["T"])).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["deviceName"], "A");
    }
}
