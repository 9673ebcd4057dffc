//! Sticky routing for prompt caching: a conversation whose endpoint reads cached prompts for
//! less than it charges for fresh ones goes back to that endpoint, until it sits idle.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::time::Duration;

use llmux_protocol::canonical::{ChatRequest, Message, Part, Role};
use parking_lot::Mutex;

/// Conversations remembered at most (the oldest idle ones go first).
const MAX_CONVERSATIONS: usize = 200_000;

/// One seed for the process: a conversation's key must be the same at every request.
/// foldhash rather than the standard SipHash: a conversation's first messages are often
/// tens of kilobytes (a coding agent's system prompt), hashed on every request.
static KEYS: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

/// A conversation's identity: its `session_id` (body or `x-session-id`), else the hash of its
/// first system message and first other message (their text parts, read where they lie).
pub fn conversation_key(req: &ChatRequest, header_session: Option<&str>) -> u64 {
    let mut h = KEYS.build_hasher();
    match req.session_id.as_deref().or(header_session) {
        Some(s) => {
            h.write_u8(0);
            h.write(s.as_bytes());
        }
        None => {
            let system = req
                .messages
                .iter()
                .find(|m| matches!(m.role, Role::System | Role::Developer));
            let first = req
                .messages
                .iter()
                .find(|m| !matches!(m.role, Role::System | Role::Developer));
            h.write_u8(1);
            for m in [system, first] {
                hash_text(&mut h, m);
            }
        }
    }
    h.finish()
}

/// A message's text parts, delimited, so that no two messages (or a message and its
/// absence) feed the hasher the same bytes.
fn hash_text(h: &mut impl Hasher, m: Option<&Message>) {
    let Some(m) = m else {
        h.write_u8(0);
        return;
    };
    h.write_u8(1);
    for p in &m.content {
        if let Part::Text { text, .. } = p {
            h.write_usize(text.len());
            h.write(text.as_bytes());
        }
    }
    h.write_u8(2);
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

#[cfg(test)]
mod tests {
    use llmux_protocol::canonical::{ChatRequest, Message, Role};

    use super::conversation_key;

    fn request(messages: &[(Role, &str)]) -> ChatRequest {
        ChatRequest {
            messages: messages
                .iter()
                .map(|(r, t)| Message::text(*r, *t))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_conversation_keeps_its_key_as_it_grows_and_others_differ() {
        let start = request(&[(Role::System, "be brief"), (Role::User, "hello")]);
        let later = request(&[
            (Role::System, "be brief"),
            (Role::User, "hello"),
            (Role::Assistant, "hi"),
            (Role::User, "more"),
        ]);
        let key = conversation_key(&start, None);
        assert_eq!(key, conversation_key(&later, None));
        for other in [
            request(&[(Role::System, "be brief"), (Role::User, "hello!")]),
            request(&[(Role::System, "be brie"), (Role::User, "fhello")]),
            request(&[(Role::User, "hello")]),
            request(&[(Role::System, "hello")]),
        ] {
            assert_ne!(key, conversation_key(&other, None));
        }
        let session = conversation_key(&start, Some("s-1"));
        assert_ne!(session, key);
        assert_eq!(session, conversation_key(&later, Some("s-1")));
        assert_ne!(session, conversation_key(&later, Some("s-2")));
    }
}
