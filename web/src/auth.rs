//! Who may look and who may act: login sessions behind the controller's client password,
//! and the anti-forgery token every form carries (needed even without a password, since any
//! web page can post to a dashboard on loopback).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

/// The session cookie's name.
pub const COOKIE: &str = "xgrid_session";
/// A session lasts this long after login.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many live sessions; the oldest goes first (logins are password-gated, so
/// this only bounds memory).
const MAX_SESSIONS: usize = 256;

/// Why a random token could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed: {0}")]
pub struct RandomError(String);

/// 32 random bytes as hex.
fn token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equality whose time does not depend on where the inputs differ (only on their length),
/// so the password cannot be guessed byte by byte from response times.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[derive(Debug)]
struct Session {
    csrf: String,
    created: Instant,
}

/// Live sessions, and the form token used when the controller has no password.
#[derive(Debug)]
pub struct Sessions {
    open_csrf: String,
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// When the random generator fails, the open form token stays empty and `may_act`
    /// then refuses every form: safe, and visible at the first action.
    pub fn new() -> Sessions {
        Sessions {
            open_csrf: token().unwrap_or_default(),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A new session: its cookie value.
    pub fn open(&self) -> Result<String, RandomError> {
        let id = token()?;
        let csrf = token()?;
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        live.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        if live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(
            id.clone(),
            Session {
                csrf,
                created: Instant::now(),
            },
        );
        Ok(id)
    }

    pub fn close(&self, id: &str) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        live.remove(id);
    }

    /// The form token of a live session.
    fn csrf_of(&self, id: &str) -> Option<String> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        live.get(id)
            .filter(|s| s.created.elapsed() < SESSION_LIFETIME)
            .map(|s| s.csrf.clone())
    }

    /// Who is asking: `None` when a password is set and the request carries neither a live
    /// session cookie nor the password as a bearer token (for Prometheus).
    pub fn check(&self, headers: &HeaderMap, password: Option<&str>) -> Option<Access> {
        let Some(password) = password else {
            return Some(Access {
                csrf: self.open_csrf.clone(),
                session: None,
            });
        };
        if let Some(id) = cookie(headers, COOKIE) {
            if let Some(csrf) = self.csrf_of(id) {
                return Some(Access {
                    csrf,
                    session: Some(id.to_owned()),
                });
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match bearer {
            // A bearer may read but gets no form token: it cannot act.
            Some(given) if same_secret(given.as_bytes(), password.as_bytes()) => Some(Access {
                csrf: String::new(),
                session: None,
            }),
            _ => None,
        }
    }
}

/// A request that may read; `csrf` is the token its forms must send back.
#[derive(Debug, Clone)]
pub struct Access {
    pub csrf: String,
    pub session: Option<String>,
}

impl Access {
    /// Whether a posted form may act: the right token, and (when the browser says where the
    /// form came from) a page of this very dashboard.
    pub fn may_act(&self, headers: &HeaderMap, posted_csrf: &str) -> bool {
        !self.csrf.is_empty()
            && same_secret(posted_csrf.as_bytes(), self.csrf.as_bytes())
            && same_origin(headers)
    }
}

/// The value of one cookie in the `Cookie` header(s).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a new session: not readable by scripts, never sent cross-site.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn expired_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// False when the browser says the request came from another site: `Sec-Fetch-Site`
/// other than same-origin/none, or an `Origin` whose host is not the `Host` asked for.
/// Requests without either header (curl, old browsers) rely on the form token alone.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            origin_host == Some(host)
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Whether the `Host` asked for is an address or `localhost` (or absent). Without a
/// password this is required: a DNS-rebinding page reaches us under its own host name, and
/// would otherwise be same-origin with the dashboard and free to read and post.
pub fn host_is_literal(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else if host.parse::<std::net::IpAddr>().is_ok() {
        host
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_addresses_and_localhost_are_literal_hosts() {
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "::1",
            "10.0.0.5",
        ] {
            assert!(host_is_literal(&headers(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example",
            "[::1",
        ] {
            assert!(!host_is_literal(&headers(&[("host", host)])), "{host}");
        }
        assert!(host_is_literal(&headers(&[])));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"hunter2", b"hunter2"));
        assert!(!same_secret(b"hunter2", b"hunter3"));
        assert!(!same_secret(b"hunter2", b"hunter"));
        assert!(!same_secret(b"", b"x"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; xgrid_session=abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn cross_site_posts_are_refused() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
    }

    #[test]
    fn sessions_open_check_and_close() {
        let sessions = Sessions::new();
        assert!(sessions.check(&headers(&[]), Some("pw")).is_none());
        let id = sessions.open().expect("random");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={id}")).expect("header"),
        );
        let access = sessions.check(&h, Some("pw")).expect("logged in");
        assert_eq!(access.session.as_deref(), Some(id.as_str()));
        assert!(access.may_act(&h, &access.csrf));
        assert!(!access.may_act(&h, "forged"));
        sessions.close(&id);
        assert!(sessions.check(&h, Some("pw")).is_none());
    }

    #[test]
    fn a_bearer_password_may_read_but_not_act() {
        let sessions = Sessions::new();
        let h = headers(&[("authorization", "Bearer pw")]);
        let access = sessions.check(&h, Some("pw")).expect("reader");
        assert!(!access.may_act(&h, ""));
        assert!(sessions
            .check(&headers(&[("authorization", "Bearer nope")]), Some("pw"))
            .is_none());
    }
}
