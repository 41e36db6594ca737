//! The pages, as maud templates: HTML checked at compile time, and every value inserted
//! with `(...)` escaped (maud escapes `& < > " '` in text and attributes alike); nothing is
//! ever inserted unescaped but the fixed markup here. No script: a pull command is a
//! read-only text field to select and copy.

use maud::{DOCTYPE, Markup, html};

use super::format::{bytes, short_digest, time};
use crate::metadata::Referrer;
use crate::metadata::browse::{RepositorySummary, Totals};
use crate::registry::browse::{DescriptorView, Listed, ManifestView, Reclaim, TagView};

/// Who is looking, for the header.
pub struct Viewer {
    /// The logged-in user, if any.
    pub user: Option<String>,
    /// Whether logging in is possible (htpasswd).
    pub can_log_in: bool,
}

/// The frame around every page.
pub fn layout(title: &str, viewer: &Viewer, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Ferry" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header {
                    a.brand href="/ui/" { "Ferry" }
                    nav {
                        a href="/ui/" { "Repositories" }
                        a href="/ui/storage" { "Storage" }
                        @if let Some(user) = &viewer.user {
                            span.who { "Signed in as " (user) }
                        } @else if viewer.can_log_in {
                            a href="/ui/login" { "Log in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The list of repositories.
pub fn repositories(list: &Listed<RepositorySummary>, q: &str, n: u32) -> Markup {
    html! {
        h1 { "Repositories" }
        form.search method="get" action="/ui/" {
            input type="search" name="q" value=(q) placeholder="Search repositories" aria-label="Search repositories";
            button type="submit" { "Search" }
        }
        @if list.items.is_empty() {
            p.empty { @if q.is_empty() { "No repositories." } @else { "No repository matches " q { (q) } "." } }
        } @else {
            table {
                thead { tr { th { "Repository" } th.num { "Tags" } th { "Last push" } } }
                tbody {
                    @for r in &list.items {
                        tr {
                            td { a href=(repo_url(&r.name)) { (r.name) } }
                            td.num { (r.tags) }
                            td { (r.last_push.map(time).unwrap_or_else(|| "-".to_string())) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &list.next {
            p.pager { a rel="next" href=(with_query("/ui/", &[("q", q), ("last", next), ("n", &n.to_string())])) { "Next page →" } }
        }
    }
}

/// A repository's tags.
pub fn tags(
    name: &str,
    list: &Listed<TagView>,
    host: &str,
    can_delete: bool,
    n: u32,
    first_page: bool,
) -> Markup {
    html! {
        p.crumbs { a href="/ui/" { "Repositories" } " / " }
        h1 { (name) }
        @if list.items.is_empty() {
            p.empty { @if first_page { "No tags." } @else { "No more tags." } }
        } @else {
            table {
                thead { tr { th { "Tag" } th { "Platforms" } th.num { "Size" } th { "Pushed" } th { "Digest" } th { "Pull" } @if can_delete { th {} } } }
                tbody {
                    @for t in &list.items {
                        tr {
                            td.tag { (t.tag.name) }
                            td { @for p in &t.platforms { span.platform { (p) } " " } }
                            td.num { (bytes(t.tag.content_size)) }
                            td { (time(t.tag.updated_at)) }
                            td { a.digest href=(manifest_url(name, &t.tag.digest.to_string())) title=(t.tag.digest) { (short_digest(&t.tag.digest.to_string())) } }
                            td { input.pull type="text" readonly value=(format!("docker pull {host}/{name}:{}", t.tag.name)) aria-label="pull command"; }
                            @if can_delete {
                                td { a.danger href=(with_query(&format!("/ui/r/{name}/-/delete"), &[("reference", &t.tag.name)])) { "Delete" } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &list.next {
            p.pager { a rel="next" href=(with_query(&repo_url(name), &[("last", next), ("n", &n.to_string())])) { "Next page →" } }
        }
    }
}

/// A manifest or index.
pub fn manifest(name: &str, view: &ManifestView, host: &str, can_delete: bool) -> Markup {
    let digest = view.manifest.digest.to_string();
    html! {
        p.crumbs { a href="/ui/" { "Repositories" } " / " a href=(repo_url(name)) { (name) } " / " }
        h1 { (if view.is_index { "Index " } else { "Manifest " }) code { (short_digest(&digest)) } }
        dl.facts {
            dt { "Repository" } dd { (name) }
            dt { "Digest" } dd { code { (digest) } }
            dt { "Media type" } dd { (view.manifest.media_type) }
            dt { "Size" } dd { (bytes(view.manifest.payload.len() as u64)) }
            dt { "Pushed" } dd { (time(view.facts.pushed_at)) }
            dt { "Tags" } dd {
                @if view.facts.tags.is_empty() { "(untagged)" }
                @for t in &view.facts.tags { span.tag { (t) } " " }
            }
            @if let Some(a) = &view.artifact_type { dt { "Artifact type" } dd { (a) } }
            @if let Some(s) = &view.subject {
                dt { "Subject" } dd { a href=(manifest_url(name, s)) { code { (s) } } }
            }
            dt { "Pull" } dd { input.pull type="text" readonly value=(format!("docker pull {host}/{name}@{digest}")) aria-label="pull command"; }
        }
        @if !view.annotations.is_empty() {
            h2 { "Annotations" }
            (pairs(&view.annotations))
        }
        @if view.is_index {
            h2 { "Manifests" }
            (descriptors(name, &view.entries, true))
        } @else {
            @if let Some(config) = &view.config_descriptor {
                h2 { "Configuration" }
                (descriptors(name, std::slice::from_ref(config), false))
            }
            @if let Some(note) = &view.config_note { p.note { (note) } }
            @if let Some(c) = &view.config {
                dl.facts {
                    @if let Some(p) = &c.platform { dt { "Platform" } dd { (p) } }
                    @if let Some(created) = &c.created { dt { "Created" } dd { (created) } }
                    @if !c.entrypoint.is_empty() { dt { "Entrypoint" } dd { code { (json_list(&c.entrypoint)) } } }
                    @if !c.cmd.is_empty() { dt { "Cmd" } dd { code { (json_list(&c.cmd)) } } }
                    @if let Some(w) = &c.working_dir { dt { "Working directory" } dd { code { (w) } } }
                    @if let Some(u) = &c.user { dt { "User" } dd { code { (u) } } }
                }
                @if !c.env.is_empty() {
                    h3 { "Environment" }
                    ul.env { @for e in &c.env { li { code { (e) } } } }
                }
                @if !c.labels.is_empty() {
                    h3 { "Labels" }
                    (pairs(&c.labels))
                }
                @if !c.history.is_empty() {
                    h3 { "History" }
                    table {
                        thead { tr { th { "Created" } th { "Command" } } }
                        tbody {
                            @for (created, by, empty) in &c.history {
                                tr class=[empty.then_some("empty-layer")] { td { (created) } td { code { (by) } } }
                            }
                        }
                    }
                }
            }
            h2 { "Layers" }
            (descriptors(name, &view.entries, false))
            p { "Total: " (bytes(view.entries.iter().map(|d| d.size).sum())) }
        }
        h2 { "Referrers" }
        (referrers(name, &view.referrers))
        @if can_delete {
            p { a.danger href=(with_query(&format!("/ui/r/{name}/-/delete"), &[("reference", &digest)])) { "Delete this manifest…" } }
        }
    }
}

fn descriptors(name: &str, entries: &[DescriptorView], linked: bool) -> Markup {
    html! {
        @if entries.is_empty() { p.empty { "None." } } @else {
            table {
                thead { tr { th { "Digest" } @if linked { th { "Platform" } } th.num { "Size" } th { "Media type" } } }
                tbody {
                    @for d in entries {
                        tr {
                            td {
                                @if linked { a href=(manifest_url(name, &d.digest)) { code { (d.digest) } } }
                                @else { code { (d.digest) } }
                            }
                            @if linked { td { (d.platform.clone().unwrap_or_default()) } }
                            td.num { (bytes(d.size)) }
                            td { (d.media_type) }
                        }
                    }
                }
            }
        }
    }
}

fn referrers(name: &str, list: &[Referrer]) -> Markup {
    html! {
        @if list.is_empty() { p.empty { "No signatures, SBOMs or attestations refer to it." } } @else {
            table {
                thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                tbody {
                    @for r in list {
                        tr {
                            td { (r.artifact_type.clone().unwrap_or_else(|| "-".to_string())) }
                            td { a href=(manifest_url(name, &r.digest)) { code { (short_digest(&r.digest)) } } }
                            td.num { (bytes(r.size)) }
                            td { (r.media_type) }
                        }
                    }
                }
            }
        }
    }
}

fn pairs(list: &[(String, String)]) -> Markup {
    html! {
        table.pairs { tbody { @for (k, v) in list { tr { th { (k) } td { (v) } } } } }
    }
}

/// Asks before deleting.
pub fn confirm_delete(name: &str, reference: &str, is_digest: bool) -> Markup {
    html! {
        p.crumbs { a href="/ui/" { "Repositories" } " / " a href=(repo_url(name)) { (name) } " / " }
        h1 { "Delete " (if is_digest { "manifest" } else { "tag" }) "?" }
        p {
            @if is_digest {
                "The manifest " code { (reference) } " and every tag pointing at it will be removed from "
                strong { (name) } ". Its layers stay until the garbage collector runs."
            } @else {
                "The tag " code { (reference) } " will be removed from " strong { (name) }
                ". The manifest stays, under its digest and any other tag."
            }
        }
        form method="post" action=(format!("/ui/r/{name}/-/delete")) {
            input type="hidden" name="reference" value=(reference);
            button.danger type="submit" { "Delete" }
            " "
            a href=(repo_url(name)) { "Cancel" }
        }
    }
}

/// After a delete.
pub fn deleted(name: &str, reference: &str) -> Markup {
    html! {
        h1 { "Deleted" }
        p { code { (reference) } " was deleted from " (name) "." }
        p { a href=(repo_url(name)) { "Back to " (name) } }
    }
}

/// Registry-wide totals.
pub fn storage(t: &Totals) -> Markup {
    html! {
        h1 { "Storage" }
        dl.facts {
            dt { "Stored" } dd { strong { (bytes(t.blob_bytes)) } " in " (t.blobs) " blobs (each counted once)" }
            dt { "Repositories" } dd { (t.repositories) }
            dt { "Manifests" } dd { (t.manifests) }
            dt { "Tags" } dd { (t.tags) }
        }
        p { a href="/ui/storage/gc" { "What would the garbage collector reclaim?" } " (computed when asked)" }
    }
}

/// What `ferry-gc` would remove.
pub fn gc(plain: &Reclaim, untagged: &Reclaim, grace: &str) -> Markup {
    let row = |label: &str, r: &Reclaim| {
        html! {
            tr {
                td { (label) }
                td.num { strong { (bytes(r.bytes)) } }
                td.num { (r.blobs) }
                td.num { (r.manifests) }
                td.num { (r.links) }
                td.num { (r.repositories) }
            }
        }
    };
    html! {
        p.crumbs { a href="/ui/storage" { "Storage" } " / " }
        h1 { "Garbage collection estimate" }
        p { "What " code { "ferry-gc" } " would remove if it ran now, with its default grace window (" (grace) "): the collector's own plan over a snapshot of the metadata." }
        table {
            thead { tr { th { "Run" } th.num { "Reclaimed" } th.num { "Blobs" } th.num { "Manifests" } th.num { "Links" } th.num { "Repositories" } } }
            tbody {
                (row("ferry-gc", plain))
                (row("ferry-gc --delete-untagged", untagged))
            }
        }
    }
}

/// An error page.
pub fn error(message: &str) -> Markup {
    html! {
        h1 { "Sorry" }
        p.error { (message) }
        p { a href="/ui/" { "Repositories" } }
    }
}

fn repo_url(name: &str) -> String {
    format!("/ui/r/{name}")
}

fn manifest_url(name: &str, digest: &str) -> String {
    // A digest written in a manifest is shown as is; only a well-formed one makes a link
    // that the manifest page accepts, and the path is percent-encoded either way.
    let digest: String =
        percent_encoding::utf8_percent_encode(digest, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%3A", ":");
    format!("/ui/r/{name}/-/manifest/{digest}")
}

fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    match serde_urlencoded::to_string(&pairs) {
        Ok(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_default()
}
