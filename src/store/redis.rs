//! The Redis [`Store`]: shared by every instance. Each operation is one round trip; the
//! read-modify-write ones (rate limiting, leases) are Lua scripts, so they are atomic.
//! The connection manager reconnects by itself after Redis restarts.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{Quota, RateDecision, Store, StoreError};

/// GCRA on the server's clock (`TIME`), so instances with skewed clocks agree.
/// KEYS[1] = counter; ARGV = period ms, limit. Returns {allowed, remaining, retry_ms, reset_ms}.
const RATE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local interval = math.max(math.floor(period / limit), 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > period then
  return {0, 0, ahead - period, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', ahead)
return {1, math.floor((period - ahead) / interval), 0, ahead}
";

/// KEYS[1] = lease, KEYS[2] = fence counter; ARGV = holder, ttl ms.
/// Returns the fencing token, or false while another holder has the lease.
const LOCK_SCRIPT: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if owner then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
";

/// KEYS[1] = counter; ARGV[1] = ttl ms. INCR, and start the window on the first increment.
const INCR_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`Store`] in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    rate: Script,
    incr: Script,
    lock: Script,
    unlock: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects to `url`; every key is put under `prefix` (e.g. `portcullis:`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            rate: Script::new(RATE_SCRIPT),
            incr: Script::new(INCR_SCRIPT),
            lock: Script::new(LOCK_SCRIPT),
            unlock: Script::new(UNLOCK_SCRIPT),
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Store for RedisStore {
    async fn deny(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .pset_ex(self.key("deny", key), 1u8, millis(ttl))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn any_denied(&self, keys: &[&str]) -> Result<bool, StoreError> {
        if keys.is_empty() {
            return Ok(false);
        }
        let mut conn = self.conn.clone();
        let names: Vec<String> = keys.iter().map(|k| self.key("deny", k)).collect();
        let count: u64 = conn.exists(names).await.map_err(unavailable)?;
        Ok(count > 0)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        self.incr
            .key(self.key("count", key))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn remove(&self, keys: &[&str]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let names: Vec<String> = keys
            .iter()
            .flat_map(|k| [self.key("count", k), self.key("deny", k)])
            .collect();
        let _: u64 = conn.del(names).await.map_err(unavailable)?;
        Ok(())
    }

    async fn rate_limit(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        let mut conn = self.conn.clone();
        let (allowed, remaining, retry_after_ms, reset_ms): (u8, u32, u64, u64) = self
            .rate
            .key(self.key("rate", key))
            .arg(millis(quota.period))
            .arg(quota.limit.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining,
            retry_after_ms,
            reset_ms,
        })
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        self.lock
            .key(self.key("lock", name))
            .key(self.key("fence", name))
            .arg(holder)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let deleted: u32 = self
            .unlock
            .key(self.key("lock", name))
            .arg(holder)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(deleted == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
