-- multi_tensor.lua: Lua side of the C multi-tensor steps (ms_mt_*): lists of tensors in,
-- one C call per step, results left in tensors (no host read-back per parameter).
local ffi = require "ffi"
local L = require "moonseg.lib"
local T = require "moonseg.tensor"
local C, check = L.C, L.check
local handle = T.handle

local M = {}

-- A C array of the handles of list (nil when list is nil).
local function handles(list, n)
  if list == nil then return nil end
  local a = ffi.new("ms_tensor *[?]", math.max(n, 1))
  for i = 1, n do a[i - 1] = handle(list[i]) end
  return a
end
M.handles = handles

local function opt_handle(t) return t ~= nil and handle(t) or nil end

-- grads[i] *= 1/scale; found_inf (f32 [1]) := 1 when any gradient holds inf or nan.
function M.unscale_(grads, scale, found_inf)
  check(C.ms_mt_unscale_(L.ctx, handles(grads, #grads), #grads, handle(scale), handle(found_inf)), 2)
end

-- o = {dynamic, growth_interval, growth_factor, backoff_factor, min_scale, max_scale}.
function M.scale_update(scale, counters, found_inf, o)
  local p = ffi.new("ms_scaler_params", { dynamic = o.dynamic and 1 or 0, growth_interval = o.growth_interval,
    growth_factor = o.growth_factor, backoff_factor = o.backoff_factor, min_scale = o.min_scale,
    max_scale = o.max_scale })
  check(C.ms_mt_scale_update(L.ctx, handle(scale), handle(counters), handle(found_inf), p), 2)
end

function M.sgd_step(params, grads, bufs, master, o, found_inf)
  local n = #params
  local p = ffi.new("ms_sgd_params", { lr = o.lr, momentum = o.momentum, weight_decay = o.weight_decay })
  check(C.ms_mt_sgd_step(L.ctx, handles(params, n), handles(grads, n), handles(bufs, n), handles(master, n),
    n, p, opt_handle(found_inf)), 2)
end

function M.adamw_step(params, grads, m, v, master, o, step, found_inf)
  local n = #params
  local p = ffi.new("ms_adamw_params", { lr = o.lr, beta1 = o.beta1, beta2 = o.beta2, eps = o.eps,
    weight_decay = o.weight_decay })
  check(C.ms_mt_adamw_step(L.ctx, handles(params, n), handles(grads, n), handles(m, n), handles(v, n),
    handles(master, n), n, p, handle(step), opt_handle(found_inf)), 2)
end

-- The global L2 norm of all tensors, as an f32 [1] tensor (out, or a new one).
function M.norm(ts, out)
  out = out or require("moonseg").zeros({ 1 }, { dtype = "f32", device = ts[1] and ts[1]:device_str() })
  check(C.ms_mt_norm(L.ctx, handles(ts, #ts), #ts, handle(out)), 2)
  return out
end

function M.clip_(ts, norm, max_norm)
  check(C.ms_mt_clip_(L.ctx, handles(ts, #ts), #ts, handle(norm), max_norm), 2)
end

return M
