//! `awskms://` references as cosign accepts them, parsed: pure, so that
//! validation can check a reference without depending on the resolver
//! (`kms`), which reads policy definitions.

/// A parsed `awskms://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKmsRef {
    /// `host:port` from the reference; `None`: the SDK's endpoint.
    pub endpoint: Option<String>,
    /// Key ID, key ARN, `alias/NAME` or alias ARN, as `GetPublicKey` takes it.
    pub key_id: String,
}

fn is_key_uuid(s: &str) -> bool {
    // A key ID (UUID), or a multi-Region key ID (`mrk-` + 32 hex digits).
    if let Some(hex) = s.strip_prefix("mrk-") {
        return hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_alias(s: &str) -> bool {
    s.strip_prefix("alias/").is_some_and(|name| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
    })
}

/// Parses `awskms://[ENDPOINT]/KEY` as cosign accepts it.
pub fn parse_aws(reference: &str) -> Result<AwsKmsRef, String> {
    let rest = reference
        .strip_prefix("awskms://")
        .ok_or_else(|| "not an awskms:// reference".to_string())?;
    let (endpoint, key) = rest.split_once('/').ok_or_else(|| {
        "malformed AWS KMS reference, expected awskms://[ENDPOINT]/KEY".to_string()
    })?;
    let endpoint = if endpoint.is_empty() {
        None
    } else {
        let port_ok = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!(
                "malformed endpoint {endpoint:?}, expected host:port"
            ));
        }
        Some(endpoint.to_string())
    };
    let valid = if let Some(arn) = key.strip_prefix("arn:") {
        let parts: Vec<&str> = arn.splitn(5, ':').collect();
        parts.len() == 5
            && matches!(parts[0], "aws" | "aws-us-gov" | "aws-cn")
            && parts[1] == "kms"
            && !parts[2].is_empty()
            && parts[2]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && parts[3].len() == 12
            && parts[3].chars().all(|c| c.is_ascii_digit())
            && (parts[4].strip_prefix("key/").is_some_and(is_key_uuid) || is_alias(parts[4]))
    } else {
        is_key_uuid(key) || is_alias(key)
    };
    if !valid {
        return Err(format!(
            "{key:?} is not a key ID, key ARN, alias/NAME or alias ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        ));
    }
    Ok(AwsKmsRef {
        endpoint,
        key_id: key.to_string(),
    })
}
