//! One test suite for both `Store` implementations: the in-process store always, Redis when
//! PORTCULLIS_TEST_REDIS_URL is set.

use std::sync::Arc;
use std::time::Duration;

use portcullis::store::{LockoutAttempt, LockoutPolicy, MemoryStore, Quota, RedisStore, Store};

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

fn policy(threshold: u32, ip_threshold: u32) -> LockoutPolicy {
    LockoutPolicy {
        threshold,
        ip_threshold,
        window: Duration::from_secs(60),
        base: Duration::from_millis(300),
        max: Duration::from_secs(10),
        memory: Duration::from_secs(3600),
    }
}

/// The account and address numbers of an admitted attempt, and the periods of what it set.
fn admitted(attempt: LockoutAttempt) -> (u32, u32, Option<Duration>, Option<Duration>) {
    match attempt {
        LockoutAttempt::Admitted {
            account,
            ip,
            lock,
            block,
        } => (account, ip, lock.map(|h| h.period), block.map(|h| h.period)),
        LockoutAttempt::Refused => panic!("refused"),
    }
}

#[tokio::test]
async fn lockout_counts_attempts_and_locks_at_the_threshold_with_growing_periods() {
    let p = policy(3, 100);
    let base = p.base;
    for (name, store) in stores().await {
        let attempt = || store.lockout_attempt("user-1", "192.0.2.1", &p);
        assert_eq!(
            admitted(attempt().await.unwrap()),
            (1, 1, None, None),
            "{name}"
        );
        assert_eq!(
            admitted(attempt().await.unwrap()),
            (2, 2, None, None),
            "{name}"
        );
        assert_eq!(
            admitted(attempt().await.unwrap()),
            (3, 3, Some(base), None),
            "{name}: the attempt reaching the threshold locks at once"
        );
        for _ in 0..3 {
            assert_eq!(attempt().await.unwrap(), LockoutAttempt::Refused, "{name}");
        }
        // Other accounts are not affected.
        assert_eq!(
            admitted(
                store
                    .lockout_attempt("user-2", "192.0.2.1", &p)
                    .await
                    .unwrap()
            ),
            (1, 1, None, None),
            "{name}"
        );
        tokio::time::sleep(base + Duration::from_millis(100)).await;
        // The lock ran out; the count started again, refused attempts were not counted, and
        // the next lock is twice as long.
        assert_eq!(
            admitted(attempt().await.unwrap()),
            (1, 4, None, None),
            "{name}"
        );
        attempt().await.unwrap();
        assert_eq!(
            admitted(attempt().await.unwrap()).2,
            Some(base * 2),
            "{name}"
        );
    }
}

#[tokio::test]
async fn lockout_blocks_an_address_for_that_account_only() {
    let p = policy(100, 2);
    for (name, store) in stores().await {
        let from = |subject: &'static str, ip: &'static str| {
            let store = store.clone();
            async move { store.lockout_attempt(subject, ip, &p).await.unwrap() }
        };
        assert_eq!(admitted(from("u", "a").await), (1, 1, None, None), "{name}");
        assert_eq!(
            admitted(from("u", "a").await),
            (2, 2, None, Some(p.base)),
            "{name}"
        );
        assert_eq!(from("u", "a").await, LockoutAttempt::Refused, "{name}");
        assert_eq!(
            admitted(from("u", "b").await),
            (3, 1, None, None),
            "{name}: another address"
        );
        assert_eq!(
            admitted(from("v", "a").await),
            (1, 1, None, None),
            "{name}: another account"
        );
        tokio::time::sleep(p.base + Duration::from_millis(100)).await;
        assert_eq!(
            admitted(from("u", "a").await),
            (4, 1, None, None),
            "{name}: block over"
        );
    }
}

#[tokio::test]
async fn lockout_attempts_are_counted_atomically() {
    let p = policy(10, 100);
    for (name, store) in stores().await {
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.lockout_attempt("hot", "192.0.2.1", &p).await })
            })
            .collect();
        let mut numbers = Vec::new();
        let mut locks = 0;
        for task in tasks {
            if let LockoutAttempt::Admitted { account, lock, .. } = task.await.unwrap().unwrap() {
                numbers.push(account);
                locks += usize::from(lock.is_some());
            }
        }
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=10).collect::<Vec<u32>>(), "{name}");
        assert_eq!(locks, 1, "{name}");
    }
}

#[tokio::test]
async fn a_success_forgives_and_lifts_only_the_lock_its_attempt_set() {
    let p = policy(3, 2);
    for (name, store) in stores().await {
        let attempt = || store.lockout_attempt("u", "192.0.2.1", &p);
        let first = attempt().await.unwrap();
        // The second attempt blocks the address, the third (from elsewhere) locks the account.
        let second = attempt().await.unwrap();
        let third = store.lockout_attempt("u", "192.0.2.2", &p).await.unwrap();
        assert_eq!(admitted(third).2, Some(p.base), "{name}");
        // The first attempt was right: the counts are forgiven, but what others set stays.
        store
            .lockout_succeeded("u", "192.0.2.1", &first)
            .await
            .unwrap();
        assert_eq!(attempt().await.unwrap(), LockoutAttempt::Refused, "{name}");
        // The third was right too: its lock is lifted. The second: its block is.
        store
            .lockout_succeeded("u", "192.0.2.2", &third)
            .await
            .unwrap();
        assert_eq!(attempt().await.unwrap(), LockoutAttempt::Refused, "{name}");
        store
            .lockout_succeeded("u", "192.0.2.1", &second)
            .await
            .unwrap();
        assert_eq!(
            admitted(attempt().await.unwrap()),
            (1, 1, None, None),
            "{name}: forgiven"
        );
        // A lifted lock does not double the next one.
        attempt().await.unwrap();
        assert_eq!(
            admitted(store.lockout_attempt("u", "192.0.2.3", &p).await.unwrap()).2,
            Some(p.base),
            "{name}"
        );
    }
}

#[tokio::test]
async fn clearing_a_lockout_lifts_every_lock_and_block_and_forgets_past_locks() {
    let p = policy(3, 2);
    for (name, store) in stores().await {
        for ip in ["a", "a", "b"] {
            store.lockout_attempt("u", ip, &p).await.unwrap();
        }
        for ip in ["a", "b", "c"] {
            assert_eq!(
                store.lockout_attempt("u", ip, &p).await.unwrap(),
                LockoutAttempt::Refused,
                "{name}"
            );
        }
        store.lockout_clear("u").await.unwrap();
        assert_eq!(
            admitted(store.lockout_attempt("u", "a", &p).await.unwrap()),
            (1, 1, None, None),
            "{name}"
        );
        store.lockout_attempt("u", "b", &p).await.unwrap();
        assert_eq!(
            admitted(store.lockout_attempt("u", "c", &p).await.unwrap()).2,
            Some(p.base),
            "{name}: the lock count was forgotten too"
        );
        store.lockout_clear("nobody-at-all").await.unwrap();
    }
}

#[tokio::test]
async fn lockout_counts_expire_with_their_window() {
    let p = LockoutPolicy {
        window: Duration::from_millis(300),
        ..policy(3, 3)
    };
    for (name, store) in stores().await {
        for n in 1..=2 {
            assert_eq!(
                admitted(store.lockout_attempt("u", "a", &p).await.unwrap()).0,
                n,
                "{name}"
            );
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            admitted(store.lockout_attempt("u", "a", &p).await.unwrap()),
            (1, 1, None, None),
            "{name}: window over"
        );
    }
}

#[tokio::test]
async fn rate_limit_all_counts_each_budget_in_turn_and_stops_at_the_first_refusal() {
    let one = Quota {
        limit: 1,
        period: Duration::from_secs(60),
    };
    let five = Quota {
        limit: 5,
        period: Duration::from_secs(60),
    };
    for (name, store) in stores().await {
        let both = store
            .rate_limit_all(&[("addr", one), ("client", five)])
            .await
            .unwrap();
        assert_eq!(both.len(), 2, "{name}: both counted");
        assert!(both.iter().all(|d| d.allowed), "{name}: {both:?}");
        assert_eq!(both[1].remaining, 4, "{name}");

        let refused = store
            .rate_limit_all(&[("addr", one), ("client", five)])
            .await
            .unwrap();
        assert_eq!(refused.len(), 1, "{name}: stops at the refusal");
        assert!(!refused[0].allowed, "{name}");
        assert!(refused[0].retry_after_ms > 0, "{name}");

        // The refused request did not spend the second budget: one use of five so far.
        let client = store.rate_limit("client", five).await.unwrap();
        assert!(client.allowed, "{name}");
        assert_eq!(client.remaining, 3, "{name}: {client:?}");

        assert!(
            store.rate_limit_all(&[]).await.unwrap().is_empty(),
            "{name}"
        );
    }
}
