-- gradcheck.lua: compares autograd gradients with central finite differences (f64, CPU).
local ffi = require "ffi"

local G = { count = 0 } -- checks passed in this process

local function as_list(v)
  if type(v) == "table" and not require("moonseg.tensor").is_tensor(v) then return v end
  return { v }
end

-- Weighted sum of all outputs: sum_k <out_k, w_k>, read on the host.
local function weighted(outs, weights)
  local s = 0
  for k, o in ipairs(outs) do
    local buf, n = o:to_f64_buffer()
    local w = weights[k]
    for i = 0, n - 1 do s = s + buf[i] * w[i + 1] end
  end
  return s
end

-- gradcheck(fn, inputs, {eps=1e-6, atol=1e-5, rtol=1e-4, seed=})
--   fn(inputs...) returns a tensor or a list of tensors; inputs is a list whose
--   f64 tensors with requires_grad are checked (others are passed through).
-- Returns true, or raises an error naming the input, element and both values.
function G.gradcheck(fn, inputs, opts)
  local ms = require "moonseg"
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-4
  local outs = as_list(fn(unpack(inputs, 1, table.maxn(inputs))))
  -- Deterministic output weights in [-1, 1] so every output element matters.
  local weights, seed = {}, opts.seed or 12345
  local function rnd()
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 1073741824 - 1
  end
  for k, o in ipairs(outs) do
    local w = {}
    for i = 1, o:numel() do w[i] = rnd() end
    weights[k] = w
  end
  -- Analytic: backward of sum_k <out_k, w_k>.
  for _, x in ipairs(inputs) do if ms.is_tensor(x) then x.grad = nil end end
  local roots, grads = {}, {}
  for k, o in ipairs(outs) do
    if o.requires_grad then
      roots[#roots + 1] = o
      grads[#grads + 1] = ms.tensor(weights[k], { dtype = o:type(), device = o:device_str() }):reshape(o:size())
    end
  end
  if #roots == 0 then error("gradcheck: no output requires grad", 2) end
  ms.autograd.backward(roots, grads)
  for i, x in ipairs(inputs) do
    if ms.is_tensor(x) and x.requires_grad then
      if x:type() ~= "f64" or not x:is_contiguous() then
        error("gradcheck: input " .. i .. " must be a contiguous f64 tensor", 2)
      end
      local p = ffi.cast("double*", x:data_ptr())
      local analytic = x.grad and x.grad:to_f64_buffer()
      for j = 0, x:numel() - 1 do
        local orig = p[j]
        p[j] = orig + eps
        local fp = ms.no_grad(function() return weighted(as_list(fn(unpack(inputs, 1, table.maxn(inputs)))), weights) end)
        p[j] = orig - eps
        local fm = ms.no_grad(function() return weighted(as_list(fn(unpack(inputs, 1, table.maxn(inputs)))), weights) end)
        p[j] = orig
        local num = (fp - fm) / (2 * eps)
        local ana = analytic and analytic[j] or 0
        if math.abs(num - ana) > atol + rtol * math.abs(num) then
          error(string.format("gradcheck: input %d element %d: analytic %.10g vs numeric %.10g", i, j + 1, ana, num), 2)
        end
      end
    end
  end
  G.count = G.count + 1
  return true
end

return G
