-- wrk script for `make bench`: POST /v1/cases with a fresh external_id each time.
-- BODY and KEY come from the environment (set by bench/foundation.py).
local body = os.getenv("ENLACE_BENCH_BODY")
local key = os.getenv("ENLACE_BENCH_KEY")
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))

request = function()
  counter = counter + 1
  local payload = string.gsub(body, "__EXTERNAL_ID__", "WRK-" .. thread_tag .. "-" .. counter)
  return wrk.format("POST", "/v1/cases", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, payload)
end
