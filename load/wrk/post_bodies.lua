-- POST pre-built JSON bodies round-robin; used by `python -m load.bench`.
--   taskset -c 1 wrk -t1 -c64 -d20s --latency -s load/wrk/post_bodies.lua URL -- /predict bodies.jsonl
-- bodies.jsonl: one request body per line (built by load.payloads from the generator).
-- done() prints one line `WRK_JSON {...}` (latencies in microseconds) for the bench to parse.

local bodies = {}
local counter = 0
local path = "/predict"

function init(args)
  path = args[1] or path
  local file = assert(io.open(args[2], "r"), "cannot open bodies file")
  for line in file:lines() do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  file:close()
  assert(#bodies > 0, "no bodies")
  counter = math.random(#bodies)
end

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, bodies[counter])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
