-- test_amp_tensorboard.lua: an fp16 run whose loss scale overflows writes the scale and the count
-- of skipped steps to its TensorBoard event file (read back with TensorBoard's own reader), with
-- the values the scaler holds (state.json of the same iteration).
local H = require "harness"
local ms = require "moonseg"
local json = require "moonseg.json"
local engine = require "moonseg.engine.train"
local T = ms.data.transforms
local nn = ms.nn

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
require("moonseg.engine.log").quiet = true

local function datasets()
  local o = { dir = tmp .. "/data", train = 8, val = 2, min_size = 32, max_size = 40, seed = 7, mode = "train" }
  local tr = ms.data.Synthetic(o)
  o.mode = "val"
  return tr, ms.data.Synthetic(o)
end

H.case("fp16 overflow: loss scale and skipped steps reach TensorBoard", function()
  ms.manual_seed(1)
  local tr, va = datasets()
  local model = nn.Sequential(nn.Conv2d(3, 8, 3, { padding = 1, bias = false }), nn.BatchNorm2d(8), nn.ReLU(),
    nn.Conv2d(8, 5, 1))
  local ce = ms.losses.CrossEntropyLoss {}
  local dir = tmp .. "/run"
  -- init scale 2^28: f16 gradients overflow, steps are skipped and the scale halves until they fit
  engine.train {
    model = model, train_dataset = tr, val_dataset = va,
    train_transforms = T.Compose { T.RandomPaddingCrop { 24, 24 }, T.Normalize() },
    val_transforms = T.Compose { T.Normalize() },
    losses = { types = { ce }, coef = { 1 } },
    optimizer = ms.optim.SGD { model, lr = 0.05, momentum = 0.9 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = 0.05, decay_steps = 6, power = 0.9 },
    iters = 6, batch_size = 2, num_workers = 0, seed = 3, save_dir = dir, save_interval = 6,
    log_iters = 2, tensorboard = true, num_classes = 5, precision = "fp16", amp_level = "O1",
    init_loss_scaling = 2 ^ 28,
  }
  local st = json.read_file(dir .. "/iter_6/state.json").scaler
  assert(st and st.skipped > 0 and st.scale < 2 ^ 28, "the run did not overflow: " .. json.encode(st or {}))

  local py = os.getenv("MOONSEG_TEST_PYTHON") or "python3"
  local event = io.popen("ls " .. dir .. "/events.out.tfevents.*"):read("*l")
  assert(event, "no event file in " .. dir)
  local p = io.popen(py .. " " .. src .. "/tests/tools/read_tfevents.py " .. event .. " 2>&1")
  local out = p:read("*a")
  p:close()
  local ok, ev = pcall(json.decode, out)
  assert(ok and type(ev) == "table", "reading the event file with tensorboard failed: " .. out)
  local scale, skipped = ev.scalars["Train/loss_scale"], ev.scalars["Train/skipped_steps"]
  assert(scale and skipped, "no loss_scale / skipped_steps scalars in " .. out:sub(1, 400))
  H.eq(#scale, 3, "one loss_scale value per log line (iters 2, 4, 6)")
  H.eq(#skipped, 3, "one skipped_steps value per log line")
  for i, e in ipairs(scale) do
    H.eq(e.step, 2 * i, "loss_scale step")
    H.eq(skipped[i].step, 2 * i, "skipped_steps step")
  end
  -- the last values are the scaler's own at iter 6; the scale only fell, the count only rose
  H.eq(scale[3].value, st.scale, "last loss_scale")
  H.eq(skipped[3].value, st.skipped, "last skipped_steps")
  assert(scale[1].value < 2 ^ 28 and skipped[1].value >= 1, "the first log already saw an overflow")
  for i = 2, 3 do
    assert(scale[i].value <= scale[i - 1].value * 2, "scale grows at most x2 between logs")
    assert(skipped[i].value >= skipped[i - 1].value, "skipped count never falls")
  end
end)

os.execute("rm -rf " .. tmp)
H.done()
