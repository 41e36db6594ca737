//! Health and Docker v1 endpoints outside the /v2/ API.

mod support;

use support::*;

#[tokio::test]
async fn health_live_and_v1_ping_answer_200_empty_json() {
    let reg = start();
    let api = Api::new(&reg);
    for path in ["/health/live", "/v1/_ping"] {
        let r = api.get(path).await;
        r.expect(200);
        assert_eq!(r.json(), serde_json::json!({}), "{path}: {r:?}");
    }
}
