//! Request metrics: by route (the typed endpoint `http::classify` found) and status code.
//! The access-log layer (`http/logging.rs`) records a request when its response body ends
//! or is cut, with the bytes it counted and the full duration; `classify` marks the uploads
//! whose body is being received.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::route::{Endpoint, UploadStep};

/// What a request asked for, as a label: the endpoint's kind without its parameters.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Route {
    /// `GET`/`HEAD /v2/`.
    Base,
    /// `GET /v2/_catalog`.
    Catalog,
    /// `GET /v1/search`.
    Search,
    /// `GET /v2/<name>/tags/list`.
    Tags,
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers,
    /// `GET /v2/<name>/manifests/<reference>`.
    ManifestGet,
    /// `HEAD /v2/<name>/manifests/<reference>`.
    ManifestHead,
    /// `PUT /v2/<name>/manifests/<reference>`.
    ManifestPut,
    /// `DELETE /v2/<name>/manifests/<reference>`.
    ManifestDelete,
    /// `GET /v2/<name>/blobs/<digest>`.
    BlobGet,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    BlobHead,
    /// `DELETE /v2/<name>/blobs/<digest>`.
    BlobDelete,
    /// `POST /v2/<name>/blobs/uploads/`.
    UploadStart,
    /// `GET /v2/<name>/blobs/uploads/<id>`.
    UploadStatus,
    /// `PATCH /v2/<name>/blobs/uploads/<id>`.
    UploadChunk,
    /// `PUT /v2/<name>/blobs/uploads/<id>`.
    UploadFinish,
    /// `DELETE /v2/<name>/blobs/uploads/<id>`.
    UploadCancel,
    /// Anything else: paths that name no endpoint, methods an endpoint does not take,
    /// invalid parameters, the health checks, the token endpoint.
    Other,
}

impl Route {
    /// Every route, in the order of [`Route::index`].
    pub const ALL: [Route; 18] = [
        Route::Base,
        Route::Catalog,
        Route::Search,
        Route::Tags,
        Route::Referrers,
        Route::ManifestGet,
        Route::ManifestHead,
        Route::ManifestPut,
        Route::ManifestDelete,
        Route::BlobGet,
        Route::BlobHead,
        Route::BlobDelete,
        Route::UploadStart,
        Route::UploadStatus,
        Route::UploadChunk,
        Route::UploadFinish,
        Route::UploadCancel,
        Route::Other,
    ];

    /// The route of `endpoint`.
    pub fn of(endpoint: &Endpoint) -> Route {
        match endpoint {
            Endpoint::Base => Route::Base,
            Endpoint::Catalog => Route::Catalog,
            Endpoint::Search => Route::Search,
            Endpoint::Tags { .. } => Route::Tags,
            Endpoint::Referrers { .. } => Route::Referrers,
            Endpoint::GetManifest { head: false, .. } => Route::ManifestGet,
            Endpoint::GetManifest { head: true, .. } => Route::ManifestHead,
            Endpoint::PutManifest { .. } => Route::ManifestPut,
            Endpoint::DeleteManifest { .. } => Route::ManifestDelete,
            Endpoint::GetBlob { head: false, .. } => Route::BlobGet,
            Endpoint::GetBlob { head: true, .. } => Route::BlobHead,
            Endpoint::DeleteBlob { .. } => Route::BlobDelete,
            Endpoint::StartUpload { .. } => Route::UploadStart,
            Endpoint::Upload { step, .. } => match step {
                UploadStep::Status => Route::UploadStatus,
                UploadStep::Chunk => Route::UploadChunk,
                UploadStep::Finish => Route::UploadFinish,
                UploadStep::Cancel => Route::UploadCancel,
            },
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Search => "search",
            Route::Tags => "tags",
            Route::Referrers => "referrers",
            Route::ManifestGet => "manifest_get",
            Route::ManifestHead => "manifest_head",
            Route::ManifestPut => "manifest_put",
            Route::ManifestDelete => "manifest_delete",
            Route::BlobGet => "blob_get",
            Route::BlobHead => "blob_head",
            Route::BlobDelete => "blob_delete",
            Route::UploadStart => "upload_start",
            Route::UploadStatus => "upload_status",
            Route::UploadChunk => "upload_chunk",
            Route::UploadFinish => "upload_finish",
            Route::UploadCancel => "upload_cancel",
            Route::Other => "other",
        }
    }

    /// Its position in [`Route::ALL`].
    fn index(self) -> usize {
        self as usize
    }

    /// Whether a request of this route brings a blob's bytes (an upload in progress while
    /// it runs).
    fn uploads(self) -> bool {
        matches!(
            self,
            Route::UploadStart | Route::UploadChunk | Route::UploadFinish
        )
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    code: u16,
}

/// Request durations: from 1 ms to 5 minutes (a large blob's transfer).
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The request metrics. The per-route series exist from the start (indexed by route, no
/// lookup per request); only the count by route and status code is looked up.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Vec<Histogram>,
    received: Vec<Counter>,
    sent: Vec<Counter>,
    uploads: Gauge,
}

impl HttpMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ferry_http_requests",
            "Requests answered, by route and status code",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "ferry_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response body, by route",
            duration.clone(),
        );
        let received = Family::<RouteLabels, Counter>::default();
        registry.register(
            "ferry_http_received_bytes",
            "Request body bytes received, by route",
            received.clone(),
        );
        let sent = Family::<RouteLabels, Counter>::default();
        registry.register(
            "ferry_http_sent_bytes",
            "Response body bytes sent, by route (up to where a response was cut)",
            sent.clone(),
        );
        let uploads = Gauge::default();
        registry.register(
            "ferry_uploads_in_progress",
            "Upload requests (POST, PATCH, PUT of a blob upload) being received or committed",
            uploads.clone(),
        );
        let each = |family: &Family<RouteLabels, Counter>| {
            Route::ALL
                .iter()
                .map(|&route| family.get_or_create_owned(&RouteLabels { route }))
                .collect::<Vec<_>>()
        };
        HttpMetrics {
            duration: Route::ALL
                .iter()
                .map(|&route| duration.get_or_create_owned(&RouteLabels { route }))
                .collect(),
            received: each(&received),
            sent: each(&sent),
            requests,
            uploads,
        }
    }

    /// Records one finished (or cut) request.
    pub fn record(&self, route: Route, code: u16, received: u64, sent: u64, took: Duration) {
        let i = route.index();
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        self.duration[i].observe(took.as_secs_f64());
        self.received[i].inc_by(received);
        self.sent[i].inc_by(sent);
    }

    /// For a request of `route` that brings a blob's bytes: counts it as an upload in
    /// progress until the guard drops.
    pub fn upload_in_progress(&self, route: Route) -> Option<UploadInProgress> {
        route.uploads().then(|| {
            self.uploads.inc();
            UploadInProgress(self.uploads.clone())
        })
    }
}

/// An upload in progress, counted until dropped.
#[derive(Debug)]
pub struct UploadInProgress(Gauge);

impl Drop for UploadInProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_indexed_in_order() {
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(route.index(), i, "{route:?}");
        }
    }
}
