-- wrk script: every request sets a different stock level on one of this thread's SKUs, so each
-- request appends exactly one event (a repeated level would be a no-op).
-- Needs TOKEN in the environment.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "PUT"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end

function request()
  counter = counter + 1
  -- 64 SKUs per thread: concurrent connections mostly touch different streams.
  local sku = string.format("BENCH-%d-%d", tid, counter % 64)
  local body = string.format('{"sku":"%s","quantity":%d}', sku, counter)
  return wrk.format(nil, "/inventory", nil, body)
end

function response(status, headers, body)
  if status ~= 204 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
