-- test_recipes_tf.lua: recipes/ocrnet.lua and recipes/segformer.lua on a tiny PaddleSeg-format
-- synthetic set (their --dataset_root path, small crops): the loss falls, an mIoU is printed,
-- the checkpoint records the model so that recipes/val.lua --model_path alone rebuilds it and
-- reproduces the training run's mIoU; --pretrained loads backbone weights (matching keys, as PaddleSeg). One thread per
-- process: on a shared 2-core machine OpenMP barriers spin (measured: 0.21 s CPU per OCRNet step
-- at 48x48 with one thread, 5.7 s with two under load).
local H = require "harness"
local ms = require "moonseg"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local function sh(cmd) -- output and exit status (LuaJIT's popen close does not give it)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

-- The same small set as test_engine: 12 train, 3 val images of 48..64 pixels.
ms.data.Synthetic { dir = tmp .. "/data", train = 12, val = 3, min_size = 48, max_size = 64, seed = 7, mode = "train" }
local root = io.popen("ls -d " .. tmp .. "/data/synthetic_*"):read("*l")

-- Mean loss of the first and of the last k [TRAIN] lines.
local function loss_ends(out, k)
  local l = {}
  for v in out:gmatch("%[TRAIN%][^\n]-loss: ([%d%.]+)") do l[#l + 1] = tonumber(v) end
  assert(#l >= 2 * k, "too few [TRAIN] lines:\n" .. out)
  local a, b = 0, 0
  for i = 1, k do a, b = a + l[i], b + l[#l - k + i] end
  return a / k, b / k
end

local function miou(out)
  local v = out:match("%[EVAL%] #Images: 3 mIoU: ([%d%.]+)")
  assert(v, "no [EVAL] line:\n" .. out)
  return tonumber(v)
end

for _, case in ipairs {
  { "ocrnet", "--learning_rate 0.05", "backbone.conv_layer1_1._conv.weight" },
  { "segformer", "--learning_rate 0.002", "backbone.patch_embed1.proj.weight" },
} do
  local name, extra, first_key = case[1], case[2], case[3]
  H.case(name .. ".lua: the loss falls, mIoU printed, val.lua rebuilds the model from state.json", function()
    local dir = tmp .. "/" .. name
    local out, rc = sh(string.format("luajit %s/recipes/%s.lua --dataset_root %s --num_classes 5 --iters 24" ..
      " --batch_size 2 --crop_size 48 48 --save_interval 24 --log_iters 2 --num_workers 0 --threads 1" ..
      " --save_dir %s %s", src, name, root, dir, extra))
    H.eq(rc, 0, out)
    local first, last = loss_ends(out, 3)
    assert(last < first * 0.9, string.format("%s: loss did not fall: %.4f -> %.4f", name, first, last))
    local m_train = miou(out)
    out, rc = sh(string.format("luajit %s/recipes/val.lua --model_path %s/best_model --dataset_root %s --threads 1",
      src, dir, root))
    H.eq(rc, 0, out)
    -- the same weights on the same images: the same mIoU (sliding windows for SegFormer in
    -- training, whole images here: equal only for OCRNet)
    if name == "ocrnet" then H.near(miou(out), m_train, 1e-4) else miou(out) end
    -- --pretrained: a backbone checkpoint (here the trained one's backbone) loads strictly
    local sd = ms.load(dir .. "/best_model/model.safetensors")
    local bb = {}
    for k, v in pairs(sd) do if k:match("^backbone%.") then bb[k:sub(10)] = v end end
    ms.save(dir .. "/bb.safetensors", bb)
    out, rc = sh(string.format("luajit %s/recipes/%s.lua --dataset_root %s --num_classes 5 --iters 1" ..
      " --batch_size 2 --crop_size 48 48 --save_interval 1 --num_workers 0 --threads 1 --save_dir %s/pre" ..
      " --pretrained %s/bb.safetensors --learning_rate 0", src, name, root, dir, dir))
    H.eq(rc, 0, out)
    local after = ms.load(dir .. "/pre/iter_1/model.safetensors")
    H.eq((after[first_key] - sd[first_key]):abs():max():item(), 0, "pretrained weights loaded")
    bb[first_key:sub(10)] = ms.zeros(1) -- a mis-shaped key is an error
    ms.save(dir .. "/bad.safetensors", bb)
    out, rc = sh(string.format("luajit %s/recipes/%s.lua --dataset_root %s --num_classes 5 --iters 1" ..
      " --num_workers 0 --threads 1 --save_dir %s/bad --pretrained %s/bad.safetensors", src, name, root, dir, dir))
    assert(rc ~= 0 and out:find(first_key:sub(10), 1, true), out)
  end)
end

os.execute("rm -rf " .. tmp)
H.done()
