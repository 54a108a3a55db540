-- dist_worker.lua: one rank of the distributed tests (spawned by test_comm.lua as a process).
-- usage: luajit dist_worker.lua MODE RANK WORLD PORT OUTFILE [TIMEOUT_S]
-- Writes "return {...}" with its results to OUTFILE; the test compares ranks.
local ffi = require "ffi"
local ms = require "moonseg"
local dist = ms.dist

local mode, rank, world, port, outfile = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4]), arg[5]
local timeout = tonumber(arg[6] or "10")
local res = {}

local function ser(v, ind)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      local key = type(k) == "number" and "[" .. k .. "]" or string.format("[%q]", k)
      parts[#parts + 1] = key .. "=" .. ser(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    return string.format("%.17g", v)
  elseif type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end
local function finish()
  local f = assert(io.open(outfile, "w"))
  f:write("return ", ser(res), "\n")
  f:close()
end

-- FNV-1a over the tensor's bytes (for bit-identity checks across ranks).
local function hash(t)
  local c = t:contiguous()
  local n = c:numel() * tonumber(ms.lib.C.ms_dtype_size(c:dtype_code()))
  local p = ffi.cast("const uint8_t*", c:data_ptr())
  local h = 2166136261
  for i = 0, n - 1 do h = bit.tobit(bit.bxor(h, p[i]) * 16777619) end
  return h
end

-- Rank r's input: x[i] = (r + 1) * base(i), base(i) = ((i * 37) % 101) / 7 - 3 (i 1-based).
local function base(i) return ((i * 37) % 101) / 7 - 3 end
local function input(n, dtype, r)
  local buf = {}
  for i = 1, n do buf[i] = (r + 1) * base(i) end
  return ms.tensor(buf, { dtype = dtype })
end

local ok, err = pcall(function()
  if mode == "torchrun" then
    -- RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT come from the environment; rank 0 hosts the
    -- store on MASTER_PORT=0 and prints the port it got for the test to start the others
    dist.init_process_group { backend = "cpu", timeout = timeout, on_listen = function(p)
      io.write("listening on ", p, "\n")
      io.flush()
    end }
  else
    -- the test process hosts the store
    dist.init_process_group { backend = "cpu", rank = rank, world_size = world, master_addr = "127.0.0.1",
      master_port = port, timeout = timeout, start_store = false }
  end
  res.rank, res.world = dist.get_rank(), dist.get_world_size()
  res.transport = dist.transport()
  if mode == "die" then
    -- the last rank dies abruptly (no clean-up) after one collective; the others are inside a
    -- large all-reduce when it goes
    local x = input(4, "f32", rank)
    dist.all_reduce(x)
    res.first = x:tolist()
    if rank == world - 1 then
      ffi.cdef "void _exit(int);"
      io.stdout:flush()
      ffi.C._exit(3)
    end
    local t0 = ms.time()
    local ok2, e2 = pcall(dist.all_reduce, input(1000003, "f32", rank))
    res.second_ok, res.second_err, res.elapsed = ok2, tostring(e2), ms.time() - t0
    return
  end
  if mode == "lanes" then
    -- a second group carries many asynchronous all-reduces in flight while blocking ones run
    -- on the default group (inline on this thread when its queue is idle) and on the second
    -- (queued behind the asynchronous ones). Integer-valued floats: every sum is exact.
    local g2 = dist.new_group()
    local sizes = { 1, 3, 1000, 4097, 262147, 1000003, 2 * 1048576 + 5 }
    local work, bufs = {}, {}
    for k, n in ipairs(sizes) do
      -- element i of rank r: (r + 1) * (i + k), i 0-based: sums below 2^24, exact in f32 too
      local t = ms.arange(0, n, { dtype = "f64" }):add(k):mul(rank + 1)
      bufs[k] = k % 2 == 0 and t:to("f32") or t
      work[k] = dist.all_reduce_async(bufs[k], "sum", g2)
    end
    local small = {}
    for j = 1, 50 do
      local s = ms.full({ 5 }, (rank + 1) * j, { dtype = "f32" })
      dist.all_reduce(s, "sum")
      small[j] = s:tolist()
    end
    res.small = small
    local behind = ms.full({ 7 }, rank + 1, { dtype = "i64" })
    dist.all_reduce(behind, "max", g2)
    res.behind = behind:tolist()
    res.exact, res.hashes = {}, {}
    for k, n in ipairs(sizes) do
      work[k]:wait(timeout)
      local want = ms.arange(0, n, { dtype = "f64" }):add(k):mul(world * (world + 1) / 2)
      res.exact[k] = bufs[k]:to("f64"):eq(want):all():item()
      res.hashes[k] = hash(bufs[k])
    end
    res.bad_group = select(2, pcall(dist.all_reduce, ms.ones(2), "sum", {}))
    g2:destroy()
    res.destroyed = select(2, pcall(dist.all_reduce, ms.ones(2), "sum", g2))
    dist.barrier()
    dist.destroy_process_group()
    return
  end
  if mode == "skip" then
    local x = input(4, "f32", rank)
    dist.all_reduce(x)
    res.first = x:tolist()
    local store = dist.get_store()
    local g2 = dist.new_group()
    if rank ~= world - 1 then
      -- rank world - 1 skips an asynchronous all-reduce on the second group: the error names it
      local t0 = ms.time()
      local w = dist.all_reduce_async(input(4, "f32", rank), "sum", g2)
      local ok2, e2 = pcall(w.wait, w)
      res.async_ok, res.async_err, res.async_elapsed = ok2, tostring(e2), ms.time() - t0
    end
    if rank == world - 1 then
      -- skips the second collective; leaves once the others have failed
      store:wait("test/release", 20)
    else
      local t0 = ms.time()
      local ok2, e2 = pcall(dist.all_reduce, input(4, "f32", rank))
      res.second_ok, res.second_err, res.elapsed = ok2, tostring(e2), ms.time() - t0
      local ok3, e3 = pcall(dist.barrier)
      res.third_ok, res.third_err = ok3, tostring(e3)
      if store:add("test/failed", 1) == world - 1 then store:set("test/release", "1") end
    end
    dist.destroy_process_group()
    return
  end
  -- mode "coll" / "torchrun": the collectives
  for _, n in ipairs { 1, 7, 1000003 } do
    local x = input(n, "f32", rank)
    dist.all_reduce(x, "sum")
    local v = ffi.cast("const float*", x:data_ptr())
    local maxerr, samples = 0, {}
    local s = world * (world + 1) / 2
    for i = 1, n do
      local e = math.abs(v[i - 1] - s * base(i))
      if e > maxerr then maxerr = e end
    end
    for _, i in ipairs { 1, math.floor((n + 1) / 2), n } do samples[#samples + 1] = v[i - 1] end
    res["sum_f32_" .. n] = { hash = hash(x), maxerr = maxerr, samples = samples }
  end
  for _, dt in ipairs { "f64", "f16", "bf16", "i64", "i32" } do
    local x = dt:sub(1, 1) == "i" and ms.tensor({ rank + 1, -2 * rank, 7, 1e8 }, { dtype = dt })
      or input(7, dt, rank)
    dist.all_reduce(x, "sum")
    res["sum_" .. dt] = { vals = x:tolist(), hash = hash(x) }
  end
  for _, op in ipairs { "avg", "max", "min" } do
    local x = ms.tensor({ rank, -rank, 10 * rank + 0.5, 1 / 3 }, { dtype = "f64" })
    dist.all_reduce(x, op)
    res[op] = x:tolist()
  end
  local h = input(5, "f16", rank)
  dist.all_reduce(h, "avg")
  res.avg_f16 = h:tolist()
  -- non-contiguous: a transposed view, reduced in place
  local m = ms.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "f32" }):mul(rank + 1)
  local mt = m:transpose(1, 2)
  dist.all_reduce(mt, "sum")
  res.noncontig = m:tolist()
  -- broadcast from each root
  for root = 0, world - 1 do
    local b = input(9, "f32", rank)
    dist.broadcast(b, root)
    res["bcast_" .. root] = b:tolist()
  end
  local bt = ms.zeros(3, 2, { dtype = "i64" })
  if rank == 1 then bt:copy_(ms.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, { dtype = "i64" })) end
  dist.broadcast(bt:transpose(1, 2), 1)
  res.bcast_nc = bt:tolist()
  -- all_gather: a list and a tensor
  local g = dist.all_gather(ms.tensor({ rank, rank + 0.5 }, { dtype = "f64" }))
  res.gather = {}
  for i = 1, #g do res.gather[i] = g[i]:tolist() end
  local gt = dist.all_gather_into_tensor(ms.tensor({ { rank } }, { dtype = "bf16" }))
  res.gather_t = { shape = gt:size(), vals = gt:tolist() }
  -- reduce_scatter: rank r gets sum over ranks of rows [2r, 2r + 1]
  local rs_in = ms.arange(0, 2 * world * 3, { dtype = "f32" }):view(2 * world, 3):mul(rank + 1)
  local rs = dist.reduce_scatter(rs_in, "sum")
  res.rs = { shape = rs:size(), vals = rs:tolist() }
  dist.barrier()
  -- async in FIFO order: both queued before waiting
  local a1, a2 = ms.full({ 3 }, rank + 1, { dtype = "f32" }), ms.full({ 1000 }, 2 * rank, { dtype = "f64" })
  local w1 = dist.all_reduce_async(a1, "sum")
  local w2 = dist.all_reduce_async(a2, "max")
  w2:wait(timeout)
  res.async_done1 = w1:is_completed()
  w1:wait()
  res.async1 = a1:tolist()
  res.async2 = { a2[1]:item(), a2[1000]:item() }
  dist.barrier()
  dist.destroy_process_group()
end)
res.ok = ok
if not ok then res.err = tostring(err) end
finish()
os.exit(ok and 0 or 1)
