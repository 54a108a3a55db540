-- ddp.lua: data-parallel training over the process group: rendezvous with start checks
-- (world size, config and model agree on every rank), parameters and buffers broadcast from
-- rank 0, gradients averaged in buckets that are launched from gradient-ready hooks while
-- backward still runs, SyncBatchNorm conversion, and the tear-down.
local ms = require "moonseg"
local dist = require "moonseg.dist"
local log = require "moonseg.engine.log"

local M = {}

-- FNV-1a over a string (32 bits), for the start checks.
local function fnv(s)
  local h = 2166136261
  for i = 1, #s do h = bit.tobit(bit.bxor(h, s:byte(i)) * 16777619) end
  return bit.tohex(h)
end

-- ---- rendezvous --------------------------------------------------------------------------

-- init{rank=, world_size=, master_addr=, master_port=, timeout = collective seconds (300),
-- connect_timeout = seconds to reach the master (30), liveness = seconds of silence after which
-- a peer counts as gone and this rank exits naming it (5)} -> ctx. Rank 0 hosts the store. Before
-- the communicator is built the ranks compare world sizes and claim their rank through the
-- store, so a wrong WORLD_SIZE or a rank started twice fails in seconds on every rank.
function M.init(o)
  require("moonseg.engine.launch").watch_launcher() -- die with our launcher, if we have one
  local e = dist.resolve_env(o)
  local rank, world = e.rank, e.world_size
  local timeout, ct = o.timeout or 300, math.min(o.connect_timeout or 30, o.timeout or 300)
  if rank < 0 or rank >= world then
    error(string.format("distributed: RANK %d is out of range for WORLD_SIZE %d (ranks are 0-based)", rank, world), 2)
  end
  local ctx = { rank = rank, world_size = world, timeout = timeout }
  -- MOONSEG_STORE_HOSTED=1: the store is already up (the launcher or a test hosts it)
  if rank == 0 and os.getenv("MOONSEG_STORE_HOSTED") ~= "1" then
    local bind = e.master_addr:match("^[%d%.]+$") and e.master_addr or "0.0.0.0"
    local ok, srv = pcall(dist.Store.server, { host = bind, port = e.master_port })
    if not ok then
      error(string.format("distributed: rank 0 cannot host the store on %s:%d: %s", bind, e.master_port, tostring(srv)), 2)
    end
    ctx.server = srv
  end
  local ok, store = pcall(dist.Store.connect, { host = e.master_addr, port = e.master_port, timeout = ct })
  if not ok then
    if ctx.server then ctx.server:stop() end
    error(string.format("distributed: rank %d cannot reach the master %s:%d within %g s: %s", rank,
      e.master_addr, e.master_port, ct, tostring(store)), 2)
  end
  store.timeout = timeout
  ctx.store = store
  local okc, err = pcall(function()
    if store:add("ms_rdzv/claim/" .. rank, 1) > 1 then
      local msg = string.format("rank %d was started twice (check RANK / --node_rank)", rank)
      store:set("ms_rdzv/error", msg)
      error(msg, 0)
    end
    store:set("ms_rdzv/ws/" .. rank, tostring(world))
    local keys = {}
    for r = 0, world - 1 do keys[#keys + 1] = "ms_rdzv/ws/" .. r end
    local t0 = ms.time()
    while true do
      if store:check("ms_rdzv/error") then
        local msg = store:get("ms_rdzv/error")
        pcall(store.add, store, "ms_rdzv/error_seen", 1) -- lets the store's host shut down
        error(msg, 0)
      end
      if store:check("ms_rdzv/ws/0") then
        local w0 = tonumber(store:get("ms_rdzv/ws/0"))
        if w0 ~= world then
          local msg = string.format("WORLD_SIZE mismatch: rank 0 has %d, rank %d has %d", w0, rank, world)
          store:set("ms_rdzv/error", msg)
          error(msg, 0)
        end
      end
      if store:check(keys) then
        for r = 1, world - 1 do
          local w = tonumber(store:get(keys[r + 1]))
          if w ~= world then
            local msg = string.format("WORLD_SIZE mismatch: rank 0 has %d, rank %d has %d", world, r, w)
            store:set("ms_rdzv/error", msg)
            error(msg, 0)
          end
        end
        break
      end
      local waited = ms.time() - t0
      if waited > timeout then
        local missing = {}
        for r = 0, world - 1 do if not store:check(keys[r + 1]) then missing[#missing + 1] = r end end
        error(string.format("ranks %s did not join within %g s (WORLD_SIZE %d)", table.concat(missing, ", "),
          timeout, world), 0)
      end
      pcall(store.wait, store, keys, 0.5)
    end
    dist.init_process_group { rank = rank, world_size = world, local_rank = e.local_rank, store = store,
      timeout = timeout }
    -- liveness: a rank whose heartbeat goes silent (or a store that stops answering) for
    -- `liveness` seconds ends the job in seconds, not after a collective's timeout
    local live = o.liveness or 5
    local wp = require("ffi").new("ms_watchdog*[1]")
    ms.lib.check(ms.lib.C.ms_watchdog_start(e.master_addr, e.master_port, rank, world,
      math.min(1000, math.floor(live * 250)), math.floor(live * 1000), wp))
    ctx.watchdog = wp[0]
  end)
  if not okc then
    if ctx.server then
      -- Keep the store up until the other ranks that joined have read the error (at most 5 s),
      -- so each of them reports the cause rather than a dropped connection.
      pcall(function()
        local joined = 0
        for r = 1, world - 1 do if store:check("ms_rdzv/claim/" .. r) then joined = joined + 1 end end
        local t0 = ms.time()
        while ms.time() - t0 < 5 and store:add("ms_rdzv/error_seen", 0) < joined do
          pcall(store.wait, store, { "ms_rdzv/never" }, 0.05)
        end
      end)
    end
    store:close()
    if ctx.server then ctx.server:stop() end
    error("distributed start on rank " .. rank .. " of " .. world .. ": " .. tostring(err), 2)
  end
  return setmetatable(ctx, { __index = M })
end

-- Leaves the group; rank 0 keeps the store up until every rank has left (or timeout).
function M.finish(ctx)
  if ctx.finished then return end
  ctx.finished = true
  if ctx.watchdog then
    ms.lib.C.ms_watchdog_stop(ctx.watchdog)
    ctx.watchdog = nil
  end
  M.set_loss_mean(nil)
  if dist.is_initialized() then dist.destroy_process_group() end
  local store = ctx.store
  pcall(function()
    if store:add("ms_rdzv/left", 1) == ctx.world_size then store:set("ms_rdzv/all_left", "1") end
  end)
  if ctx.server then
    local t0 = ms.time()
    while ms.time() - t0 < math.min(ctx.timeout, 60) do
      local ok, done = pcall(store.check, store, "ms_rdzv/all_left")
      if not ok or done or #store:dead_ranks(ctx.world_size, 10) > 0 then break end
      pcall(store.wait, store, "ms_rdzv/all_left", 1)
    end
  end
  store:close()
  if ctx.server then ctx.server:stop() end
end

-- ---- start checks ------------------------------------------------------------------------

-- check_same(store, what, entries): entries is a list of {name, value string}; every rank
-- publishes its list and compares every other rank's with its own, so all ranks stop with
-- the same message naming what differs.
function M.check_same(what, entries, o)
  o = o or {}
  local store, rank, world = dist.get_store(), dist.get_rank(), dist.get_world_size()
  local lines = {}
  for i, kv in ipairs(entries) do lines[i] = kv[1] .. "\t" .. kv[2] end
  local text = table.concat(lines, "\n")
  local key = "ms_check/" .. what .. "/"
  store:set(key .. rank, fnv(text) .. "\n" .. text)
  local function parse(s)
    local h, body = s:match("^(%x+)\n(.*)$")
    local map, order = {}, {}
    for line in (body or ""):gmatch("[^\n]+") do
      local k, v = line:match("^([^\t]*)\t(.*)$")
      map[k] = v
      order[#order + 1] = k
    end
    return h, map, order
  end
  local mine_h, mine, order = parse(store:get(key .. rank))
  for r = 0, world - 1 do
    if r ~= rank then
      local h, other, oorder = parse(store:get(key .. r, o.timeout))
      if h ~= mine_h then
        local diffs = {}
        local lo, hi = math.min(rank, r), math.max(rank, r)
        local a, b = lo == rank and mine or other, lo == rank and other or mine
        local seen = {}
        local names = {}
        for _, k in ipairs(order) do names[#names + 1] = k end
        for _, k in ipairs(oorder) do names[#names + 1] = k end
        for _, k in ipairs(names) do
          if not seen[k] and a[k] ~= b[k] then
            seen[k] = true
            diffs[#diffs + 1] = string.format("%s%s: rank %d has %s, rank %d has %s", o.prefix or "", k, lo,
              a[k] or "nothing", hi, b[k] or "nothing")
            if #diffs >= 5 then break end
          end
        end
        error(string.format("%s differs between ranks %d and %d:\n  %s", what, lo, hi, table.concat(diffs, "\n  ")), 0)
      end
    end
  end
end

-- The flags every rank must agree on (rank-specific ones left out).
function M.check_config(cfg, exclude)
  local skip = { log_dir = true, nproc = true, gpus = true, ips = true, node_rank = true }
  for _, k in ipairs(exclude or {}) do skip[k] = true end
  local names = {}
  for k, v in pairs(cfg) do
    local t = type(v)
    if not skip[k] and (t == "number" or t == "string" or t == "boolean" or t == "table") then names[#names + 1] = k end
  end
  table.sort(names)
  local entries = {}
  for _, k in ipairs(names) do
    local v = cfg[k]
    if type(v) == "table" then
      local ok, s = pcall(table.concat, v, " ")
      v = ok and ("{" .. s .. "}") or nil
    end
    if v ~= nil then entries[#entries + 1] = { k, tostring(v) } end
  end
  M.check_same("config", entries, { prefix = "--" })
end

-- The model's state-dict keys, shapes and dtypes must agree.
function M.check_model(model)
  local entries = {}
  for _, k in ipairs(model:state_dict_keys()) do
    local t = model:state_dict()[k]
    entries[#entries + 1] = { k, "[" .. table.concat(t:size(), ", ") .. "] " .. t:type() }
  end
  M.check_same("model", entries, { prefix = "key " })
end

-- ---- SyncBatchNorm -----------------------------------------------------------------------

-- Replaces every nn.BatchNorm2d child of model (recursively) by an nn.SyncBatchNorm sharing
-- its tensors; state-dict keys are unchanged. Returns the number converted.
function M.convert_sync_batchnorm(model)
  local nn = ms.nn
  local n = 0
  local function walk(m)
    for _, name in ipairs(m._module_names) do
      local c = m._modules[name]
      if c then
        if c.__class == nn.BatchNorm2d then
          m._modules[name] = nn.SyncBatchNorm.from_batch_norm(c)
          n = n + 1
        else
          walk(c)
        end
      end
    end
  end
  walk(model)
  return n
end

-- ---- data parallel -------------------------------------------------------------------------

local DDP = {}
DDP.__index = DDP

-- wrap(model, {bucket_mb = 25, first_bucket_mb = 1, broadcast = true, log_every = nil}) -> ddp.
-- Broadcasts rank 0's parameters and buffers, assigns parameters to buckets (reverse parameter
-- order: the last parameters' gradients are ready first; the first bucket small, as PyTorch's, so
-- communication starts early in backward) and hooks them. The buckets travel on their own
-- communicator (dist.new_group), so SyncBatchNorm's blocking all-reduces in backward never wait
-- behind a 25 MB bucket. ddp:sync() (cfg.grad_sync) must run after every backward, before the
-- optimizer step.
function M.wrap(model, o)
  o = o or {}
  local self = setmetatable({ model = model, buckets = {}, log_every = o.log_every, steps = 0,
    acc = { total = 0, exposed = 0, bytes = 0, early = 0, n = 0 } }, DDP)
  self.blocking_mark = { calls = dist.blocking.calls, seconds = dist.blocking.seconds }
  if o.broadcast ~= false then
    ms.no_grad(function()
      for _, kv in ipairs(model:named_parameters()) do dist.broadcast(kv[2], 0) end
      for _, kv in ipairs(model:named_buffers()) do dist.broadcast(kv[2], 0) end
    end)
  end
  if dist.is_initialized() and dist.get_world_size() > 1 then self.group = dist.new_group() end
  local cap = math.max(1, math.floor((o.bucket_mb or 25) * 1024 * 1024))
  local first_cap = math.min(cap, math.max(1, math.floor((o.first_bucket_mb or 1) * 1024 * 1024)))
  local params = {}
  for _, p in ipairs(model:parameters()) do if p.requires_grad then params[#params + 1] = p end end
  local cur
  for i = #params, 1, -1 do
    local p = params[i]
    local nbytes = p:numel() * tonumber(ms.lib.C.ms_dtype_size(p:dtype_code()))
    -- a bucket holds one dtype on one device (the flat buffer lives where its params do)
    if not cur or cur.dtype ~= p:type() or cur.device ~= p:device_str() or (cur.bytes > 0 and cur.bytes + nbytes > (#self.buckets == 1 and first_cap or cap)) then
      cur = { dtype = p:type(), device = p:device_str(), bytes = 0, numel = 0, params = {}, offsets = {} }
      self.buckets[#self.buckets + 1] = cur
    end
    cur.params[#cur.params + 1] = p
    cur.offsets[#cur.offsets + 1] = cur.numel
    cur.numel = cur.numel + p:numel()
    cur.bytes = cur.bytes + nbytes
  end
  for bi, b in ipairs(self.buckets) do
    b.flat = ms.zeros(math.max(b.numel, 1), { dtype = b.dtype, device = b.device })
    b.views = {}
    for j, p in ipairs(b.params) do
      b.views[j] = b.flat:narrow(1, b.offsets[j] + 1, p:numel()):view(p:size())
      local jj = j
      p:register_hook(function(leaf) self:_ready(bi, jj, leaf) end)
    end
  end
  self:_reset()
  return self
end

function DDP:_reset()
  for _, b in ipairs(self.buckets) do
    b.got, b.ready, b.work = {}, 0, nil
  end
  self.next_launch, self.t_first = 1, nil
end

function DDP:_launch(b)
  if not self.t_first then self.t_first = ms.time() end
  b.work = dist.all_reduce_async(b.flat, "avg", self.group)
end

-- Gradient-ready hook: copy into the bucket; launch the buckets that are full, in order.
function DDP:_ready(bi, j, p)
  if self.disabled then return end
  local b = self.buckets[bi]
  if b.got[j] then
    error("data parallel: a parameter's gradient became ready twice before grad_sync (a second " ..
      "backward without an optimizer step?)", 0)
  end
  b.got[j] = true
  b.ready = b.ready + 1
  b.views[j]:copy_(p.grad)
  while self.next_launch <= #self.buckets do
    local nb = self.buckets[self.next_launch]
    if nb.ready < #nb.params then break end
    self:_launch(nb)
    self.next_launch = self.next_launch + 1
    self.acc.early = self.acc.early + 1
  end
end

-- cfg.grad_sync: launches what backward did not (parameters without a gradient count as
-- zero), waits for every bucket and hands each parameter its averaged gradient as a view of the
-- bucket (PyTorch's gradient_as_bucket_view: no copy back; the optimizer's zero_grad drops it).
function DDP:sync()
  local t_sync = ms.time()
  for k = self.next_launch, #self.buckets do
    local b = self.buckets[k]
    for j = 1, #b.params do if not b.got[j] then b.views[j]:zero_() end end
    self:_launch(b)
  end
  ms.no_grad(function()
    for _, b in ipairs(self.buckets) do
      b.work:wait()
      for j, p in ipairs(b.params) do p.grad = b.views[j] end
    end
  end)
  local t_end = ms.time()
  local a = self.acc
  a.total = a.total + (t_end - (self.t_first or t_sync))
  a.exposed = a.exposed + (t_end - t_sync)
  a.n = a.n + 1
  self.steps = self.steps + 1
  self:_reset()
  if self.log_every and self.steps % self.log_every == 0 then log.info(self:report()) end
end

-- How much of the all-reduce time backward hid since the last report.
function DDP:report()
  local a = self.acc
  local n = math.max(a.n, 1)
  local bytes = 0
  for _, b in ipairs(self.buckets) do bytes = bytes + b.bytes end
  local hidden = a.total > 0 and math.max(0, 1 - a.exposed / a.total) or 0
  local bl = dist.blocking
  local bc, bs = bl.calls - self.blocking_mark.calls, bl.seconds - self.blocking_mark.seconds
  self.blocking_mark = { calls = bl.calls, seconds = bl.seconds }
  local s = string.format("[DDP] %d buckets (%.2f MB); all-reduce %.1f ms/step from first launch, %.1f ms/step " ..
    "waited in grad_sync: %.0f%% hidden behind backward; %.1f of %d buckets launched during backward; " ..
    "%.0f blocking collectives/step (SyncBatchNorm, loss) %.1f ms/step",
    #self.buckets, bytes / 1048576, a.total / n * 1000, a.exposed / n * 1000, hidden * 100, a.early / n, #self.buckets,
    bc / n, bs / n * 1000)
  self.last = { total = a.total / n, exposed = a.exposed / n, hidden = hidden, early = a.early / n,
    buckets = #self.buckets, blocking_calls = bc / n, blocking = bs / n }
  self.acc = { total = 0, exposed = 0, bytes = 0, early = 0, n = 0 }
  return s
end

-- Stops the hooks (the model keeps working in one process).
function DDP:remove() self.disabled = true end

-- Loss reduction across ranks: "global" (default) divides every rank's loss sum by the valid
-- pixels of the whole global batch (one all-reduce of the count per loss call), so N workers x B
-- equal 1 x N*B also with padding and ignored pixels; "rank" keeps PyTorch DDP's mean over each
-- rank's own valid pixels. nil restores the one-process behaviour.
function M.set_loss_mean(mode)
  if mode == nil then
    ms.losses.denominator_sync = nil
  elseif mode == "global" then
    local t = ms.zeros(1, { dtype = "f64" })
    ms.losses.denominator_sync = function(d)
      t:fill_(d)
      dist.all_reduce(t, "sum")
      return t:item() / dist.get_world_size()
    end
  elseif mode == "rank" then
    ms.losses.denominator_sync = nil
  else
    error("data parallel: --loss_mean must be global or rank, got " .. tostring(mode), 2)
  end
end

-- attach(ctx, parts, cfg): makes a recipe's parts data parallel: SyncBatchNorm, the start
-- checks (flags and model agree on every rank), broadcast and gradient hooks, and the hooks
-- train() calls (grad_sync, metric_sync); rank and world_size for sharding and logging.
function M.attach(ctx, parts, cfg)
  local model = parts.model
  M.convert_sync_batchnorm(model)
  M.check_config(cfg)
  M.check_model(model)
  local d = M.wrap(model, { bucket_mb = cfg.bucket_mb, log_every = cfg.log_iters })
  parts.rank, parts.world_size = ctx.rank, ctx.world_size
  M.set_loss_mean(cfg.loss_mean or "global")
  parts.grad_sync = function() d:sync() end
  parts.metric_sync = function(t) return dist.all_reduce(t, "sum") end
  local lt = ms.zeros(1, { dtype = "f64" })
  parts.loss_sync = function(v) return dist.all_reduce(lt:fill_(v), "avg"):item() end
  ctx.ddp = d
  log.info(string.format("[DDP] rank %d of %d: %d buckets of <= %g MB, SyncBatchNorm, loss mean over %s, " ..
    "timeout %g s, transport %s", ctx.rank, ctx.world_size, #d.buckets, cfg.bucket_mb or 25,
    (cfg.loss_mean or "global") == "global" and "the global batch's valid pixels" or "each rank's valid pixels",
    ctx.timeout, dist.is_initialized() and dist.transport() or "none"))
  return d
end

return M
