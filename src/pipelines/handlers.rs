//! The handlers the pipelines bring themselves: the models' read model,
//! kept from the outbox's events.

use async_trait::async_trait;

use crate::platform::Platform;
use crate::platform::outbox::{parse_event, topics};

use super::envelope::Task;
use super::topology::{Binding, QueueSpec};
use super::worker::{Handler, Outcome};

/// The queue of the read model: every registry event.
pub fn read_model_queue() -> QueueSpec {
    QueueSpec::events("read-model", topics::RUN_REGISTERED)
        .with(Binding::Events(topics::RUN_COMPLETED.into()))
        .with(Binding::Events(topics::ALIAS_MOVED.into()))
}

/// Applies each registry event to the models' read model.
#[derive(Debug, Clone)]
pub struct ReadModelHandler {
    platform: Platform,
}

impl ReadModelHandler {
    /// The handler over `platform`'s read model.
    pub fn new(platform: &Platform) -> Self {
        ReadModelHandler {
            platform: platform.clone(),
        }
    }
}

#[async_trait]
impl Handler for ReadModelHandler {
    async fn handle(&self, task: Task) -> Outcome {
        let event = match parse_event(&task.payload) {
            Ok(event) => event,
            Err(e) => return Outcome::invalid(e),
        };
        Outcome::of(self.platform.read_model().apply(&event).await.map(|_| ()))
    }
}
