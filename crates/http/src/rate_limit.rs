//! A rate limit: a token bucket per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use likeness_codes::ErrorCode;

use crate::error::ApiError;

/// Takes a token for the request's client (see [`crate::client`]) from
/// `limiter`; past the rate, the answer: `code` (429) with `Retry-After`.
pub(crate) fn refusal(
    limiter: &RateLimiter,
    req: &Request,
    trusted_proxies: &[crate::client::Cidr],
    code: ErrorCode,
) -> Option<Response> {
    let client = crate::client::bucket(crate::client::address(req, trusted_proxies));
    let wait = limiter.take(client, Instant::now()).err()?;
    Some(too_many(code, wait, |secs| format!("too many requests from this address; retry in {secs} s")))
}

/// The 429 a limit answers: `code`, the message for the seconds to wait,
/// and those seconds in `Retry-After`.
pub(crate) fn too_many(code: ErrorCode, wait: Duration, message: impl FnOnce(u64) -> String) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = ApiError::new(code, message(secs)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Middleware on the public routes: a per-address limit (the state's
/// `limiter`), answered with `code`.
pub(crate) async fn per_address(
    state: &crate::state::AppState,
    limiter: &RateLimiter,
    code: ErrorCode,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match refusal(limiter, &req, &state.config.trusted_proxies, code) {
        None => next.run(req).await,
        Some(refused) => refused,
    }
}

/// A token bucket per client (an address, or a tenant). The table is
/// bounded: buckets that have refilled are forgotten first.
pub(crate) struct RateLimiter<K = IpAddr> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

const MAX_TRACKED_CLIENTS: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    pub(crate) fn new(requests_per_minute: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            per_second: f64::from(requests_per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`, or says how long until one is free.
    pub(crate) fn take(&self, client: K, now: Instant) -> Result<(), Duration> {
        self.take_with(client, now, self.per_second, self.burst)
    }

    /// The same at a rate of the client's own (bursts of as many).
    pub(crate) fn take_at_rate(&self, client: K, now: Instant, per_minute: u32) -> Result<(), Duration> {
        let per_minute = f64::from(per_minute.max(1));
        self.take_with(client, now, per_minute / 60.0, per_minute)
    }

    fn take_with(&self, client: K, now: Instant, per_second: f64, burst: f64) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&client) {
            let rate = per_second;
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                // Every tracked client is mid-burst: a flood. Refuse newcomers
                // rather than grow without bound.
                return Err(Duration::from_secs(1));
            }
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / per_second))
        }
    }
}
