//! One test suite for both `Store` implementations: the in-process store always, Redis when
//! PORTCULLIS_TEST_REDIS_URL is set.

use std::sync::Arc;
use std::time::Duration;

use portcullis::store::{MemoryStore, Quota, RedisStore, Store};

async fn stores() -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> =
        vec![("memory", Arc::new(MemoryStore::new()))];
    if let Ok(url) = std::env::var("PORTCULLIS_TEST_REDIS_URL") {
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        stores.push((
            "redis",
            Arc::new(RedisStore::connect(&url, &prefix).await.expect("redis")),
        ));
    }
    stores
}

#[tokio::test]
async fn deny_list_entries_expire() {
    for (name, store) in stores().await {
        assert!(!store.any_denied(&["a", "b"]).await.unwrap(), "{name}");
        store.deny("a", Duration::from_millis(300)).await.unwrap();
        assert!(store.any_denied(&["a"]).await.unwrap(), "{name}");
        assert!(
            store.any_denied(&["x", "a"]).await.unwrap(),
            "{name}: any of several"
        );
        assert!(!store.any_denied(&["b"]).await.unwrap(), "{name}");
        assert!(!store.any_denied(&[]).await.unwrap(), "{name}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!store.any_denied(&["a"]).await.unwrap(), "{name}: expired");
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn rate_limit_allows_the_quota_then_refuses_with_retry_after() {
    let quota = Quota {
        limit: 3,
        period: Duration::from_secs(60),
    };
    for (name, store) in stores().await {
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let d = store.rate_limit("ip:1", quota).await.unwrap();
            assert!(d.allowed, "{name}");
            remaining.push(d.remaining);
        }
        assert_eq!(remaining, vec![2, 1, 0], "{name}");
        let refused = store.rate_limit("ip:1", quota).await.unwrap();
        assert!(!refused.allowed, "{name}");
        assert!(
            refused.retry_after_ms > 0 && refused.retry_after_ms <= 20_000,
            "{name}: {refused:?}"
        );
        // Other keys are independent.
        assert!(
            store.rate_limit("ip:2", quota).await.unwrap().allowed,
            "{name}"
        );
    }
}

#[tokio::test]
async fn rate_limit_is_atomic_under_concurrency() {
    let quota = Quota {
        limit: 10,
        period: Duration::from_secs(60),
    };
    for (name, store) in stores().await {
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.rate_limit("hot", quota).await.unwrap().allowed
            }));
        }
        let mut allowed = 0;
        for t in tasks {
            if t.await.unwrap() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10, "{name}");
    }
}

#[tokio::test]
async fn leases_exclude_other_holders_grow_fences_and_expire() {
    for (name, store) in stores().await {
        let ttl = Duration::from_millis(300);
        let f1 = store
            .try_lock("duty", "a", ttl)
            .await
            .unwrap()
            .expect("a takes it");
        assert_eq!(
            store.try_lock("duty", "b", ttl).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.try_lock("duty", "a", ttl).await.unwrap(),
            Some(f1),
            "{name}: renew"
        );
        assert!(!store.unlock("duty", "b").await.unwrap(), "{name}: not b's");
        assert!(store.unlock("duty", "a").await.unwrap(), "{name}");
        let f2 = store
            .try_lock("duty", "b", ttl)
            .await
            .unwrap()
            .expect("free again");
        assert!(f2 > f1, "{name}: fencing token grows");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let f3 = store
            .try_lock("duty", "c", ttl)
            .await
            .unwrap()
            .expect("lease expired");
        assert!(f3 > f2, "{name}");
    }
}

#[tokio::test]
async fn counters_count_within_a_window_and_can_be_removed() {
    for (name, store) in stores().await {
        let ttl = Duration::from_millis(300);
        assert_eq!(store.incr("fails", ttl).await.unwrap(), 1, "{name}");
        assert_eq!(store.incr("fails", ttl).await.unwrap(), 2, "{name}");
        assert_eq!(store.incr("other", ttl).await.unwrap(), 1, "{name}");
        store.remove(&["fails"]).await.unwrap();
        assert_eq!(
            store.incr("fails", ttl).await.unwrap(),
            1,
            "{name}: removed"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.incr("fails", ttl).await.unwrap(),
            1,
            "{name}: window over"
        );
        store.deny("flag", Duration::from_secs(60)).await.unwrap();
        store.remove(&["flag"]).await.unwrap();
        assert!(
            !store.any_denied(&["flag"]).await.unwrap(),
            "{name}: deny entry removed"
        );
    }
}
