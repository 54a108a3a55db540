-- test_device_recipe.lua: the recipe on cpu:1 gives the loss lines of cpu:0 bit for bit, and each
-- run's checkpoint loads and evaluates on the other device (recipes/val.lua) with the same
-- metrics; --device accepts cpu:N and refuses unknown devices.
local H = require "harness"
local ms = require "moonseg"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

-- A tiny PaddleSeg-format data set on disk (12 train, 3 val images of 48..64 px).
ms.data.Synthetic { dir = tmp .. "/data", train = 12, val = 3, min_size = 48, max_size = 64, seed = 7, mode = "train" }
local root = io.popen("ls -d " .. tmp .. "/data/synthetic_*"):read("*l")

local function train(device)
  local out, rc = sh("luajit " .. src .. "/recipes/pp_liteseg.lua --device " .. device ..
    " --dataset_root " .. root .. " --num_classes 5 --backbone STDC1 --iters 6 --log_iters 2 --batch_size 2" ..
    " --crop_size 48 48 --seed 3 --num_workers 0 --save_interval 6 --save_dir " .. tmp .. "/" .. device:gsub(":", "_"))
  H.eq(rc, 0, out)
  local losses = {}
  for l in out:gmatch("%[TRAIN%][^\n]*loss: ([%d%.]+)") do losses[#losses + 1] = l end
  H.eq(#losses, 3, "three [TRAIN] lines: " .. out)
  assert(out:find("device " .. (device == "cpu:0" and "cpu" or device), 1, true), out)
  return losses, out:match("%[EVAL%] #Images: [^\n]*")
end

local function val(ckpt_device, device)
  local out, rc = sh("luajit " .. src .. "/recipes/val.lua --model_path " .. tmp .. "/" ..
    ckpt_device:gsub(":", "_") .. "/iter_6 --dataset_root " .. root .. " --num_classes 5 --device " .. device)
  H.eq(rc, 0, out)
  local line = out:match("%[EVAL%] #Images: [^\n]*")
  assert(line, out)
  return line
end

H.case("the recipe on cpu:1 logs the cpu:0 losses bit for bit; checkpoints evaluate on either device", function()
  local l0, e0 = train("cpu:0")
  local l1, e1 = train("cpu:1")
  H.same_list(l1, l0, "loss column")
  H.eq(e1, e0, "evaluation during training")
  -- the cpu:1 checkpoint on cpu:0 and the cpu:0 checkpoint on cpu:1: identical weights, same metrics
  local a = val("cpu:1", "cpu:0")
  local b = val("cpu:0", "cpu:1")
  H.eq(a, b)
  H.eq(a, e0, "val.lua agrees with the evaluation in training")
end)

H.case("--device: cpu:N accepted, unknown devices and absent GPUs refused before training", function()
  local recipe = "luajit " .. src .. "/recipes/pp_liteseg.lua --iters 1 --save_dir " .. tmp .. "/x"
  local out, rc = sh(recipe .. " --device tpu")
  assert(rc == 2 and out:find("--device tpu: not a device", 1, true), out)
  out, rc = sh(recipe .. " --device cpu:9")
  assert(rc == 2 and out:find("cpu:9", 1, true), out)
  if not ms.cuda.is_available() then
    out, rc = sh(recipe .. " --device gpu:0")
    assert(rc == 2 and (out:find("without CUDA", 1, true) or out:find("not visible", 1, true)), out)
  end
  out, rc = sh("luajit " .. src .. "/recipes/val.lua --model_path x --device tpu")
  assert(rc == 2 and out:find("not a device", 1, true), out)
end)

H.case("--device auto without a GPU picks the CPU; the probe reports what a device cannot run", function()
  local device = require "moonseg.engine.device"
  H.eq(device.parse("auto"), "auto")
  if ms.cuda.is_available() then H.eq(device.parse("gpu"), "cuda:0") end
  H.eq(device.parse("cpu:1"), "cpu:1")
  local nn = ms.nn
  ms.manual_seed(1)
  local model = nn.Sequential(nn.Conv2d(3, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1))
  local ce = ms.losses.CrossEntropyLoss {}
  local parts = { model = model, losses = { types = { ce }, coef = { 1 } } }
  local notices = {}
  if not ms.cuda.is_available() then
    H.eq(device.resolve({ device = "auto" }, parts, function(m) notices[#notices + 1] = m end), "cpu")
  end
  -- the probe trains a step on the device and leaves the model exactly as it was
  local before = {}
  for k, v in pairs(model:state_dict()) do before[k] = H.flat(v) end
  local rng = ms.get_rng_state()
  local here = ms.get_default_device()
  local there = here == "cpu:1" and "cpu:2" or "cpu:1"
  local ok, why = device.probe(parts, there, { 16, 16 })
  H.eq(ok, true, tostring(why))
  for k, v in pairs(model:state_dict()) do
    H.eq(v.device, here, k)
    H.same_list(H.flat(v), before[k], k .. " restored")
    H.eq(v.grad, nil, k .. " gradient cleared")
  end
  H.same_list({ ms.get_rng_state().seed, ms.get_rng_state().offset }, { rng.seed, rng.offset })
  -- a model whose forward fails on the device: the probe says why, the model comes back
  local Bad = nn.class("BadOnDevice")
  function Bad:__init() self.conv = nn.Conv2d(3, 5, 1) end
  function Bad:forward(x)
    if x.device == "cpu:3" then error("conv2d: not supported on cpu:3 for f32") end
    return self.conv(x)
  end
  local bad = { model = Bad(), losses = parts.losses }
  ok, why = device.probe(bad, "cpu:3", { 8, 8 })
  H.eq(ok, false)
  assert(why:find("not supported on cpu:3", 1, true), why)
  H.eq(bad.model:device(), here)
end)

os.execute("rm -rf " .. tmp)
H.done()
