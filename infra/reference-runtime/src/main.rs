//! The reference for the functions' cold start: a bare `lambda_runtime` binary that answers
//! every event with `{}` and does nothing else (no configuration, no clients, no logging
//! set-up). `infra/rie_check.py` runs it under the emulator beside the functions, built
//! with the same profile, and shows each function's init as a multiple of this one's.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Map, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: LambdaEvent<Value>| async { Ok::<_, Error>(Value::Object(Map::new())) })).await
}
