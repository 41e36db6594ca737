//! The OTLP/HTTP protobuf encoding of request spans: an `ExportTraceServiceRequest`
//! (`opentelemetry/proto/collector/trace/v1`) written by hand, field by field. Ferry sends
//! one kind of span with a handful of attributes, which does not need a protobuf code
//! generator and its runtime.

use super::RequestSpan;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from((field << 3) | u32::from(wire)));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, VARINT);
    varint(out, value);
}

/// A nested message: written into a buffer of its own, then as a length-delimited field.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes(out, field, &inner);
}

/// An attribute value (`AnyValue`).
pub enum Value<'a> {
    /// `string_value` (1).
    Text(&'a str),
    /// `int_value` (3).
    Int(i64),
    /// `bool_value` (2).
    Bool(bool),
}

/// A `KeyValue` in `field`.
fn attribute(out: &mut Vec<u8>, field: u32, name: &str, value: &Value<'_>) {
    message(out, field, |kv| {
        bytes(kv, 1, name.as_bytes());
        message(kv, 2, |any| match value {
            Value::Text(s) => bytes(any, 1, s.as_bytes()),
            Value::Bool(b) => uint(any, 2, u64::from(*b)),
            Value::Int(i) => uint(any, 3, *i as u64),
        });
    });
}

/// `SPAN_KIND_SERVER`.
const SERVER: u64 = 2;
/// `STATUS_CODE_ERROR` (a 5xx answer); unset otherwise, as the HTTP conventions say.
const STATUS_ERROR: u64 = 2;

/// The body of `POST /v1/traces` for `spans`, from the service `service`.
pub fn export_request(service: &str, spans: &[RequestSpan]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * spans.len() + 128);
    // ExportTraceServiceRequest.resource_spans (1)
    message(&mut out, 1, |resource_spans| {
        // ResourceSpans.resource (1): Resource.attributes (1)
        message(resource_spans, 1, |resource| {
            attribute(resource, 1, "service.name", &Value::Text(service));
            attribute(
                resource,
                1,
                "service.version",
                &Value::Text(env!("CARGO_PKG_VERSION")),
            );
        });
        // ResourceSpans.scope_spans (2)
        message(resource_spans, 2, |scope_spans| {
            // ScopeSpans.scope (1): InstrumentationScope.name (1)
            message(scope_spans, 1, |scope| bytes(scope, 1, b"ferry"));
            for span in spans {
                // ScopeSpans.spans (2)
                message(scope_spans, 2, |out| span_message(out, span));
            }
        });
    });
    out
}

fn span_message(out: &mut Vec<u8>, span: &RequestSpan) {
    bytes(out, 1, &span.trace_id);
    bytes(out, 2, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        bytes(out, 4, parent);
    }
    bytes(out, 5, span.name().as_bytes());
    uint(out, 6, SERVER);
    fixed64(out, 7, span.start_unix_nanos);
    fixed64(out, 8, span.end_unix_nanos);
    for (name, value) in span.attributes() {
        attribute(out, 9, name, &value);
    }
    if span.status >= 500 {
        // Span.status (15): Status.code (3)
        message(out, 15, |status| uint(status, 3, STATUS_ERROR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        bytes(&mut out, 5, b"hi");
        assert_eq!(out, [0x2a, 2, b'h', b'i']);
        let mut out = Vec::new();
        fixed64(&mut out, 7, 1);
        assert_eq!(out, [0x39, 1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
