-- wrk script of the benchmark: cycles through the requests listed in a file, one per line,
--
--     METHOD <tab> PATH <tab> TOKEN or - <tab> JSON BODY or -
--
-- sending "Authorization: Bearer TOKEN" when there is a token. In a body, {uniq} becomes
-- a string unique across the run (run id, wrk thread, counter): fresh client_ids, emails.
-- At the end it prints one line "BENCH_JSON {...}" with the counts and latency
-- percentiles (microseconds) that bench/run.py reads.
--
--     wrk -t1 -c16 -d30s --latency -s bench/lua/requests.lua http://127.0.0.1:8765 -- FILE RUNID

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_no", thread_count)
end

function init(args)
  local runid = args[2] or "0"
  prefix = runid .. "-" .. thread_no .. "-"
  counter = 0
  items = {}
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    if method then
      local headers = {}
      if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
      if body == "-" then body = nil else headers["Content-Type"] = "application/json" end
      local item = {method = method, path = path, headers = headers, body = body}
      if not (body and body:find("{uniq}", 1, true)) then
        item.raw = wrk.format(method, path, headers, body) -- the same bytes every time
      end
      items[#items + 1] = item
    end
  end
  assert(#items > 0, "no requests in " .. args[1])
  -- Threads start at different places in the list.
  index = (thread_no * 7919) % #items
end

function request()
  index = index % #items + 1
  local item = items[index]
  if item.raw then return item.raw end
  counter = counter + 1
  local body = item.body:gsub("{uniq}", prefix .. counter)
  return wrk.format(item.method, item.path, item.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
