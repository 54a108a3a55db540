-- test_amp_train.lua: mixed precision through the training engine on a small net and the
-- synthetic set: an fp16 run (dynamic scale that overflows and backs off) resumes from iter_N
-- bit for bit, scale and skipped count in state.json; and a short seeded check that bf16,
-- fp16 O1 and fp16 O2 train as well as fp32 (the CI stand-in for the recipe comparison).
local H = require "harness"
local ms = require "moonseg"
local json = require "moonseg.json"
local engine = require "moonseg.engine.train"
local T = ms.data.transforms
local nn = ms.nn

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
require("moonseg.engine.log").quiet = true

local function datasets()
  local o = { dir = tmp .. "/data", train = 16, val = 4, min_size = 40, max_size = 48, seed = 7 }
  o.mode = "train"
  local tr = ms.data.Synthetic(o)
  local v = {}
  for k, x in pairs(o) do v[k] = x end
  v.mode = "val"
  return tr, ms.data.Synthetic(v)
end

-- conv-BN-ReLU x2 and a 1x1 classifier, upsampled back: what a segmentation net does, small.
local Net = nn.Module.class("AmpNet")
function Net:__init(nc)
  self.body = nn.Sequential(nn.Conv2d(3, 16, 3, { padding = 1, stride = 2, bias = false }), nn.BatchNorm2d(16), nn.ReLU(),
    nn.Conv2d(16, 16, 3, { padding = 1, bias = false }), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, nc, 1))
end
function Net:forward(x)
  local y = self.body(x)
  return { ms.functional.interpolate(y, { size = { x:size(3), x:size(4) } }, "bilinear", false) }
end

local function run(o)
  ms.manual_seed(1)
  local tr, va = datasets()
  local model = Net(5)
  local ce = ms.losses.CrossEntropyLoss {}
  return engine.train {
    model = model, train_dataset = tr, val_dataset = va,
    train_transforms = T.Compose { T.RandomPaddingCrop { 32, 32 }, T.RandomHorizontalFlip(), T.Normalize() },
    val_transforms = T.Compose { T.Normalize() },
    losses = { types = { ce }, coef = { 1 } },
    optimizer = ms.optim.SGD { model, lr = 0.1, momentum = 0.9, weight_decay = 4e-5 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = 0.1, decay_steps = o.iters, power = 0.9 },
    iters = o.iters, batch_size = 4, num_workers = 0, seed = 3, save_dir = o.save_dir,
    save_interval = o.save_interval or 1000, log_iters = 5, resume_model = o.resume, tensorboard = false,
    num_classes = 5, do_eval = o.do_eval, precision = o.precision, amp_level = o.amp_level,
    scale_loss = o.scale_loss, init_loss_scaling = o.init_scale,
  }
end

H.case("an fp16 run resumes from iter_N exactly: losses bit-identical, scaler state restored", function()
  -- init scale 2^28 overflows f16 gradients: the first steps are skipped and the scale backs off,
  -- so a resume that lost the scaler state would diverge at once.
  local o = { iters = 8, save_interval = 4, precision = "fp16", amp_level = "O1", init_scale = 2 ^ 28 }
  o.save_dir = tmp .. "/full"
  local full = run(o)
  local st = json.read_file(tmp .. "/full/iter_4/state.json")
  assert(st.scaler and st.scaler.skipped > 0, "expected skipped steps in the first 4: " .. json.encode(st.scaler or {}))
  assert(st.scaler.scale < 2 ^ 28, "the scale backed off")
  o.save_dir, o.resume = tmp .. "/resumed", tmp .. "/full/iter_4"
  local resumed = run(o)
  H.eq(#resumed.losses, 4)
  for i = 1, 4 do
    H.eq(string.format("%a", resumed.losses[i]), string.format("%a", full.losses[4 + i]), "loss at iter " .. (4 + i))
  end
  local a = json.read_file(tmp .. "/full/iter_8/state.json").scaler
  local b = json.read_file(tmp .. "/resumed/iter_8/state.json").scaler
  H.eq(b.scale, a.scale)
  H.eq(b.skipped, a.skipped)
  H.eq(b.good_steps, a.good_steps)
end)

H.case("O2 checkpoints hold f32 weights and resume exactly", function()
  local o = { iters = 6, save_interval = 3, precision = "bf16", amp_level = "O2", save_dir = tmp .. "/o2" }
  local full = run(o)
  local m = ms.load(tmp .. "/o2/iter_3/model.safetensors")
  H.eq(m["body.0.weight"]:type(), "f32")
  o.save_dir, o.resume = tmp .. "/o2r", tmp .. "/o2/iter_3"
  local resumed = run(o)
  for i = 1, 3 do
    H.eq(string.format("%a", resumed.losses[i]), string.format("%a", full.losses[3 + i]), "loss at iter " .. (3 + i))
  end
end)

H.case("seeded short run: bf16, fp16 O1 and fp16 O2 train as well as fp32", function()
  local function tail(r)
    local s = 0
    for i = #r.losses - 4, #r.losses do s = s + r.losses[i] end
    return s / 5
  end
  local ref = run { iters = 40, precision = "fp32", save_dir = tmp .. "/p32", do_eval = true }
  local head = (ref.losses[1] + ref.losses[2]) / 2
  assert(tail(ref) < 0.8 * head, "fp32 did not learn: " .. head .. " -> " .. tail(ref))
  for _, c in ipairs { { "bf16", "O1" }, { "fp16", "O1" }, { "fp16", "O2" } } do
    local r = run { iters = 40, precision = c[1], amp_level = c[2], save_dir = tmp .. "/p" .. c[1] .. c[2], do_eval = true }
    local what = c[1] .. " " .. c[2]
    assert(math.abs(tail(r) - tail(ref)) <= 0.1 * tail(ref),
      string.format("%s: final loss %.4f vs fp32 %.4f", what, tail(r), tail(ref)))
    assert(math.abs(r.last_eval.miou - ref.last_eval.miou) <= 0.05,
      string.format("%s: mIoU %.4f vs fp32 %.4f", what, r.last_eval.miou, ref.last_eval.miou))
  end
end)

os.execute("rm -rf " .. tmp)
H.done()
