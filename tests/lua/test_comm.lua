-- test_comm.lua: the CPU communicator: collectives across 2 and 3 worker processes on
-- 127.0.0.1 (tests/lua/dist_worker.lua) over both transports (shared memory, chosen on one
-- host, and TCP), timeouts and dead peers naming the rank, argument errors.
local H = require "harness"
local ms = require "moonseg"
local dist = ms.dist

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local worker = src .. "/tests/lua/dist_worker.lua"
local tmp = os.tmpname()
os.remove(tmp)

-- Spawns world workers (each bounded by coreutils timeout, so every process exits) and
-- waits for all of them by reading their output to EOF. Returns their result tables.
local function spawn(mode, world, port, opts)
  opts = opts or {}
  local procs = {}
  local first_line = {}
  for r = 0, world - 1 do
    local env = ""
    if mode == "torchrun" then
      env = string.format("RANK=%d WORLD_SIZE=%d LOCAL_RANK=%d MASTER_ADDR=127.0.0.1 MASTER_PORT=%d ", r, world, r, port)
    end
    local out = string.format("%s_%s_%d_%d.lua", tmp, mode, world, r)
    os.remove(out)
    local extra = type(opts.env) == "function" and opts.env(r) or opts.env or ""
    local cmd = string.format("%s%s timeout -s KILL 25 luajit %s %s %d %d %d %s %s 2>&1", env, extra, worker, mode,
      r, world, port, out, opts.timeout or 10)
    procs[r] = { pipe = assert(io.popen(cmd)), out = out }
    if mode == "torchrun" and r == 0 and port == 0 then
      -- rank 0 binds port 0 and reports the port it got: the others are started on that one
      first_line[r] = procs[r].pipe:read("*l") or ""
      port = tonumber(first_line[r]:match("^listening on (%d+)$")) or error("rank 0 said: " .. first_line[r])
    end
  end
  local results = {}
  for r = 0, world - 1 do
    local p = procs[r]
    local log = (first_line[r] and first_line[r] .. "\n" or "") .. p.pipe:read("*a")
    p.pipe:close()
    local f = loadfile(p.out)
    os.remove(p.out)
    results[r] = f and f() or { ok = false, err = "no result file; output:\n" .. log }
    if not results[r].ok then io.stderr:write("rank ", r, " output:\n", log, "\n") end
  end
  return results
end

local function base(i) return ((i * 37) % 101) / 7 - 3 end

local function check_coll(res, W)
  local s = W * (W + 1) / 2
  for r = 0, W - 1 do
    local x = res[r]
    H.eq(x.ok, true, "rank " .. r .. " failed: " .. tostring(x.err))
    H.eq(x.rank, r)
    H.eq(x.world, W)
    -- all_reduce sum, f32, sizes 1, 7, 1000003: values and bit-identity across ranks
    for _, n in ipairs { 1, 7, 1000003 } do
      local e = x["sum_f32_" .. n]
      H.eq(e.hash, res[0]["sum_f32_" .. n].hash, "bit-identical f32 sum of " .. n .. " on rank " .. r)
      if not (e.maxerr < 1e-5) then error("f32 sum of " .. n .. ": max error " .. e.maxerr) end
      local idx = { 1, math.floor((n + 1) / 2), n }
      for k = 1, 3 do H.near(e.samples[k], s * base(idx[k]), 1e-6, "sample " .. k .. " of " .. n) end
    end
    for _, dt in ipairs { "f64", "f16", "bf16" } do
      local tol = ({ f64 = 1e-12, f16 = 3e-3, bf16 = 2e-2 })[dt]
      local e = x["sum_" .. dt]
      H.eq(e.hash, res[0]["sum_" .. dt].hash, "bit-identical " .. dt .. " sum")
      for i = 1, 7 do H.near(e.vals[i], s * base(i), tol, dt .. " sum [" .. i .. "]") end
    end
    for _, dt in ipairs { "i64", "i32" } do
      H.same_list(x["sum_" .. dt].vals, { s, -W * (W - 1), 7 * W, 1e8 * W }, dt .. " sum")
    end
    H.near(x.avg, { (W - 1) / 2, -(W - 1) / 2, 5 * (W - 1) + 0.5, 1 / 3 }, 1e-15, "avg")
    H.same_list(x.max, { W - 1, 0, 10 * (W - 1) + 0.5, 1 / 3 }, "max")
    H.same_list(x.min, { 0, -(W - 1), 0.5, 1 / 3 }, "min")
    for i = 1, 5 do H.near(x.avg_f16[i], (W + 1) / 2 * base(i), 3e-3, "f16 avg [" .. i .. "]") end
    H.same_list(x.noncontig[1], { s, 2 * s, 3 * s }, "non-contiguous all_reduce row 1")
    H.same_list(x.noncontig[2], { 4 * s, 5 * s, 6 * s }, "non-contiguous all_reduce row 2")
    for root = 0, W - 1 do
      for i = 1, 9 do H.near(x["bcast_" .. root][i], (root + 1) * base(i), 1e-6, "broadcast root " .. root) end
    end
    H.same_list(x.bcast_nc[1], { 1, 2 }, "broadcast into a transposed view")
    H.same_list(x.bcast_nc[3], { 5, 6 })
    H.eq(#x.gather, W, "all_gather list length")
    for i = 1, W do H.same_list(x.gather[i], { i - 1, i - 0.5 }, "all_gather entry " .. i) end
    H.same_list(x.gather_t.shape, { W, 1, 1 }, "all_gather tensor shape")
    for i = 1, W do H.eq(x.gather_t.vals[i][1][1], i - 1) end
    H.same_list(x.rs.shape, { 2, 3 }, "reduce_scatter shape")
    for row = 1, 2 do
      for col = 1, 3 do
        H.eq(x.rs.vals[row][col], ((2 * r + row - 1) * 3 + col - 1) * s, "reduce_scatter value")
      end
    end
    H.eq(x.async_done1, true, "async work completes in FIFO order")
    H.same_list(x.async1, { s, s, s }, "async sum")
    H.same_list(x.async2, { 2 * (W - 1), 2 * (W - 1) }, "async max")
  end
end

-- Names of this machine's shared-memory segments made by moonseg (none may be left behind).
local function shm_names()
  local p = io.popen("ls /dev/shm 2>/dev/null")
  local t = {}
  for l in p:lines() do if l:match("^moonseg%-") then t[#t + 1] = l end end
  p:close()
  return table.concat(t, " ")
end
local shm_before = shm_names()

local SHM, TCP = "cpu ring (shared memory)", "cpu ring (tcp)"

-- Runs fn(port) with a store hosted by the test, stopped whatever fn does.
local function with_store(fn)
  local srv = dist.Store.server { host = "127.0.0.1", port = 0 }
  local ok, err = pcall(fn, srv:port())
  srv:stop()
  assert(ok, err)
end

-- msg must contain every fragment.
local function has_all(msg, frags)
  for _, frag in ipairs(frags) do
    if not msg:find(frag, 1, true) then error("message lacks '" .. frag .. "': " .. msg, 2) end
  end
end

H.case("collectives, 2 worker processes, store hosted by the test; shared memory and TCP agree bit for bit", function()
  local got = {}
  for _, tr in ipairs { "auto", "tcp" } do
    local srv = dist.Store.server { host = "127.0.0.1", port = 0 }
    local ok, err = pcall(function()
      got[tr] = spawn("coll", 2, srv:port(), { env = "MS_COMM_TRANSPORT=" .. tr })
      check_coll(got[tr], 2)
    end)
    srv:stop()
    assert(ok, err)
  end
  for r = 0, 1 do
    H.eq(got.auto[r].transport, SHM, "ranks on one host use shared memory by default")
    H.eq(got.tcp[r].transport, TCP, "MS_COMM_TRANSPORT=tcp")
    for _, k in ipairs { "sum_f32_1", "sum_f32_7", "sum_f32_1000003", "sum_f64", "sum_f16", "sum_bf16" } do
      H.eq(got.auto[r][k].hash, got.tcp[r][k].hash, k .. ": same bits over both transports")
    end
    H.same_list(got.auto[r].rs.vals[2], got.tcp[r].rs.vals[2], "reduce_scatter over both transports")
  end
end)

H.case("transport choice: ranks of different hosts use TCP; shm forced across hosts or a bad value fails naming it", function()
  with_store(function(port)
    local res = spawn("coll", 2, port, { env = function(r) return "MS_COMM_HOST_ID=node" .. r end })
    check_coll(res, 2)
    for r = 0, 1 do H.eq(res[r].transport, TCP, "rank " .. r .. " of two hosts") end
  end)
  with_store(function(port)
    local res = spawn("coll", 2, port, { timeout = 5,
      env = function(r) return "MS_COMM_TRANSPORT=shm MS_COMM_HOST_ID=node" .. r end })
    for r = 0, 1 do
      H.eq(res[r].ok, false, "rank " .. r .. " must refuse shm across hosts")
      has_all(res[r].err, { "MS_COMM_TRANSPORT=shm", "runs on another host", "node" .. (1 - r) })
    end
  end)
  local p = io.popen("MS_COMM_TRANSPORT=udp timeout 20 luajit -e 'local d = require(\"moonseg\").dist; " ..
    "local s = d.Store.server{host=\"127.0.0.1\", port=0}; print(select(2, pcall(d.init_process_group, " ..
    "{rank=0, world_size=1, master_addr=\"127.0.0.1\", master_port=s:port(), start_store=false, timeout=5})))' 2>&1")
  local msg = p:read("*a")
  p:close()
  has_all(msg, { "MS_COMM_TRANSPORT must be auto, tcp or shm", "'udp'" })
end)

-- Each rank in a mount namespace of its own whose /dev/shm holds 1 MB (containers often give it
-- 64 MB): the 4 MB ring cannot be backed. Needs root (unshare -m); probed.
local small_shm = "unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec \"$0\" \"$@\"' "
local can_unshare = os.execute("unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs /dev/shm' >/dev/null 2>&1")
can_unshare = can_unshare == 0 or can_unshare == true
H.case("a /dev/shm too small for the ring: auto falls back to TCP (no SIGBUS); shm forced fails naming the size", function()
  if not can_unshare then
    io.stderr:write("NOT RUN: unshare -m with a tmpfs mount is not permitted here (needs root)\n")
    return
  end
  with_store(function(port)
    local res = spawn("coll", 2, port, { env = small_shm })
    check_coll(res, 2)
    for r = 0, 1 do H.eq(res[r].transport, TCP, "rank " .. r .. " with a full /dev/shm") end
  end)
  with_store(function(port)
    local res = spawn("coll", 2, port, { timeout = 5, env = "MS_COMM_TRANSPORT=shm " .. small_shm })
    for r = 0, 1 do
      H.eq(res[r].ok, false, "rank " .. r .. " must fail: MS_COMM_TRANSPORT=shm without room for the ring")
      has_all(res[r].err, { "MS_COMM_TRANSPORT=shm", "cannot size", "No space left on device" })
    end
  end)
end)

H.case("a rank that dies inside a collective: the others fail within seconds naming it (both transports)", function()
  for _, tr in ipairs { "auto", "tcp" } do
    local srv = dist.Store.server { host = "127.0.0.1", port = 0 }
    local ok, err = pcall(function()
      local res = spawn("die", 3, srv:port(), { timeout = 20, env = "MS_COMM_TRANSPORT=" .. tr })
      for r = 0, 1 do
        local x = res[r]
        H.eq(x.transport, tr == "auto" and SHM or TCP, "transport of rank " .. r)
        H.near(x.first, { 6 * base(1), 6 * base(2), 6 * base(3), 6 * base(4) }, 1e-6, "first all_reduce")
        H.eq(x.second_ok, false, "rank " .. r .. " must fail the collective rank 2 died in (" .. tr .. ")")
        has_all(x.second_err, { "all_reduce", "seq 2", "rank " .. r .. " of 3" })
        -- which link broke first depends on timing; the ranks the message names as missing do not
        local missing = x.second_err:match("have not reached seq 2: ([%d, ]+)") or ""
        if not (" " .. missing .. ","):find("[ ,]2,") then error("message does not name rank 2 as missing: " .. x.second_err) end
        if not (x.elapsed < 10) then error(string.format("rank %d took %.1f s to notice (%s)", r, x.elapsed, tr)) end
        H.fast(x.elapsed, 2, "rank " .. r .. " noticing the dead rank 2 (" .. tr .. ", timeout 20 s)")
      end
    end)
    srv:stop()
    assert(ok, err)
  end
end)

H.case("collectives, 3 worker processes, torchrun environment (rank 0 hosts the store on port 0)", function()
  check_coll(spawn("torchrun", 3, 0), 3)
end)

H.case("a rank that skips a collective: the others fail within the timeout naming it", function()
  local srv = dist.Store.server { host = "127.0.0.1", port = 0 }
  local ok, err = pcall(function()
    local res = spawn("skip", 3, srv:port(), { timeout = 2 })
    for r = 0, 2 do
      H.eq(res[r].ok, true, "rank " .. r .. ": " .. tostring(res[r].err))
      H.near(res[r].first, { 6 * base(1), 6 * base(2), 6 * base(3), 6 * base(4) }, 1e-6, "first all_reduce")
    end
    for r = 0, 1 do
      local x = res[r]
      H.eq(x.second_ok, false, "rank " .. r .. " must fail the collective rank 2 skipped")
      has_all(x.second_err, { "all_reduce", "seq 2", "rank " .. r .. " of 3", "have not reached seq 2: 2" })
      if not (x.elapsed >= 1.9) then error("rank " .. r .. " gave up after " .. x.elapsed .. " s, before its 2 s timeout") end
      H.within(x.elapsed, 2, "rank " .. r .. "'s collective")
      H.fast(x.elapsed, 3, "rank " .. r .. "'s collective")
      H.eq(x.third_ok, false, "the communicator stays broken")
      if not x.third_err:find("broken", 1, true) then error(x.third_err) end
      H.eq(x.async_ok, false, "rank " .. r .. " must fail the asynchronous all_reduce rank 2 skipped")
      has_all(x.async_err, { "all_reduce", "seq 1", "rank " .. r .. " of 3", "have not reached seq 1: 2" })
      H.within(x.async_elapsed, 2, "rank " .. r .. "'s asynchronous collective")
    end
  end)
  srv:stop()
  assert(ok, err)
end)

H.case("a second group: asynchronous all-reduces in flight (sizes 1 .. 2M+5) while blocking ones run on both groups; exact sums", function()
  for _, W in ipairs { 2, 3 } do
    local srv = dist.Store.server { host = "127.0.0.1", port = 0 } -- fresh keys for each world
    local ok, err = pcall(function()
      local res = spawn("lanes", W, srv:port())
      for r = 0, W - 1 do
        local x = res[r]
        H.eq(x.ok, true, "rank " .. r .. " failed: " .. tostring(x.err))
        for j = 1, 50 do
          local s = j * W * (W + 1) / 2
          H.same_list(x.small[j], { s, s, s, s, s }, "blocking all_reduce " .. j .. " on the default group")
        end
        H.same_list(x.behind, { W, W, W, W, W, W, W }, "blocking max queued behind the asynchronous work")
        for k = 1, 7 do
          H.eq(x.exact[k], true, "all_reduce " .. k .. " exact on rank " .. r)
          H.eq(x.hashes[k], res[0].hashes[k], "bit-identical across ranks")
        end
        if not x.bad_group:find("group must be a live dist.new_group() result", 1, true) then error(x.bad_group) end
        if not x.destroyed:find("group must be a live", 1, true) then error(x.destroyed) end
      end
    end)
    srv:stop()
    assert(ok, err)
  end
end)

-- ---- one process: a world of one, argument errors, environment -------------------------
H.case("world of one and argument errors", function()
  H.raises(function() dist.all_reduce(ms.ones(2)) end, "init_process_group first")
  local srv = dist.Store.server { host = "127.0.0.1", port = 0 }
  local store = dist.Store.connect { host = "127.0.0.1", port = srv:port(), timeout = 5 }
  local ok, err = pcall(function()
    dist.init_process_group { rank = 0, world_size = 1, store = store, timeout = 5 }
    H.eq(dist.get_rank(), 0)
    H.eq(dist.get_world_size(), 1)
    local t = ms.tensor({ 1.5, -2 }, { dtype = "f64" })
    dist.all_reduce(t, "avg")
    H.same_list(t:tolist(), { 1.5, -2 })
    dist.broadcast(t, 0)
    H.same_list(dist.all_gather(t)[1]:tolist(), { 1.5, -2 })
    H.same_list(dist.reduce_scatter(ms.tensor({ 4, 5 }), "sum"):tolist(), { 4, 5 })
    dist.barrier()
    H.raises(function() dist.all_reduce(ms.ones(2, { dtype = "u8" })) end, "all_reduce", "u8")
    H.raises(function() dist.all_reduce(ms.ones(2, { dtype = "i64" }), "avg") end, "avg", "i64")
    H.raises(function() dist.all_reduce(ms.ones(2), "prod") end, "unknown reduce op")
    H.raises(function() dist.broadcast(ms.ones(2), 1) end, "broadcast", "root 1", "1 ranks")
    H.raises(function() dist.broadcast(ms.ones(2), -1) end, "root -1")
    H.raises(function() dist.all_reduce("x") end, "expected a tensor")
    H.raises(function() dist.init_process_group { rank = 0, world_size = 1, store = store } end, "already")
    -- the group still works after the errors
    local w = dist.all_reduce_async(ms.ones(3), "max")
    H.same_list(w:wait(5):tolist(), { 1, 1, 1 })
    H.eq(w:is_completed(), true)
  end)
  dist.destroy_process_group()
  store:close()
  srv:stop()
  assert(ok, err)
  H.eq(dist.is_initialized(), false)
  H.raises(function()
    dist.init_process_group { rank = 3, world_size = 2, master_port = 1 }
  end, "rank 3 out of range for world size 2")
end)

H.case("environment: torchrun and Slurm variables", function()
  H.eq(dist.first_slurm_host("node[03-05,9],gpu1"), "node03")
  H.eq(dist.first_slurm_host("gpu7,gpu8"), "gpu7")
  H.eq(dist.first_slurm_host("single"), "single")
  H.eq(dist.first_slurm_host("a[1,4]"), "a1")
  local code = [[local e = require("moonseg.dist").resolve_env()
    io.write(e.rank, " ", e.world_size, " ", e.local_rank, " ", e.master_addr, " ", e.master_port)]]
  local function run(env)
    local p = io.popen(env .. " timeout 20 luajit -e '" .. code .. "' 2>&1")
    local s = p:read("*a")
    p:close()
    return s
  end
  H.eq(run("env -u MASTER_ADDR -u MASTER_PORT -u RANK -u WORLD_SIZE -u LOCAL_RANK SLURM_PROCID=5 SLURM_NTASKS=8 " ..
    "SLURM_LOCALID=1 SLURM_NODELIST='gn[12-13]'"), "5 8 1 gn12 29500")
  H.eq(run("env RANK=2 WORLD_SIZE=4 LOCAL_RANK=0 MASTER_ADDR=10.1.2.3 MASTER_PORT=1234 SLURM_PROCID=5"),
    "2 4 0 10.1.2.3 1234")
end)

H.case("no shared-memory segment is left behind", function()
  H.eq(shm_names(), shm_before, "/dev/shm entries named moonseg-*")
end)

H.done()
