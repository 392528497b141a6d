-- wrk script for benchmarks/wrk_crosscheck.py: POSTs to /invocations, in order and cycling,
-- the requests of a payload file that the script writes from the load test's own list
-- (`serving.loadtest.load_test_requests`), so wrk and the project's load generator send
-- the same bytes.
--
-- Payload file: per request a line "<Content-Type> <body length in bytes>", the body, "\n".
-- Bodies are raw bytes (some malformed requests are not valid UTF-8 on purpose).
--
--   wrk -t1 -c16 -d20s --latency -s benchmarks/wrk_payloads.lua http://127.0.0.1:PORT -- payloads.bin

local requests = {}
local index = 0

function init(args)
   local path = assert(args[1], "usage: wrk ... -s wrk_payloads.lua URL -- PAYLOAD_FILE")
   local file = assert(io.open(path, "rb"))
   while true do
      local head = file:read("*l")
      if not head then break end
      local content_type, length = head:match("^(%S+) (%d+)$")
      assert(content_type, "bad payload header: " .. head)
      local body = file:read(tonumber(length)) or ""  -- read(0) at the end of the file is nil
      file:read(1)  -- the newline after the body
      -- wrk.format adds Host and, for a body, Content-Length.
      requests[#requests + 1] = wrk.format("POST", "/invocations", { ["Content-Type"] = content_type }, body)
   end
   file:close()
   assert(#requests > 0, "no requests in " .. path)
end

function request()
   index = index % #requests + 1
   return requests[index]
end
