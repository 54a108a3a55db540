-- test_multinode.lua: a 2-node job across real network hosts: two network namespaces joined by
-- a veth pair (10.77.0.1 and 10.77.0.2), the same command on both (--ips, one worker each). The
-- job trains; then the second node's link is cut mid-run. Both nodes must stop within the
-- liveness timeout plus slack (well under 10 s), each launcher's last lines naming the
-- unreachable rank, and no process may be left in either namespace. Needs root (ip netns);
-- tests/CMakeLists.txt registers it only where `ip netns add` works.
local H = require "harness"
local ms = require "moonseg"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local worker = src .. "/tests/lua/ddp_worker.lua"
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
local tag = tostring(math.floor(ms.time() * 1000) % 100000)
local NA, NB = "msA" .. tag, "msB" .. tag
local VA, VB = "va" .. tag, "vb" .. tag

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"")
  local s = p:read("*a")
  p:close()
  return s, tonumber(s:match("EXIT:(%d+)%s*$"))
end
local function must(cmd)
  local out, code = sh(cmd)
  if code ~= 0 then error(cmd .. " failed:\n" .. out, 2) end
  return out
end
local function read(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
local function pids(ns) return (sh("ip netns pids " .. ns)):gsub("EXIT:%d+%s*$", ""):match("%d+") end
-- Polls cond every 50 ms until it holds or limit seconds pass; returns it and the time taken.
local function wait_for(cond, limit)
  local t0 = ms.time()
  while true do
    local v = cond()
    if v or ms.time() - t0 > limit then return v, ms.time() - t0 end
    os.execute("sleep 0.05") -- poll interval; cond decides
  end
end

local function teardown()
  for _, ns in ipairs { NA, NB } do
    local p = pids(ns)
    while p do
      os.execute("kill -9 " .. p .. " 2>/dev/null")
      p = pids(ns) ~= p and pids(ns) or nil
    end
    os.execute("ip netns del " .. ns .. " 2>/dev/null")
  end
end

H.case("two nodes over a veth pair train; a cut link stops both within the liveness timeout", function()
  must("ip netns add " .. NA)
  must("ip netns add " .. NB)
  local ok, err = pcall(function()
    must("ip link add " .. VA .. " type veth peer name " .. VB)
    must("ip link set " .. VA .. " netns " .. NA)
    must("ip link set " .. VB .. " netns " .. NB)
    must("ip -n " .. NA .. " addr add 10.77.0.1/24 dev " .. VA)
    must("ip -n " .. NB .. " addr add 10.77.0.2/24 dev " .. VB)
    for _, x in ipairs { { NA, VA }, { NB, VB } } do
      must("ip -n " .. x[1] .. " link set " .. x[2] .. " up")
      must("ip -n " .. x[1] .. " link set lo up")
    end
    local liveness, timeout = 3, 120
    -- the same command on both nodes; each finds its node rank from its own addresses
    local cmd = "luajit " .. worker .. " --ips 10.77.0.1,10.77.0.2 --steps 100000 --dist_timeout " .. timeout ..
      " --dist_liveness " .. liveness
    local function start(ns, name)
      os.execute("(ip netns exec " .. ns .. " env FLAGS_START_PORT=29650 MS_TEST_SHOW_TRANSPORT=1 " .. cmd .. " --log_dir " .. tmp .. "/" ..
        name .. " > " .. tmp .. "/" .. name .. ".out 2>&1; echo $? > " .. tmp .. "/" .. name .. ".rc.tmp; mv " ..
        tmp .. "/" .. name .. ".rc.tmp " .. tmp .. "/" .. name .. ".rc) &")
    end
    start(NA, "a")
    start(NB, "b")
    -- both train: node B's worker (rank 1) logs its steps
    local training = wait_for(function() return read(tmp .. "/b/workerlog.1"):find("step 20 rank 1") end, 60)
    if not training then
      error("the job did not train:\n" .. read(tmp .. "/a.out") .. "\n" .. read(tmp .. "/b.out") .. "\n" ..
        read(tmp .. "/b/workerlog.1"))
    end
    -- two hosts (their own addresses): TCP, whose liveness the cut link must stop
    local wl = read(tmp .. "/b/workerlog.1")
    if not wl:find("rank 1 transport cpu ring (tcp)", 1, true) then error("node B's worker is not on TCP:\n" .. wl) end
    local t_cut = ms.time()
    must("ip -n " .. NB .. " link set " .. VB .. " down")
    local done = wait_for(function() return read(tmp .. "/a.rc") ~= "" and read(tmp .. "/b.rc") ~= "" end,
      timeout)
    local took = ms.time() - t_cut
    local a, b = read(tmp .. "/a.out"), read(tmp .. "/b.out")
    H.eq(done and true or false, true, "both launchers exited")
    io.stdout:write(string.format("  both nodes stopped %.2f s after the cut (liveness %g s)\n", took, liveness))
    -- detection takes the liveness timeout plus up to one poll; the rest is the stop
    if not (took < liveness * 1.5 + 3) then error(string.format("took %.2f s (liveness %g s)", took, liveness)) end
    if not (took < 10) then error(string.format("took %.2f s, over 10 s", took)) end
    H.eq(tonumber(read(tmp .. "/a.rc")) ~= 0, true, "node A fails")
    H.eq(tonumber(read(tmp .. "/b.rc")) ~= 0, true, "node B fails")
    -- the launchers' last lines carry the message itself
    if not a:find("rank 1 is unreachable", 1, true) then error("node A does not name rank 1:\n" .. a) end
    if not b:find("rank 0 (the store at 10.77.0.1:29650) is unreachable", 1, true) then
      error("node B does not name rank 0:\n" .. b)
    end
    for name, out in pairs { A = a, B = b } do
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      io.stdout:write("  node ", name, " launcher, last lines:\n")
      for i = math.max(1, #lines - 5), #lines do io.stdout:write("    ", lines[i], "\n") end
    end
    H.eq(pids(NA), nil, "no process left on node A")
    H.eq(pids(NB), nil, "no process left on node B")
  end)
  teardown()
  if not ok then error(err, 0) end
end)

os.execute("rm -rf " .. tmp)
H.done()
