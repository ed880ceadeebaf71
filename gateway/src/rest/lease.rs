//! Leases: grant, list, look up, revoke, renew once.

use super::extract::{JsonBody, Params, Segment, Token};
use super::kv::revision;
use super::problem::{ErrorResponses, Problem};
use super::types::{EncodingParams, LeaseId, Revision};
use crate::http::local::{Local, request};
use axum::Json;
use axum::extract::State;
use futures::StreamExt;
use metastore_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A lease to grant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LeaseGrant {
    /// Time to live in seconds.
    pub ttl: i64,
    /// The id to give the lease (absent or 0: the server picks one).
    #[serde(default)]
    pub id: Option<LeaseId>,
}

/// A lease and its time to live.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub id: LeaseId,
    /// Seconds left (just granted or renewed: the full time to live).
    pub ttl: i64,
}

/// A lease id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseRef {
    pub id: LeaseId,
}

/// The live leases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseList {
    pub leases: Vec<LeaseRef>,
}

/// A lease with its keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseInfo {
    pub id: LeaseId,
    /// Seconds left.
    pub ttl: i64,
    /// The time to live it was granted with.
    pub granted_ttl: i64,
    /// The keys attached to it.
    pub keys: Vec<String>,
}

fn lease_id(segment: &str) -> Result<LeaseId, Problem> {
    segment.parse()
}

fn not_found(id: LeaseId) -> Problem {
    Problem::not_found(format!("lease not found: {}", id.0))
}

/// Grant a lease.
#[utoipa::path(
    post,
    operation_id = "grant_lease",
    path = "/api/v1/leases",
    tag = "leases",
    request_body(content = LeaseGrant, content_type = "application/json"),
    responses(
        (status = 200, description = "Granted", body = Lease),
        ErrorResponses,
    )
)]
pub async fn grant(
    State(local): State<Local>,
    Token(token): Token,
    JsonBody(body): JsonBody<LeaseGrant>,
) -> Result<Json<Lease>, Problem> {
    let grant = LeaseGrantRequest {
        ttl: body.ttl,
        id: body.id.unwrap_or_default().0,
    };
    let resp = local
        .lease()
        .lease_grant(request(grant, &token))
        .await?
        .into_inner();
    Ok(Json(Lease {
        id: LeaseId(resp.id),
        ttl: resp.ttl,
    }))
}

/// List the live leases.
#[utoipa::path(
    get,
    operation_id = "list_leases",
    path = "/api/v1/leases",
    tag = "leases",
    responses(
        (status = 200, description = "The leases", body = LeaseList),
        ErrorResponses,
    )
)]
pub async fn list(
    State(local): State<Local>,
    Token(token): Token,
) -> Result<Json<LeaseList>, Problem> {
    let resp = local
        .lease()
        .lease_leases(request(LeaseLeasesRequest {}, &token))
        .await?
        .into_inner();
    let leases = resp
        .leases
        .iter()
        .map(|l| LeaseRef { id: LeaseId(l.id) })
        .collect();
    Ok(Json(LeaseList { leases }))
}

/// A lease's time to live and keys.
#[utoipa::path(
    get,
    operation_id = "get_lease",
    path = "/api/v1/leases/{id}",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id (decimal, or 0x hexadecimal)"),
        EncodingParams),
    responses(
        (status = 200, description = "The lease", body = LeaseInfo),
        (status = 404, description = "No such lease (or it expired)", body = Problem,
            content_type = "application/problem+json"),
        ErrorResponses,
    )
)]
pub async fn get(
    State(local): State<Local>,
    Token(token): Token,
    Segment(id): Segment,
    Params(p): Params<EncodingParams>,
) -> Result<Json<LeaseInfo>, Problem> {
    let id = lease_id(&id)?;
    let ask = LeaseTimeToLiveRequest {
        id: id.0,
        keys: true,
    };
    let resp = local
        .lease()
        .lease_time_to_live(request(ask, &token))
        .await?
        .into_inner();
    // etcd answers -1 for a lease that does not exist.
    if resp.ttl < 0 {
        return Err(not_found(id));
    }
    let keys = resp
        .keys
        .iter()
        .map(|k| p.encoding.encode("key", k))
        .collect::<Result<_, _>>()?;
    Ok(Json(LeaseInfo {
        id,
        ttl: resp.ttl,
        granted_ttl: resp.granted_ttl,
        keys,
    }))
}

/// Revoke a lease (its keys are deleted).
#[utoipa::path(
    delete,
    operation_id = "revoke_lease",
    path = "/api/v1/leases/{id}",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id")),
    responses(
        (status = 200, description = "Revoked", body = Revision),
        (status = "4XX", description = "An error (404: no such lease)", body = Problem,
            content_type = "application/problem+json"),
        (status = "5XX", description = "An error", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    State(local): State<Local>,
    Token(token): Token,
    Segment(id): Segment,
) -> Result<Json<Revision>, Problem> {
    let id = lease_id(&id)?;
    let resp = local
        .lease()
        .lease_revoke(request(LeaseRevokeRequest { id: id.0 }, &token))
        .await?
        .into_inner();
    Ok(Json(Revision {
        revision: revision(resp.header.as_ref()),
    }))
}

/// Renew a lease once.
#[utoipa::path(
    post,
    operation_id = "keep_alive",
    path = "/api/v1/leases/{id}/keepalive",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id")),
    responses(
        (status = 200, description = "Renewed", body = Lease),
        (status = 404, description = "No such lease (or it expired)", body = Problem,
            content_type = "application/problem+json"),
        ErrorResponses,
    )
)]
pub async fn keep_alive(
    State(local): State<Local>,
    Token(token): Token,
    Segment(id): Segment,
) -> Result<Json<Lease>, Problem> {
    let id = lease_id(&id)?;
    // The request stream stays open until the answer is read; its end then ends the call.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    let _ = requests.try_send(LeaseKeepAliveRequest { id: id.0 });
    let rx = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut answers = local
        .lease()
        .lease_keep_alive(request(rx, &token))
        .await?
        .into_inner();
    let answer = match answers.next().await {
        Some(answer) => answer?,
        None => {
            return Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the keep-alive stream ended without an answer",
            ));
        }
    };
    drop(requests);
    // etcd answers a time to live of 0 for a lease that does not exist.
    if answer.ttl <= 0 {
        return Err(not_found(id));
    }
    Ok(Json(Lease {
        id,
        ttl: answer.ttl,
    }))
}
