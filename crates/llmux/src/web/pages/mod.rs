//! One module per page.

pub mod activity;
pub mod compare;
pub mod models;
pub mod rankings;

use std::collections::HashMap;

pub(crate) type Params = axum::extract::Query<HashMap<String, String>>;

pub(crate) fn param<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str).filter(|s| !s.is_empty())
}
