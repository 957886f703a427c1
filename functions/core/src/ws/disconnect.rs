//! `$disconnect`: forget the connection's bindings.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::response;
use crate::delivery::forget_connection;
use crate::store::BindingStore;

/// Deletes every binding of the disconnected connection. API Gateway ignores the answer;
/// a failure is logged, and the rows then expire by TTL (or go on the next 410).
pub async fn disconnect<B: BindingStore>(
    bindings: &B,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(connection_id) = event.request_context.connection_id.as_deref() else {
        tracing::warn!("disconnect event without a connection id");
        return response(400, None);
    };
    match forget_connection(bindings, connection_id).await {
        Ok(_) => response(200, None),
        Err(error) => {
            tracing::error!(connection_id, %error, "could not delete the bindings of a closed connection");
            response(500, None)
        }
    }
}
