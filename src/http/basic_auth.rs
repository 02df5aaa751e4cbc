//! HTTP basic authentication with two roles, for servers that take writes (the Schema
//! Registry): `read-only` users may read, `admin` users may also change things. Which requests
//! are writes is the server's call ([`Gate::writes`]); health checks stay open.
//!
//! Users live in a file, one per line: `name:role:argon2-hash`, where the hash is an Argon2 PHC
//! string (`$argon2id$v=19$...`, from `happystreams registry hash-password` or any Argon2
//! tool); `#` starts a comment. Passwords are never stored or logged; a password verified once
//! is remembered by its SHA-256 digest, so Argon2's cost is paid once per user, not per request.

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read only.
    ReadOnly,
    /// Read and write.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "read-only" => Ok(Role::ReadOnly),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`; use read-only or admin")),
        }
    }
}

struct User {
    role: Role,
    hash: String,
}

/// The users of a server.
pub struct Users {
    users: HashMap<String, User>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One Argon2 verification at a time, off the async threads: a flood of wrong passwords
    /// costs one core, and requests with remembered credentials are served meanwhile.
    verifying: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("names", &self.users.keys().collect::<Vec<_>>()).finish()
    }
}

/// An Argon2id PHC string for `password` with a random salt (what a users file holds).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

impl Users {
    /// Reads a users file; errors name the file, the line and what to fix.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the users file {}: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("users file {}: {e}", path.display()))
    }

    /// Parses the users file format (see the module documentation).
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, ':');
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {number}: expected `name:role:argon2-hash`"));
            };
            let role = role.parse().map_err(|e| format!("line {number}: {e}"))?;
            PasswordHash::new(hash).map_err(|e| {
                format!("line {number}: the hash of `{name}` is not an Argon2 PHC string ({e}); make one with `happystreams registry hash-password`")
            })?;
            if name.is_empty() || users.insert(name.to_owned(), User { role, hash: hash.to_owned() }).is_some() {
                return Err(format!("line {number}: user `{name}` is empty or listed twice"));
            }
        }
        if users.is_empty() {
            return Err("no users in it; add `name:role:argon2-hash` lines".into());
        }
        Ok(Users { users, verified: Mutex::new(HashSet::new()), verifying: tokio::sync::Semaphore::new(1) })
    }

    /// The role of the user an `Authorization: Basic` header names, if the password is right.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<(String, Role)> {
        let (name, password) = credentials(headers)?;
        self.check(&name, &password)
    }

    /// [`Users::authenticate`] for async servers: remembered credentials at once, others
    /// verified one at a time on a blocking thread.
    pub async fn authenticate_async(self: &Arc<Self>, headers: &HeaderMap) -> Option<(String, Role)> {
        let (name, password) = credentials(headers)?;
        if let Some(user) = self.users.get(&name)
            && self.verified.lock().is_ok_and(|v| v.contains(&digest(&name, &password)))
        {
            return Some((name, user.role));
        }
        let _turn = self.verifying.acquire().await.ok()?;
        let users = self.clone();
        tokio::task::spawn_blocking(move || users.check(&name, &password)).await.ok()?
    }

    fn check(&self, name: &str, password: &str) -> Option<(String, Role)> {
        let Some(user) = self.users.get(name) else {
            // As slow as a wrong password, so timing does not tell which names exist.
            let _ = self.verify(name, password, &self.users.values().next()?.hash);
            return None;
        };
        self.verify(name, password, &user.hash).then(|| (name.to_owned(), user.role))
    }

    fn verify(&self, name: &str, password: &str, hash: &str) -> bool {
        let digest = digest(name, password);
        if self.verified.lock().is_ok_and(|v| v.contains(&digest)) {
            return true;
        }
        let ok =
            PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        if ok && let Ok(mut verified) = self.verified.lock() {
            verified.insert(digest);
        }
        ok
    }
}

/// The name and password of an `Authorization: Basic` header.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (name, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// What a verified password is remembered by.
fn digest(name: &str, password: &str) -> [u8; 32] {
    Sha256::new().chain_update(name).chain_update([0]).chain_update(password).finalize().into()
}

/// What a server guards with [`Users`]: which paths are open and which requests write.
#[derive(Clone)]
pub struct Gate {
    /// The users.
    pub users: Arc<Users>,
    /// Paths anyone may GET (health checks).
    pub open: &'static [&'static str],
    /// Whether a request changes something (needs [`Role::Admin`]).
    pub writes: fn(&Method, &str) -> bool,
}

/// The middleware: 401 without valid credentials, 403 for a read-only user's write.
pub async fn guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && gate.open.contains(&path.as_str()) {
        return next.run(request).await;
    }
    match gate.users.authenticate_async(request.headers()).await {
        None => {
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                401,
                "Unauthorized: give a user's name and password (HTTP basic authentication)".into(),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"happystreams\""));
            response
        }
        Some((name, Role::ReadOnly)) if (gate.writes)(request.method(), &path) => refusal(
            StatusCode::FORBIDDEN,
            40301,
            format!("User '{name}' is read-only and may not {} {path}: writes need the admin role", request.method()),
        ),
        Some(_) => next.run(request).await,
    }
}

fn refusal(status: StatusCode, code: u32, message: String) -> Response {
    let mut response = axum::Json(serde_json::json!({"error_code": code, "message": message})).into_response();
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(name: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
        headers.insert(header::AUTHORIZATION, format!("Basic {value}").parse().unwrap());
        headers
    }

    #[test]
    fn users_authenticate_with_their_role_and_bad_files_say_what_to_fix() {
        let text = format!(
            "# users\nana:admin:{}\nbo:read-only:{}\n",
            hash_password("a-pw").unwrap(),
            hash_password("b-pw").unwrap()
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.authenticate(&basic("ana", "a-pw")), Some(("ana".into(), Role::Admin)));
        assert_eq!(users.authenticate(&basic("ana", "a-pw")), Some(("ana".into(), Role::Admin)), "remembered");
        assert_eq!(users.authenticate(&basic("bo", "b-pw")), Some(("bo".into(), Role::ReadOnly)));
        assert_eq!(users.authenticate(&basic("bo", "a-pw")), None);
        assert_eq!(users.authenticate(&basic("cy", "a-pw")), None);
        assert_eq!(users.authenticate(&HeaderMap::new()), None);
        assert!(!format!("{users:?}").contains("argon2"), "no hashes in debug output");
        for (bad, says) in [
            ("ana:admin", "expected"),
            ("ana:root:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA", "unknown role"),
            ("ana:admin:plain-password", "PHC"),
            ("# nothing", "no users"),
        ] {
            let error = Users::parse(bad).err().unwrap();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
