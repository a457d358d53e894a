//! The feedback route: ground truth on `<prefix>/feedback/<source>`, decoded on the MQTT thread and handed to
//! the source's monitor thread without waiting (dropped and counted when its queue is full). A payload that
//! does not decode is counted as invalid and logged at debug level only: a bad publisher must not flood the
//! log nor the errors topic. Retained messages are skipped: the broker would hand the same one over again
//! after every reconnect, and it would be counted each time.

use super::MonitorEvent;
use super::tap::MonitorSender;
use crate::mqtt::{Route, Sink};
use protocol::wire::{self, Feedback, Format};

/// The route of `topic`, decoding `format`.
pub fn feedback_route(topic: String, format: Format, monitor: MonitorSender) -> Route {
    Route { topic, sink: Box::new(FeedbackSink { format, monitor }) }
}

struct FeedbackSink {
    format: Format,
    monitor: MonitorSender,
}

impl Sink for FeedbackSink {
    fn deliver(&mut self, message: ::mqtt::Message<'_>) {
        if message.retained {
            return;
        }
        match wire::decode::<Feedback>(self.format, message.payload) {
            Ok(feedback) => self.monitor.offer(MonitorEvent::Feedback(feedback)),
            Err(error) => {
                log::debug!(topic = message.topic; "Feedback not decoded: {error}.");
                self.monitor.offer(MonitorEvent::InvalidFeedback);
            }
        }
    }
}
