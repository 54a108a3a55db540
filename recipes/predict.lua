-- predict.lua: run a trained model (the one its checkpoint's state.json names; PP-LiteSeg by
-- default) over images and write pseudo-colour masks and overlays.
--   luajit recipes/predict.lua --model_path output/best_model --image_path DIR_OR_IMAGE
--     [--save_dir output/result] [--num_classes N] [--backbone STDC1|STDC2]
--     [--aug_pred --flip_horizontal --scales 0.75,1.0,1.25] [--is_slide --crop_size W H --stride W H]
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local flags = require "moonseg.engine.flags"
local predict = require "moonseg.engine.predict"
local json = require "moonseg.json"

local spec = {
  { "model_path", "string", nil, "a checkpoint directory (best_model, iter_N) or a model .safetensors" },
  { "image_path", "string", nil, "an image, or a directory of .jpg/.png images" },
  { "save_dir", "string", "output/result", "where pseudo_color_prediction/ and added_prediction/ go" },
  { "num_classes", "int", nil, "number of classes (read from the checkpoint when absent)" },
  { "backbone", "string", "STDC1", "STDC1 or STDC2", choices = { "STDC1", "STDC2" } },
  { "aug_pred", "bool", false, "test-time augmentation (flips / scales below)" },
  { "flip_horizontal", "bool", false, "with --aug_pred: add horizontally flipped predictions" },
  { "flip_vertical", "bool", false, "with --aug_pred: add vertically flipped predictions" },
  { "scales", "string", "1.0", "with --aug_pred: comma-separated scales" },
  { "is_slide", "bool", false, "sliding-window inference" },
  { "crop_size", "size", nil, "sliding window W H" },
  { "stride", "size", nil, "sliding stride W H" },
  { "threads", "int", nil, "CPU threads" },
}
local ok, cfg = pcall(flags.parse, spec, arg or {}, "recipes/predict.lua")
if not ok then io.stderr:write("recipes/predict.lua: ", tostring(cfg), "\n") os.exit(2) end
if not cfg.model_path or not cfg.image_path then
  io.stderr:write("recipes/predict.lua: --model_path and --image_path are required (see --help)\n")
  os.exit(2)
end
if cfg.is_slide and not (cfg.crop_size and cfg.stride) then
  io.stderr:write("recipes/predict.lua: --is_slide needs --crop_size W H and --stride W H\n")
  os.exit(2)
end
if cfg.threads then ms.set_num_threads(cfg.threads) end

local weights = cfg.model_path
if not weights:match("%.safetensors$") then weights = weights .. "/model.safetensors" end
local sd = ms.load(weights)
-- the model the checkpoint's state.json names (any registered model), else PP-LiteSeg
local spec = require("moonseg.models.registry").spec_of_checkpoint(cfg.model_path)
local nc = cfg.num_classes or (spec and spec.args.num_classes)
if not nc then -- the classifier's output channels
  local w = sd["seg_heads.0.conv_out.weight"]
  if not w then error("cannot tell num_classes from " .. weights .. ": pass --num_classes", 0) end
  nc = w:size(1)
end
local model = spec and ms.models.build(spec) or ms.models.PPLiteSeg { num_classes = nc, backbone = cfg.backbone }
model:load_state_dict(sd)
local scales = {}
for s in cfg.scales:gmatch("[^,]+") do scales[#scales + 1] = tonumber(s) end
predict.predict(model, predict.collect(cfg.image_path), {
  save_dir = cfg.save_dir, num_classes = nc, transforms = ms.data.transforms.Compose { ms.data.transforms.Normalize() },
  aug = { is_slide = cfg.is_slide, crop_size = cfg.crop_size, stride = cfg.stride,
    flip_horizontal = cfg.aug_pred and cfg.flip_horizontal, flip_vertical = cfg.aug_pred and cfg.flip_vertical,
    scales = cfg.aug_pred and scales or nil },
})
