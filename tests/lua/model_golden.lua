-- model_golden.lua: the Lua side of tests/golden/golden_common.py (fill formula, label rules),
-- shared by every model golden test, and the comparisons of a model's outputs / gradients with a
-- twin's golden statistics. The committed golden files depend on the fill bit for bit.
local ffi = require "ffi"
local ms = require "moonseg"

local M = {}
local P = 2147483647

local function key_seed(key)
  local h = 0
  for i = 1, #key do h = (h * 31 + key:byte(i)) % P end
  return h % (P - 1) + 1
end

-- Order-free digest of a list of keys (golden_common.keys_digest).
function M.keys_digest(keys)
  local s = 0
  for _, k in ipairs(keys) do s = (s + key_seed(k)) % P end
  return s
end

-- Fills t (contiguous f32/f64) by the rule of golden_common.fill: u_i from Park-Miller
-- (x <- 48271 x mod 2^31-1, exact in doubles) seeded by key_seed(key).
function M.fill(key, t)
  local shape, n = t:size(), t:numel()
  assert(t:is_contiguous() and (t:type() == "f32" or t:type() == "f64"))
  local p = ffi.cast(t:type() == "f64" and "double*" or "float*", t:data_ptr())
  if key:match("_scale$") then -- PP-LiteSeg's UAFM constant
    for i = 0, n - 1 do p[i] = 1 end
    return
  end
  local kind, a
  if key == "input" then kind = 5
  elseif key:match("_variance$") then kind = 1
  elseif key:match("_mean$") or key:match("bias$") then kind = 2
  elseif #shape == 4 then kind, a = 3, math.sqrt(6.0 / (shape[2] * shape[3] * shape[4]))
  elseif #shape == 2 and key:match("weight$") then kind, a = 3, math.sqrt(6.0 / shape[1])
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

-- i64 label [N, H, W]: floor(20u), 19 -> 255 (golden_common.label).
function M.label(shape)
  local n = shape[1] * shape[2] * shape[3]
  local flat, s = {}, key_seed("label")
  for i = 1, n do
    s = s * 48271 % P
    local v = math.floor(20 * s / P)
    flat[i] = v == 19 and 255 or v
  end
  return ms.tensor(flat, { dtype = "i64" }):view(shape)
end

-- i64 label [N, H, W]: floor(ncls * u), index % 11 == 5 ignored (255) (cnn_torch.make_label).
function M.label_every11(shape, ncls)
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

-- Every parameter and buffer of m converted to dtype (modules have no :to); the new parameters
-- are leaves, not casts recorded from the originals.
function M.module_to(m, dtype)
  for _, mod in ipairs(m:modules()) do
    for _, n in ipairs(mod._param_names) do
      if mod._parameters[n] then mod._parameters[n] = ms.nn.Parameter(mod._parameters[n]:detach():to(dtype)) end
    end
    for _, n in ipairs(mod._buffer_names) do
      if mod._buffers[n] then mod._buffers[n] = mod._buffers[n]:to(dtype) end
    end
  end
end

-- Every state-dict entry in key order (an alias filled later wins, as PyTorch loads).
function M.fill_model(m)
  local sd = m:state_dict()
  for _, k in ipairs(m:state_dict_keys()) do M.fill(k, sd[k]) end
end

-- Compares tensor t with golden stats g: shape, sum of squares (relative sqtol), sum (within
-- sumtol * n * absmax) and 100 samples (|got - want| <= stol * (1 + |want|)).
function M.compare(what, t, g, stol, sqtol, sumtol)
  local shape = t:size()
  assert(table.concat(shape, "x") == table.concat(g.shape, "x"),
    what .. ": shape " .. table.concat(shape, "x") .. " vs " .. table.concat(g.shape, "x"))
  local buf, n = t:contiguous():to_f64_buffer()
  local s, sq = 0, 0
  for i = 0, n - 1 do
    s = s + buf[i]
    sq = sq + buf[i] * buf[i]
  end
  if math.abs(sq - g.sumsq) > sqtol * math.abs(g.sumsq) then
    error(string.format("%s sum of squares: got %.12g, want %.12g", what, sq, g.sumsq), 2)
  end
  if math.abs(s - g.sum) > sumtol * n * g.absmax then
    error(string.format("%s sum: got %.12g, want %.12g", what, s, g.sum), 2)
  end
  for k = 0, #g.samples - 1 do
    local v, w = buf[(k * 1151 + 17) % n], g.samples[k + 1]
    if math.abs(v - w) > stol * (1 + math.abs(w)) then
      error(string.format("%s sample %d: got %.12g, want %.12g (tol %g)", what, k, v, w, stol), 2)
    end
  end
end

return M
