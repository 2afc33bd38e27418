//! The server-side request forgery guard of webhook URLs: only `https://` unless
//! `--webhook-allow-http`; no loopback, private, link-local, unique-local, shared (CGNAT),
//! unspecified, multicast, broadcast, documentation or cloud-metadata addresses (v4, v6, and
//! v4 inside v6) unless `--webhook-allow-private`. Checked when a webhook is registered and again
//! at every delivery: the delivery client resolves names through [`GuardedResolver`], which
//! refuses an answer holding any refused address, so the address checked is the address
//! connected to (no window for DNS rebinding); an address literal in the URL is checked before
//! sending.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the guard lets through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `http://` URLs too (`--webhook-allow-http`).
    pub allow_http: bool,
    /// Loopback and private addresses too (`--webhook-allow-private`).
    pub allow_private: bool,
}

/// Why an address is refused (`None`: a public address).
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_kind(v4),
            None => v6_kind(v6),
        },
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() || a >= 240 => "reserved",
        _ if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) => "reserved",
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "reserved",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_multicast() => "multicast",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xfe00 == 0xfc00 => "unique-local",
        _ if first & 0xffc0 == 0xfec0 => "site-local",
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => "cloud metadata",
        _ if first == 0x2001 && ip.segments()[1] == 0x0db8 => "documentation",
        // 64:ff9b::/96 (NAT64) and ::/96 (v4-compatible) carry a v4 address.
        _ if (first == 0x64 && ip.segments()[1] == 0xff9b) || ip.segments()[..6] == [0; 6] => {
            let o = ip.octets();
            return v4_kind(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
        }
        _ => return None,
    })
}

/// The URL, parsed, if its scheme and (for an address literal) its address pass `policy`.
/// Names are resolved and checked by [`check_resolved`] / [`GuardedResolver`].
pub fn check_url(url: &str, policy: Policy) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(
                "only https:// webhook URLs are accepted (the gateway runs without --webhook-allow-http)".into(),
            )
        }
        other => return Err(format!("the scheme {other}:// is not accepted: use https://")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a webhook URL cannot hold credentials".into());
    }
    match parsed.host() {
        None => return Err("the URL has no host".into()),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy)?,
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy)?,
        Some(url::Host::Domain(_)) => {}
    }
    Ok(parsed)
}

fn check_ip(ip: IpAddr, policy: Policy) -> Result<(), String> {
    match refused_kind(ip) {
        Some(kind) if !policy.allow_private => Err(format!(
            "the webhook URL's address {ip} is {kind}: refused (the gateway runs without --webhook-allow-private)"
        )),
        _ => Ok(()),
    }
}

/// Resolves the URL's host (a name) and checks every address it has.
pub async fn check_resolved(url: &reqwest::Url, policy: Policy) -> Result<(), String> {
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    resolve_checked(name, policy).await.map(|_| ())
}

/// The addresses of `name`, all of them allowed by `policy`, or why not.
async fn resolve_checked(name: &str, policy: Policy) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
        .await
        .map_err(|e| format!("the webhook URL's host {name} does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("the webhook URL's host {name} has no address"));
    }
    for a in &addrs {
        check_ip(a.ip(), policy).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(addrs)
}

/// The delivery client's resolver: the addresses it answers are the ones checked.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub Policy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_checked(&name, policy).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<&'static str> {
        refused_kind(s.parse().unwrap())
    }

    #[test]
    fn refuses_every_non_public_range() {
        for (addr, want) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("fd00:ec2::254", "unique-local"),
        ] {
            assert_eq!(kind(addr), Some(want), "{addr}");
        }
    }

    #[test]
    fn lets_public_addresses_through() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "20.190.128.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(addr), None, "{addr}");
        }
    }

    #[test]
    fn urls_by_scheme_and_literal() {
        let strict = Policy::default();
        assert!(check_url("https://example.com/hook", strict).is_ok());
        assert!(check_url("http://example.com/hook", strict)
            .unwrap_err()
            .contains("--webhook-allow-http"));
        assert!(check_url("ftp://example.com/", strict).is_err());
        assert!(check_url("https://user:pw@example.com/", strict).is_err());
        let e = check_url("https://127.0.0.1:8443/", strict).unwrap_err();
        assert!(e.contains("loopback") && e.contains("--webhook-allow-private"), "{e}");
        assert!(check_url("https://[::ffff:7f00:1]/", strict)
            .unwrap_err()
            .contains("loopback"));
        let open = Policy {
            allow_http: true,
            allow_private: true,
        };
        assert!(check_url("http://127.0.0.1:8080/", open).is_ok());
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked() {
        let strict = Policy::default();
        let url = check_url("https://localhost/hook", strict).unwrap();
        let e = check_resolved(&url, strict).await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let open = Policy {
            allow_private: true,
            ..strict
        };
        assert!(check_resolved(&url, open).await.is_ok());
    }
}
