//! The Redis [`Store`]: shared by every instance. Each operation is one round trip; the
//! read-modify-write ones (rate limiting, lockout, leases) are Lua scripts, so they are atomic.
//! An account's lockout state is one hash (`lockout:<subject>`): `n`/`nw` the account's count
//! and its window start, `lock` lock-until, `locks`/`ls` the locks that double the next one and
//! since when, and per address bucket `ic:<ip>`/`iw:<ip>` its count and window start and
//! `ib:<ip>` blocked-until; times in milliseconds of the server's clock.
//! The connection manager reconnects by itself after Redis restarts.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::contract::{
    Hold, LockoutAttempt, LockoutPolicy, Quota, RateDecision, Store, StoreError,
};

/// GCRA on the server's clock (`TIME`), so instances with skewed clocks agree, for each key
/// in turn, stopping at the first refusal (the keys after it are not counted).
/// KEYS[i] = counter i; ARGV[2i-1], ARGV[2i] = its period ms and limit.
/// Returns {allowed, remaining, retry_ms, reset_ms} for each key counted, one after another.
const RATE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[2 * i - 1])
  local limit = tonumber(ARGV[2 * i])
  local interval = math.max(math.floor(period / limit), 1)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local ahead = new_tat - now
  if ahead > period then
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, ahead - period)
    table.insert(out, tat - now)
    return out
  end
  redis.call('SET', key, new_tat, 'PX', ahead)
  table.insert(out, 1)
  table.insert(out, math.floor((period - ahead) / interval))
  table.insert(out, 0)
  table.insert(out, ahead)
end
return out
";

/// KEYS[1] = the account's lockout hash; ARGV = address bucket, threshold, ip threshold, window
/// ms, base ms, max ms, memory ms, retention ms. See `Store::lockout_attempt`.
/// Returns {admitted, account count, ip count, lock ms, lock until, block ms, block until}.
const LOCKOUT_ATTEMPT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ip = ARGV[1]
local threshold, ip_threshold = tonumber(ARGV[2]), tonumber(ARGV[3])
local window, base = tonumber(ARGV[4]), tonumber(ARGV[5])
local max, memory = tonumber(ARGV[6]), tonumber(ARGV[7])
local f = redis.call('HMGET', KEYS[1], 'lock', 'ib:' .. ip, 'n', 'nw', 'ic:' .. ip, 'iw:' .. ip,
  'locks', 'ls')
local function num(v) return tonumber(v) or 0 end
if num(f[1]) > now or num(f[2]) > now then
  return {0, 0, 0, 0, 0, 0, 0}
end
local n, nw, ic, iw = num(f[3]), num(f[4]), num(f[5]), num(f[6])
if n == 0 or now - nw >= window then n, nw = 0, now end
if ic == 0 or now - iw >= window then ic, iw = 0, now end
n, ic = n + 1, ic + 1
local account, at_ip = n, ic
local lock_ms, lock_until, block_ms, block_until = 0, 0, 0, 0
if n >= threshold then
  local locks, ls = num(f[7]), num(f[8])
  if locks == 0 or now - ls >= memory then locks, ls = 0, now end
  locks = locks + 1
  lock_ms = math.min(base * 2 ^ (locks - 1), max)
  lock_until = now + lock_ms
  redis.call('HSET', KEYS[1], 'lock', lock_until, 'locks', locks, 'ls', ls)
  n = 0
end
if ic >= ip_threshold then
  block_ms, block_until = base, now + base
  redis.call('HSET', KEYS[1], 'ib:' .. ip, block_until)
  ic = 0
end
redis.call('HSET', KEYS[1], 'n', n, 'nw', nw, 'ic:' .. ip, ic, 'iw:' .. ip, iw)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {1, account, at_ip, lock_ms, lock_until, block_ms, block_until}
";

/// What `LOCKOUT_ATTEMPT_SCRIPT` returns.
type AttemptReply = (u8, u32, u32, u64, u64, u64, u64);

/// KEYS[1] = the account's lockout hash; ARGV = address bucket, lock-until the attempt set
/// (0: none), block-until it set (0: none). See `Store::lockout_succeeded`.
const LOCKOUT_SUCCEEDED_SCRIPT: &str = r"
local ip = ARGV[1]
redis.call('HDEL', KEYS[1], 'n', 'nw', 'ic:' .. ip, 'iw:' .. ip)
local lock = tonumber(ARGV[2])
if lock > 0 and tonumber(redis.call('HGET', KEYS[1], 'lock')) == lock then
  redis.call('HDEL', KEYS[1], 'lock')
  local locks = tonumber(redis.call('HGET', KEYS[1], 'locks')) or 0
  if locks > 1 then
    redis.call('HSET', KEYS[1], 'locks', locks - 1)
  else
    redis.call('HDEL', KEYS[1], 'locks', 'ls')
  end
end
local block = tonumber(ARGV[3])
if block > 0 and tonumber(redis.call('HGET', KEYS[1], 'ib:' .. ip)) == block then
  redis.call('HDEL', KEYS[1], 'ib:' .. ip)
end
return 1
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
    lockout_attempt: Script,
    lockout_succeeded: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The decisions of [`RATE_SCRIPT`]'s reply for `budgets` keys: four values per key counted,
/// every key allowed, or the keys up to the first refusal. Any other reply is an error (the
/// limiter then counts on this instance), never a budget taken as allowed.
fn rate_decisions(flat: &[u64], budgets: usize) -> Result<Vec<RateDecision>, StoreError> {
    let (chunks, rest) = flat.as_chunks::<4>();
    let decisions: Vec<RateDecision> = chunks
        .iter()
        .map(
            |&[allowed, remaining, retry_after_ms, reset_ms]| RateDecision {
                allowed: allowed == 1,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                retry_after_ms,
                reset_ms,
            },
        )
        .collect();
    let whole = rest.is_empty() && decisions.len() <= budgets;
    let complete = decisions.len() == budgets || decisions.last().is_some_and(|d| !d.allowed);
    if decisions.is_empty() || !whole || !complete {
        return Err(StoreError::Unavailable(format!(
            "unexpected rate-limit reply of {} values for {budgets} keys",
            flat.len()
        )));
    }
    Ok(decisions)
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
            lockout_attempt: Script::new(LOCKOUT_ATTEMPT_SCRIPT),
            lockout_succeeded: Script::new(LOCKOUT_SUCCEEDED_SCRIPT),
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

    async fn rate_limit_all(
        &self,
        budgets: &[(&str, Quota)],
    ) -> Result<Vec<RateDecision>, StoreError> {
        if budgets.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.rate.prepare_invoke();
        for &(key, quota) in budgets {
            invocation
                .key(self.key("rate", key))
                .arg(millis(quota.period))
                .arg(quota.limit.max(1));
        }
        let flat: Vec<u64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        rate_decisions(&flat, budgets.len())
    }

    async fn lockout_attempt(
        &self,
        subject: &str,
        ip: &str,
        policy: &LockoutPolicy,
    ) -> Result<LockoutAttempt, StoreError> {
        let mut conn = self.conn.clone();
        let (admitted, account, at_ip, lock_ms, lock_until, block_ms, block_until): AttemptReply =
            self.lockout_attempt
                .key(self.key("lockout", subject))
                .arg(ip)
                .arg(policy.threshold)
                .arg(policy.ip_threshold)
                .arg(millis(policy.window))
                .arg(millis(policy.base))
                .arg(millis(policy.max))
                .arg(millis(policy.memory))
                .arg(millis(policy.retention()))
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        if admitted == 0 {
            return Ok(LockoutAttempt::Refused);
        }
        let hold = |period_ms: u64, until_ms: u64| {
            (until_ms > 0).then(|| Hold {
                period: Duration::from_millis(period_ms),
                until_ms,
            })
        };
        Ok(LockoutAttempt::Admitted {
            account,
            ip: at_ip,
            lock: hold(lock_ms, lock_until),
            block: hold(block_ms, block_until),
        })
    }

    async fn lockout_succeeded(
        &self,
        subject: &str,
        ip: &str,
        attempt: &LockoutAttempt,
    ) -> Result<(), StoreError> {
        let (lock, block) = match attempt {
            LockoutAttempt::Admitted { lock, block, .. } => (*lock, *block),
            LockoutAttempt::Refused => (None, None),
        };
        let mut conn = self.conn.clone();
        let _: u8 = self
            .lockout_succeeded
            .key(self.key("lockout", subject))
            .arg(ip)
            .arg(lock.map_or(0, |h| h.until_ms))
            .arg(block.map_or(0, |h| h.until_ms))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn lockout_clear(&self, subject: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn
            .del(self.key("lockout", subject))
            .await
            .map_err(unavailable)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::rate_decisions;

    #[test]
    fn a_rate_reply_counts_every_key_or_ends_at_a_refusal() {
        let allowed = [1, 9, 0, 100];
        let refused = [0, 0, 50, 100];
        assert_eq!(rate_decisions(&allowed, 1).unwrap().len(), 1);
        let both = [allowed, allowed].concat();
        assert_eq!(rate_decisions(&both, 2).unwrap().len(), 2);
        let stopped = rate_decisions(&refused, 2).unwrap();
        assert!(!stopped[0].allowed);
        // A reply that stops short without a refusal would let the other keys pass uncounted.
        assert!(rate_decisions(&allowed, 2).is_err());
        assert!(rate_decisions(&both, 1).is_err());
        assert!(rate_decisions(&[1, 9, 0], 1).is_err());
        assert!(rate_decisions(&[], 1).is_err());
    }
}
