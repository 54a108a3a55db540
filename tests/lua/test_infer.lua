-- test_infer.lua: sliding-window, flip and multi-scale inference; the predict entry's outputs.
local H = require "harness"
local ms = require "moonseg"
local infer = require "moonseg.engine.infer"
local nn = ms.nn

-- A pointwise model (1x1 conv): every output pixel depends on its input pixel only, so
-- sliding windows, flips and whole-image inference must agree exactly.
local Pointwise = nn.class("Pointwise")
function Pointwise:__init() self.conv = nn.Conv2d(3, 4, 1) end
function Pointwise:forward(x) return { self.conv(x) } end

ms.manual_seed(5)
local model = Pointwise()
model:eval()
local x = ms.randn(1, 3, 37, 53)

H.case("sliding windows equal whole-image inference for a pointwise model", function()
  local whole = infer.logits(model, x)
  for _, cfg in ipairs { { { 16, 16 }, { 8, 8 } }, { { 20, 12 }, { 20, 12 } }, { { 64, 64 }, { 32, 32 } }, { { 53, 37 }, { 10, 10 } } } do
    local slid = infer.logits(model, x, { is_slide = true, crop_size = cfg[1], stride = cfg[2] })
    H.same_list(slid:size(), whole:size())
    H.near((slid - whole):abs():max():item(), 0, 1e-5, "crop " .. cfg[1][1] .. "x" .. cfg[1][2])
  end
end)

H.case("flip augmentation sums softmax outputs of flipped inputs flipped back", function()
  local base = ms.functional.softmax(infer.logits(model, x), 2)
  local aug = infer.logits(model, x, { flip_horizontal = true })
  H.near((aug - base * 2):abs():max():item(), 0, 1e-5)
  local both = infer.logits(model, x, { flip_horizontal = true, flip_vertical = true })
  H.near((both - base * 3):abs():max():item(), 0, 1e-5)
end)

H.case("multi-scale inference resizes back to the input size", function()
  local out = infer.logits(model, x, { scales = { 0.5, 1.0, 1.5 } })
  H.same_list(out:size(), { 1, 4, 37, 53 })
  -- softmax sums to 1 per scale, so to 3 over three scales
  H.near(out:sum(2):mean():item(), 3, 1e-5)
  local sized = infer.logits(model, x, { size = { 20, 30 } })
  H.same_list(sized:size(), { 1, 4, 20, 30 })
end)

-- A model with spatial context and half-resolution output (3x3 conv, stride 2): flips and
-- scales change its logits, and inference must resize them back.
local Coarse = nn.class("Coarse")
function Coarse:__init() self.conv = nn.Conv2d(3, 4, 3, { stride = 2, padding = 1 }) end
function Coarse:forward(x) return { self.conv(x) } end
ms.manual_seed(6)
local coarse = Coarse()
coarse:eval()
local F = ms.functional
local H0, W0 = x:size(3), x:size(4)
local function up(l, h, w) return F.interpolate(l, { size = { h or H0, w or W0 }, mode = "bilinear", align_corners = false }) end
local function raw(m, t) return ms.no_grad(function() return m(t)[1] end) end

H.case("whole-image logits are the model's logits resized to the input", function()
  local l = infer.logits(coarse, x)
  H.near((l - up(raw(coarse, x))):abs():max():item(), 0, 1e-6)
end)

H.case("flip: softmax of the logits plus the flipped-back softmax of the flipped input", function()
  local p = F.softmax(up(raw(coarse, x)), 2)
  local ph = F.softmax(up(raw(coarse, x:flip(4))), 2):flip(4)
  local pv = F.softmax(up(raw(coarse, x:flip(3))), 2):flip(3)
  -- the flipped input's logits really differ (the check below would not see a missing flip otherwise)
  assert((ph - p):abs():max():item() > 1e-3, "model is flip-symmetric; test would be vacuous")
  H.near((infer.logits(coarse, x, { flip_horizontal = true }) - (p + ph)):abs():max():item(), 0, 1e-5)
  H.near((infer.logits(coarse, x, { flip_vertical = true }) - (p + pv)):abs():max():item(), 0, 1e-5)
  H.near((infer.logits(coarse, x, { flip_horizontal = true, flip_vertical = true }) - (p + ph + pv)):abs():max():item(), 0, 1e-5)
end)

H.case("multi-scale: the sum (scales x mean) of per-scale softmax of resized logits", function()
  local scales = { 0.5, 1.0, 1.5 }
  local total
  for _, s in ipairs(scales) do
    local h, w = math.floor(H0 * s + 0.5), math.floor(W0 * s + 0.5)
    local xs = s == 1 and x or up(x, h, w)
    H.same_list(xs:size(), { 1, 3, h, w })
    local p = F.softmax(up(raw(coarse, xs)), 2)
    total = total and total + p or p
  end
  local got = infer.logits(coarse, x, { scales = scales })
  H.near((got - total):abs():max():item(), 0, 1e-5)
  -- the per-scale terms differ, so dropping or mis-resizing one changes the result
  local single = F.softmax(up(raw(coarse, x)), 2) * 3
  assert((got - single):abs():max():item() > 1e-3, "scales give the same output; test would be vacuous")
end)

H.case("predict's mask is the argmax of the model's logits", function()
  local tmp = os.tmpname()
  os.remove(tmp)
  os.execute("mkdir -p " .. tmp .. "/imgs")
  local predict = require "moonseg.engine.predict"
  local quiet = require("moonseg.engine.log").quiet
  require("moonseg.engine.log").quiet = true
  local img = (ms.rand(29, 41, 3) * 255):to("u8")
  ms.image.write_png(tmp .. "/imgs/a.png", img)
  local tf = ms.data.transforms.Compose { ms.data.transforms.Normalize() }
  for _, aug in ipairs { {}, { flip_horizontal = true, scales = { 0.75, 1.0 } } } do
    predict.predict(coarse, { tmp .. "/imgs/a.png" }, { save_dir = tmp .. "/out", num_classes = 4, transforms = tf, aug = aug })
    local mask = ms.image.read(tmp .. "/out/pseudo_color_prediction/a.png", { mode = "label" })
    local xi = tf:apply(img):unsqueeze(1):to(coarse:device()) -- images load on cpu:0
    local want
    if aug.scales then
      want = F.softmax(up(raw(coarse, xi), 29, 41), 2) + F.softmax(up(raw(coarse, xi:flip(4)), 29, 41), 2):flip(4)
      local x75 = up(xi, 22, 31)
      want = want + F.softmax(up(raw(coarse, x75), 29, 41), 2) + F.softmax(up(raw(coarse, x75:flip(4)), 29, 41), 2):flip(4)
    else
      want = up(raw(coarse, xi), 29, 41)
    end
    local ids = want:argmax(2):squeeze(1):squeeze(1) - 1 -- 0-based class ids, as the PNG holds them
    H.same_list(mask:size(), { 29, 41 })
    H.same_list(H.flat(mask:to("i64")), H.flat(ids), "mask vs argmax")
    local counts = {}
    for _, v in ipairs(H.flat(ids)) do counts[v] = true end
    assert(counts[1] or counts[2] or counts[3], "a single-class mask would make the check weak")
  end
  require("moonseg.engine.log").quiet = quiet
  os.execute("rm -rf " .. tmp)
end)

H.case("the predict entry writes palette masks and overlays", function()
  local tmp = os.tmpname()
  os.remove(tmp)
  os.execute("mkdir -p " .. tmp .. "/imgs")
  local src = os.getenv("MOONSEG_SOURCE_DIR")
  ms.manual_seed(2)
  local seg = ms.models.PPLiteSeg { num_classes = 3, backbone = "STDC1" }
  ms.save(tmp .. "/model.safetensors", seg:state_dict())
  for i = 1, 2 do
    ms.image.write_png(tmp .. "/imgs/im" .. i .. ".png", (ms.rand(40 + i, 50, 3) * 255):to("u8"))
  end
  local p = io.popen("luajit " .. src .. "/recipes/predict.lua --model_path " .. tmp .. "/model.safetensors --image_path " ..
    tmp .. "/imgs --save_dir " .. tmp .. "/out --aug_pred --flip_horizontal 2>&1; echo rc=$?")
  local out = p:read("*a")
  p:close()
  assert(out:find("rc=0", 1, true), out)
  for i = 1, 2 do
    local mask = ms.image.read(tmp .. "/out/pseudo_color_prediction/im" .. i .. ".png", { mode = "label" })
    H.same_list(mask:size(), { 40 + i, 50 })
    assert(mask:max():item() < 3, "class ids beyond num_classes")
    local overlay = ms.image.read(tmp .. "/out/added_prediction/im" .. i .. ".jpg")
    H.same_list(overlay:size(), { 40 + i, 50, 3 })
  end
  os.execute("rm -rf " .. tmp)
end)

H.done()
