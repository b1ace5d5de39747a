//! How to reach an AWS account: from ohf's config or IBM's `awsprov_config.json` as it is.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// A secret that never prints.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One AWS provider instance's connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    /// A named profile of the shared config and credentials files.
    #[serde(default)]
    pub profile: Option<String>,
    /// A credentials file in place of `~/.aws/credentials`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Static keys, for emulators; real accounts use the standard credential chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Another endpoint, such as a LocalStack-compatible emulator.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// An HTTP proxy every AWS call goes through (`http://host:port`).
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Attempts the SDK makes per call, counting the first.
    #[serde(default = "default_attempts")]
    pub request_attempts: u32,
    /// Machines pending longer are terminated and reported failed.
    #[serde(default)]
    pub instance_pending_timeout_secs: Option<u32>,
}

fn default_connect_timeout() -> u64 {
    10_000
}
fn default_attempts() -> u32 {
    3
}

impl AwsConfig {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            profile: None,
            credentials_file: None,
            access_key_id: None,
            secret_access_key: None,
            endpoint_url: None,
            proxy_url: None,
            connect_timeout_ms: default_connect_timeout(),
            request_attempts: default_attempts(),
            instance_pending_timeout_secs: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.region.trim().is_empty() {
            return Err("region must not be empty".into());
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("access_key_id and secret_access_key go together".into());
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("endpoint_url '{url}' must start with http:// or https://"));
        }
        if let Some(url) = &self.proxy_url {
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.trim_end_matches('/').is_empty()) {
                return Err(format!("proxy_url '{url}' must be http://host:port"));
            }
        }
        if self.request_attempts == 0 {
            return Err("request_attempts must be at least 1".into());
        }
        Ok(())
    }

    /// Reads IBM's `awsprov_config.json`: AWS_REGION, AWS_CREDENTIAL_FILE, AWS_ENDPOINT_URL,
    /// AWS_CONNECTION_TIMEOUT_MS, AWS_REQUEST_RETRY_ATTEMPTS, AWS_INSTANCE_PENDING_TIMEOUT_SEC.
    /// AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS and _INTERVAL are accepted and not needed: a failed
    /// describe is made again at the next reconcile cycle. AWS_PROXY_HOST with AWS_PROXY_PORT
    /// (default 80) routes every call through that HTTP proxy.
    pub fn from_awsprov_config(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        let obj = doc.as_object().ok_or_else(|| format!("{}: must be a JSON object", path.display()))?;
        let text_of = |k: &str| {
            obj.get(k).and_then(|v| v.as_str().map(String::from).or_else(|| v.as_u64().map(|n| n.to_string())))
        };
        let number = |k: &str| -> Result<Option<u64>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| format!("{k} must be a whole number")),
                Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| format!("{k} must be a whole number")),
                Some(_) => Err(format!("{k} must be a whole number")),
            }
        };
        let region = text_of("AWS_REGION").ok_or_else(|| format!("{}: AWS_REGION is required", path.display()))?;
        let mut config = Self::new(region);
        match (text_of("AWS_PROXY_HOST").map(|h| h.trim().to_owned()), number("AWS_PROXY_PORT")?) {
            (Some(host), port) if !host.is_empty() => {
                let port = port.unwrap_or(80);
                if !(1..=65_535).contains(&port) {
                    return Err("AWS_PROXY_PORT must be from 1 to 65535".into());
                }
                let host = host.trim_start_matches("http://").trim_end_matches('/');
                config.proxy_url = Some(format!("http://{host}:{port}"));
            }
            (_, Some(_)) => return Err("AWS_PROXY_PORT needs AWS_PROXY_HOST".into()),
            _ => {}
        }
        config.credentials_file = text_of("AWS_CREDENTIAL_FILE").map(PathBuf::from);
        config.endpoint_url = text_of("AWS_ENDPOINT_URL");
        if let Some(ms) = number("AWS_CONNECTION_TIMEOUT_MS")? {
            config.connect_timeout_ms = ms;
        }
        if let Some(n) = number("AWS_REQUEST_RETRY_ATTEMPTS")? {
            // IBM counts retries; the SDK counts attempts.
            config.request_attempts = n as u32 + 1;
        }
        config.instance_pending_timeout_secs = number("AWS_INSTANCE_PENDING_TIMEOUT_SEC")?.map(|n| n as u32);
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ibm_config_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("awsprov_config.json");
        std::fs::write(
            &p,
            r#"{"AWS_REGION": "us-east-1", "AWS_CREDENTIAL_FILE": "/opt/creds", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
                "AWS_CONNECTION_TIMEOUT_MS": 5000, "AWS_REQUEST_RETRY_ATTEMPTS": "2", "AWS_INSTANCE_PENDING_TIMEOUT_SEC": 900,
                "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS": 3, "AWS_DESCRIBE_REQUEST_INTERVAL": 500}"#,
        )
        .unwrap();
        let c = AwsConfig::from_awsprov_config(&p).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.credentials_file.as_deref(), Some(Path::new("/opt/creds")));
        assert_eq!((c.connect_timeout_ms, c.request_attempts, c.instance_pending_timeout_secs), (5000, 3, Some(900)));
        std::fs::write(&p, r#"{"AWS_REGION": "us-east-1", "AWS_PROXY_HOST": "proxy.corp", "AWS_PROXY_PORT": "3128"}"#)
            .unwrap();
        assert_eq!(AwsConfig::from_awsprov_config(&p).unwrap().proxy_url.as_deref(), Some("http://proxy.corp:3128"));
        std::fs::write(&p, r#"{"AWS_REGION": "us-east-1", "AWS_PROXY_PORT": 3128}"#).unwrap();
        assert!(AwsConfig::from_awsprov_config(&p).unwrap_err().contains("AWS_PROXY_HOST"));
        std::fs::write(&p, r#"{"AWS_REGION": "us-east-1", "AWS_PROXY_HOST": "p", "AWS_PROXY_PORT": 70000}"#).unwrap();
        assert!(AwsConfig::from_awsprov_config(&p).unwrap_err().contains("AWS_PROXY_PORT"));
        std::fs::write(&p, r#"{"AWS_ENDPOINT_URL": "x"}"#).unwrap();
        assert!(AwsConfig::from_awsprov_config(&p).unwrap_err().contains("AWS_REGION"));
        std::fs::write(&p, r#"{"AWS_REGION": "us-east-1", "AWS_CONNECTION_TIMEOUT_MS": "soon"}"#).unwrap();
        assert!(AwsConfig::from_awsprov_config(&p).unwrap_err().contains("AWS_CONNECTION_TIMEOUT_MS"));
    }

    #[test]
    fn secrets_never_print() {
        let mut c = AwsConfig::new("us-east-1");
        c.access_key_id = Some("AKIA".into());
        c.secret_access_key = Some(Secret::new("very-secret"));
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
