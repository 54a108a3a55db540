-- amp.lua: mixed precision. Autocast is a policy of the op layer: while it is on, the wrapped
-- ops cast their floating-point tensor arguments (differentiably) to the half dtype or to f32
-- before running. GradScaler scales the loss, unscales and checks the gradients in one C call,
-- skips steps whose gradients hold inf/nan and updates the scale on the device.
local ms = require "moonseg"
local mt = require "moonseg.multi_tensor"
local T = ms.Tensor

local amp = {}

-- The O1 policy (PyTorch's and Paddle's lists for the ops moonseg has). "half": computed in the
-- autocast dtype; "f32": computed in f32; "conv": computed in the autocast dtype, with f32 weight
-- and bias handed to the op as they are (the op converts them and gives their gradients in f32:
-- no autograd cast nodes, and on AVX512-BF16 CPUs dw comes from the kernel unrounded). Ops not
-- listed run in the dtype of their inputs (binary ops promote half with f32 to f32). batch_norm is not listed: it takes half input with
-- its f32 weight, bias and running stats as they are.
amp.policy = {
  conv2d = "conv", matmul = "half", mm = "half", bmm = "half", linear = "half",
  softmax = "f32", log_softmax = "f32", cross_entropy = "f32", nll_loss = "f32",
  binary_cross_entropy = "f32", mse_loss = "f32", l1_loss = "f32",
  sum = "f32", mean = "f32", var = "f32", std = "f32", prod = "f32", norm = "f32",
  layer_norm = "f32", interpolate = "f32", exp = "f32", log = "f32", pow = "f32",
}

local state = { dtype = nil } -- dtype: "f16" / "bf16" while autocast is on, else nil
amp.state = state

local half_of = { fp16 = "f16", f16 = "f16", float16 = "f16", bf16 = "bf16", bfloat16 = "bf16" }
local function half_dtype(d)
  local h = half_of[d]
  if not h then error("autocast: dtype must be f16 or bf16, got " .. tostring(d), 3) end
  return h
end

local floats = { f32 = true, f16 = true, bf16 = true } -- f64 (gradient checks) is left alone

local function cast(x, to)
  if T.is_tensor(x) and x:type() ~= to and floats[x:type()] then return x:to(to) end
  return x
end

-- fn wrapped so that, under autocast, its tensor arguments are cast per kind first.
local function wrap(fn, kind)
  if kind == "conv" then
    return function(x, w, b, ...)
      local d = state.dtype
      if d == nil then return fn(x, w, b, ...) end
      local wd = T.is_tensor(w) and w:type() == "f32" and "f32" or d
      return fn(cast(x, d), cast(w, wd), cast(b, wd), ...)
    end
  end
  return function(...)
    local d = state.dtype
    if d == nil then return fn(...) end
    local to = kind == "half" and d or "f32"
    local n = select("#", ...)
    if n <= 4 then
      local a, b, c, e = ...
      return fn(cast(a, to), cast(b, to), cast(c, to), cast(e, to), select(5, ...))
    end
    local args = { ... }
    for i = 1, n do args[i] = cast(args[i], to) end
    return fn(unpack(args, 1, n))
  end
end

-- Installs the policy on ms, ms.functional and the Tensor methods (once, at load).
local wrapped = {}
function amp.install()
  for name, kind in pairs(amp.policy) do
    for _, tbl in ipairs { ms, ms.functional, T } do
      local f = rawget(tbl, name)
      if type(f) == "function" and not wrapped[f] then
        local w = wrap(f, kind)
        wrapped[w] = true
        rawset(tbl, name, w)
      end
    end
  end
end

-- autocast(dtype, fn, ...): runs fn with autocast on (dtype "f16"/"bf16", or nil/false/"fp32"
-- for off), restoring the previous state even when fn errors; returns fn's results.
function amp.autocast(dtype, fn, ...)
  local prev = state.dtype
  state.dtype = (dtype and dtype ~= "fp32" and dtype ~= "f32") and half_dtype(dtype) or nil
  local res = { pcall(fn, ...) }
  state.dtype = prev
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- A scope object for hand-written loops: local s = amp.scope("bf16") ... s:close().
function amp.scope(dtype)
  local prev = state.dtype
  state.dtype = half_dtype(dtype)
  return { close = function() state.dtype = prev end }
end

function amp.is_autocast_enabled() return state.dtype ~= nil end
function amp.autocast_dtype() return state.dtype end

-- ---- GradScaler ----------------------------------------------------------------------------
-- GradScaler{init_scale=1024, dynamic=true, growth_factor=2, backoff_factor=0.5,
-- growth_interval=2000, min_scale=1, max_scale=2^32}: PaddleSeg's defaults. Static
-- (dynamic=false) keeps init_scale forever but still skips steps with inf/nan gradients.
local Scaler = {}
Scaler.__index = Scaler
function amp.GradScaler(o)
  o = o or {}
  local self = setmetatable({
    dynamic = o.dynamic ~= false, growth_interval = o.growth_interval or 2000,
    growth_factor = o.growth_factor or 2, backoff_factor = o.backoff_factor or 0.5,
    min_scale = o.min_scale or 1, max_scale = o.max_scale or 2 ^ 32, device = o.device,
  }, Scaler)
  local init = o.init_scale or 1024
  if type(init) ~= "number" or not (init > 0) or init == math.huge then
    error("GradScaler: init_scale must be a finite number > 0, got " .. tostring(init), 2)
  end
  self.scale_t = ms.full({ 1 }, init, { dtype = "f32", device = o.device })
  self.counters = ms.zeros({ 2 }, { dtype = "i64", device = o.device }) -- good steps in a row, skipped
  self.found_inf = ms.zeros({ 1 }, { dtype = "f32", device = o.device })
  self.unscaled = false
  return self
end

-- loss * scale (a tensor multiply: the scale stays where it lives).
function Scaler:scale(loss) return loss * self.scale_t:to(loss:type()):view({}) end

local function grads_of(opt)
  local gs = {}
  for _, p in ipairs(opt.params) do if p.grad then gs[#gs + 1] = p.grad end end
  return gs
end

-- Divides the optimizer's gradients by the scale and sets found_inf: one C call.
function Scaler:unscale_(opt)
  if self.unscaled then return end
  self.found_inf:zero_()
  mt.unscale_(grads_of(opt), self.scale_t, self.found_inf)
  self.unscaled = true
end

-- Unscales (unless done) and steps; the step itself does nothing when found_inf is set.
function Scaler:step(opt)
  self:unscale_(opt)
  opt:step(self.found_inf)
end

-- After step: the scale update (and the skipped-step count) on the device.
function Scaler:update()
  mt.scale_update(self.scale_t, self.counters, self.found_inf, self)
  self.unscaled = false
end

function Scaler:get_scale() return self.scale_t:item() end
function Scaler:skipped_steps() return math.floor(self.counters:tolist()[2]) end
function Scaler:found_inf_last() return self.found_inf:item() ~= 0 end

-- JSON-able state (iter_N/state.json): exact resume.
function Scaler:state_dict()
  local c = self.counters:tolist()
  return { scale = self:get_scale(), good_steps = c[1], skipped = c[2], dynamic = self.dynamic }
end
function Scaler:load_state_dict(s)
  if type(s) ~= "table" or type(s.scale) ~= "number" then error("GradScaler:load_state_dict: no scale in state", 2) end
  self.scale_t:fill_(s.scale)
  self.counters:copy_(ms.tensor({ s.good_steps or 0, s.skipped or 0 }, { dtype = "i64", device = self.counters:device_str() }))
end

-- ---- O2 -----------------------------------------------------------------------------------
-- Modules whose parameters stay f32 under O2 (Paddle keeps norms in f32).
local function keeps_f32(m)
  local n = m.__class and m.__class.__name or ""
  return n:find("BatchNorm") or n:find("LayerNorm") or n:find("GroupNorm")
end

-- Replaces the storage behind tensor p by that of q (p keeps its identity: modules and the
-- optimizer hold p).
local function take_storage(p, q)
  local ffi = require "ffi"
  local old = p._h
  p._h, q._h = q._h, nil
  ffi.gc(old, nil)
  ms.lib.C.ms_tensor_free(old)
end

-- decorate(model, optimizer, dtype): O2. The optimizer keeps f32 masters of every parameter;
-- the model's parameters (but not those of norm layers) become dtype.
function amp.decorate(model, opt, dtype)
  local d = half_dtype(dtype)
  opt:enable_master_weights()
  local keep = {}
  for _, m in ipairs(model:modules()) do
    if keeps_f32(m) then for _, p in ipairs(m:parameters()) do keep[p] = true end end
  end
  ms.no_grad(function()
    for _, p in ipairs(model:parameters()) do
      if not keep[p] and p:type() == "f32" then take_storage(p, p:to(d)) end
    end
  end)
  return model, opt
end

-- The model's state dict with the f32 masters in place of half parameters (checkpoints).
function amp.f32_state_dict(model, opt)
  local sd = model:state_dict()
  if not opt.master then return sd end
  local master_of = {}
  for i, p in ipairs(opt.params) do master_of[p] = opt.master[i] end
  for k, t in pairs(sd) do if master_of[t] then sd[k] = master_of[t] end end
  return sd
end

return amp
