//! Answers and errors in Consul's wire form: JSON (minified, or indented with `?pretty`), `true`/`false` bodies,
//! empty 200s for agent writes, and plain-text errors with Consul's status codes.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

/// The headers every read answer carries, as constants.
pub mod names {
    use axum::http::HeaderName;

    pub const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
    pub const X_CONSUL_KNOWNLEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
    pub const X_CONSUL_LASTCONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
    pub const X_CONSUL_EFFECTIVE_CONSISTENCY: HeaderName =
        HeaderName::from_static("x-consul-effective-consistency");
    pub const X_CONSUL_QUERY_BACKEND: HeaderName =
        HeaderName::from_static("x-consul-query-backend");
    pub const X_CONSUL_DEFAULT_ACL_POLICY: HeaderName =
        HeaderName::from_static("x-consul-default-acl-policy");
    pub const X_WEFT_DEFAULT_INTENTION_POLICY: HeaderName =
        HeaderName::from_static(weft_types::intention::DEFAULT_INTENTION_POLICY_HEADER);
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// A body sent as it is produced (`/v1/agent/monitor`), instead of `body`.
    pub stream: Option<axum::body::Body>,
}

impl Reply {
    /// 200 with no body and no content type: what Consul's agent writes answer.
    pub fn empty() -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            stream: None,
        }
    }

    pub fn json(value: &Value, pretty: bool) -> Reply {
        Reply::json_bytes(encode(value, pretty))
    }

    /// A JSON answer from an already-encoded body (shared by identical blocking queries).
    pub fn json_bytes(body: Bytes) -> Reply {
        let mut reply = Reply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body,
            stream: None,
        };
        reply.set(header::CONTENT_TYPE, "application/json");
        reply
    }

    pub fn bool(value: bool) -> Reply {
        Reply::json(&Value::Bool(value), false)
    }

    pub fn text(status: StatusCode, text: impl Into<String>) -> Reply {
        let mut reply = Reply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(text.into().into_bytes()),
            stream: None,
        };
        reply.set("content-type", "text/plain; charset=utf-8");
        reply
    }

    pub fn with_status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    /// Sets a header: `name` is a `&'static str`, or one of [`names`] on paths every request takes (a constant
    /// `HeaderName` is built at compile time; a string is parsed on every call).
    pub fn set(&mut self, name: impl header::IntoHeaderName, value: impl AsRef<str>) {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.insert(name, v);
        }
    }
}

/// JSON as Consul writes it: minified, or indented with a trailing newline for `?pretty`.
pub fn encode(value: &Value, pretty: bool) -> Bytes {
    if pretty {
        // Go's json.MarshalIndent(v, "", "    "): four spaces, then a newline.
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        if serde::Serialize::serialize(value, &mut ser).is_err() {
            out.clear();
        }
        out.push(b'\n');
        Bytes::from(out)
    } else {
        Bytes::from(serde_json::to_vec(value).unwrap_or_default())
    }
}

/// A refusal: a status code and a one-line plain-text reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn into_reply(self) -> Reply {
        Reply::text(self.status, self.message)
    }
}

impl From<weft_agent::AgentError> for ApiError {
    fn from(e: weft_agent::AgentError) -> Self {
        use weft_agent::AgentError::*;
        match e {
            BadRequest(m) => ApiError::bad_request(m),
            NotFound(m) => ApiError::not_found(m),
            Internal(m) => ApiError::internal(m),
            NoLeader => crate::forward::no_leader(),
        }
    }
}

impl From<weft_state::StoreError> for ApiError {
    fn from(e: weft_state::StoreError) -> Self {
        ApiError::from(weft_agent::AgentError::from(e))
    }
}

/// Body decoding failures, in Consul's words.
pub fn decode_error(e: weft_types::lenient::DecodeError) -> ApiError {
    ApiError::bad_request(format!("Request decode failed: {e}"))
}

impl axum::response::IntoResponse for Reply {
    fn into_response(self) -> axum::response::Response {
        let body = self
            .stream
            .unwrap_or_else(|| axum::body::Body::from(self.body));
        let mut response = axum::response::Response::new(body);
        *response.status_mut() = self.status;
        response.headers_mut().extend(self.headers);
        response
    }
}
