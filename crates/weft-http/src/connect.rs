//! Connect's control plane: CA roots and configuration, leaf certificates for local services, and authorizing
//! a connection against intentions (`/v1/agent/connect/authorize`).

use crate::blocking::read_reply;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use weft_ca::{CaConfigWire, ServiceId};
use weft_server::CaManagerError;
use weft_state::{Store, Table};

fn ca_error(e: CaManagerError) -> ApiError {
    match e {
        CaManagerError::Ca(weft_ca::CaError::BadConfig(m) | weft_ca::CaError::BadCsr(m)) => {
            ApiError::bad_request(m)
        }
        other => ApiError::internal(other.to_string()),
    }
}

fn roots_json(s: &Store) -> (u64, Value) {
    let ca = s.ca();
    let active = ca
        .active_root()
        .map(|r| r.root.id.clone())
        .unwrap_or_default();
    let list = weft_ca::CaRootList {
        active_root_id: active,
        trust_domain: if ca.cluster_id.is_empty() {
            String::new()
        } else {
            ca.trust_domain()
        },
        roots: ca.roots.iter().map(|r| r.root.clone()).collect(),
    };
    (
        s.table_index(Table::ConnectCa),
        serde_json::to_value(&list).unwrap_or(Value::Null),
    )
}

/// `GET /v1/connect/ca/roots` and `/v1/agent/connect/ca/roots` (blocking; `?pem=true` for a PEM bundle).
pub async fn roots(ctx: Ctx) -> Result<Reply, ApiError> {
    if ctx.flag("pem") {
        let pems: Vec<String> = {
            let store = ctx.state.agent.server().read();
            store
                .ca()
                .roots
                .iter()
                .flat_map(|r| {
                    std::iter::once(r.root.root_cert.clone())
                        .chain(r.root.intermediate_certs.clone().unwrap_or_default())
                })
                .collect()
        };
        let mut reply = Reply::text(StatusCode::OK, pems.join(""));
        reply.set("content-type", "application/pem-certificate-chain");
        return Ok(reply);
    }
    read_reply(&ctx, &[Table::ConnectCa], roots_json).await
}

/// `GET|PUT /v1/connect/ca/configuration`.
pub async fn configuration(ctx: Ctx) -> Result<Reply, ApiError> {
    if ctx.method == axum::http::Method::PUT {
        put_configuration(ctx).await
    } else {
        get_configuration(ctx).await
    }
}

async fn get_configuration(ctx: Ctx) -> Result<Reply, ApiError> {
    let wire = ctx
        .state
        .agent
        .server()
        .ca_configuration()
        .map_err(ca_error)?;
    let index = wire.modify_index;
    let value = serde_json::to_value(&wire).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ctx.read_meta(ctx.json(&value), index, crate::ctx::Consistency::Leader))
}

async fn put_configuration(ctx: Ctx) -> Result<Reply, ApiError> {
    let wire: CaConfigWire = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    ctx.state
        .agent
        .server()
        .set_ca_configuration(&wire)
        .await
        .map_err(ca_error)?;
    Ok(Reply::empty())
}

/// `GET /v1/agent/connect/ca/leaf/:service`: blocks on `?index` until a newer certificate is issued.
pub async fn leaf(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let service = ctx.required_rest("service name")?;
    let (min_index, wait) = match ctx.blocking()? {
        Some(b) => (b.min_index, b.wait),
        None => (0, std::time::Duration::from_secs(60)),
    };
    let cert = ctx
        .state
        .agent
        .leaf_certificate(
            &service,
            crate::caller::secret_of(&ctx.state, &ctx.query, &ctx.headers).as_deref(),
            min_index,
            wait,
        )
        .await?;
    let value = serde_json::to_value(&*cert).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut reply = ctx.read_meta(
        ctx.json(&value),
        cert.modify_index,
        crate::ctx::Consistency::Leader,
    );
    reply.set("x-cache", if min_index == 0 { "HIT" } else { "MISS" });
    Ok(reply)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AuthorizeRequest {
    target: String,
    #[serde(rename = "ClientCertURI")]
    client_cert_uri: String,
    client_cert_serial: String,
}

/// `POST|PUT /v1/agent/connect/authorize`: may `ClientCertURI` connect to `Target`?
pub async fn authorize(ctx: Ctx) -> Result<Reply, ApiError> {
    let req: AuthorizeRequest = ctx.decode()?;
    if req.target.is_empty() {
        return Err(ApiError::bad_request("Target service must be specified"));
    }
    if req.client_cert_uri.is_empty() {
        return Err(ApiError::bad_request("ClientCertURI must be specified"));
    }
    let Some(client) = ServiceId::parse(&req.client_cert_uri) else {
        return Err(ApiError::bad_request(format!(
            "ClientCertURI must be a valid service SPIFFE ID: {:?}",
            req.client_cert_uri
        )));
    };
    let _ = req.client_cert_serial;
    ctx.caller
        .require(weft_acl::Named::Service, &req.target, weft_acl::Need::Write)?;
    let store = ctx.state.agent.server().read();
    let decision = weft_types::intention::authorize(
        store.intentions(),
        &client.service,
        &req.target,
        ctx.state.default_policy,
    );
    drop(store);
    Ok(ctx.json(&json!({"Authorized": decision.allowed, "Reason": decision.reason})))
}
