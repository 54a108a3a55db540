-- pp_liteseg.lua: the default recipe. Until the PP-LiteSeg engine lands it trains a small
-- conv-BN-ReLU segmentation network with SGD on a synthetic colour-coded dataset on the CPU.
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local F = ms.functional

local defaults = { iters = 60, batch_size = 4, learning_rate = 0.1, seed = 0, log_iters = 10,
  num_classes = 4, size = 64, device = "cpu" }

local function parse(argv)
  local cfg = {}
  for k, v in pairs(defaults) do cfg[k] = v end
  local i = 1
  while i <= #argv do
    local flag = argv[i]
    local key = flag:match("^%-%-([%w_]+)$")
    if flag == "--help" or flag == "-h" then
      local keys = {}
      for k, v in pairs(defaults) do keys[#keys + 1] = string.format("  --%-15s (default %s)", k, tostring(v)) end
      table.sort(keys)
      print("usage: luajit recipes/pp_liteseg.lua [flags]\n" .. table.concat(keys, "\n"))
      os.exit(0)
    end
    if not key or defaults[key] == nil then
      local known = {}
      for k in pairs(defaults) do known[#known + 1] = "--" .. k end
      table.sort(known)
      io.stderr:write("unknown flag '" .. flag .. "'; accepted: " .. table.concat(known, " ") .. "\n")
      os.exit(2)
    end
    local v = argv[i + 1]
    if v == nil then io.stderr:write("flag " .. flag .. " needs a value\n") os.exit(2) end
    if type(defaults[key]) == "number" then
      local n = tonumber(v)
      if not n then io.stderr:write("flag " .. flag .. " needs a number, got '" .. v .. "'\n") os.exit(2) end
      v = n
    end
    cfg[key] = v
    i = i + 2
  end
  if cfg.device ~= "cpu" then
    io.stderr:write("--device " .. cfg.device .. ": only the CPU is available in this build stage\n")
    os.exit(2)
  end
  return cfg
end

local cfg = parse(arg or {})
ms.manual_seed(cfg.seed)

-- Synthetic data: a coarse random label map upsampled to blocks; each class has its own
-- colour, plus noise, so the network must learn colour -> class at every pixel.
local palette = ms.randn(cfg.num_classes, 3)
local function batch()
  local coarse = ms.randint(0, cfg.num_classes, { cfg.batch_size, 1, cfg.size / 8, cfg.size / 8 })
  local label = F.interpolate(coarse:to("f32"), { size = { cfg.size, cfg.size }, mode = "nearest" })
  label = label:squeeze(2):to("i64")
  local img = ms.randn(cfg.batch_size, 3, cfg.size, cfg.size) * 0.5
  for k = 1, cfg.num_classes do
    local mask = label:eq(k - 1):to("f32"):unsqueeze(2)
    img = img + mask * palette[k]:view(1, 3, 1, 1)
  end
  return img, label
end

-- Parameters of conv(3->16, s2)-BN-ReLU, conv(16->32, s2)-BN-ReLU, conv1x1(32->classes), x4 upsample.
local function kaiming(cout, cin, k)
  return (ms.randn(cout, cin, k, k) * math.sqrt(2 / (cin * k * k))):requires_grad_()
end
local P = {
  w1 = kaiming(16, 3, 3), g1 = ms.ones(16, { requires_grad = true }), b1 = ms.zeros(16, { requires_grad = true }),
  w2 = kaiming(32, 16, 3), g2 = ms.ones(32, { requires_grad = true }), b2 = ms.zeros(32, { requires_grad = true }),
  w3 = kaiming(cfg.num_classes, 32, 1), b3 = ms.zeros(cfg.num_classes, { requires_grad = true }),
}
local stats = { m1 = ms.zeros(16), v1 = ms.ones(16), m2 = ms.zeros(32), v2 = ms.ones(32) }

local function forward(x)
  local h = F.conv2d(x, P.w1, nil, { stride = 2, padding = 1 })
  h = F.relu(F.batch_norm(h, stats.m1, stats.v1, P.g1, P.b1, true, 0.1, 1e-5))
  h = F.conv2d(h, P.w2, nil, { stride = 2, padding = 1 })
  h = F.relu(F.batch_norm(h, stats.m2, stats.v2, P.g2, P.b2, true, 0.1, 1e-5))
  local logits = F.conv2d(h, P.w3, P.b3)
  return F.interpolate(logits, { size = { cfg.size, cfg.size }, mode = "bilinear", align_corners = false })
end

local momentum = {}
local names = {}
for k in pairs(P) do names[#names + 1] = k end
table.sort(names)

print(string.format("moonseg %s | %s | small conv net, %d classes, batch %d at %dx%d, %d iters",
  ms.version, ms.build_info(), cfg.num_classes, cfg.batch_size, cfg.size, cfg.size, cfg.iters))
local first, last
local t0 = ms.time()
for it = 1, cfg.iters do
  local lr = cfg.learning_rate * (1 - (it - 1) / cfg.iters) ^ 0.9
  local x, y = batch()
  local loss = F.cross_entropy(forward(x), y)
  loss:backward()
  ms.no_grad(function()
    for _, k in ipairs(names) do
      local p = P[k]
      local v = momentum[k]
      if not v then v = ms.zeros(p:size()); momentum[k] = v end
      v:mul_(0.9):add_(p.grad)
      p:add_(v, -lr)
      p.grad = nil
    end
  end)
  local l = loss:item()
  first = first or l
  last = l
  if it % cfg.log_iters == 0 or it == cfg.iters then
    print(string.format("[TRAIN] iter: %d/%d, loss: %.4f, lr: %.6f, batch_cost: %.4f", it, cfg.iters, l, lr,
      (ms.time() - t0) / it))
  end
end
print(string.format("loss %.4f -> %.4f (%s)", first, last, last < first and "falling" or "NOT falling"))
if cfg.iters >= 5 and not (last < first) then os.exit(1) end
