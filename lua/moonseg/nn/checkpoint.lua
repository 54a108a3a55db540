-- checkpoint.lua: gradient checkpointing (MMSegmentation's `with_cp`): a block's forward runs
-- without recording, and its backward recomputes the forward with recording on and
-- differentiates that, so the block's inner activations live only during its own backward.
--
-- Unlike torch.utils.checkpoint, batch norm running statistics move once per step (the
-- recompute writes into scratch copies), and the random generator is rewound for the
-- recompute so dropout masks are the first forward's.
local ms = require "moonseg"
local A = ms.autograd
local Tensor = require "moonseg.tensor"

local M = {}

-- True when run() would checkpoint: recording on and some argument or parameter needs grad.
function M.active(module, ...)
  if not A.is_enabled() then return false end
  local n = select("#", ...)
  return A.needs_list({ ... }, n) or A.needs_list(module:parameters())
end

-- Submodules with running statistics (BatchNorm2d, SyncBatchNorm: buffers _mean/_variance).
local function stat_modules(module)
  local out = {}
  for _, m in ipairs(module:modules()) do
    local b = rawget(m, "_buffers")
    if b and b._mean and b._variance then out[#out + 1] = m end
  end
  return out
end

-- Runs fn with each statistics buffer replaced by a scratch copy, then puts the originals back.
local function with_scratch_stats(mods, fn)
  local keep = {}
  for i, m in ipairs(mods) do
    keep[i] = { m._buffers._mean, m._buffers._variance }
    m._buffers._mean, m._buffers._variance = keep[i][1]:clone(), keep[i][2]:clone()
  end
  local ok, err = pcall(fn)
  for i, m in ipairs(mods) do
    m._buffers._mean:free()
    m._buffers._variance:free()
    m._buffers._mean, m._buffers._variance = keep[i][1], keep[i][2]
  end
  if not ok then error(err, 0) end
end

-- Tensors that outlive fn although it did not return them: the module tree's parameters,
-- buffers and any other tensor fields (running statistics written in place, caches).
local function module_tensors(module)
  local keep = {}
  for _, m in ipairs(module:modules()) do
    for _, t in pairs(rawget(m, "_parameters") or {}) do keep[t] = true end
    for _, t in pairs(rawget(m, "_buffers") or {}) do keep[t] = true end
    for _, v in pairs(m) do if ms.is_tensor(v) then keep[v] = true end end
  end
  return keep
end

-- fn(...) without recording; then the tensors fn made and did not return (its dead
-- temporaries) are freed at once instead of when the Lua collector runs: without recording
-- nothing holds them, and leaving them to the collector kept a whole forward's temporaries
-- alive, so checkpointing lowered what backward holds but not the peak. A view that shares
-- storage with a result only drops its own reference.
local function forward_and_release(module, fn, ...)
  local made = {}
  local prev = Tensor.track(made)
  local ok, res = pcall(A.no_grad, fn, ...)
  Tensor.track(prev)
  if not ok then error(res, 0) end
  local keep = module_tensors(module)
  if ms.is_tensor(res) then keep[res] = true else for _, o in ipairs(res) do keep[o] = true end end
  for _, t in ipairs(made) do
    if keep[t] then
      if prev then prev[#prev + 1] = t end
    else
      t:free()
    end
  end
  return res
end

-- run(module, fn, ...): fn(...) -> tensor or list of tensors, computed by module (whose
-- parameters and statistics buffers fn uses). Tensor arguments are the differentiable inputs;
-- other arguments are passed through unchanged. Without recording it is just fn(...).
function M.run(module, fn, ...)
  local n = select("#", ...)
  local args = { ... }
  if not M.active(module, ...) then return fn(...) end
  local rng = ms.get_rng_state()
  local res = forward_and_release(module, fn, ...)
  local single = ms.is_tensor(res)
  local outs = single and { res } or res
  -- Tensor arguments are saved at the top level of `saved` (as "t<i>") so that autograd
  -- frees them as soon as this node has run.
  local inputs, saved = {}, { rng = rng, plain = {}, wants = {} }
  for i = 1, n do
    local a = args[i]
    if ms.is_tensor(a) then
      inputs[i] = a
      saved["t" .. i] = A.save(a)
      saved.wants[i] = a.requires_grad and true or false
    else
      saved.plain[i] = a
    end
  end
  -- An output that is an input (an identity path) must not take over the input's history.
  for k, o in ipairs(outs) do
    for i = 1, n do if o == args[i] then outs[k] = o:clone() end end
  end
  A.record("checkpoint", inputs, outs, function(node, ...)
    local grads, s = { ... }, node.saved
    local rargs = {}
    for i = 1, n do
      local a = s.plain[i]
      if s["t" .. i] then
        a = A.save(s["t" .. i]) -- a fresh leaf on the same storage
        if s.wants[i] then a.requires_grad = true end
      end
      rargs[i] = a
    end
    local after = ms.get_rng_state()
    ms.set_rng_state(s.rng)
    local rec
    with_scratch_stats(stat_modules(module), function()
      rec = A.enable_grad(fn, unpack(rargs, 1, n))
    end)
    ms.set_rng_state(after)
    local rlist = ms.is_tensor(rec) and { rec } or rec
    local roots, rgrads = {}, {}
    for k, o in ipairs(rlist) do
      if o.requires_grad then
        roots[#roots + 1] = o
        rgrads[#rgrads + 1] = grads[k] or A.zeros_for(node, k)
      end
    end
    if #roots > 0 then A.backward(roots, rgrads) end
    local gin = {}
    for i = 1, n do
      if ms.is_tensor(rargs[i]) then
        if s.wants[i] then gin[i] = rargs[i].grad end
        rargs[i]:free()
      end
    end
    for _, o in ipairs(rlist) do o:free() end
    return unpack(gin, 1, n)
  end, saved)
  return single and outs[1] or outs
end

return M
