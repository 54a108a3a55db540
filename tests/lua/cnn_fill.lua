-- cnn_fill.lua: the fill formula shared with tests/golden/ppliteseg_torch.py and
-- tests/golden/cnn_torch.py (Park-Miller from a hash of the key; see there), a label
-- generator, and a helper to move a module to another dtype. Test helper, not a test.
local ffi = require "ffi"
local ms = require "moonseg"

local M = {}
local P = 2147483647

local function key_seed(key)
  local h = 0
  for i = 1, #key do h = (h * 31 + key:byte(i)) % P end
  return h % (P - 1) + 1
end

-- fill(key, t): conv weights sqrt(6/fan_in)(2u-1), 1-d weights 1 + 0.2(2u-1), biases and
-- _mean 0.1(2u-1), _variance 0.5 + u, the input 2u-1.
function M.fill(key, t)
  local shape, n = t:size(), t:numel()
  assert(t:is_contiguous() and (t:type() == "f32" or t:type() == "f64"))
  local p = ffi.cast(t:type() == "f64" and "double*" or "float*", t:data_ptr())
  local kind, a
  if key == "input" then kind = 5
  elseif key:match("_variance$") then kind = 1
  elseif key:match("_mean$") or key:match("bias$") then kind = 2
  elseif #shape == 4 then kind, a = 3, math.sqrt(6.0 / (shape[2] * shape[3] * shape[4]))
  elseif key:match("weight$") then kind = 4
  else error("no fill rule for " .. key) end
  local s = key_seed(key)
  for i = 0, n - 1 do
    s = s * 48271 % P
    local u = s / P
    local v
    if kind == 1 then v = 0.5 + u
    elseif kind == 2 then v = 0.1 * (2 * u - 1)
    elseif kind == 3 then v = a * (2 * u - 1)
    elseif kind == 4 then v = 1 + 0.2 * (2 * u - 1)
    else v = 2 * u - 1 end
    p[i] = v
  end
end

-- Every state-dict entry in key order (an alias filled later wins, as PyTorch loads).
function M.fill_model(m)
  local sd = m:state_dict()
  for _, k in ipairs(m:state_dict_keys()) do M.fill(k, sd[k]) end
end

-- label [N, H, W] i64: floor(ncls * u) from the key "label", index % 11 == 5 ignored (255).
function M.label(shape, ncls)
  local n = shape[1] * shape[2] * shape[3]
  local t = ms.empty(shape, { dtype = "i64" })
  local p = ffi.cast("int64_t*", t:data_ptr())
  local s = key_seed("label")
  for i = 0, n - 1 do
    s = s * 48271 % P
    p[i] = (i % 11 == 5) and 255 or math.floor(s / P * ncls)
  end
  return t
end

-- Converts every parameter and buffer of m to dtype (modules have no :to).
function M.module_to(m, dtype)
  ms.no_grad(function() -- the copies must be leaves, not casts recorded from the originals
  for _, mod in ipairs(m:modules()) do
    for _, n in ipairs(mod._param_names) do
      mod._parameters[n] = ms.nn.Parameter(mod._parameters[n]:to(dtype))
    end
    for _, n in ipairs(mod._buffer_names) do mod._buffers[n] = mod._buffers[n]:to(dtype) end
  end
  end)
end

return M
