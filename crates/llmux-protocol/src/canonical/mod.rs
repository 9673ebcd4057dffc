//! The one internal request, response and stream-event vocabulary that every wire format
//! translates to and from.

mod request;
mod response;
mod stream;
mod usage;

pub use request::*;
pub use response::*;
pub use stream::*;
pub use usage::*;
