-- ddp_worker.lua: a tiny data-parallel program for test_ddp.lua and test_launch.lua. It takes
-- the launch flags itself (--nproc, --ips, --node_rank, --log_dir...) like a recipe, so the
-- tests go through the real launcher. Modes: train (conv + BN + SGD on a global batch that
-- the ranks split), syncbn (one SyncBatchNorm forward/backward, unequal batches), buckets
-- (bucketed gradient averaging, a parameter without gradient on one rank).
-- Each rank writes "return {...}" to OUT.RANK.
local ffi = require "ffi"
local ms = require "moonseg"
local dist = ms.dist
local flags = require "moonseg.engine.flags"
local launch = require "moonseg.engine.launch"
pcall(ffi.cdef, "int getpid(void);")
local ddp = require "moonseg.engine.ddp"
local nn = ms.nn

local spec = {
  { "mode", "string", "train", "train, syncbn, buckets, or hang (writes its pid, then waits on the store)" },
  { "out", "string", nil, "result file prefix" },
  { "steps", "int", 3, "SGD steps" },
  { "batch", "int", 2, "samples per rank" },
  { "fail_rank", "int", -1, "rank that fails" },
  { "fail_step", "int", 2, "step at which it fails" },
  { "fail_how", "string", "exit3", "exit3, kill, error (a Lua error, long traceback) or skip (skips a collective)" },
  { "mismatch", "string", nil, "flag or model: rank 1 differs" },
  { "loss", "string", "mse", "train mode: mse, or ce (3 classes, ignored pixels uneven across ranks)" },
  { "dtype", "string", "f64", "syncbn mode: f64, or f32 on a badly conditioned batch" },
  { "log_dir", "string", nil, "worker logs" },
}
for _, f in ipairs(launch.spec()) do spec[#spec + 1] = f end
local cfg = flags.parse(spec, arg, "ddp_worker.lua")
if launch.wanted(cfg) then os.exit(launch.run(cfg, arg)) end
local threads0 = ms.get_num_threads() -- as started (the launcher's default, or OMP_NUM_THREADS)
ms.set_num_threads(1)

local function ser(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = (type(k) == "number" and "[" .. k .. "]" or string.format("[%q]", k)) .. "=" .. ser(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "number" then
    return string.format("%.17g", v)
  elseif type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

local env = dist.resolve_env()
local ctx
if launch.in_job() and env.world_size > 1 then ctx = ddp.init { timeout = cfg.dist_timeout, liveness = cfg.dist_liveness } end
local rank, world = dist.get_rank(), dist.get_world_size()
if ctx and os.getenv("MS_TEST_SHOW_TRANSPORT") == "1" then -- tests/netns: which transport
  io.stdout:write("rank ", rank, " transport ", dist.transport(), "\n")
  io.stdout:flush()
end
local res = { rank = rank, world = world, threads0 = threads0, master = env.master_addr .. ":" .. env.master_port }

local function flat(list)
  local out = {}
  for _, t in ipairs(list) do
    for _, v in ipairs(t:to("f64"):reshape(-1):tolist()) do out[#out + 1] = v end
  end
  return out
end

if cfg.mode == "train" then
  if cfg.mismatch == "flag" and rank == 1 then cfg.batch = cfg.batch + 1 end
  ms.manual_seed(100 + rank) -- different on each rank: the broadcast makes them equal
  local model = nn.Sequential(nn.Conv2d(3, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.ReLU(),
    nn.Conv2d(4, 3, 1))
  if cfg.mismatch == "model" and rank == 1 then model:add_module("4", nn.Conv2d(3, 3, 1)) end
  local d
  if ctx then
    res.converted = ddp.convert_sync_batchnorm(model)
    ddp.check_config(cfg)
    ddp.check_model(model)
    d = ddp.wrap(model, { bucket_mb = cfg.bucket_mb })
    ddp.set_loss_mean(cfg.loss_mean)
  end
  local opt = ms.optim.SGD { model, lr = 0.1, momentum = 0.9 }
  res.losses = {}
  local B = cfg.batch
  for step = 1, cfg.steps do
    if rank == cfg.fail_rank and step == cfg.fail_step then
      io.stdout:write(string.format("rank %d failing (%s) at step %d, time %.6f\n", rank, cfg.fail_how, step, ms.time()))
      io.stdout:flush()
      if cfg.fail_how == "exit3" then os.exit(3) end
      if cfg.fail_how == "error" then -- a Lua error under a traceback longer than 10 lines
        local function deep(n)
          if n == 0 then error(string.format("rank %d: deliberate error at step %d", rank, step)) end
          deep(n - 1)
        end
        deep(12)
      end
      if cfg.fail_how == "kill" then
        pcall(ffi.cdef, "int getpid(void);")
        pcall(ffi.cdef, "int kill(int pid, int sig);")
        -- stands for a shared-memory ring named by a rank killed during comm setup
        local seg = assert(io.open(string.format("/dev/shm/moonseg-%d-c9r%d-0", ffi.C.getpid(), rank), "w"))
        seg:close()
        ffi.C.kill(ffi.C.getpid(), 9)
      end
    end
    -- the global batch of this step, the same on every rank; rank r takes rows r*B+1 .. (r+1)*B
    ms.manual_seed(1000 + step)
    local G = B * world
    local xa, ta = ms.randn(G, 3, 6, 5), ms.randn(G, 3, 6, 5)
    local x, t = xa:narrow(1, rank * B + 1, B), ta:narrow(1, rank * B + 1, B)
    local loss
    if cfg.loss == "ce" then
      -- labels from the targets; the first sample of the global batch ignores 24 of its 30
      -- pixels, so rank 0 holds far fewer valid pixels than the others
      local lbl = ta:argmax(2) - 1
      ms.no_grad(function() lbl:narrow(1, 1, 1):view(30):narrow(1, 1, 24):fill_(255) end)
      local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
      loss = ce(model(x), lbl:narrow(1, rank * B + 1, B):contiguous())
    else
      loss = (model(x) - t):pow(2):mean()
    end
    opt:zero_grad()
    loss:backward()
    if d then d:sync() end
    opt:step()
    local l = ms.tensor({ loss:item() }, { dtype = "f64" })
    if not (rank == cfg.fail_rank and step == cfg.fail_step and cfg.fail_how == "skip") then
      if ctx then dist.all_reduce(l, "avg") end
    else
      io.stdout:write("rank ", rank, " skips the loss all_reduce of step ", step, "\n")
      io.stdout:flush()
      dist.get_store():get("never/set", 60)
    end
    res.losses[step] = l:item()
    io.stdout:write(string.format("step %d rank %d loss %.6f\n", step, rank, l:item()))
    io.stdout:flush()
  end
  res.params = flat(model:parameters())
  res.buffers = flat((function()
    local b = {}
    for _, kv in ipairs(model:named_buffers()) do b[#b + 1] = kv[2] end
    return b
  end)())
  if d then
    d:report()
    res.early, res.nbuckets = d.last.early, #d.buckets
  end
elseif cfg.mode == "syncbn" then
  -- ranks hold 3 and 1 samples of the same 4-sample batch
  local data = require("ddp_syncbn_data")(cfg.dtype)
  local xa, ca, w, b = data.x, data.c, data.w, data.b
  local s, n = rank == 0 and 1 or 4, rank == 0 and 3 or 1
  local x = xa:narrow(1, s, n):clone():requires_grad_()
  local m = nn.SyncBatchNorm(5)
  m:register_parameter("weight", w)
  m:register_parameter("bias", b)
  m._mean, m._variance = data.mean, data.var
  m.weight.grad, m.bias.grad = nil, nil
  local y = m(x)
  local loss = (y * ca:narrow(1, s, n)):sum()
  loss:backward()
  res.y, res.dx = flat { y }, flat { x.grad }
  res.dw, res.db = flat { m.weight.grad }, flat { m.bias.grad }
  res.mean, res.var = flat { m._mean }, flat { m._variance }
elseif cfg.mode == "hang" then
  -- every rank waits on a key nobody sets (up to --dist_timeout), silent, as in a collective
  local f = assert(io.open(cfg.out .. ".pid" .. rank, "w"))
  f:write(ffi.C.getpid(), "\n")
  f:close()
  dist.get_store():get("never/set", cfg.dist_timeout)
elseif cfg.mode == "buckets" then
  local P = nn.class("P")
  function P:__init()
    self:register_parameter("a", ms.zeros(3))
    self:register_parameter("b", ms.zeros(5))
    self:register_parameter("c", ms.zeros(1000))
    self:register_parameter("d", ms.zeros(7))
  end
  local model = P()
  local d = ddp.wrap(model, { bucket_mb = cfg.bucket_mb })
  local loss = ms.zeros(1)
  for i, p in ipairs(model:parameters()) do
    -- rank r's gradient of parameter i, element j: (r + 1) * i + j / 8; rank 1 leaves b out
    if not (rank == 1 and i == 2) then
      local c = ms.arange(0, p:numel()):div(8):add((rank + 1) * i)
      loss = loss + (p * c):sum()
    end
  end
  loss:backward()
  d:sync()
  d:report()
  res.grads = {}
  for i, p in ipairs(model:parameters()) do res.grads[i] = p.grad:tolist() end
  res.early, res.nbuckets = d.last.early, #d.buckets
end

if cfg.out then
  local f = assert(io.open(cfg.out .. "." .. rank, "w"))
  f:write("return ", ser(res), "\n")
  f:close()
end
if ctx then ctx:finish() end
