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

    /// `Authorization: Bearer <token>`, for an instance asking another.
    pub fn header(&self) -> Option<axum::http::HeaderValue> {
        let mut value = axum::http::HeaderValue::from_str(&format!("Bearer {}", self.0.trim())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The `access_token` query parameter, percent-decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    let value = query?.split('&').find_map(|pair| pair.strip_prefix("access_token="))?;
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Paths anyone may GET.
const OPEN: [&str; 2] = ["/health/live", "/health/ready"];

/// The middleware: 401 unless the request carries the token (health checks excepted).
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    if OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let from_header =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
            v.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].to_owned())
        });
    // A browser's EventSource cannot send headers: the dashboard's pages may carry the token as
    // `?access_token=` (RFC 6750, section 2.3).
    let given = from_header
        .or_else(|| {
            request.uri().path().starts_with("/dashboard").then(|| query_token(request.uri().query())).flatten()
        })
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
