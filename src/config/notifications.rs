//! `notifications`: Distribution's endpoints and `events.includereferences`, plus Ferry's
//! `queuelimit`, checked into [`NotificationSettings`]. Disabled endpoints are left out
//! (their queued events are dropped at start); an enabled one needs a `name` (unique) and
//! an http(s) `url`, and its headers must be valid HTTP.

use super::file::{Count, Flag, GoDuration, Notifications, Text, TextList};
use super::{ConfigError, invalid};
use crate::notify::config::{
    DEFAULT_BACKOFF, DEFAULT_QUEUE_LIMIT, DEFAULT_THRESHOLD, DEFAULT_TIMEOUT, EndpointSettings,
    NotificationSettings,
};

/// The checked `notifications` section.
pub(super) fn settings(section: &Notifications) -> Result<NotificationSettings, ConfigError> {
    let mut endpoints: Vec<EndpointSettings> = Vec::new();
    for (i, entry) in section.endpoints.iter().flat_map(|e| &e.0).enumerate() {
        if entry.disabled.is_some_and(|Flag(d)| d) {
            continue;
        }
        let key = |field: &str| format!("notifications.endpoints.{i}.{field}");
        let text = |t: &Option<Text>| {
            t.as_ref()
                .map(|Text(s)| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let name = text(&entry.name).ok_or_else(|| invalid(&key("name"), "must be set"))?;
        if endpoints.iter().any(|e| e.name == name) {
            return Err(invalid(
                &key("name"),
                format!("another endpoint is named {name:?}"),
            ));
        }
        let url = text(&entry.url).ok_or_else(|| invalid(&key("url"), "must be set"))?;
        match url::Url::parse(&url) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.has_host() => {}
            _ => {
                return Err(invalid(
                    &key("url"),
                    format!("expected an http or https URL, got {url:?}"),
                ));
            }
        }
        let mut headers = Vec::new();
        for (name, TextList(values)) in entry.headers.iter().flatten() {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    &key("headers"),
                    format!("{name:?} is not a header name"),
                ));
            }
            for value in values {
                if axum::http::HeaderValue::from_str(value).is_err() {
                    return Err(invalid(
                        &key("headers"),
                        format!("the value of {name} is not a valid header value"),
                    ));
                }
                headers.push((name.clone(), value.clone()));
            }
        }
        // Distribution's defaults for zero or unset values.
        let positive = |d: Option<GoDuration>, default| {
            d.map(|GoDuration(d)| d)
                .filter(|d| !d.is_zero())
                .unwrap_or(default)
        };
        let list =
            |l: &Option<TextList>| l.as_ref().map(|TextList(l)| l.clone()).unwrap_or_default();
        let ignore = entry.ignore.as_ref();
        let mut ignored_media_types = list(&entry.ignoredmediatypes);
        ignored_media_types.extend(ignore.map(|i| list(&i.mediatypes)).unwrap_or_default());
        let ignored_actions = ignore.map(|i| list(&i.actions)).unwrap_or_default();
        for action in &ignored_actions {
            if !["push", "pull", "mount", "delete"].contains(&action.to_ascii_lowercase().as_str())
            {
                return Err(invalid(
                    &key("ignore.actions"),
                    format!("expected push, pull, mount or delete, got {action:?}"),
                ));
            }
        }
        endpoints.push(EndpointSettings {
            name,
            url,
            headers,
            timeout: positive(entry.timeout, DEFAULT_TIMEOUT),
            threshold: entry.threshold.map_or(DEFAULT_THRESHOLD, |Count(n)| n),
            backoff: positive(entry.backoff, DEFAULT_BACKOFF),
            ignored_media_types,
            ignored_actions,
        });
    }
    Ok(NotificationSettings {
        endpoints,
        include_references: section.events.includereferences.is_some_and(|Flag(b)| b),
        queue_limit: section
            .queuelimit
            .map_or(DEFAULT_QUEUE_LIMIT, |Count(n)| u64::from(n)),
    })
}
