-- device.lua: the recipe's --device: parsing (auto, cpu, cpu:N, gpu, gpu:N, cuda, cuda:N), and
-- whether a whole recipe can run on a device (the backend's supports query, else a tiny
-- forward + backward of the model there), so `auto` picks a GPU only when training works on it.
local ms = require "moonseg"

local M = {}

-- "auto" stays "auto"; any other value becomes the canonical device string ("cpu", "cpu:1",
-- "cuda:0"). Errors (as a usage message) on unknown devices and absent GPUs.
function M.parse(value)
  if value == nil or value == "auto" then return "auto" end
  local ok, dev = pcall(ms.Tensor.canonical_device, value)
  if not ok then
    error("--device " .. tostring(value) .. ": not a device (auto, cpu, cpu:N, gpu, gpu:N, cuda, cuda:N)", 0)
  end
  local idx = tonumber(dev:match("^cuda:(%d+)$"))
  if idx then
    if not ms.has_cuda() then
      error("--device " .. value .. ": this moonseg was built without CUDA", 0)
    end
    local n = ms.cuda.device_count()
    if idx >= n then
      error(string.format("--device %s: CUDA device %d is not visible (%d device(s))", value, idx, n), 0)
    end
  end
  local cpu = tonumber(dev:match("^cpu:(%d+)$"))
  if cpu and cpu >= M.cpu_device_count() then
    error(string.format("--device %s: there are %d host devices (cpu:0 .. cpu:%d)", value,
      M.cpu_device_count(), M.cpu_device_count() - 1), 0)
  end
  return dev
end

-- Host devices the core provides (cpu:0 .. cpu:N-1; all run the CPU kernels).
function M.cpu_device_count()
  local C = ms.lib.C
  local ok, n = pcall(function() return C.ms_cpu_device_count() end)
  return ok and tonumber(n) or 8
end

-- Trains one tiny step of parts (model, losses) on device inside pcall and puts everything
-- back as it was (weights, buffers, gradients, RNG). Returns true, or false and the error.
local function probe(parts, device, size)
  local model = parts.model
  local before = model:device()
  local buffers = {}
  for _, kv in ipairs(model:named_buffers()) do buffers[kv[1]] = kv[2]:clone() end
  local rng = ms.get_rng_state()
  local ok, err = pcall(function()
    model:to(device)
    local was = model.training
    model:train()
    local h, w = size[2], size[1]
    local x = ms.zeros({ 2, 3, h, w }, { device = device }):add_(0.5)
    local y = ms.zeros({ 2, h, w }, { dtype = "i64", device = device })
    local out = model(x)
    local loss
    if parts.losses then
      loss = ms.losses.multi_output(parts.losses.types, parts.losses.coef, out, y)
    else
      loss = (type(out) == "table" and not ms.is_tensor(out) and out[1] or out):mean()
    end
    loss:backward()
    if not was then model:eval() end
  end)
  model:zero_grad()
  model:to(before)
  ms.no_grad(function()
    for _, kv in ipairs(model:named_buffers()) do kv[2]:copy_(buffers[kv[1]]) end
  end)
  ms.set_rng_state(rng)
  return ok, not ok and tostring(err) or nil
end
M.probe = probe

-- Whether the recipe can train on device: the backend's answer when the core has a supports
-- query for the model's op families, else a probe step. Returns ok, reason.
function M.can_run(parts, device, size)
  if device:match("^cpu") then return true end
  local q = ms.backend and ms.backend.supports_recipe
  if q then
    local ok, why = q(device, parts)
    if not ok then return false, why end
  end
  return probe(parts, device, size or { 64, 64 })
end

-- The device for cfg.device once the recipe is built: auto picks cuda:0 when it can train the
-- recipe, else the CPU with a one-line notice; an explicit GPU that cannot errors.
function M.resolve(cfg, parts, notice)
  local want = cfg.device or "auto"
  local size = cfg.crop_size and { math.min(cfg.crop_size[1], 64), math.min(cfg.crop_size[2], 64) } or nil
  if want == "auto" then
    if not ms.cuda.is_available() then return "cpu" end
    local ok, why = M.can_run(parts, "cuda:0", size)
    if ok then return "cuda:0" end
    notice("--device auto: using the CPU: the GPU backend cannot train this recipe yet (" ..
      tostring(why):gsub("\n.*", "") .. ")")
    return "cpu"
  end
  if want:match("^cuda") then
    local ok, why = M.can_run(parts, want, size)
    if not ok then
      error("--device " .. want .. ": the GPU backend cannot train this recipe yet: " .. tostring(why) ..
        " (use --device cpu)", 0)
    end
  end
  return want
end

return M
