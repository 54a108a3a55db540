-- test_launch_orphans.lua: workers die with their launcher. The launcher of two workers that
-- wait silently on the store (as in a collective, up to --dist_timeout) is SIGKILLed; every
-- worker must be gone within a few seconds, far inside the timeout they would otherwise wait.
-- And a worker's Lua error is shown by the launcher even when its traceback is long.
local H = require "harness"
local ms = require "moonseg"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local worker = src .. "/tests/lua/ddp_worker.lua"
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
-- A process is gone when /proc has no entry for it or it is a zombie nobody reaped yet.
local function alive(pid)
  local st = read("/proc/" .. pid .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end
-- Polls cond every 20 ms until it holds or `limit` seconds pass; returns it and the time taken.
local function wait_for(cond, limit)
  local t0 = ms.time()
  while true do
    local v = cond()
    if v or ms.time() - t0 > limit then return v, ms.time() - t0 end
    os.execute("sleep 0.02") -- poll interval, not synchronisation: cond decides
  end
end

H.case("SIGKILL to the launcher: its workers exit within seconds, not after --dist_timeout", function()
  local timeout = 120
  local out = tmp .. "/hang"
  local p = io.popen("luajit " .. worker .. " --mode hang --nproc 2 --dist_timeout " .. timeout .. " --out " .. out ..
    " --log_dir " .. tmp .. "/log > " .. tmp .. "/launcher.log 2>&1 & echo $!")
  local launcher = tonumber(p:read("*l"))
  p:close()
  local pids = wait_for(function()
    local a, b = read(out .. ".pid0"), read(out .. ".pid1")
    return a and b and { tonumber(a), tonumber(b) }
  end, 60)
  if not pids then
    os.execute("kill -9 " .. launcher)
    error("the workers did not start:\n" .. (read(tmp .. "/launcher.log") or ""))
  end
  H.eq(alive(pids[1]) and alive(pids[2]), true, "both workers wait")
  os.execute("kill -9 " .. launcher)
  local gone, took = wait_for(function() return not alive(pids[1]) and not alive(pids[2]) end, timeout)
  for _, pid in ipairs(pids) do if alive(pid) then os.execute("kill -9 " .. pid) end end
  H.eq(gone, true, "no worker left")
  -- the kernel's parent-death signal: well under a second here; 5 s of slack for a loaded CI
  if not (took < 5) then error(string.format("workers took %.2f s to exit (timeout %d s)", took, timeout)) end
  io.stdout:write(string.format("  workers gone %.3f s after the launcher's SIGKILL\n", took))
end)

H.case("a worker's Lua error under a long traceback: the launcher shows the message itself", function()
  local p = io.popen("timeout -s KILL 60 luajit " .. worker .. " --nproc 2 --steps 5 --fail_rank 1 --fail_step 2 " ..
    "--fail_how error --log_dir " .. tmp .. "/elog 2>&1; echo \"EXIT:$?\"")
  local out = p:read("*a")
  p:close()
  H.eq(tonumber(out:match("EXIT:(%d+)%s*$")), 1, "the launcher's exit status")
  local log = read(tmp .. "/elog/workerlog.1")
  local n, at = 0, nil
  for line in log:gmatch("[^\n]+") do
    n = n + 1
    if line:find("deliberate error", 1, true) then at = n end
  end
  if not (at and n - at >= 10) then error("the message should lie over 10 lines above the log's end:\n" .. log) end
  if not out:find("launch: error: luajit: [^\n]*rank 1: deliberate error at step 2") then
    error("the launcher does not show the error message:\n" .. out)
  end
end)

os.execute("rm -rf " .. tmp)
H.done()
