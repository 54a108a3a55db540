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
