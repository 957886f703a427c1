//! The handlers behind each HTTP API function: request in, response out.
//!
//! Each takes an `http::Request` as `lambda_http` builds it from an API Gateway HTTP API
//! (payload 2.0) event, and the current time, so the Lambda binaries, the local stack
//! and the tests all drive exactly the same code.

pub mod binding_token;
pub mod subscription_api;
