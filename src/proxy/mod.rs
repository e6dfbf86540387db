//! The request path from an accepted TLS connection to a response: canonical-path gate,
//! route table, the pipeline that runs authentication and authorization, and the handlers.

pub mod forward;
pub mod path;
pub mod pipeline;
pub mod respond;
pub mod routes;
