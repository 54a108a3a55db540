-- test_engine.lua: the training engine on a tiny synthetic set: the loss falls, resume equals the
-- uninterrupted run bit for bit, best_model and keep_checkpoint_max, TensorBoard files that
-- TensorBoard's reader loads, flags, and the recipes' command lines.
local H = require "harness"
local ms = require "moonseg"
local json = require "moonseg.json"
local engine = require "moonseg.engine.train"
local ckpt = require "moonseg.engine.checkpoint"
local T = ms.data.transforms

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
require("moonseg.engine.log").quiet = true

local data_dir = tmp .. "/data"
local function datasets()
  local o = { dir = data_dir, train = 12, val = 3, min_size = 48, max_size = 64, seed = 7 }
  local tr = ms.data.Synthetic { dir = o.dir, train = o.train, val = o.val, min_size = o.min_size, max_size = o.max_size, seed = o.seed, mode = "train" }
  local va = ms.data.Synthetic { dir = o.dir, train = o.train, val = o.val, min_size = o.min_size, max_size = o.max_size, seed = o.seed, mode = "val" }
  return tr, va
end

-- A small run: PP-LiteSeg-T at 48x48 crops, batch 2.
local function run(o)
  ms.manual_seed(1)
  local tr, va = datasets()
  local model = ms.models.PPLiteSeg { num_classes = 5, backbone = "STDC1" }
  if o.frozen then -- nothing changes between evaluations: lr 0 and BN statistics held
    for _, m in ipairs(model:modules()) do if m.__class.__name == "BatchNorm2d" then m.momentum = 1 end end
  end
  local lr = o.frozen and 0 or 0.02
  local ce = ms.losses.CrossEntropyLoss {}
  local cfg = {
    model = model, train_dataset = tr, val_dataset = va,
    train_transforms = T.Compose { T.ResizeStepScaling(0.75, 1.25, 0.25), T.RandomPaddingCrop { 48, 48 },
      T.RandomHorizontalFlip(), T.Normalize() },
    val_transforms = T.Compose { T.Normalize() },
    losses = { types = { ce, ce, ce }, coef = { 1, 1, 1 } },
    optimizer = ms.optim.SGD { model, lr = lr, momentum = 0.9, weight_decay = 0 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = lr, decay_steps = o.iters, power = 0.9 },
    early_stop_intervals = o.early_stop,
    iters = o.iters, batch_size = 2, num_workers = o.num_workers or 0, seed = 3,
    save_dir = o.save_dir, save_interval = o.save_interval or 1000, log_iters = 2,
    do_eval = o.do_eval, keep_checkpoint_max = o.keep, resume_model = o.resume, use_ema = o.use_ema,
    tensorboard = o.tensorboard or false, num_classes = 5,
  }
  return engine.train(cfg)
end

H.case("the loss falls over a few dozen steps", function()
  local r = run { iters = 30, save_dir = tmp .. "/fall" }
  local head, tail = 0, 0
  for i = 1, 5 do head = head + r.losses[i] end
  for i = 26, 30 do tail = tail + r.losses[i] end
  assert(tail < head * 0.8, string.format("loss did not fall: first five %.3f, last five %.3f", head, tail))
end)

H.case("resume from iter_N equals the uninterrupted run bit for bit", function()
  local full = run { iters = 8, save_dir = tmp .. "/full", save_interval = 4, num_workers = 2, use_ema = true }
  local resumed = run { iters = 8, save_dir = tmp .. "/resumed", save_interval = 4, num_workers = 1,
    resume = tmp .. "/full/iter_4", use_ema = true }
  H.eq(#resumed.losses, 4)
  for i = 1, 4 do
    H.eq(string.format("%a", resumed.losses[i]), string.format("%a", full.losses[4 + i]), "loss at iter " .. (4 + i))
  end
  -- Final weights, optimizer state and EMA are identical too.
  for _, f in ipairs { "model", "optim", "ema" } do
    local a = ms.load(tmp .. "/full/iter_8/" .. f .. ".safetensors")
    local b = ms.load(tmp .. "/resumed/iter_8/" .. f .. ".safetensors")
    for k, t in pairs(a) do
      H.eq(t:ne(b[k]):to("i64"):sum():item(), 0, f .. " " .. k)
    end
  end
  local st = json.read_file(tmp .. "/full/iter_8/state.json")
  H.eq(st.iter, 8)
  H.eq(st.data_position.epoch * 6 + st.data_position.batch, 8) -- 12 samples / batch 2 = 6 batches per epoch
end)

H.case("best_model, keep_checkpoint_max and TensorBoard event files", function()
  local dir = tmp .. "/ckpt"
  -- what killed saves left in this save_dir: the run removes it at its start
  os.execute("mkdir -p " .. dir .. "/.iter_2.partial " .. dir .. "/iter_1.tmp.5895846 && touch " .. dir ..
    "/iter_1.tmp.5895846/state.json")
  local r = run { iters = 6, save_dir = dir, save_interval = 2, do_eval = true, keep = 2, tensorboard = true }
  H.same_list(ckpt.list_iters(dir), { 4, 6 })
  local best = json.read_file(dir .. "/best_model/state.json")
  H.eq(best.iter, r.best_iter)
  H.near(best.miou, r.best_miou, 1e-12)
  assert(ckpt.exists(dir .. "/best_model/model.safetensors"))
  local ls = io.popen("ls -a " .. dir):read("*a")
  assert(not ls:find("tmp", 1, true) and not ls:find(".old", 1, true) and not ls:find("partial", 1, true),
    "temporary left: " .. ls)
  -- TensorBoard's own reader must load the scalars and images.
  local py = os.getenv("MOONSEG_TEST_PYTHON") or "python3"
  local event = io.popen("ls " .. dir .. "/events.out.tfevents.*"):read("*l")
  assert(event, "no event file in " .. dir)
  local p = io.popen(py .. " " .. src .. "/tests/tools/read_tfevents.py " .. event .. " 2>&1")
  local out = p:read("*a")
  p:close()
  local ok, ev = pcall(json.decode, out)
  assert(ok and type(ev) == "table", "reading the event file with tensorboard failed (pip install tensorboard): " .. out)
  for _, tag in ipairs { "Train/loss", "Train/lr", "Train/batch_cost", "Train/reader_cost", "Evaluate/mIoU", "Evaluate/Acc" } do
    assert(ev.scalars[tag] and #ev.scalars[tag] > 0, "missing scalar " .. tag .. " in " .. out:sub(1, 400))
  end
  H.eq(#ev.scalars["Evaluate/mIoU"], 3)
  H.near(ev.scalars["Evaluate/mIoU"][#ev.scalars["Evaluate/mIoU"]].value, r.last_eval.miou, 1e-6)
  local img = ev.images["Evaluate/prediction_1"]
  assert(img and #img == 3, "missing prediction images")
  H.eq(img[1].png_channels, 3)
end)

H.case("early stop after evaluations without a better mIoU", function()
  -- The first evaluation (iter 2) sets the best; frozen weights cannot beat it, so with
  -- early_stop_intervals 2 the run stops after the evaluations at iters 4 and 6.
  local r = run { iters = 20, save_dir = tmp .. "/early", save_interval = 2, do_eval = true, frozen = true, early_stop = 2 }
  H.eq(r.stopped_early, true)
  H.eq(r.iter, 6)
  H.eq(r.best_iter, 2)
end)

H.case("checkpoints resume errors are clear", function()
  H.raises(function() run { iters = 2, save_dir = tmp .. "/x", resume = tmp .. "/nothing/iter_3" } end,
    "not a moonseg checkpoint", "nothing/iter_3")
end)

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

H.case("recipe flags: --help, unknown flags and bad values", function()
  local recipe = "luajit " .. src .. "/recipes/pp_liteseg.lua"
  local out, rc = sh(recipe .. " --help")
  H.eq(rc, 0)
  assert(out:find("--iters", 1, true) and out:find("--crop_size W H", 1, true), out)
  out, rc = sh(recipe .. " --itres 5")
  assert(rc ~= 0 and out:find("unknown flag --itres", 1, true) and out:find("--iters", 1, true), out)
  out, rc = sh(recipe .. " --iters five")
  assert(rc ~= 0 and out:find("--iters needs an integer", 1, true), out)
  out, rc = sh(recipe .. " --crop_size 512")
  assert(rc ~= 0 and out:find("two positive integers", 1, true), out)
  out, rc = sh(recipe .. " --backbone STDC9")
  assert(rc ~= 0 and out:find("STDC1, STDC2", 1, true), out)
  out, rc = sh(recipe .. " --dataset_root " .. tmp .. "/missing --iters 1")
  assert(rc ~= 0 and out:find(tmp .. "/missing", 1, true), out)
end)

H.case("recipe flags: --batch_invariant sets the context's convolution policy", function()
  local recipe = require "moonseg.engine.recipe"
  assert(ms.get_batch_invariant(), "batch invariance is on by default")
  recipe.parse({}, { "--batch_invariant", "false" }, "t")
  H.eq(ms.get_batch_invariant(), false)
  recipe.parse({}, {}, "t")
  H.eq(ms.get_batch_invariant(), true)
end)

H.case("the recipe on a PaddleSeg-format data set, then val.lua with augmentation", function()
  datasets() -- a PaddleSeg-format set on disk: use it through --dataset_root
  local root = io.popen("ls -d " .. data_dir .. "/synthetic_*"):read("*l")
  local out, rc = sh("luajit " .. src .. "/recipes/pp_liteseg.lua --dataset_root " .. root ..
    " --num_classes 5 --backbone STDC1 --iters 4 --batch_size 2 --crop_size 48 48 --save_interval 4" ..
    " --num_workers 0 --save_dir " .. tmp .. "/ds")
  H.eq(rc, 0, out)
  assert(out:find("[EVAL] #Images: 3 mIoU:", 1, true), out)
  out, rc = sh("luajit " .. src .. "/recipes/val.lua --model_path " .. tmp .. "/ds/best_model --dataset_root " ..
    root .. " --aug_eval --flip_horizontal --scales 0.75,1.0")
  H.eq(rc, 0, out)
  assert(out:find("[EVAL] #Images: 3 mIoU:", 1, true), out)
  out, rc = sh("luajit " .. src .. "/recipes/val.lua --model_path " .. tmp .. "/ds/iter_4 --dataset_root " ..
    root .. " --is_slide --crop_size 32 32 --stride 16 16")
  H.eq(rc, 0, out)
end)

H.case("the Cityscapes recipe on a tiny tree in Cityscapes' layout", function()
  local cs = tmp .. "/cityscapes"
  for _, split in ipairs { "train", "val" } do
    os.execute(string.format("mkdir -p %s/leftImg8bit/%s/aachen %s/gtFine/%s/aachen", cs, split, cs, split))
    for i = 1, 2 do
      local stem = string.format("%s/%%s/%s/aachen/aachen_%06d_000019", cs, split, i)
      ms.image.write_png(string.format(stem, "leftImg8bit") .. "_leftImg8bit.png", (ms.rand(64, 128, 3) * 255):to("u8"))
      ms.image.write_png(string.format(stem, "gtFine") .. "_gtFine_labelTrainIds.png", ms.randint(0, 19, { 64, 128 }):to("u8"))
    end
  end
  local out, rc = sh("luajit " .. src .. "/recipes/pp_liteseg_cityscapes.lua --dataset_root " .. cs ..
    " --iters 2 --batch_size 2 --crop_size 64 32 --save_interval 2 --num_workers 0 --save_dir " .. tmp .. "/cs")
  H.eq(rc, 0, out)
  assert(out:find("[EVAL] #Images: 2 mIoU:", 1, true), out)
end)

H.case("global gradient-norm clipping", function()
  local a, b = ms.tensor({ 3, 0 }):requires_grad_(), ms.tensor({ 4 }):requires_grad_()
  a.grad, b.grad = ms.tensor({ 3, 0 }), ms.tensor({ 4 })
  local norm = ms.optim.clip_grad_norm({ a, b }, 1)
  H.near(norm, 5)
  H.near(a.grad:tolist(), { 0.6, 0 }, 1e-5)
  H.near(b.grad:tolist(), { 0.8 }, 1e-5)
  H.near(ms.optim.clip_grad_norm({ a, b }, 10), 1, 1e-5) -- under the limit: unchanged
  H.near(b.grad:tolist(), { 0.8 }, 1e-5)
end)

H.case("a hand-written loop from the raw API trains (recipes/custom_loop.lua)", function()
  local out, rc = sh("MOONSEG_CACHE=" .. data_dir .. " luajit " .. src .. "/recipes/custom_loop.lua 20")
  H.eq(rc, 0, out)
  assert(out:find("validation mIoU", 1, true), out)
end)

os.execute("rm -rf " .. tmp)
H.done()
