//! In front of every route (and the 404 fallback): only GET and HEAD; a
//! token when one is configured, else a loopback Host header; headers that
//! keep a browser from doing more with a page than show it.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq as _;

/// What the guard needs: the token, else the loopback Host names. The
/// same for the single-host and the fleet view.
#[derive(Clone)]
pub(crate) struct Gate {
    pub token: Option<std::sync::Arc<Vec<u8>>>,
    /// Host headers accepted without a token (the DNS-rebinding guard).
    pub local_hosts: std::sync::Arc<Vec<String>>,
}

impl Gate {
    pub(crate) fn new(token: Option<Vec<u8>>, port: u16) -> Gate {
        Gate {
            token: token.map(std::sync::Arc::new),
            local_hosts: std::sync::Arc::new(vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ]),
        }
    }
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) async fn guard(State(app): State<Gate>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "mend serve is read-only\n",
        )
            .into_response();
    }
    match &app.token {
        None => {
            // Without a token, only loopback names: else any web page could
            // point its own name at 127.0.0.1 (DNS rebinding) and read this.
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !app.local_hosts.iter().any(|h| h == host) {
                return (
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "mend serve answers only to {}\n",
                        app.local_hosts.join(", ")
                    ),
                )
                    .into_response();
            }
        }
        Some(token) => {
            let ok = |given: &str| -> bool { given.as_bytes().ct_eq(token).into() };
            let query = req.uri().query().unwrap_or("");
            if let Some(given) = query.split('&').find_map(|kv| kv.strip_prefix("token=")) {
                if !ok(given) {
                    return unauthorized("wrong token");
                }
                // Take the token out of the URL (history, screenshots,
                // Referer): to the same URL without it, the token now in a
                // cookie. A redirect, so it works with JavaScript off.
                let rest: Vec<&str> = query
                    .split('&')
                    .filter(|kv| !kv.starts_with("token="))
                    .collect();
                let path = req.uri().path();
                let to = if rest.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", rest.join("&"))
                };
                let mut r = Redirect::to(&to).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "mend_token={given}; Path=/; HttpOnly; SameSite=Strict"
                )) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                return r;
            }
            let bearer = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let cookie = req
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| kv.trim().strip_prefix("mend_token="));
            if !bearer.or(cookie).is_some_and(ok) {
                return unauthorized("a token is required: open the link with ?token=");
            }
        }
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{why}\n"),
    )
        .into_response()
}
