//! The photo-library source: fetches a user's picked photos from their
//! provider, modelled on Google Photos. The app's picker session yields media
//! items with a `baseUrl`; `{baseUrl}=d` returns the original bytes to a
//! request carrying the user's OAuth bearer token.
//!
//! The app's word is not taken for which photo a `baseUrl` is: the gateway
//! asks the provider's API for the media item by id
//! (`GET {api}/v1/mediaItems/{id}`) and downloads the `baseUrl` the provider
//! returns, so a grant for one photo can never be used to fetch another.
//! Album membership is asked the same way (`POST {api}/v1/mediaItems:search`
//! with the album id, paged). Both are the Google Photos Library API shapes.
//!
//! Guarding the gateway against being used to reach anything else (SSRF):
//! - only hosts on the allow-list, matched on host and port;
//! - `https`, or plain `http` only to a loopback host (local providers, tests);
//! - redirects followed by hand, at most [`MAX_REDIRECTS`], never to another
//!   scheme, host or port, so the token never leaves the provider;
//! - bounded bytes (checked on `Content-Length` and while streaming) and a
//!   deadline for the whole fetch.
//!
//! Photos stay in memory. Access tokens are never logged, stored or put in
//! an error message.
//!
//! [`web`] fetches images anyone names by URL, for the public detection
//! API, under stricter rules: any public host, never a private one.

use std::time::Duration;

pub mod web;
pub use web::{WebConfig, WebError, WebImages};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use url::Url;

/// Same-origin redirects followed at most.
pub const MAX_REDIRECTS: usize = 3;
/// Pages of an album searched at most (100 items each) for one photo.
pub const MAX_ALBUM_PAGES: usize = 50;
/// Largest provider API answer read, in bytes.
const MAX_API_BYTES: usize = 1024 * 1024;

/// An OAuth bearer token. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: String) -> AccessToken {
        AccessToken(token)
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// One picked photo.
#[derive(Debug, Clone)]
pub struct LibraryItem {
    pub media_item_id: String,
    pub base_url: String,
    pub access_token: AccessToken,
}

/// The original bytes of a photo, and the media type the provider declared.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetched({} bytes, {:?})", self.bytes.len(), self.content_type)
    }
}

#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// `host` or `host:port`; without a port, the scheme's default.
    pub allow_hosts: Vec<String>,
    /// Largest photo accepted, in bytes.
    pub max_bytes: usize,
    /// Deadline for one photo: connecting, redirects and the whole body.
    pub timeout: Duration,
    /// The provider's API, e.g. `https://photoslibrary.googleapis.com`; its
    /// host is allowed implicitly. Without it, library references are refused.
    pub api_base: Option<String>,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        LibraryConfig {
            allow_hosts: Vec::new(),
            max_bytes: 32 * 1024 * 1024,
            timeout: Duration::from_secs(20),
            api_base: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("invalid allow-list entry {0:?}: expected HOST or HOST:PORT")]
    BadAllowEntry(String),
    #[error("base_url is not a usable URL: {0}")]
    InvalidUrl(String),
    #[error("{host} is not an allowed photo host")]
    HostNotAllowed { host: String },
    #[error("the photo provider refused the access token (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("the photo provider has no such photo (HTTP {status})")]
    NotFound { status: u16 },
    #[error("the photo is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the photo provider redirected to {to}, another origin; not followed")]
    RedirectElsewhere { to: String },
    #[error("the photo provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the photo provider refused the request (HTTP {status})")]
    Rejected { status: u16 },
    #[error("the access token cannot be sent as a header")]
    InvalidToken,
    #[error("base_url is not the one the provider gives for this media item")]
    BaseUrlMismatch,
    #[error(
        "no photo provider API is configured ([photos] api_base or --photo-api), so library photos cannot be checked"
    )]
    NotConfigured,
    #[error("the photo provider's answer is not what its API promises: {0}")]
    BadAnswer(String),
}

impl PhotoError {
    /// The stable code a client sees when a library photo fails this way.
    pub fn code(&self) -> likeness_codes::ErrorCode {
        use likeness_codes::ErrorCode;
        match self {
            PhotoError::HostNotAllowed { .. } => ErrorCode::PhotosHostNotAllowed,
            PhotoError::InvalidUrl(_) | PhotoError::BadAllowEntry(_) => ErrorCode::PhotosInvalidUrl,
            PhotoError::BaseUrlMismatch => ErrorCode::PhotosBaseUrlMismatch,
            PhotoError::InvalidToken => ErrorCode::PhotosInvalidToken,
            PhotoError::NotConfigured => ErrorCode::PhotosNotConfigured,
            PhotoError::Rejected { .. } => ErrorCode::PhotosRejected,
            PhotoError::Unauthorized { .. } => ErrorCode::PhotosUnauthorized,
            PhotoError::NotFound { .. } => ErrorCode::PhotosNotFound,
            PhotoError::TooLarge { .. } => ErrorCode::PhotosTooLarge,
            PhotoError::BadAnswer(_) | PhotoError::RedirectElsewhere { .. } | PhotoError::Unavailable(_) => {
                ErrorCode::PhotosUnavailable
            }
        }
    }
}

/// A media item as the provider describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaItem {
    pub id: String,
    pub base_url: String,
    #[serde(default)]
    pub mime_type: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchPage {
    #[serde(default)]
    media_items: Vec<SearchItem>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct SearchItem {
    id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// Whether `url` is on this host and port (without a port: the
    /// scheme's default).
    fn matches(&self, url: &Url) -> bool {
        let port = url.port_or_known_default();
        url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && self.port.map_or_else(|| port == default_port(url.scheme()), |p| Some(p) == port)
    }
}

/// A client for photo providers, shared by all requests.
pub struct PhotoLibrary {
    client: reqwest::Client,
    allowed: Vec<AllowedHost>,
    config: LibraryConfig,
    api: Option<Url>,
}

impl PhotoLibrary {
    pub fn new(config: LibraryConfig) -> Result<PhotoLibrary, PhotoError> {
        let mut allowed: Vec<AllowedHost> =
            config.allow_hosts.iter().map(|h| parse_allowed(h)).collect::<Result<_, _>>()?;
        let api = match &config.api_base {
            Some(base) => {
                let url = Url::parse(base.trim_end_matches('/'))
                    .map_err(|e| PhotoError::InvalidUrl(format!("api_base {base:?}: {e}")))?;
                let host = url.host_str().ok_or_else(|| PhotoError::InvalidUrl(format!("api_base {base:?}")))?;
                allowed.push(AllowedHost { host: host.to_ascii_lowercase(), port: url.port() });
                Some(url)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("likeness/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PhotoError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        let library = PhotoLibrary { client, allowed, config, api };
        if let Some(api) = &library.api {
            // The API itself must pass the same origin rules as downloads.
            library.check_origin(api)?;
        }
        Ok(library)
    }

    /// Whether library references can be served: a provider API is configured.
    pub fn is_enabled(&self) -> bool {
        self.api.is_some()
    }

    pub fn allowed_hosts(&self) -> &[String] {
        &self.config.allow_hosts
    }

    /// The download URL of an item (`{base_url}=d`), if its host may be asked.
    pub fn download_url(&self, base_url: &str) -> Result<Url, PhotoError> {
        let url = Url::parse(&format!("{base_url}=d")).map_err(|e| PhotoError::InvalidUrl(e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(PhotoError::InvalidUrl("a base URL has no query, fragment or user info".into()));
        }
        self.check_origin(&url)?;
        Ok(url)
    }

    fn check_origin(&self, url: &Url) -> Result<(), PhotoError> {
        if !matches!(url.scheme(), "https" | "http") {
            return Err(PhotoError::InvalidUrl(format!("{}:// is not allowed: use https", url.scheme())));
        }
        let host = url.host_str().ok_or_else(|| PhotoError::InvalidUrl("no host".into()))?.to_ascii_lowercase();
        let shown = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => is_loopback(url),
            _ => false,
        };
        if !scheme_ok {
            return Err(PhotoError::InvalidUrl(format!(
                "{}:// is not allowed for {shown}: use https (plain http only on loopback)",
                url.scheme()
            )));
        }
        if !self.allowed.iter().any(|a| a.matches(url)) {
            return Err(PhotoError::HostNotAllowed { host: shown });
        }
        Ok(())
    }

    /// Fetches one photo's original bytes, within the limits: asks the
    /// provider for the media item, checks that the app's `base_url` (when
    /// given) is the provider's, and downloads the provider's.
    pub async fn fetch(&self, item: &LibraryItem) -> Result<Fetched, PhotoError> {
        let work = async {
            let described = self.media_item(&item.media_item_id, &item.access_token).await?;
            if !item.base_url.is_empty() && item.base_url != described.base_url {
                return Err(PhotoError::BaseUrlMismatch);
            }
            let url = self.download_url(&described.base_url)?;
            let (content_type, bytes) = self.get(url, &item.access_token, self.config.max_bytes).await?;
            Ok(Fetched { bytes, content_type: content_type.or(described.mime_type) })
        };
        self.within_deadline(work).await
    }

    /// Runs `work` within the configured deadline; past it, "unavailable".
    async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, PhotoError>>,
    ) -> Result<T, PhotoError> {
        let deadline = self.config.timeout;
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(PhotoError::Unavailable(format!("no complete answer within {} s", deadline.as_secs_f32()))),
        }
    }

    /// `{api_base}/seg/seg...`, each segment percent-encoded.
    fn api_url(&self, segments: &[&str]) -> Result<Url, PhotoError> {
        let mut url = self.api.clone().ok_or(PhotoError::NotConfigured)?;
        url.path_segments_mut()
            .map_err(|_| PhotoError::InvalidUrl("api_base cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The provider's description of a media item, with the user's token.
    pub async fn media_item(&self, id: &str, token: &AccessToken) -> Result<MediaItem, PhotoError> {
        let url = self.api_url(&["v1", "mediaItems", id])?;
        let (_, body) = self.get(url, token, MAX_API_BYTES).await?;
        let item: MediaItem = serde_json::from_slice(&body).map_err(|e| PhotoError::BadAnswer(e.to_string()))?;
        if item.id != id {
            return Err(PhotoError::BadAnswer(format!("asked for media item {id:?}, got {:?}", item.id)));
        }
        Ok(item)
    }

    /// Whether the provider lists `media_item_id` in the album, searching at
    /// most [`MAX_ALBUM_PAGES`] pages.
    pub async fn album_contains(
        &self,
        album_id: &str,
        media_item_id: &str,
        token: &AccessToken,
    ) -> Result<bool, PhotoError> {
        let url = self.api_url(&["v1", "mediaItems:search"])?;
        let search = async {
            let mut page_token: Option<String> = None;
            for _ in 0..MAX_ALBUM_PAGES {
                let mut query = serde_json::json!({ "albumId": album_id, "pageSize": 100 });
                if let Some(t) = &page_token {
                    query["pageToken"] = t.clone().into();
                }
                let body = self.post_json(url.clone(), token, &query).await?;
                let page: SearchPage =
                    serde_json::from_slice(&body).map_err(|e| PhotoError::BadAnswer(e.to_string()))?;
                if page.media_items.iter().any(|m| m.id == media_item_id) {
                    return Ok(true);
                }
                match page.next_page_token.filter(|t| !t.is_empty()) {
                    Some(t) => page_token = Some(t),
                    None => return Ok(false),
                }
            }
            Ok(false)
        };
        self.within_deadline(search).await
    }

    fn auth_header(token: &AccessToken) -> Result<HeaderValue, PhotoError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| PhotoError::InvalidToken)?;
        auth.set_sensitive(true);
        Ok(auth)
    }

    async fn post_json(&self, url: Url, token: &AccessToken, body: &serde_json::Value) -> Result<Vec<u8>, PhotoError> {
        self.check_origin(&url)?;
        let resp = self
            .client
            .post(url)
            .header(AUTHORIZATION, Self::auth_header(token)?)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| PhotoError::Unavailable(describe(&e)))?;
        read_body(resp, MAX_API_BYTES).await.map(|(_, b)| b)
    }

    /// Fetches several photos at once; answers in the same order.
    pub async fn fetch_all(&self, items: &[LibraryItem]) -> Vec<Result<Fetched, PhotoError>> {
        futures_util::future::join_all(items.iter().map(|i| self.fetch(i))).await
    }

    /// A GET with the token, following same-origin redirects by hand.
    async fn get(
        &self,
        mut url: Url,
        token: &AccessToken,
        limit: usize,
    ) -> Result<(Option<String>, Vec<u8>), PhotoError> {
        self.check_origin(&url)?;
        let auth = Self::auth_header(token)?;
        let origin = url.origin();
        let mut hops = 0;
        let resp = loop {
            let resp = self
                .client
                .get(url.clone())
                .header(AUTHORIZATION, auth.clone())
                .send()
                .await
                .map_err(|e| PhotoError::Unavailable(describe(&e)))?;
            if !resp.status().is_redirection() {
                break resp;
            }
            let next = redirect_target(&resp, &url).map_err(PhotoError::Unavailable)?;
            if next.origin() != origin {
                let to = next.host_str().unwrap_or("?").to_string();
                return Err(PhotoError::RedirectElsewhere { to });
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(PhotoError::Unavailable(format!("more than {MAX_REDIRECTS} redirects")));
            }
            url = next;
        };
        read_body(resp, limit).await
    }
}

/// The body of a successful answer, within `limit` bytes; failures mapped.
async fn read_body(resp: reqwest::Response, limit: usize) -> Result<(Option<String>, Vec<u8>), PhotoError> {
    let status = resp.status().as_u16();
    match status {
        200..=299 => {}
        401 | 403 => return Err(PhotoError::Unauthorized { status }),
        404 | 410 => return Err(PhotoError::NotFound { status }),
        429 => return Err(PhotoError::Unavailable("HTTP 429: rate-limited, retry later".into())),
        400..=499 => return Err(PhotoError::Rejected { status }),
        _ => return Err(PhotoError::Unavailable(format!("HTTP {status}"))),
    }
    let cut = |c| match c {
        Cut::TooLarge => PhotoError::TooLarge { limit },
        Cut::Broken(m) => PhotoError::Unavailable(m),
    };
    read_bounded(resp, limit).await.map_err(cut)
}

/// Where a redirect points, resolved against the URL that answered it.
fn redirect_target(resp: &reqwest::Response, url: &Url) -> Result<Url, String> {
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| format!("HTTP {} without a Location", resp.status()))?;
    url.join(location).map_err(|e| format!("bad redirect: {e}"))
}

/// Why a bounded read stopped.
enum Cut {
    TooLarge,
    Broken(String),
}

/// An answer's declared media type and body, at most `limit` bytes:
/// refused on a larger `Content-Length`, cut while reading past it.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<(Option<String>, Vec<u8>), Cut> {
    let declared_len =
        resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > limit as u64) {
        return Err(Cut::TooLarge);
    }
    let content_type =
        resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_ascii_lowercase());
    let mut bytes = Vec::with_capacity(declared_len.map_or(64 * 1024, |n| n.min(limit as u64) as usize));
    while let Some(chunk) = resp.chunk().await.map_err(|e| Cut::Broken(describe(&e)))? {
        if bytes.len() + chunk.len() > limit {
            return Err(Cut::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((content_type, bytes))
}

/// A reqwest error without its URL (which may hold ids the provider
/// considers private) and without anything from the request headers.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_allowed(entry: &str) -> Result<AllowedHost, PhotoError> {
    let bad = || PhotoError::BadAllowEntry(entry.to_string());
    let e = entry.trim();
    if e.is_empty() || e.contains('/') || e.contains('@') {
        return Err(bad());
    }
    // Let the URL parser normalise the host (IDNA, IPv6 brackets, case).
    let url = Url::parse(&format!("https://{e}/")).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
    let explicit_port =
        e.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()));
    let port =
        if explicit_port { Some(e.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(bad)?) } else { None };
    Ok(AllowedHost { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(hosts: &[&str]) -> PhotoLibrary {
        PhotoLibrary::new(LibraryConfig {
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..LibraryConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn only_allowed_origins_are_asked() {
        let lib = library(&["photos.example.com", "127.0.0.1:8081", "[::1]:9000", "LocalHost:7000"]);
        for ok in [
            "https://photos.example.com/lr/abc",
            "https://PHOTOS.example.com:443/lr/abc",
            "http://127.0.0.1:8081/m/1",
            "http://[::1]:9000/m/1",
            "http://localhost:7000/m/1",
        ] {
            let url = lib.download_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(url.as_str().ends_with("=d"), "{url}");
        }
        for (bad, expect) in [
            ("https://evil.example.com/lr/abc", "not an allowed photo host"),
            ("https://photos.example.com:8443/lr/abc", "not an allowed photo host"),
            ("https://photos.example.com.evil.net/x", "not an allowed photo host"),
            ("http://photos.example.com/lr/abc", "use https"),
            ("http://127.0.0.1:8082/m/1", "not an allowed photo host"),
            ("file:///etc/passwd", "not allowed"),
            ("https://user:pw@photos.example.com/x", "user info"),
            ("https://photos.example.com/x?size=1", "no query"),
            ("not a url", "not a usable URL"),
        ] {
            let err = lib.download_url(bad).unwrap_err().to_string();
            assert!(err.contains(expect), "{bad}: {err}");
        }
        assert!(!library(&[]).is_enabled());
    }

    #[test]
    fn allow_list_entries_are_checked() {
        for bad in ["", "https://x.com", "x.com/path", "a@b.com", "x.com:99999"] {
            assert!(
                PhotoLibrary::new(LibraryConfig { allow_hosts: vec![bad.into()], ..LibraryConfig::default() }).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_do_not_print() {
        let t = AccessToken::new("ya29.secret".into());
        assert!(!format!("{t:?}").contains("secret"));
        let item = LibraryItem { media_item_id: "m".into(), base_url: "https://x".into(), access_token: t };
        assert!(!format!("{item:?}").contains("secret"));
    }
}
