//! `/metrics` of the real `sigil serve`, parsed with a strict OpenMetrics
//! parser (`openmetrics-parser`, which passes the OpenMetrics test suite):
//! reviews driven against the real docker-registry give exactly the counts
//! they should, and a thousand distinct images (digests, repositories,
//! registry hosts) add no series beyond the documented label sets.

mod common;

use std::collections::BTreeSet;

use common::served::Served;
use common::*;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use sigil_testkit::{TestKey, TestKeyKind};

struct Scrape(MetricsExposition<OpenMetricsType, OpenMetricsValue>);

impl Scrape {
    async fn of(served: &Served) -> (Scrape, String) {
        let resp = reqwest::get(&served.metrics_url).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = resp.text().await.unwrap();
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{text}"));
        (Scrape(parsed), text)
    }

    /// A counter's or gauge's value, a histogram's count; 0 when the
    /// series does not exist.
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(f) = self.0.families.get(family) else {
            return 0.0;
        };
        f.iter_samples()
            .find(|s| {
                let set = s.get_labelset().unwrap();
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
                    && set.iter().count() == labels.len()
            })
            .map(|s| match &s.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) => g.as_f64(),
                OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
                other => panic!("{family}: {other:?}"),
            })
            .unwrap_or(0.0)
    }

    /// Every series: family and label set.
    fn series(&self) -> BTreeSet<String> {
        self.0
            .families
            .iter()
            .flat_map(|(name, f)| {
                f.iter_samples().map(move |s| {
                    let set = s.get_labelset().unwrap();
                    let mut labels: Vec<String> =
                        set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    format!("{name}{{{}}}", labels.join(","))
                })
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_counted_exactly_and_images_add_no_series() {
    let env = Env::start();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let signed = env.push("acme/signed", "v1").await;
    env.sign("acme/signed", &signed, &k).await;
    let unsigned = env.push("acme/unsigned", "v1").await;
    let addr = env.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(dir.path(), &key_policy("release-signed", "**", &[&k], ""));
    let served = Served::start(
        dir.path(),
        &policies,
        &["--insecure-registry", &addr, "--verify-timeout", "3s"],
    );

    let allowed_image = format!("{addr}/acme/signed@{signed}");
    let denied_image = format!("{addr}/acme/unsigned@{unsigned}");
    assert_eq!(served.review(&allowed_image).await["allowed"], true);
    assert_eq!(served.review(&allowed_image).await["allowed"], true);
    assert_eq!(served.review(&denied_image).await["allowed"], false);
    let bad = served
        .http
        .post(format!("{}/validate", served.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The audit record is written by the audit thread: wait for it.
    let mut scraped = Scrape::of(&served).await;
    for _ in 0..100 {
        if scraped.0.value("sigil_audit_records", &[]) >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        scraped = Scrape::of(&served).await;
    }
    let (m, text) = scraped;
    let pod = |decision| {
        [
            ("kind", "Pod"),
            ("operation", "CREATE"),
            ("decision", decision),
        ]
    };
    assert_eq!(
        m.value("sigil_admission_reviews", &pod("allowed")),
        2.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_admission_reviews", &pod("denied")),
        1.0,
        "{text}"
    );
    let invalid = [
        ("kind", "other"),
        ("operation", "other"),
        ("decision", "invalid"),
    ];
    assert_eq!(m.value("sigil_admission_reviews", &invalid), 1.0, "{text}");
    assert_eq!(
        m.value("sigil_admission_review_duration_seconds", &pod("allowed")),
        2.0,
        "{text}"
    );
    let result = |r| {
        [
            ("policy", "release-signed"),
            ("mode", "enforce"),
            ("result", r),
        ]
    };
    assert_eq!(
        m.value("sigil_policy_results", &result("pass")),
        2.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_policy_results", &result("fail")),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_policy_results", &result("error")),
        0.0,
        "{text}"
    );
    // Two cold verdicts (one signature layer read), one from the cache.
    let lookups = |r| [("cache", "verdicts"), ("result", r)];
    assert_eq!(
        m.value("sigil_cache_lookups", &lookups("miss")),
        2.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_cache_lookups", &lookups("hit")),
        1.0,
        "{text}"
    );
    let layout = [("layout", "legacy_signatures")];
    assert_eq!(
        m.value("sigil_verification_duration_seconds", &layout),
        2.0,
        "{text}"
    );
    // The signed image's `.sig` manifest and layer; the unsigned one's 404.
    let request = |op, status| {
        [
            ("registry", addr.as_str()),
            ("operation", op),
            ("status", status),
        ]
    };
    assert_eq!(
        m.value("sigil_registry_requests", &request("manifest", "2xx")),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_registry_requests", &request("blob", "2xx")),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_registry_requests", &request("manifest", "4xx")),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_policies", &[("ready", "true")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value("sigil_policies", &[("ready", "false")]),
        0.0,
        "{text}"
    );
    // The denial is audited.
    assert_eq!(m.value("sigil_audit_records", &[]), 1.0, "{text}");
    assert!(
        m.value("sigil_cache_bytes", &[("cache", "verdicts")]) > 0.0,
        "{text}"
    );

    // Cardinality: a thousand more images, each a new digest in a new
    // repository, a tenth of them on a registry host of its own (none
    // answers), leave the series as they were, but for registry hosts,
    // which stop at 32. (One unreachable image first, so that its results,
    // `error` and transport errors, are series already.)
    let unreachable = format!("127.0.0.1:1/warm/app@sha256:{:064x}", 0);
    assert_eq!(served.review(&unreachable).await["allowed"], false);
    let (m, _) = Scrape::of(&served).await;
    assert_eq!(m.value("sigil_policy_results", &result("error")), 1.0);
    let before = m.series();
    let mut images = Vec::new();
    for i in 0..1000 {
        let digest = format!("sha256:{:064x}", i + 1);
        images.push(if i % 10 == 0 {
            format!("127.0.0.1:{}/team-{i}/app@{digest}", 1 + i)
        } else {
            format!("{addr}/team-{i}/app@{digest}")
        });
    }
    for chunk in images.chunks(50) {
        let reviews = chunk.iter().map(|image| served.review(image));
        for r in futures::future::join_all(reviews).await {
            assert_eq!(r["allowed"], false, "{r}");
        }
    }
    let (m, text) = Scrape::of(&served).await;
    let after = m.series();
    let hosts: BTreeSet<String> = after
        .iter()
        .filter_map(|s| s.split("registry=").nth(1))
        .map(|s| s.split([',', '}']).next().unwrap().to_string())
        .collect();
    assert_eq!(hosts.len(), 32 + 1, "{hosts:?}");
    assert!(hosts.contains("other"), "{hosts:?}");
    let new: Vec<&String> = after
        .difference(&before)
        .filter(|s| !s.contains("registry="))
        .collect();
    assert!(new.is_empty(), "new series: {new:#?}");
    assert!(
        !text.contains("team-") && !text.contains("sha256:"),
        "an image or digest became a label value:\n{text}"
    );
    assert_eq!(
        m.value("sigil_admission_reviews", &pod("denied")),
        1002.0,
        "{text}"
    );
}
