//! A bounded log of the requests the simulator received, for tests to inspect (which key was
//! sent upstream, what a translated request looked like).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

const MAX_RECORDED: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Headers that matter to providers (auth, versions), lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<VecDeque<RecordedRequest>>,
}

impl RequestLog {
    pub fn push(&self, r: RecordedRequest) {
        let mut e = self.entries.lock();
        if e.len() == MAX_RECORDED {
            e.pop_front();
        }
        e.push_back(r);
    }

    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries.lock().iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.entries.lock().clear();
    }
}
