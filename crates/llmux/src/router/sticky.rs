//! Sticky routing for prompt caching: a conversation whose endpoint reads cached prompts for
//! less than it charges for fresh ones goes back to that endpoint, until it sits idle.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use llmux_protocol::canonical::{ChatRequest, Role};
use parking_lot::Mutex;

/// Conversations remembered at most (the oldest idle ones go first).
const MAX_CONVERSATIONS: usize = 200_000;

/// A conversation's identity: its `session_id` (body or `x-session-id`), else the hash of its
/// first system message and first other message.
pub fn conversation_key(req: &ChatRequest, header_session: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    match req.session_id.as_deref().or(header_session) {
        Some(s) => ("session", s).hash(&mut h),
        None => {
            let system = req
                .messages
                .iter()
                .find(|m| matches!(m.role, Role::System | Role::Developer));
            let first = req
                .messages
                .iter()
                .find(|m| !matches!(m.role, Role::System | Role::Developer));
            (
                "prefix",
                system.map(|m| m.joined_text()),
                first.map(|m| m.joined_text()),
            )
                .hash(&mut h);
        }
    }
    h.finish()
}

pub struct Sticky {
    idle: Duration,
    map: Mutex<HashMap<(u64, String), (String, i64)>>,
}

impl Sticky {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The provider this conversation of `model` last used, if it was used recently.
    pub fn get(&self, conversation: u64, model: &str) -> Option<String> {
        let now = crate::clock::now_ms();
        let map = self.map.lock();
        map.get(&(conversation, model.to_string()))
            .filter(|(_, last)| now - last < self.idle.as_millis() as i64)
            .map(|(p, _)| p.clone())
    }

    pub fn put(&self, conversation: u64, model: &str, provider: &str) {
        let now = crate::clock::now_ms();
        let mut map = self.map.lock();
        if map.len() >= MAX_CONVERSATIONS {
            let idle = self.idle.as_millis() as i64;
            map.retain(|_, (_, last)| now - *last < idle);
            if map.len() >= MAX_CONVERSATIONS {
                map.clear();
            }
        }
        map.insert(
            (conversation, model.to_string()),
            (provider.to_string(), now),
        );
    }
}
