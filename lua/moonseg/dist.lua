-- dist.lua: distributed training on the C store and communicators: rendezvous store,
-- process group (torchrun / Slurm environment), collectives. Ranks are 0-based ids
-- (rank 0 hosts the store), as in torchrun; timeouts are in seconds.
local ffi = require "ffi"
local L = require "moonseg.lib"
local T = require "moonseg.tensor"
local C, check = L.C, L.check

local dist = {}

local ops = { sum = 0, avg = 1, mean = 1, max = 2, min = 3 }
local function op_code(op)
  local c = ops[op or "sum"]
  if not c then error("dist: unknown reduce op '" .. tostring(op) .. "' (sum, avg, max, min)", 3) end
  return c
end
local function ms_of(seconds, default)
  seconds = seconds or default
  if seconds == nil or seconds < 0 then return -1 end
  return math.floor(seconds * 1000 + 0.5)
end

-- ---- store ------------------------------------------------------------------------
local Store, Server = {}, {}
Store.__index, Server.__index = Store, Server
dist.Store = Store

-- dist.Store.server{host = "127.0.0.1", port = 0}: a store server on its own thread.
function Store.server(o)
  o = o or {}
  local p = ffi.new("ms_store_server*[1]")
  check(C.ms_store_server_start(o.host or "0.0.0.0", o.port or 0, p))
  return setmetatable({ _h = ffi.gc(p[0], C.ms_store_server_stop) }, Server)
end
function Server:port() return C.ms_store_server_port(self._h) end
function Server:stop()
  if self._h ~= nil then
    ffi.gc(self._h, nil)
    C.ms_store_server_stop(self._h)
    self._h = nil
  end
end

-- dist.Store.connect{host =, port =, timeout = seconds (default 300)}.
function Store.connect(o)
  o = o or {}
  local p = ffi.new("ms_store*[1]")
  check(C.ms_store_connect(o.host or "127.0.0.1", assert(o.port, "Store.connect: port needed"),
    ms_of(o.timeout, 300), p))
  return setmetatable({ _h = ffi.gc(p[0], C.ms_store_close), timeout = o.timeout or 300 }, Store)
end
local function sh(s)
  if s._h == nil then error("store was closed", 3) end
  return s._h
end
function Store:close()
  if self._h ~= nil then
    ffi.gc(self._h, nil)
    C.ms_store_close(self._h)
    self._h = nil
  end
end
function Store:set(key, value)
  value = tostring(value)
  check(C.ms_store_set(sh(self), key, value, #value))
end
local vp, np = ffi.new("const void*[1]"), ffi.new("int64_t[1]")
-- Waits up to timeout seconds (default: the store's) for key; returns its value string.
function Store:get(key, timeout)
  check(C.ms_store_get(sh(self), key, ms_of(timeout, self.timeout), vp, np))
  return ffi.string(vp[0], np[0])
end
local function key_array(keys)
  if type(keys) == "string" then keys = { keys } end
  local arr = ffi.new("const char*[?]", math.max(#keys, 1))
  for i = 1, #keys do arr[i - 1] = keys[i] end
  return arr, #keys, keys
end
function Store:wait(keys, timeout)
  local arr, n, anchor = key_array(keys)
  check(C.ms_store_wait(sh(self), arr, n, ms_of(timeout, self.timeout)))
  return anchor ~= nil
end
function Store:add(key, delta)
  local r = ffi.new("int64_t[1]")
  check(C.ms_store_add(sh(self), key, delta or 1, r))
  return tonumber(r[0])
end
function Store:check(keys)
  local arr, n, anchor = key_array(keys)
  local r = ffi.new("int[1]")
  check(C.ms_store_check(sh(self), arr, n, r))
  return r[0] == 1 and anchor ~= nil
end
function Store:delete(key)
  local r = ffi.new("int[1]")
  check(C.ms_store_delete(sh(self), key, r))
  return r[0] == 1
end
function Store:start_heartbeat(rank, interval)
  check(C.ms_store_heartbeat_start(sh(self), rank, ms_of(interval, 1)))
end
-- Ranks (0-based) whose heartbeat connection dropped or went silent for stale seconds.
function Store:dead_ranks(world_size, stale)
  local buf, n = ffi.new("int[?]", math.max(world_size, 1)), ffi.new("int[1]")
  check(C.ms_store_dead_ranks(sh(self), world_size, ms_of(stale, 10), buf, world_size, n))
  local r = {}
  for i = 0, math.min(n[0], world_size) - 1 do r[#r + 1] = buf[i] end
  return r
end

-- ---- environment -------------------------------------------------------------------------
-- First host of a Slurm node list: "node[03-05,9],gpu1" -> "node03".
function dist.first_slurm_host(list)
  if not list or list == "" then return nil end
  local depth, first = 0, #list + 1
  for i = 1, #list do
    local ch = list:sub(i, i)
    if ch == "[" then depth = depth + 1 elseif ch == "]" then depth = depth - 1
    elseif ch == "," and depth == 0 then first = i break end
  end
  local item = list:sub(1, first - 1)
  local prefix, range = item:match("^([^%[]*)%[([^%]]*)%]")
  if prefix then return prefix .. range:match("^[^,%-]+") end
  return item
end

local function env_int(name)
  local v = os.getenv(name)
  return v and v ~= "" and tonumber(v) or nil
end

-- Resolves rank, world size, local rank, master address and port: arguments first, then
-- torchrun's variables, then Slurm's.
function dist.resolve_env(o)
  o = o or {}
  local r = {
    rank = o.rank or env_int("RANK") or env_int("SLURM_PROCID"),
    world_size = o.world_size or env_int("WORLD_SIZE") or env_int("SLURM_NTASKS"),
    local_rank = o.local_rank or env_int("LOCAL_RANK") or env_int("SLURM_LOCALID"),
    master_addr = o.master_addr or os.getenv("MASTER_ADDR") or
      dist.first_slurm_host(os.getenv("SLURM_NODELIST") or os.getenv("SLURM_JOB_NODELIST")),
    master_port = o.master_port or env_int("MASTER_PORT"),
  }
  r.rank = r.rank or 0
  r.world_size = r.world_size or 1
  r.local_rank = r.local_rank or r.rank
  r.master_addr = r.master_addr or "127.0.0.1"
  r.master_port = r.master_port or 29500
  return r
end

-- ---- process group -----------------------------------------------------------------------
local group -- { comm =, store =, server =, rank =, world_size = }

local function need_group(op)
  if not group then error("dist." .. op .. ": call dist.init_process_group first", 3) end
  return group
end

-- dist.init_process_group{backend = "cpu", rank =, world_size =, master_addr =, master_port =,
-- timeout = seconds (default 300), store = an existing dist.Store}. Rank 0 hosts the store
-- unless start_store = false or a store is given.
function dist.init_process_group(o)
  o = o or {}
  if group then error("dist.init_process_group: already initialised (rank " .. group.rank .. ")", 2) end
  local backend = o.backend or "cpu"
  if backend ~= "cpu" and backend ~= "gloo" then
    error("dist.init_process_group: backend '" .. tostring(backend) .. "' not available (cpu)", 2)
  end
  local e = dist.resolve_env(o)
  if e.rank < 0 or e.rank >= e.world_size then
    error(string.format("dist.init_process_group: rank %d out of range for world size %d (ranks are 0-based)",
      e.rank, e.world_size), 2)
  end
  local timeout = o.timeout or 300
  local g = { rank = e.rank, world_size = e.world_size, local_rank = e.local_rank, timeout = timeout,
    master_addr = e.master_addr, master_port = e.master_port, groups = {} }
  local ok, err = pcall(function()
    if o.store then
      g.store = o.store
    else
      local host_store = o.start_store
      if host_store == nil then host_store = e.rank == 0 and os.getenv("MOONSEG_STORE_HOSTED") ~= "1" end
      if host_store then
        local bind = e.master_addr:match("^[%d%.]+$") and e.master_addr or "0.0.0.0"
        g.server = Store.server { host = bind, port = e.master_port }
        -- master_port 0: the kernel picks a free port; on_listen(port) tells whoever starts the peers
        e.master_port = g.server:port()
        g.master_port = e.master_port
        if o.on_listen then o.on_listen(e.master_port) end
      end
      g.store = Store.connect { host = e.master_addr, port = e.master_port, timeout = timeout }
      g.own_store = true
    end
    g.store:start_heartbeat(e.rank, o.heartbeat or 1)
    local p = ffi.new("ms_comm*[1]")
    check(C.ms_comm_init_cpu(sh(g.store), e.rank, e.world_size, ms_of(timeout), p))
    g.comm = ffi.gc(p[0], C.ms_comm_free)
  end)
  if not ok then
    if g.own_store and g.store then g.store:close() end
    if g.server then g.server:stop() end
    error(err, 2)
  end
  group = g
  return g
end

function dist.is_initialized() return group ~= nil end
function dist.get_rank() return group and group.rank or 0 end
function dist.get_world_size() return group and group.world_size or 1 end
function dist.get_local_rank() return group and group.local_rank or 0 end
function dist.get_store() return need_group("get_store").store end

-- Tears the group down; rank 0 keeps the store up until every rank has left.
function dist.destroy_process_group()
  if not group then return end
  local g = group
  group = nil
  for _, sub in ipairs(g.groups) do sub:destroy() end
  ffi.gc(g.comm, nil)
  C.ms_comm_free(g.comm)
  if g.own_store then
    pcall(function()
      if g.store:add("ms_dist/left", 1) == g.world_size then g.store:set("ms_dist/all_left", "1") end
    end)
  end
  if g.server then
    -- the host waits until every rank has left (or one died), at most the group's timeout
    local t0 = os.time()
    while os.difftime(os.time(), t0) <= g.timeout do
      local ok, done = pcall(function() return g.store:check("ms_dist/all_left") end)
      if not ok or done then break end
      local dead = g.store:dead_ranks(g.world_size, 10)
      if #dead > 0 then break end
      pcall(g.store.wait, g.store, "ms_dist/all_left", 1)
    end
  end
  if g.own_store then g.store:close() end
  if g.server then g.server:stop() end
end

-- ---- further groups ----------------------------------------------------------------------
local Group = {}
Group.__index = Group

-- dist.new_group() -> a second communicator over all ranks (a collective: every rank calls it,
-- in the same order). It has its own ring and communication thread, so its collectives never
-- queue behind the default group's nor delay them: data parallel sends its gradient buckets on
-- one while SyncBatchNorm's small blocking all-reduces go on the default group. Pass it as the
-- group argument of all_reduce / all_reduce_async / broadcast / barrier.
function dist.new_group()
  local g = need_group("new_group")
  local p = ffi.new("ms_comm*[1]")
  check(C.ms_comm_init_cpu(sh(g.store), g.rank, g.world_size, ms_of(g.timeout), p))
  local s = setmetatable({ comm = ffi.gc(p[0], C.ms_comm_free), rank = g.rank, world_size = g.world_size }, Group)
  g.groups[#g.groups + 1] = s
  return s
end
function Group:destroy()
  if self.comm then
    ffi.gc(self.comm, nil)
    C.ms_comm_free(self.comm)
    self.comm = nil
  end
end
-- The communicator of group (a dist.new_group() result) or of the default group.
local function comm_of(group_arg, op)
  if group_arg == nil then return need_group(op).comm end
  if getmetatable(group_arg) ~= Group or not group_arg.comm then
    error("dist." .. op .. ": group must be a live dist.new_group() result", 3)
  end
  return group_arg.comm
end

-- What carries group's (or the default group's) collectives: "cpu ring (tcp)" or "cpu ring
-- (shared memory)" (all ranks on this host; MS_COMM_TRANSPORT=tcp forces TCP).
function dist.transport(group_arg)
  return ffi.string(C.ms_comm_backend_name(comm_of(group_arg, "transport")))
end

-- Blocking collectives made so far and the seconds spent in them (SyncBatchNorm's statistics,
-- the loss's valid-pixel count): data parallel's report shows them per step.
dist.blocking = { calls = 0, seconds = 0 }
local now = C.ms_time_now
local function timed(st, t0)
  local b = dist.blocking
  b.calls, b.seconds = b.calls + 1, b.seconds + (now() - t0)
  return check(st)
end

local function th(t, op)
  if not T.is_tensor(t) then error("dist." .. op .. ": expected a tensor, got " .. type(t), 3) end
  return T.handle(t)
end

-- In place: every rank ends with the same (bit-identical) reduction.
function dist.all_reduce(t, op, group_arg)
  local c, h, o, t0 = comm_of(group_arg, "all_reduce"), th(t, "all_reduce"), op_code(op), now()
  timed(C.ms_comm_all_reduce(c, h, o), t0)
  return t
end

-- In place from root (a 0-based rank id).
function dist.broadcast(t, root, group_arg)
  check(C.ms_comm_broadcast(comm_of(group_arg, "broadcast"), th(t, "broadcast"), root or 0))
  return t
end

-- Returns a new [world_size, *t.shape] tensor holding every rank's t.
function dist.all_gather_into_tensor(t)
  local g = need_group("all_gather")
  local shape = t:size()
  table.insert(shape, 1, g.world_size)
  local out = T.M.empty(shape, { dtype = t.dtype, device = t.device })
  local h, t0 = th(t, "all_gather"), now()
  timed(C.ms_comm_all_gather(g.comm, h, T.handle(out)), t0)
  return out
end

-- Returns a list of world_size tensors, entry i + 1 from rank i.
function dist.all_gather(t)
  local all = dist.all_gather_into_tensor(t)
  local list = {}
  for i = 0, dist.get_world_size() - 1 do
    list[i + 1] = T.take(C.ms_select(T.handle(all), 0, i, L.out))
  end
  return list
end

-- x: [world_size * n, ...]; returns this rank's reduced slice [n, ...].
function dist.reduce_scatter(x, op)
  local g = need_group("reduce_scatter")
  local shape = x:size()
  if #shape == 0 or shape[1] % g.world_size ~= 0 then
    error(string.format("dist.reduce_scatter: first dim of [%s] must be a multiple of the world size %d",
      table.concat(shape, ", "), g.world_size), 2)
  end
  shape[1] = shape[1] / g.world_size
  local out = T.M.empty(shape, { dtype = x.dtype, device = x.device })
  check(C.ms_comm_reduce_scatter(g.comm, th(x, "reduce_scatter"), T.handle(out), op_code(op)))
  return out
end

function dist.barrier(group_arg)
  check(C.ms_comm_barrier(comm_of(group_arg, "barrier")))
end

-- ---- asynchronous work --------------------------------------------------------------------
local Work = {}
Work.__index = Work
local wp = ffi.new("ms_work*[1]")
local function work(h, t)
  return setmetatable({ _h = ffi.gc(h, C.ms_work_free), tensor = t }, Work)
end
-- Waits (timeout seconds, default forever) and raises the collective's error if it failed.
function Work:wait(timeout)
  check(C.ms_work_wait(self._h, ms_of(timeout, -1)))
  return self.tensor
end
function Work:is_completed() return C.ms_work_is_completed(self._h) == 1 end

function dist.all_reduce_async(t, op, group_arg)
  check(C.ms_comm_all_reduce_async(comm_of(group_arg, "all_reduce_async"), th(t, "all_reduce_async"), op_code(op), wp))
  return work(wp[0], t)
end
function dist.broadcast_async(t, root, group_arg)
  check(C.ms_comm_broadcast_async(comm_of(group_arg, "broadcast_async"), th(t, "broadcast_async"), root or 0, wp))
  return work(wp[0], t)
end

return dist
