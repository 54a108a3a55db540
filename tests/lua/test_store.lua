-- test_store.lua: the rendezvous store on 127.0.0.1: values, add/check/delete/wait
-- semantics, timeouts naming the key and address, unreachable and busy ports, liveness.
local H = require "harness"
local ms = require "moonseg"
local Store = ms.dist.Store

local srv = Store.server { host = "127.0.0.1", port = 0 }
local port = srv:port()
local addr = "127.0.0.1:" .. port
local a = Store.connect { host = "127.0.0.1", port = port, timeout = 5 }
local b = Store.connect { host = "127.0.0.1", port = port, timeout = 5 }

-- Runs a Lua snippet in a child luajit (bounded by timeout) and returns its output.
local function child(code)
  local p = io.popen("timeout -s KILL 20 luajit -e '" .. code .. "' 2>&1")
  return p
end

H.case("server picks a free port", function()
  assert(port > 0 and port < 65536, "port " .. port)
end)

H.case("set / get values between clients", function()
  a:set("k1", "hello")
  H.eq(b:get("k1"), "hello")
  a:set("k1", "bye") -- overwrite
  H.eq(b:get("k1"), "bye")
  local bin = "a\0b\255c"
  b:set("bin", bin)
  H.eq(a:get("bin"), bin, "binary-safe values")
  a:set("empty", "")
  H.eq(b:get("empty"), "")
  a:set("num", 42)
  H.eq(b:get("num"), "42")
  local big = string.rep("xyz", 400000)
  a:set("big", big)
  H.eq(#b:get("big"), #big, "1.2 MB value")
  H.eq(b:get("big") == big, true)
end)

H.case("add counts and reads back as a decimal string", function()
  H.eq(a:add("ctr", 5), 5, "absent key starts at 0")
  H.eq(b:add("ctr", -2), 3)
  H.eq(a:add("ctr", 1e12), 1e12 + 3, "64-bit counter")
  H.eq(b:get("ctr"), tostring(1e12 + 3):gsub("%.0$", ""), "decimal string")
  H.eq(a:add("ctr2"), 1, "default delta 1")
end)

H.case("check and delete", function()
  a:set("c1", "x")
  H.eq(b:check({ "c1" }), true)
  H.eq(b:check({ "c1", "c2" }), false)
  H.eq(b:check("nope"), false)
  H.eq(b:delete("c1"), true)
  H.eq(b:delete("c1"), false, "second delete finds nothing")
  H.eq(a:check("c1"), false)
end)

H.case("wait returns at once for present keys and wakes on a set from another process", function()
  a:set("w1", "1")
  a:wait({ "w1" }, 1)
  local p = child(string.format([[local s = require("moonseg").dist.Store.connect{host = "127.0.0.1", port = %d, timeout = 10}
    s:wait("ping", 15); s:set("pong", s:get("ping") .. "!"); io.write("child done")]], port))
  a:set("ping", "hi")
  H.eq(a:get("pong", 15), "hi!", "value set by the child after it saw ping")
  H.eq(p:read("*a"), "child done")
  p:close()
end)

H.case("wait and get time out naming the key, the address and the time", function()
  local t0 = ms.time()
  H.raises(function() a:wait({ "w1", "never" }, 0.3) end, "'never'", addr, "300 ms", "wait")
  local dt = ms.time() - t0
  assert(dt >= 0.29, "gave up after " .. dt .. " s, before the 0.3 s timeout")
  H.within(dt, 0.3, "wait")
  H.raises(function() b:get("missing_key", 0.2) end, "'missing_key'", addr, "200 ms", "get")
  -- the clients still work after a timeout
  a:set("after", "ok")
  H.eq(b:get("after"), "ok")
end)

H.case("connecting where nothing listens fails within the timeout", function()
  local tmp = Store.server { host = "127.0.0.1", port = 0 }
  local closed = tmp:port()
  tmp:stop()
  local t0 = ms.time()
  H.raises(function() Store.connect { host = "127.0.0.1", port = closed, timeout = 0.5 } end,
    "127.0.0.1:" .. closed, "refused")
  local dt = ms.time() - t0
  H.within(dt, 0.5, "connect")
  H.raises(function() Store.connect { host = "127.0.0.1", port = 0 } end, "port 0 out of range")
  H.raises(function() Store.connect { host = "no-such-host.invalid", port = 1, timeout = 0.2 } end,
    "no-such-host.invalid")
end)

H.case("a server on a busy port fails naming the port", function()
  H.raises(function() Store.server { host = "127.0.0.1", port = port } end, "127.0.0.1:" .. port,
    "address already in use")
  H.raises(function() Store.server { host = "127.0.0.1", port = 70000 } end, "port 70000 out of range")
  H.raises(function() Store.server { host = "not an address", port = 0 } end, "not an address")
end)

H.case("liveness: a rank whose process dies is reported dead, a clean exit is not", function()
  a:start_heartbeat(0, 0.05)
  H.raises(function() a:start_heartbeat(0, 0.05) end, "already running")
  local c = Store.connect { host = "127.0.0.1", port = port, timeout = 5 }
  c:start_heartbeat(1, 0.05)
  H.same_list(b:dead_ranks(3, 5), {}, "nobody dead yet (rank 2 never started)")
  c:close() -- says goodbye
  -- rank 2 starts beating and its process exits without closing (as a crash would)
  local p = child(string.format([[local s = require("moonseg").dist.Store.connect{host = "127.0.0.1", port = %d, timeout = 10}
    s:start_heartbeat(2, 0.05); s:set("r2_up", "1"); os.exit(0)]], port))
  p:read("*a")
  p:close()
  H.eq(b:get("r2_up", 5), "1")
  -- the server sees the dropped connection: poll (bounded) until it has processed it
  local dead = {}
  for _ = 1, 100 do
    dead = b:dead_ranks(3, 5)
    if #dead > 0 then break end
    pcall(b.wait, b, "never_set", 0.02)
  end
  H.same_list(dead, { 2 }, "dead ranks")
  -- staleness: rank 3 says hello, then sends no beat (10 s interval) while alive
  local q = child(string.format([[local s = require("moonseg").dist.Store.connect{host = "127.0.0.1", port = %d, timeout = 10}
    s:start_heartbeat(3, 10); s:set("r3_up", "1"); s:wait("r3_go", 15); os.exit(0)]], port))
  H.eq(b:get("r3_up", 5), "1")
  H.same_list(b:dead_ranks(4, 5), { 2 }, "rank 3 within a 5 s allowance")
  pcall(b.wait, b, "never_set", 0.25) -- let rank 3's silence exceed 0.1 s
  local stale = b:dead_ranks(4, 0.1)
  H.eq(stale[#stale], 3, "rank 3 silent for > 0.1 s")
  b:set("r3_go", "1")
  q:read("*a")
  q:close()
end)

H.case("bad arguments", function()
  H.raises(function() a:start_heartbeat(-1, 1) end, "rank -1")
  H.raises(function() Store.connect { host = "127.0.0.1" } end, "port needed")
end)

a:close()
b:close()
srv:stop()
H.done()
