//! A bearer token for an instance's HTTP server (`runtime.http_token`): every request but the
//! health checks must carry `Authorization: Bearer <token>`. The token is compared by digest, in
//! constant time, and never shown in debug output.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A secret token (debug output shows `<redacted>`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A token from its text.
    pub fn new(text: impl Into<String>) -> Token {
        Token(text.into())
    }

    /// Whether the token is empty (white space only): an empty token would let every request
    /// without one through.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Paths anyone may GET.
const OPEN: [&str; 2] = ["/health/live", "/health/ready"];

/// The middleware: 401 unless the request carries the token (health checks excepted).
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    if OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
        .unwrap_or_default();
    let (want, got) = (Sha256::digest(token.0.trim().as_bytes()), Sha256::digest(given.trim().as_bytes()));
    // Equal-length digests, every byte compared.
    if want.iter().zip(got.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0 {
        return next.run(request).await;
    }
    let body = serde_json::json!({"error_code": 401, "message": "Unauthorized: send `Authorization: Bearer <runtime.http_token>`"});
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}
