//! The lines taken from every source, batched (newlog's [`Builder`]): what the source tasks
//! feed and the keeper seals. Sealing happens at once when a line does not fit in the open
//! batch, so no line waits anywhere but in its service's ring until a batch holds it; a sealed
//! batch carries the mark (boot, last line) of every source, acknowledged once the batch is
//! kept.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use newlog::batch::Metadata;
use newlog::source::Accept;
use newlog::{Builder, Entry, Source};
use topics::logs::Batch;

/// One service that sends lines (or the pillar's own ring).
pub struct Slot {
    /// What is known of its numbers.
    pub source: Source,
    /// The last line kept (in a batch the vault committed): to acknowledge.
    pub ack_due: Option<(u64, u64)>,
    /// Whether it is connected now.
    pub connected: bool,
    /// Its last line in a batch (open or sealed).
    in_batch: Option<(u64, u64)>,
}

/// A sealed batch and what to acknowledge once it is kept: (slot, (boot, last line)).
pub struct Sealed {
    /// The batch.
    pub batch: Batch,
    /// The marks of the sources whose lines it ends.
    pub marks: Vec<(usize, (u64, u64))>,
}

/// Every source's lines on their way into batches.
pub struct Collector {
    builder: Builder,
    /// The sources, by slot.
    pub slots: Vec<Slot>,
    /// Batches sealed and not yet handed to the queue.
    pub sealed: VecDeque<Sealed>,
    /// The device's metadata for the batches' headers.
    pub metadata: Metadata,
    msgid: u64,
    /// When the open batch got its first line.
    pub opened_at: Option<kernel::Instant>,
    /// Lines taken and lines the sources lost.
    pub lines: u64,
    /// Lines the sources lost (gaps).
    pub lost: u64,
}

impl Collector {
    /// No source yet; batches of at most `max_raw` bytes before compression.
    pub fn new(max_raw: usize, metadata: Metadata) -> Self {
        Collector {
            builder: Builder::new(max_raw),
            slots: Vec::new(),
            sealed: VecDeque::new(),
            metadata,
            msgid: 0,
            opened_at: None,
            lines: 0,
            lost: 0,
        }
    }

    /// A new source called `name`; returns its slot.
    pub fn add_source(&mut self, name: &str) -> usize {
        self.slots.push(Slot {
            source: Source::new(name),
            ack_due: None,
            connected: false,
            in_batch: None,
        });
        self.slots.len() - 1
    }

    /// Takes one message from the source in `slot`.
    pub fn take(&mut self, slot: usize, message: log_wire::Message<'_>) {
        match message {
            log_wire::Message::Hello { boot, first, .. } => {
                self.slots[slot].source.hello(boot, first)
            }
            log_wire::Message::Line(line) => self.line(slot, &line),
            log_wire::Message::Ack { .. } => {}
        }
    }

    fn line(&mut self, slot: usize, line: &log_wire::Line<'_>) {
        let Accept::New { lost_before } = self.slots[slot].source.accept(line.seq) else {
            return;
        };
        let name = self.slots[slot].source.name.clone();
        if lost_before > 0 {
            self.lost += lost_before;
            let text =
                format!("logs: {lost_before} lines of {name} lost (its log buffer was full)");
            self.add(&name, 2, line.wall_ms, &text);
        }
        self.lines += 1;
        self.add(&name, line.level, line.wall_ms, &line.text_lossy());
        self.slots[slot].in_batch = self.slots[slot].source.mark();
    }

    fn add(&mut self, source: &str, level: u8, wall_ms: u64, text: &str) {
        self.msgid += 1;
        let entry = Entry {
            source,
            level,
            wall_ms,
            text,
            msgid: self.msgid,
        };
        if !self.builder.fits(&entry) && !self.builder.is_empty() {
            self.seal();
        }
        self.builder.push(&entry);
        self.opened_at.get_or_insert_with(kernel::now);
    }

    /// Seals the open batch (if it holds anything) with every source's mark.
    pub fn seal(&mut self) {
        if self.builder.is_empty() {
            return;
        }
        let batch = self.builder.seal(&self.metadata);
        let marks = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.in_batch?)))
            .collect();
        self.opened_at = None;
        self.sealed.push_back(Sealed { batch, marks });
    }

    /// The names of the sources connected now.
    pub fn connected(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.connected)
            .map(|s| s.source.name.clone())
            .collect()
    }
}
