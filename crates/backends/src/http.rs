//! What every backend's HTTP calls share: bounded retries with jittered
//! backoff on connection errors, 429 (honouring `Retry-After`) and 5xx;
//! bounded response bodies; errors that name the backend and never carry
//! its credentials.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::BackendError;

/// How a backend is authenticated. Its `Debug` shows nothing of the secret.
#[derive(Clone)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic auth, `user:password`.
    Basic(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Bearer(_) => "Auth::Bearer(..)",
            Auth::Basic(_) => "Auth::Basic(..)",
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    /// The base URL, without a trailing slash.
    pub base: String,
    pub backend: String,
    pub auth: Auth,
    pub retries: u32,
    pub max_body: usize,
    /// The first backoff; each retry doubles it, with jitter.
    pub backoff: Duration,
}

/// Longest `Retry-After` honoured; a longer one fails the request instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

impl Http {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn authed(&self, b: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => b,
            Auth::Bearer(t) => b.bearer_auth(t),
            Auth::Basic(up) => {
                let (u, p) = up.split_once(':').unwrap_or((up.as_str(), ""));
                b.basic_auth(u, Some(p))
            }
        }
    }

    /// Sends the request `build` makes (again for each attempt) and returns
    /// a 2xx response; `what` names the call in errors.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, BackendError> {
        let resp = self.send_any(what, build).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // Not the request's fault, and its body may quote part of the key
            // ("Incorrect API key provided: sk-ab**...wxyz"): say nothing of it.
            let detail = format!("{what}: HTTP {status}: the backend refused the gateway's credentials");
            return Err(BackendError::Unavailable { backend: self.backend.clone(), detail });
        }
        let detail = format!("{what}: HTTP {status}: {}", self.error_text(resp).await);
        Err(BackendError::Rejected { backend: self.backend.clone(), detail })
    }

    /// The same, but a 4xx answer (other than 429) is returned for the
    /// caller to read (ComfyUI names the failing node in its 400).
    pub async fn send_any(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, BackendError> {
        let mut attempt = 0;
        loop {
            let result = self.authed(build(&self.client)).send().await;
            let retry_in = match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status().is_client_error() && resp.status() != StatusCode::TOO_MANY_REQUESTS => {
                    return Ok(resp)
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    // 429 and 5xx: the backend is busy or failing, not this request.
                    let detail = format!("{what}: HTTP {status}: {}", self.error_text(resp).await);
                    if attempt >= self.retries || retry_after.is_some_and(|d| d > MAX_RETRY_AFTER) {
                        return Err(BackendError::Unavailable { backend: self.backend.clone(), detail });
                    }
                    tracing::warn!(backend = %self.backend, %detail, "retrying");
                    retry_after.unwrap_or_else(|| self.backoff_for(attempt))
                }
                // A connect timeout is a connection error (retried); a
                // response that did not come in time is not.
                Err(e) if e.is_timeout() && !e.is_connect() => {
                    return Err(BackendError::Timeout { backend: self.backend.clone() })
                }
                Err(e) => {
                    // reqwest errors can carry the URL; the URL carries no
                    // credentials here (they go in headers).
                    let detail = format!("{what}: {}", without_url(&e));
                    if attempt >= self.retries {
                        return Err(BackendError::Unavailable { backend: self.backend.clone(), detail });
                    }
                    self.backoff_for(attempt)
                }
            };
            attempt += 1;
            tokio::time::sleep(retry_in).await;
        }
    }

    fn backoff_for(&self, attempt: u32) -> Duration {
        let base = self.backoff.saturating_mul(1 << attempt.min(6));
        // Full jitter: between half and the whole backoff.
        base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    /// What an error answer says, short: its `error.message` (OpenAI and
    /// ours), `error` (ComfyUI), `detail` (WebUI), else its first bytes.
    pub async fn error_text(&self, resp: Response) -> String {
        let bytes = self.body(resp, 64 * 1024).await.unwrap_or_default();
        let text = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => ["/error/message", "/detail", "/error", "/message"]
                .iter()
                .find_map(|p| v.pointer(p).map(|m| m.as_str().map_or_else(|| m.to_string(), String::from)))
                .unwrap_or_else(|| v.to_string()),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        };
        redact(&text, &self.auth).chars().take(300).collect()
    }

    /// The body, at most `max` bytes.
    async fn body(&self, resp: Response, max: usize) -> Result<Vec<u8>, BackendError> {
        if resp.content_length().is_some_and(|n| n as usize > max) {
            return Err(self
                .bad(format!("an answer of {} bytes, over the {max}-byte limit", resp.content_length().unwrap_or(0))));
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.is_timeout() {
                    BackendError::Timeout { backend: self.backend.clone() }
                } else {
                    BackendError::Unavailable { backend: self.backend.clone(), detail: without_url(&e) }
                }
            })?;
            if out.len() + chunk.len() > max {
                return Err(self.bad(format!("an answer over the {max}-byte limit")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    pub async fn bytes(&self, resp: Response) -> Result<Vec<u8>, BackendError> {
        self.body(resp, self.max_body).await
    }

    pub async fn json<T: serde::de::DeserializeOwned>(&self, what: &str, resp: Response) -> Result<T, BackendError> {
        let bytes = self.bytes(resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("{what}: not the JSON expected: {e}")))
    }

    pub fn bad(&self, detail: String) -> BackendError {
        BackendError::BadResponse { backend: self.backend.clone(), detail }
    }
}

/// A backend's words with anything that looks like a credential taken
/// out: the configured secret (or its user or password), API keys in the
/// `sk-...` form, and masked keys (`sk-ab****wxyz`), since backends quote
/// them in their errors and these words reach the client.
fn redact(text: &str, auth: &Auth) -> String {
    let mut text = text.to_string();
    let secrets: Vec<&str> = match auth {
        Auth::None => vec![],
        Auth::Bearer(t) => vec![t.as_str()],
        Auth::Basic(up) => std::iter::once(up.as_str()).chain(up.split(':')).collect(),
    };
    for s in secrets.into_iter().filter(|s| s.len() >= 4) {
        text = text.replace(s, "<redacted>");
    }
    text.split_inclusive(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ':' | ';' | '(' | ')'))
        .map(|word| {
            let (core, sep) = match word.char_indices().last() {
                Some((i, c)) if c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ':' | ';' | '(' | ')') => {
                    word.split_at(i)
                }
                _ => (word, ""),
            };
            let core_trimmed = core.trim_end_matches('.');
            if core_trimmed.starts_with("sk-") || core_trimmed.contains("****") {
                format!("<redacted>{}{sep}", &core[core_trimmed.len()..])
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 allows both).
fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, std::time::SystemTime::now())
}

fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<backend>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Fri, 27 Nov 2026 12:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 12:00:20 GMT", now), Some(Duration::from_secs(20)));
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now), Some(Duration::ZERO), "in the past: now");
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_lose_anything_that_looks_like_a_key() {
        let auth = Auth::Bearer("tok-9f8e7d6c".into());
        for (text, want) in [
            (
                "Incorrect API key provided: sk-ab12********wxyz. You can find",
                "Incorrect API key provided: <redacted>. You can find",
            ),
            ("bad token tok-9f8e7d6c here", "bad token <redacted> here"),
            ("{\"key\": \"sk-proj-abc\"}", "{\"key\": \"<redacted>\"}"),
            ("the size 256x256 is not supported", "the size 256x256 is not supported"),
        ] {
            assert_eq!(redact(text, &auth), want);
        }
        assert_eq!(
            redact("user alice:pw-secret refused", &Auth::Basic("alice:pw-secret".into())),
            "user <redacted> refused"
        );
    }
}
