//! The one way ragd makes HTTP clients and reads their answers (Open WebUI,
//! Ollama, `doctor`). Each rule lives here once:
//!
//! - no redirect is followed: reqwest keeps the bearer token on a same-host
//!   redirect, https to http included, and no API ragd calls redirects;
//! - server certificates are checked against the system's roots (where a
//!   company's private CA is installed), the bundled Mozilla roots, and the PEM
//!   file `tls_ca_file` names;
//! - an answer is read only up to a limit: a server (or whatever answers on its
//!   port) cannot make ragd buffer without end;
//! - a URL in an error or a log line never shows the `user:password@` it may
//!   carry;
//! - a key sent over plain `http://` to another host is warned about
//!   ([`sends_in_clear`], [`warn_key_in_clear`]; the Qdrant key too);
//! - a request retried after a transient failure is logged and counted
//!   ([`retrying`]), so the clients need nothing of ragd's but this module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderMap;

/// Requests retried after a transient failure. Labels: target (embed|open_webui).
pub const RETRIES_METRIC: &str = "ragd_retries_total";

/// A request to `endpoint` (a base URL, never carrying a key) is retried after a
/// transient failure. `target` is `embed` or `open_webui`.
pub fn retrying(
    target: &'static str,
    endpoint: &str,
    attempt: u32,
    delay: Duration,
    error: &dyn std::fmt::Display,
) {
    tracing::warn!(service = target, endpoint, attempt, delay_ms = delay.as_millis() as u64,
        error = %error, "request failed, retrying");
    metrics::counter!(RETRIES_METRIC, "target" => target).increment(1);
}

/// Failures of building a client or reading an answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable PEM certificate: {detail}")]
    CaPem { path: PathBuf, detail: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    #[error("the answer is larger than {limit} bytes; ragd reads no more")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Transport(String),
}

/// How one client is set up.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Whole-request deadline (`None`: none).
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub default_headers: HeaderMap,
    /// Extra trusted CA certificates (PEM, one or more).
    pub ca_file: Option<PathBuf>,
}

/// A client following [the rules](self).
pub fn client(settings: &ClientSettings) -> Result<reqwest::Client, HttpError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("ragd/", env!("CARGO_PKG_VERSION")))
        .default_headers(settings.default_headers.clone())
        .redirect(reqwest::redirect::Policy::none());
    if let Some(t) = settings.timeout {
        builder = builder.timeout(t);
    }
    if let Some(t) = settings.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if let Some(path) = &settings.ca_file {
        for cert in ca_certificates(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| HttpError::Build(describe(&e)))
}

/// The certificates of a PEM file (a bundle may hold several).
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let pem = std::fs::read(path).map_err(|source| HttpError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpError::CaPem {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(HttpError::CaPem {
            path: path.to_owned(),
            detail: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The text of the CA file `tls_ca_file` names, checked as the HTTP clients
/// check it (readable, at least one PEM certificate), for a client that takes
/// PEM text: the Qdrant server's gRPC channel.
pub fn ca_pem(path: &Path) -> Result<Vec<u8>, HttpError> {
    ca_certificates(path)?;
    std::fs::read(path).map_err(|source| HttpError::CaFile {
        path: path.to_owned(),
        source,
    })
}

/// Whether a key sent to `url` crosses the network readable: plain `http://`
/// to a host other than this machine (`localhost`, a loopback address).
pub fn sends_in_clear(url: &str) -> bool {
    let url = url.trim();
    let Some(rest) = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    !(host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()))
}

/// The one warning that `service`'s key goes to `url` unencrypted, when
/// [`sends_in_clear`] says it does. Said once per configuration, at start
/// (and at a reload that changes it): see `Config::keys_in_clear`.
pub fn warn_key_in_clear(service: &str, url: &str) {
    if sends_in_clear(url) {
        tracing::warn!(service, url = %redact_url(url),
            "the API key is sent unencrypted over http:// to a host that is not this machine; use https://");
    }
}

/// `url` with any `user:password@` replaced by `***@`, for errors and logs.
/// Text that does not parse as a URL is returned with everything up to a `@`
/// before the host masked all the same.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = reqwest::Url::parse(url) {
        if parsed.username().is_empty() && parsed.password().is_none() {
            return url.to_owned();
        }
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("***");
        return parsed.to_string();
    }
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// What to do about a server certificate that is not trusted, for an error
/// text that shows one (rustls says "invalid peer certificate: UnknownIssuer",
/// or another reason after the colon); `None` for any other error.
pub fn untrusted_certificate_hint(error_text: &str) -> Option<&'static str> {
    error_text.contains("invalid peer certificate").then_some(
        "the server's certificate is not one ragd trusts: if a private CA issued it, name the \
         CA's PEM file in tls_ca_file (ragd.toml) or add it to the system's roots",
    )
}

/// A reqwest error and its causes, joined (reqwest's top-level message alone,
/// "error sending request", hides the cause), its URL without credentials.
pub fn describe(err: &reqwest::Error) -> String {
    let mut text = match err.url() {
        Some(url) => {
            let shown = redact_url(url.as_str());
            // reqwest's Display embeds the URL as it was sent.
            err.to_string().replace(url.as_str(), &shown)
        }
        None => err.to_string(),
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(hint) = untrusted_certificate_hint(&text) {
        text.push_str(" (");
        text.push_str(hint);
        text.push(')');
    }
    text
}

/// The body of `response`, read up to `limit` bytes; more is an error, and
/// what was read is dropped (a `Content-Length` over the limit fails before
/// anything is read).
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(HttpError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError::Transport(describe(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_in_a_url() {
        assert_eq!(
            redact_url("https://alice:s3cret@owui.example:8443/api"),
            "https://***@owui.example:8443/api"
        );
        assert_eq!(
            redact_url("http://token@127.0.0.1:11434"),
            "http://***@127.0.0.1:11434/"
        );
        assert_eq!(redact_url("http://127.0.0.1:6334"), "http://127.0.0.1:6334");
        // Not a URL reqwest parses, still masked.
        assert_eq!(redact_url("http://a:b@[bad"), "http://***@[bad");
    }

    /// A one-connection HTTP server answering `body` with `length` as its
    /// Content-Length (or chunked when `None`).
    async fn serve_once(body: Vec<u8>, length: Option<usize>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = match length {
                Some(n) => format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n"),
                None => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            };
            let _ = s.write_all(head.as_bytes()).await;
            match length {
                Some(_) => {
                    let _ = s.write_all(&body).await;
                }
                None => {
                    for part in body.chunks(1000) {
                        let chunk = format!("{:x}\r\n", part.len());
                        let _ = s.write_all(chunk.as_bytes()).await;
                        let _ = s.write_all(part).await;
                        let _ = s.write_all(b"\r\n").await;
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
            }
        });
        format!("http://user:pw@{addr}/")
    }

    #[tokio::test]
    async fn answers_are_read_only_up_to_the_limit() {
        let http = client(&ClientSettings::default()).unwrap();
        // Within the limit: read whole.
        let url = serve_once(vec![b'a'; 5000], None).await;
        let body = read_capped(http.get(&url).send().await.unwrap(), 5000)
            .await
            .unwrap();
        assert_eq!(body.len(), 5000);
        // Chunked and over it: cut off.
        let url = serve_once(vec![b'a'; 5001], None).await;
        let err = read_capped(http.get(&url).send().await.unwrap(), 5000)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { limit: 5000 }), "{err}");
        // A Content-Length over it: refused before reading.
        let url = serve_once(vec![b'a'; 9000], Some(9000)).await;
        let err = read_capped(http.get(&url).send().await.unwrap(), 5000)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_transport_error_names_the_url_without_its_credentials() {
        // Nothing listens on port 9 of loopback.
        let http = client(&ClientSettings::default()).unwrap();
        let err = http
            .get("http://alice:s3cret@127.0.0.1:9/api")
            .send()
            .await
            .unwrap_err();
        let text = describe(&err);
        assert!(
            !text.contains("s3cret") && !text.contains("alice"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:9"), "{text}");
    }

    #[test]
    fn keys_over_plain_http_to_another_host_are_noticed() {
        for url in [
            "http://qdrant:6334",
            "http://10.0.0.5:6334/",
            "HTTP://owui.example",
            "http://user:pw@owui.example:8080/x",
            "http://[2001:db8::1]:11434",
            // A loopback name in the user part is not the host.
            "http://localhost@owui.example/",
        ] {
            assert!(sends_in_clear(url), "{url}");
        }
        for url in [
            "https://qdrant.example:6334",
            "http://127.0.0.1:6334",
            "http://127.8.9.10:8080",
            "http://localhost:6334",
            "http://LOCALHOST/",
            "http://[::1]:6334",
            "http://a:b@127.0.0.1:11434/",
        ] {
            assert!(!sends_in_clear(url), "{url}");
        }
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client(&ClientSettings {
            ca_file: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, HttpError::CaPem { .. }), "{err}");
        let err = client(&ClientSettings {
            ca_file: Some(dir.path().join("missing.pem")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, HttpError::CaFile { .. }), "{err}");
    }
}
