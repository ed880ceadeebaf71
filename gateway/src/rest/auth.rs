//! Auth tokens. Every other route sends the request's token to the etcd services, which
//! check it and the user's permissions.

use super::extract::JsonBody;
use super::problem::Problem;
use super::types::{Token, TokenRequest};
use crate::http::local::{Local, request};
use axum::Json;
use axum::extract::State;
use metastore_proto::etcdserverpb::AuthenticateRequest;

/// Get a token for a user (auth must be enabled).
#[utoipa::path(
    post,
    operation_id = "get_token",
    path = "/api/v1/auth/token",
    tag = "auth",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The token", body = Token),
        (status = "4XX", description = "An error (wrong name or password, auth not enabled)",
            body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "An error", body = Problem,
            content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn token(
    State(local): State<Local>,
    JsonBody(body): JsonBody<TokenRequest>,
) -> Result<Json<Token>, Problem> {
    let ask = AuthenticateRequest {
        name: body.name,
        password: body.password,
    };
    let resp = local
        .auth()
        .authenticate(request(ask, ""))
        .await?
        .into_inner();
    Ok(Json(Token { token: resp.token }))
}
