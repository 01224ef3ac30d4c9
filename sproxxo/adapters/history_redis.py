"""Card history in Redis: the store every Cloud Run instance shares (Memorystore).

Per card three keys, with the card id in a hash tag so a card's keys share a slot:
`sproxxo:h:{<card>}:e`, a sorted set of its recent events (score = event time in ms,
member = the event's canonical text, `sproxxo.history.Event.encode`),
`sproxxo:h:{<card>}:a`, a hash of its aggregates (`n`, `c`, `k<i>`, `l`; all strings), and
`sproxxo:h:{<card>}:p`, its profile (JSON, `sproxxo.history.Profile`).

A batch is ONE round trip (its reply may take `sproxxo.history.call_budget`: the timeout
per 100 events): a Lua script that, event by event, returns the card's state as
it was and then records the event exactly as `sproxxo.history.observe` does (skip a known
transaction id, fold events older than the retention into the aggregates). Scripts run
atomically, so instances scoring the same card concurrently lose no update. The features
are computed in Python from the returned states (`sproxxo.history.features`), the same code
the SQLite store and the offline path use. Integers stay integers (HINCRBY on the strings
the event carries) and coordinates stay the text Python wrote, so nothing is rounded.

Expiry bounds memory: the events key lives `RETENTION_MS` plus a day after the card's last
transaction, the aggregates `aggregates_ttl_days` (the card's running mean and category
counts are forgotten after that long without a transaction).
A batch with several cards needs them on one node (Memorystore's standard tier: one
primary); a Redis Cluster would need one script call per slot.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sproxxo.history import (
    RETENTION_MS,
    CardState,
    CardView,
    Event,
    Profile,
    call_budget,
    features,
    state_from_parts,
)

EVENTS_TTL_SECONDS: Final = RETENTION_MS // 1000 + 86_400

OBSERVE: Final = r"""
local retention, ttl_events, ttl_aggs = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local function parse(member)
  local t, cents, cat, rest = string.match(member, "^(%-?%d+)|(%-?%d+)|(%d+)|(.*)$")
  local key = string.match(rest, "|[^|]*|(.*)$")
  return tonumber(t), cents, cat, key
end
local function later(t1, k1, t2, k2)  -- (t1, k1) > (t2, k2), ties by key rank (SHA-1)
  return t1 > t2 or (t1 == t2 and redis.sha1hex(k1) > redis.sha1hex(k2))
end
local out = {}
for i = 1, #KEYS / 3 do
  local ek, ak, pk = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local t, member, key = tonumber(ARGV[1 + 3 * i]), ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  local members = redis.call("ZRANGE", ek, 0, -1)
  out[i] = {members, redis.call("HGETALL", ak), redis.call("GET", pk) or ""}
  local known = false
  for _, m in ipairs(members) do
    if select(4, parse(m)) == key then known = true break end
  end
  if not known then
    redis.call("ZADD", ek, t, member)
    local newest = tonumber(redis.call("ZRANGE", ek, -1, -1, "WITHSCORES")[2])
    local last = redis.call("HGET", ak, "l")
    local lt, lk, lc, lcat = -math.huge, "", nil, nil
    if last then lt, lc, lcat, lk = parse(last) end
    if lt > newest then newest = lt end
    local below = "(" .. string.format("%d", newest - retention)
    for _, m in ipairs(redis.call("ZRANGEBYSCORE", ek, "-inf", below)) do
      local mt, cents, cat, mk = parse(m)
      redis.call("HINCRBY", ak, "n", 1)
      redis.call("HINCRBY", ak, "c", cents)
      redis.call("HINCRBY", ak, "k" .. cat, 1)
      if later(mt, mk, lt, lk) then
        redis.call("HSET", ak, "l", m)
        lt, lk = mt, mk
      end
    end
    redis.call("ZREMRANGEBYSCORE", ek, "-inf", below)
    redis.call("HSETNX", ak, "n", "0")
  end
  redis.call("EXPIRE", ek, ttl_events)
  redis.call("EXPIRE", ak, ttl_aggs)
end
return out
"""


class RedisHistory:
    """`sproxxo.history.HistoryStore` over Redis (one Lua script call per batch)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 0.05,
        aggregates_ttl_days: float = 400.0,
        prefix: str = "sproxxo:h:",
    ) -> None:

        self._url, self.timeout_seconds = url, timeout_seconds
        self._clients: dict[float, Any] = {}  # by read timeout: a call's `call_budget`
        self._clients_lock = threading.Lock()
        self._client: Any = self._client_for(1)
        self._script: Any = self._client.register_script(OBSERVE)
        self._aggregates_ttl = str(int(aggregates_ttl_days * 86_400))
        self.prefix = prefix

    def _client_for(self, events: int) -> Any:
        """A client whose replies may take `call_budget` of a call of `events` events
        (one per budget, made on first use; connecting keeps the single budget)."""
        import redis

        budget = call_budget(self.timeout_seconds, events)
        with self._clients_lock:  # calls come from several threads
            client = self._clients.get(budget)
            if client is None:
                client = self._clients[budget] = redis.Redis.from_url(
                    self._url, socket_timeout=budget, socket_connect_timeout=self.timeout_seconds
                )
        return client

    def keys(self, card: str) -> tuple[str, str, str]:
        """The card's events, aggregates and profile keys."""
        base = f"{self.prefix}{{{card}}}"
        return f"{base}:e", f"{base}:a", f"{base}:p"

    def observe(self, cards: Sequence[str], events: Sequence[Event]) -> list[CardView]:
        """History features and profile of each event's card (in order), recording the
        events."""
        keys: list[str] = []
        args: list[str | int] = [RETENTION_MS, EVENTS_TTL_SECONDS, self._aggregates_ttl]
        for card, event in zip(cards, events, strict=True):
            keys.extend(self.keys(card))
            args.extend((event.t_ms, event.encode(), event.key))
        states = self._script(keys=keys, args=args, client=self._client_for(len(events)))
        return [
            CardView(features(_state(members, flat), event), Profile.decode(p) if p else None)
            for (members, flat, p), event in zip(states, events, strict=True)
        ]

    def put_profiles(self, profiles: Mapping[str, Profile]) -> None:
        """Load or replace card profiles (kept as long as the aggregates)."""
        pipe = self._client.pipeline(transaction=False)
        for card, profile in profiles.items():
            pipe.set(self.keys(card)[2], profile.encode(), ex=int(self._aggregates_ttl))
        pipe.execute()

    def close(self) -> None:
        """Close the connection pools."""
        for client in self._clients.values():
            client.close()


def _state(members: list[bytes], flat: list[bytes]) -> CardState:
    texts = [m.decode() for m in members]
    pairs = dict(zip(flat[0::2], flat[1::2], strict=True))
    return state_from_parts(texts, {k.decode(): v.decode() for k, v in pairs.items()})
