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
    limiter.take(client, Instant::now()).err().map(|wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp =
            ApiError::new(code, format!("too many requests from this address; retry in {secs} s")).into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        resp
    })
}

/// A token bucket per client address. The table is bounded: buckets that
/// have refilled are forgotten first.
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    pub(crate) fn new(requests_per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(requests_per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`, or says how long until one is free.
    pub(crate) fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&client) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                // Every tracked client is mid-burst: a flood. Refuse newcomers
                // rather than grow without bound.
                return Err(Duration::from_secs(1));
            }
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}
