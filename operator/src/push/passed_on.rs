//! What a transfer reads that is not its own (a rollout's health, alerts and controls arrive on the same link),
//! kept to be handed back to the broker when the transfer ends.

use super::broker::Inbound;
use std::collections::HashMap;

/// Per topic, the first message and the latest. Memory is so bounded by the subscriptions, however long the
/// transfer, and a rollout loses nothing it reads: its health gate compares a device's first sample with its
/// latest, and an alert or a control is a state of which the latest counts. (A reconnection is not kept: the
/// link subscribes again by itself.)
#[derive(Default)]
pub struct PassedOn {
    /// Topics in the order their first message came.
    topics: Vec<String>,
    by_topic: HashMap<String, (Inbound, Option<Inbound>)>,
}

impl PassedOn {
    pub fn keep(&mut self, topic: String, payload: Vec<u8>, retained: bool) {
        let message = Inbound::Message { topic: topic.clone(), payload, retained };
        match self.by_topic.get_mut(&topic) {
            Some((_, latest)) => *latest = Some(message),
            None => {
                self.topics.push(topic.clone());
                self.by_topic.insert(topic, (message, None));
            }
        }
    }

    /// The kept messages: each topic's first, then its latest, topics in order of arrival.
    pub fn into_messages(mut self) -> Vec<Inbound> {
        let mut messages = Vec::new();
        for topic in &self.topics {
            if let Some((first, latest)) = self.by_topic.remove(topic) {
                messages.push(first);
                messages.extend(latest);
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: &Inbound) -> String {
        match message {
            Inbound::Message { topic, payload, retained } => {
                format!("{topic} {}{}", String::from_utf8_lossy(payload), if *retained { " (retained)" } else { "" })
            }
            Inbound::Connected => "connected".into(),
        }
    }

    #[test]
    fn each_topic_keeps_its_first_and_latest_message_in_order_of_arrival() {
        let mut passed = PassedOn::default();
        passed.keep("d/2/health".into(), b"h1".to_vec(), false);
        passed.keep("rollout/control".into(), b"pause".to_vec(), true);
        passed.keep("d/2/health".into(), b"h2".to_vec(), false);
        passed.keep("d/2/health".into(), b"h3".to_vec(), false);
        passed.keep("d/1/alerts/front".into(), b"raised".to_vec(), false);
        let messages: Vec<String> = passed.into_messages().iter().map(text).collect();
        assert_eq!(
            messages,
            ["d/2/health h1", "d/2/health h3", "rollout/control pause (retained)", "d/1/alerts/front raised"]
        );
    }
}
