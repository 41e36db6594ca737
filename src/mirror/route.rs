//! Which upstream a request is for, and under which local name its content is cached.
//!
//! In order: a name matching `proxy.local` is an ordinary local repository; containerd's
//! `?ns=<host>` picks a configured upstream (only ever a key: an unknown `ns` is an error,
//! never a host to dial); a leading host component (`ghcr.io/owner/image`: it contains a
//! `.` or is `localhost`) picks the upstream configured for that host; anything else goes to
//! `proxy.remoteurl`, or, without one, is a local repository.
//!
//! Content of the default upstream is cached under the requested name; content of another
//! upstream under `<host>/<name>` (with `:` of a port written `-`, as names allow no `:`), so
//! two upstreams never share a local repository, whether asked by `ns` or by prefix.

use std::sync::Arc;

use super::upstream::Upstream;
use crate::auth::rules::Glob;
use crate::oci::RepositoryName;
use crate::registry::RegistryError;
use crate::registry::context::RequestContext;

/// Where a repository's requests go.
pub enum Route {
    /// An ordinary local repository.
    Local,
    /// A mirrored repository.
    Proxied {
        /// The upstream.
        upstream: Arc<Upstream>,
        /// The local repository its content is cached in.
        local: RepositoryName,
        /// Its name upstream.
        remote: String,
    },
}

/// The routing table.
pub struct Routes {
    default: Option<Arc<Upstream>>,
    by_host: Vec<(String, Arc<Upstream>)>,
    local: Vec<Glob>,
}

impl Routes {
    /// A table over the default upstream, the upstreams by host and the local patterns.
    pub fn new(
        default: Option<Arc<Upstream>>,
        by_host: Vec<(String, Arc<Upstream>)>,
        local: Vec<Glob>,
    ) -> Self {
        Routes {
            default,
            by_host,
            local,
        }
    }

    /// The upstream configured for `host`: by `proxy.upstreams` first, else the default
    /// upstream when `host` names it (`docker.io` names Docker Hub).
    fn lookup(&self, host: &str) -> Option<&Arc<Upstream>> {
        let host = host.to_ascii_lowercase();
        let is = |u: &Upstream| {
            u.host() == host
                || (u.is_docker_hub() && matches!(host.as_str(), "docker.io" | "index.docker.io"))
        };
        self.by_host
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, u)| u)
            .or_else(|| self.by_host.iter().map(|(_, u)| u).find(|u| is(u)))
            .or_else(|| self.default.as_ref().filter(|u| is(u)))
    }

    fn is_default(&self, upstream: &Arc<Upstream>) -> bool {
        self.default
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, upstream))
    }

    /// Where requests for `name` go.
    pub fn route(
        &self,
        cx: &RequestContext,
        name: &RepositoryName,
    ) -> Result<Route, RegistryError> {
        let full = name.as_str();
        if self.local.iter().any(|g| g.matches(full)) {
            return Ok(Route::Local);
        }
        if let Some(ns) = &cx.namespace {
            let upstream = self.lookup(ns).ok_or_else(|| {
                RegistryError::UpstreamUnknown(format!(
                    "ns={ns}: this mirror is not configured for that registry (proxy.remoteurl, proxy.upstreams)"
                ))
            })?;
            let local = if self.is_default(upstream) {
                name.clone()
            } else {
                let prefix = ns.to_ascii_lowercase().replace(':', "-");
                RepositoryName::parse(&format!("{prefix}/{full}"))?
            };
            return Ok(Route::Proxied {
                remote: upstream.remote_name(full),
                upstream: upstream.clone(),
                local,
            });
        }
        if let Some((first, rest)) = full.split_once('/')
            && (first.contains('.') || first == "localhost")
        {
            if let Some(upstream) = self.lookup(first) {
                return Ok(Route::Proxied {
                    remote: upstream.remote_name(rest),
                    upstream: upstream.clone(),
                    local: name.clone(),
                });
            }
            if self.default.is_some() {
                return Err(RegistryError::UpstreamUnknown(format!(
                    "{first} (the first component of {full}): this mirror is not configured for that registry (proxy.upstreams)"
                )));
            }
        }
        match &self.default {
            Some(upstream) => Ok(Route::Proxied {
                remote: upstream.remote_name(full),
                upstream: upstream.clone(),
                local: name.clone(),
            }),
            None => Ok(Route::Local),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::stats::Stats;
    use crate::mirror::upstream::UpstreamSettings;
    use crate::registry::context::Access;

    fn upstream(url: &str) -> Arc<Upstream> {
        Arc::new(
            Upstream::new(
                UpstreamSettings::new(url, None, None).unwrap(),
                Arc::new(Stats::default()),
            )
            .unwrap(),
        )
    }

    fn cx(ns: Option<&str>) -> RequestContext {
        let mut cx = RequestContext::anonymous("t".into(), Access::Base);
        cx.namespace = ns.map(str::to_string);
        cx
    }

    fn show(r: Result<Route, RegistryError>) -> String {
        match r {
            Ok(Route::Local) => "local".into(),
            Ok(Route::Proxied {
                upstream,
                local,
                remote,
            }) => format!("{} {local} {remote}", upstream.host()),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn routes() {
        let routes = Routes::new(
            Some(upstream("https://docker.io")),
            vec![
                ("ghcr.io".into(), upstream("https://ghcr.io")),
                ("reg.example:5000".into(), upstream("http://127.0.0.1:5000")),
            ],
            vec![Glob::new("team/**").unwrap()],
        );
        let name = |n: &str| RepositoryName::parse(n).unwrap();
        let r = |ns: Option<&str>, n: &str| show(routes.route(&cx(ns), &name(n)));
        assert_eq!(
            r(None, "alpine"),
            "registry-1.docker.io alpine library/alpine"
        );
        assert_eq!(r(None, "team/app"), "local");
        assert_eq!(r(None, "ghcr.io/o/i"), "ghcr.io ghcr.io/o/i o/i");
        assert_eq!(r(Some("ghcr.io"), "o/i"), "ghcr.io ghcr.io/o/i o/i");
        assert_eq!(
            r(Some("docker.io"), "alpine"),
            "registry-1.docker.io alpine library/alpine"
        );
        assert_eq!(
            r(Some("reg.example:5000"), "app"),
            "127.0.0.1:5000 reg.example-5000/app app"
        );
        assert!(
            r(Some("evil.example"), "x")
                .starts_with("error: no upstream configured for ns=evil.example")
        );
        assert!(r(None, "quay.io/x").starts_with("error:"));
        let local_only = Routes::new(
            None,
            vec![("ghcr.io".into(), upstream("https://ghcr.io"))],
            vec![],
        );
        assert_eq!(
            show(local_only.route(&cx(None), &name("mine/app"))),
            "local"
        );
        assert_eq!(
            show(local_only.route(&cx(None), &name("my.team/app"))),
            "local"
        );
    }
}
