-- tensor.lua: the Lua Tensor class over an ms_tensor handle: metadata, creation, indexing, printing.
local ffi = require "ffi"
local L = require "moonseg.lib"
local C, ctx, check, out = L.C, L.ctx, L.check, L.out

local Tensor = {} -- methods
local mt = {}
Tensor.__mt = mt

local function is_tensor(x) return getmetatable(x) == mt end
Tensor.is_tensor = is_tensor

-- While a tracking list is set (Tensor.track), every tensor made is appended to it, so that
-- a caller (nn/checkpoint.lua) can free the temporaries of a computation as soon as it ends.
local tracking = nil

-- Host tensor memory drives the collector too: Lua's own pacing counts only Lua objects, so
-- a forward's unreachable temporaries (large storages behind small handles) would wait for
-- backward's collection. A full collection runs whenever live tensor bytes have grown by a
-- quarter (at least 32 MiB) since the last one; the cost is a few collections per step.
local host_stats = ffi.new("ms_memory_stats")
local gc_at = 32 * 2 ^ 20
local function host_pressure()
  C.ms_memory_stats_get(0, 0, host_stats)
  local live = tonumber(host_stats.allocated)
  if live > gc_at then
    collectgarbage()
    C.ms_memory_stats_get(0, 0, host_stats)
    live = tonumber(host_stats.allocated)
    gc_at = live + math.max(32 * 2 ^ 20, live / 4)
  elseif live < gc_at - math.max(64 * 2 ^ 20, live / 2) then
    gc_at = live + math.max(32 * 2 ^ 20, live / 4) -- memory went back (frees): pace from here
  end
end

-- Takes ownership of handle h (freed by t:free() or, as a safety net, by the GC).
local function wrap(h)
  local t = setmetatable({ _h = ffi.gc(h, C.ms_tensor_free) }, mt)
  if tracking then tracking[#tracking + 1] = t end
  host_pressure()
  return t
end
Tensor.wrap = wrap

-- Tensor.track(list or nil) -> the previous list: sets where new tensors are recorded.
function Tensor.track(list)
  local prev = tracking
  tracking = list
  return prev
end
-- Wraps out[0] after a successful call.
function Tensor.take(status, level)
  check(status, (level or 1) + 1)
  return wrap(out[0])
end
local take = Tensor.take

local function handle(t)
  local h = t._h
  if h == nil then error("tensor was freed (t:free() or released by backward) and can no longer be used", 3) end
  return h
end
Tensor.handle = handle

-- Lua dims are 1-based (negative counts from the end); C dims are 0-based.
local function cdim(d, ndim)
  if type(d) ~= "number" or d ~= math.floor(d) then error("dim must be an integer, got " .. tostring(d), 3) end
  if d == 0 then error("dims are 1-based in moonseg (1 is the first, -1 the last); got 0", 3) end
  if ndim and (d > ndim or d < -math.max(ndim, 1)) then
    error(string.format("dim %d out of range for a %d-d tensor", d, ndim), 3)
  end
  return d > 0 and d - 1 or d
end
Tensor.cdim = cdim

function Tensor.free(t)
  local h = t._h
  if h ~= nil then
    ffi.gc(h, nil)
    C.ms_tensor_free(h)
    t._h = nil
  end
end

function Tensor.is_freed(t) return t._h == nil end
function Tensor.dim(t) return C.ms_tensor_ndim(handle(t)) end
Tensor.ndimension = Tensor.dim
function Tensor.numel(t) return tonumber(C.ms_tensor_numel(handle(t))) end
Tensor.nElement = Tensor.numel

-- size() -> {d1, d2, ...}; size(d) -> that dim's size.
function Tensor.size(t, d)
  local h = handle(t)
  local n = C.ms_tensor_ndim(h)
  if d then return tonumber(C.ms_tensor_size(h, cdim(d, n) % math.max(n, 1))) end
  local s = {}
  for i = 0, n - 1 do s[i + 1] = tonumber(C.ms_tensor_size(h, i)) end
  return s
end

function Tensor.stride(t, d)
  local h = handle(t)
  local n = C.ms_tensor_ndim(h)
  if d then return tonumber(C.ms_tensor_stride(h, cdim(d, n) % math.max(n, 1))) end
  local s = {}
  for i = 0, n - 1 do s[i + 1] = tonumber(C.ms_tensor_stride(h, i)) end
  return s
end

function Tensor.dtype_code(t) return tonumber(C.ms_tensor_dtype(handle(t))) end
function Tensor.type(t) return L.dtype_names[Tensor.dtype_code(t)] end
-- "cpu" for cpu:0 (the common case reads as before), "cpu:N" for the other host devices, "cuda:N".
function Tensor.device_str(t)
  local h = handle(t)
  local i = C.ms_tensor_device_index(h)
  if C.ms_tensor_device_type(h) == 0 then return i == 0 and "cpu" or "cpu:" .. i end
  return "cuda:" .. i
end
function Tensor.is_contiguous(t) return C.ms_tensor_is_contiguous(handle(t)) == 1 end
function Tensor.is_floating_point(t) return Tensor.dtype_code(t) <= 3 end
function Tensor.data_ptr(t) return C.ms_tensor_data_ptr(handle(t)) end
function Tensor.storage_offset(t) return tonumber(C.ms_tensor_offset(handle(t))) end
function Tensor.same_storage(a, b) return C.ms_tensor_same_storage(handle(a), handle(b)) == 1 end

-- Properties read as fields: t.shape, t.dtype, t.device, t.ndim, t.is_leaf.
local props = {
  shape = Tensor.size, dtype = Tensor.type, device = Tensor.device_str, ndim = Tensor.dim,
  is_leaf = function(t) return t.grad_fn == nil end,
}

mt.__index = function(t, k)
  local m = Tensor[k]
  if m ~= nil then return m end
  local p = props[k]
  if p then return p(t) end
  if type(k) == "number" then return Tensor.index(t, k) end
  if type(k) == "table" then return Tensor.index(t, k) end
  return nil
end

mt.__newindex = function(t, k, v)
  if type(k) == "number" or type(k) == "table" then return Tensor.index_assign(t, k, v) end
  rawset(t, k, v)
end

-- ---- dtype/device arguments -------------------------------------------------
local function dtype_code(d, default)
  if d == nil then return default or 1 end
  local c = type(d) == "number" and d or L.dtypes[d]
  if c == nil then
    error("unknown dtype '" .. tostring(d) .. "' (f64, f32, f16, bf16, i64, i32, u8, bool)", 3)
  end
  return c
end
Tensor.dtype_arg = dtype_code

-- Device strings: cpu, cpu:N (host devices for testing that every tensor follows its device),
-- cuda, cuda:N, and gpu, gpu:N (PaddleSeg's name for cuda). Returns type code, index.
local default_type, default_index = 0, 0
local function parse_device(dev, level)
  if dev == nil then return default_type, default_index end
  if type(dev) == "string" then
    local kind, idx = dev:match("^(%a+):(%d+)$")
    if not kind then kind = dev:match("^(%a+)$") end
    local i = tonumber(idx) or 0
    if kind == "cpu" then return 0, i end
    if kind == "cuda" or kind == "gpu" then return 1, i end
  end
  error("unknown device '" .. tostring(dev) .. "' (cpu, cpu:N, cuda, cuda:N, gpu, gpu:N)", (level or 2) + 1)
end
local function device_arg(dev) return parse_device(dev, 3) end

-- The canonical string of a device ("cpu", "cpu:1", "cuda:0"), as t.device reads.
local function device_name(dt, di)
  if dt == 0 then return di == 0 and "cpu" or "cpu:" .. di end
  return "cuda:" .. di
end
function Tensor.canonical_device(dev)
  return device_name(parse_device(dev, 2))
end
Tensor.device_name = device_name

-- What a to(...) string means: "device" (cpu, cuda, gpu with or without :N), "dtype", or an
-- error naming both kinds of value.
function Tensor.device_or_dtype(a, level)
  if type(a) == "string" and (a:match("^cpu") or a:match("^cuda") or a:match("^gpu")) then return "device" end
  if L.dtypes[a] ~= nil or type(a) == "number" then return "dtype" end
  error("to: unknown device or dtype '" .. tostring(a) .. "' (devices: cpu, cpu:N, cuda:N, gpu:N; " ..
    "dtypes: f64, f32, f16, bf16, i64, i32, u8, bool)", (level or 2) + 1)
end

-- Factories without a device use this one (MOONSEG_DEFAULT_DEVICE sets it at load).
function Tensor.set_default_device(dev)
  local dt, di = parse_device(dev, 2)
  default_type, default_index = dt, di
end
function Tensor.get_default_device() return device_name(default_type, default_index) end
do
  local env = os.getenv("MOONSEG_DEFAULT_DEVICE")
  if env and env ~= "" then
    local ok, err = pcall(Tensor.set_default_device, env)
    if not ok then error("MOONSEG_DEFAULT_DEVICE: " .. tostring(err), 0) end
  end
end
Tensor.device_arg = device_arg

local shape_buf = ffi.new("int64_t[8]")
-- Accepts {2, 3} or 2, 3; returns a C array (shared scratch) and ndim.
local function shape_arg(...)
  local first = ...
  local s = type(first) == "table" and first or { ... }
  if #s > 8 then error("at most 8 dims supported, got " .. #s, 3) end
  for i = 1, #s do
    local v = s[i]
    if type(v) ~= "number" or v ~= math.floor(v) or v < -1 then
      error("bad size " .. tostring(v) .. " at position " .. i .. " of the shape", 3)
    end
    shape_buf[i - 1] = v
  end
  return shape_buf, #s
end
Tensor.shape_arg = shape_arg

-- Splits a trailing options table {dtype=, device=, requires_grad=} from varargs.
-- (Indexes a packed table: select(n, ...) with a variable n miscompiled under the JIT here.)
local function split_opts(...)
  local args = { ... }
  local n = select("#", ...)
  local last = args[n]
  if n > 0 and type(last) == "table" and (last.dtype or last.device or last.requires_grad ~= nil) then
    return last, n - 1
  end
  return {}, n
end

local function shape_from(n, ...)
  local first = ...
  if n == 1 and type(first) == "table" then return first end
  local s = { ... }
  for i = #s, n + 1, -1 do s[i] = nil end
  return s
end

local function finish(t, opts)
  if opts.requires_grad then t.requires_grad = true end
  return t
end

-- ---- creation --------------------------------------------------------------------
local M = {} -- functions exported as ms.xxx

function M.empty(...)
  local opts, n = split_opts(...)
  local s, nd = shape_arg(shape_from(n, ...))
  local dt, di = device_arg(opts.device)
  return finish(take(C.ms_empty(ctx, s, nd, dtype_code(opts.dtype), dt, di, out)), opts)
end

function M.full(shape, value, opts)
  opts = opts or {}
  local s, nd = shape_arg(shape)
  local dt, di = device_arg(opts.device)
  return finish(take(C.ms_full(ctx, s, nd, dtype_code(opts.dtype), dt, di, value, out)), opts)
end

function M.zeros(...)
  local opts, n = split_opts(...)
  return M.full(shape_from(n, ...), 0, opts)
end

function M.ones(...)
  local opts, n = split_opts(...)
  return M.full(shape_from(n, ...), 1, opts)
end

-- arange(end) / arange(start, end[, step]) [, opts]; integers give i64, like PyTorch.
function M.arange(a, b, c, opts)
  if type(b) == "table" then opts, b = b, nil end
  if type(c) == "table" then opts, c = c, nil end
  opts = opts or {}
  local start, stop, step = b and a or 0, b or a, c or 1
  local int = start == math.floor(start) and stop == math.floor(stop) and step == math.floor(step)
  local dt, di = device_arg(opts.device)
  return finish(take(C.ms_arange(ctx, start, stop, step, dtype_code(opts.dtype, int and 4 or 1), dt, di, out)), opts)
end

-- Options for a tensor made on x's behalf: x's dtype and device unless opts says otherwise.
local function like_opts(x, opts)
  local o = { dtype = x:type(), device = x:device_str() }
  if opts then for k, v in pairs(opts) do o[k] = v end end
  return o
end
Tensor.like_opts = like_opts

-- zeros_like(x[, opts]) and friends: x's shape, dtype and device.
function M.empty_like(x, opts) return M.empty(x:size(), like_opts(x, opts)) end
function M.zeros_like(x, opts) return M.full(x:size(), 0, like_opts(x, opts)) end
function M.ones_like(x, opts) return M.full(x:size(), 1, like_opts(x, opts)) end
function M.full_like(x, value, opts) return M.full(x:size(), value, like_opts(x, opts)) end

-- x:new_zeros(shape...[, opts]) and friends: a new shape with x's dtype and device.
function Tensor.new_empty(x, ...)
  local opts, n = split_opts(...)
  return M.empty(shape_from(n, ...), like_opts(x, opts))
end
function Tensor.new_zeros(x, ...)
  local opts, n = split_opts(...)
  return M.full(shape_from(n, ...), 0, like_opts(x, opts))
end
function Tensor.new_ones(x, ...)
  local opts, n = split_opts(...)
  return M.full(shape_from(n, ...), 1, like_opts(x, opts))
end
function Tensor.new_full(x, shape, value, opts) return M.full(shape, value, like_opts(x, opts)) end
-- x:new_tensor(data[, opts]): ms.tensor on x's device, in x's dtype.
function Tensor.new_tensor(x, data, opts) return M.tensor(data, like_opts(x, opts)) end

M.set_default_device = Tensor.set_default_device
M.get_default_device = Tensor.get_default_device

local function nested_shape(v, shape, depth)
  if type(v) == "table" and not is_tensor(v) then
    shape[depth] = #v
    if #v > 0 then nested_shape(v[1], shape, depth + 1) end
  end
  return shape
end

-- ms.tensor({{1, 2}, {3, 4}}, {dtype = "f32"}); numbers give f32 unless told (bools give bool).
function M.tensor(data, opts)
  opts = opts or {}
  if is_tensor(data) then return data:clone() end
  local shape = nested_shape(data, {}, 1)
  local flat = {}
  local function walk(v, depth)
    if type(v) == "table" then
      if #v ~= (shape[depth] or 0) then error("ms.tensor: ragged nested table at depth " .. depth, 3) end
      for i = 1, #v do walk(v[i], depth + 1) end
    else
      if depth <= #shape then error("ms.tensor: ragged nested table at depth " .. depth, 3) end
      flat[#flat + 1] = v
    end
  end
  walk(data, 1)
  local default = type(flat[1]) == "boolean" and 7 or 1
  local dcode = dtype_code(opts.dtype, default)
  local n = #flat
  local buf = ffi.new("double[?]", math.max(n, 1))
  for i = 1, n do
    local v = flat[i]
    if type(v) == "boolean" then v = v and 1 or 0 end
    if type(v) ~= "number" then error("ms.tensor: element " .. i .. " is a " .. type(v), 2) end
    buf[i - 1] = v
  end
  local s, nd = shape_arg(shape)
  local t = take(C.ms_from_host(ctx, buf, n * 8, s, nd, 0, 0, 0, out))
  if dcode ~= 0 then
    local c = take(C.ms_cast(ctx, t._h, dcode, out))
    t:free()
    t = c
  end
  local dt, di = device_arg(opts.device)
  if dt ~= 0 or di ~= 0 then
    local d = take(C.ms_to_device(ctx, t._h, dt, di, out))
    t:free()
    t = d
  end
  return finish(t, opts)
end

-- ---- reading values ------------------------------------------------------------------
function Tensor.to_f64_buffer(t)
  local n = t:numel()
  local buf = ffi.new("double[?]", math.max(n, 1))
  check(C.ms_read_f64(ctx, handle(t), buf, n))
  return buf, n
end

function Tensor.item(t)
  if t:numel() ~= 1 then
    error("item(): tensor of shape [" .. table.concat(t:size(), ", ") .. "] has " .. t:numel() .. " elements, need 1", 2)
  end
  local buf = t:to_f64_buffer()
  local v = buf[0]
  local d = t:dtype_code()
  if d == 7 then return v ~= 0 end
  return v
end

-- Nested Lua tables of numbers (booleans for bool tensors).
function Tensor.tolist(t)
  local buf = t:to_f64_buffer()
  local shape = t:size()
  local isbool = t:dtype_code() == 7
  local pos = 0
  local function build(d)
    if d > #shape then
      local v = buf[pos]
      pos = pos + 1
      if isbool then return v ~= 0 end
      return v
    end
    local r = {}
    for i = 1, shape[d] do r[i] = build(d + 1) end
    return r
  end
  if #shape == 0 then return build(1) end
  return build(1)
end

-- ---- printing --------------------------------------------------------------------------
local function fmt_number(v, isfloat, isbool)
  if isbool then return v ~= 0 and "true" or "false" end
  if not isfloat then return string.format("%d", v) end
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  return nil
end

function Tensor.__tostring_impl(t)
  if t._h == nil then return "tensor(<freed>)" end
  local shape = t:size()
  local n = t:numel()
  local dcode = t:dtype_code()
  local isfloat, isbool = dcode <= 3, dcode == 7
  local buf = n > 0 and t:to_f64_buffer() or nil
  local summarize = n > 1000
  local edge = 3
  -- Choose one float format for all shown values, as PyTorch does.
  local ffmt = "%.4f"
  if isfloat and n > 0 then
    local maxabs, allint = 0, true
    for i = 0, n - 1 do
      local v = buf[i]
      if v == v and v ~= math.huge and v ~= -math.huge then
        maxabs = math.max(maxabs, math.abs(v))
        if v ~= math.floor(v) then allint = false end
      end
    end
    if maxabs >= 1e8 or (maxabs > 0 and maxabs < 1e-4) then ffmt = "%.4e"
    elseif allint then ffmt = "%.0f." end
  end
  local function num(v)
    return fmt_number(v, isfloat, isbool) or string.format(ffmt, v)
  end
  local strides, acc = {}, 1
  for d = #shape, 1, -1 do strides[d] = acc; acc = acc * shape[d] end
  local function render(d, base, indent)
    if d > #shape then return num(buf[base]) end
    local parts = {}
    local size = shape[d]
    local function add(i) parts[#parts + 1] = render(d + 1, base + (i - 1) * strides[d], indent .. " ") end
    if summarize and size > 2 * edge then
      for i = 1, edge do add(i) end
      parts[#parts + 1] = "..."
      for i = size - edge + 1, size do add(i) end
    else
      for i = 1, size do add(i) end
    end
    local sep = d == #shape and ", " or (",\n" .. string.rep("\n", #shape - d - 1) .. indent .. " ")
    return "[" .. table.concat(parts, sep) .. "]"
  end
  local body = n == 0 and "[]" or render(1, 0, "       ")
  local meta = { "shape=[" .. table.concat(shape, ", ") .. "]", "dtype=" .. t:type() }
  if t:device_str() ~= "cpu" then meta[#meta + 1] = "device=" .. t:device_str() end
  if t.grad_fn then meta[#meta + 1] = "grad_fn=" .. t.grad_fn.name
  elseif t.requires_grad then meta[#meta + 1] = "requires_grad=true" end
  return "tensor(" .. body .. ", " .. table.concat(meta, ", ") .. ")"
end
mt.__tostring = function(t) return Tensor.__tostring_impl(t) end

Tensor.M = M
return Tensor
