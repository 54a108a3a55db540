-- val.lua: evaluate a trained model (the one its checkpoint's state.json names; PP-LiteSeg
-- by default) on a data set's validation list, as PaddleSeg's val.py:
-- whole images at batch 1, or sliding windows, flips and several scales.
--   luajit recipes/val.lua --model_path output/best_model [--dataset_root DIR] [--num_classes N]
--     [--aug_eval --flip_horizontal --scales 0.75,1.0,1.25] [--is_slide --crop_size W H --stride W H]
-- Without --dataset_root the built-in synthetic set's validation images are used.
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local flags = require "moonseg.engine.flags"
local evaluate = require "moonseg.engine.evaluate"
local T = ms.data.transforms

local spec = {
  { "model_path", "string", nil, "a checkpoint directory (best_model, iter_N) or a model .safetensors" },
  { "dataset_root", "string", nil, "a PaddleSeg-format data set (its val_list.txt)" },
  { "num_classes", "int", nil, "number of classes (read from the checkpoint when absent)" },
  { "backbone", "string", "STDC1", "STDC1 or STDC2", choices = { "STDC1", "STDC2" } },
  { "aug_eval", "bool", false, "test-time augmentation (flips / scales below)" },
  { "flip_horizontal", "bool", false, "with --aug_eval: add horizontally flipped predictions" },
  { "flip_vertical", "bool", false, "with --aug_eval: add vertically flipped predictions" },
  { "scales", "string", "1.0", "with --aug_eval: comma-separated scales" },
  { "is_slide", "bool", false, "sliding-window inference" },
  { "crop_size", "size", nil, "sliding window W H" },
  { "stride", "size", nil, "sliding stride W H" },
  { "num_workers", "int", 0, "data loading threads" },
  { "threads", "int", nil, "CPU threads" },
}
local ok, cfg = pcall(flags.parse, spec, arg or {}, "recipes/val.lua")
local function usage(msg) io.stderr:write("recipes/val.lua: ", msg, "\n") os.exit(2) end
if not ok then usage(tostring(cfg)) end
if not cfg.model_path then usage("--model_path is required (see --help)") end
if cfg.is_slide and not (cfg.crop_size and cfg.stride) then usage("--is_slide needs --crop_size W H and --stride W H") end
if cfg.threads then ms.set_num_threads(cfg.threads) end

local weights = cfg.model_path
if not weights:match("%.safetensors$") then weights = weights .. "/model.safetensors" end
local sd = ms.load(weights)
-- the model the checkpoint's state.json names (any registered model), else PP-LiteSeg
local spec = require("moonseg.models.registry").spec_of_checkpoint(cfg.model_path)
local nc = cfg.num_classes or (spec and spec.args.num_classes) or
  (sd["seg_heads.0.conv_out.weight"] and sd["seg_heads.0.conv_out.weight"]:size(1))
if not nc then usage("cannot tell num_classes from " .. weights .. ": pass --num_classes") end
local model = spec and ms.models.build(spec) or ms.models.PPLiteSeg { num_classes = nc, backbone = cfg.backbone }
model:load_state_dict(sd)
local ds = cfg.dataset_root and ms.data.PaddleSegDataset { dataset_root = cfg.dataset_root, mode = "val", num_classes = nc }
  or ms.data.Synthetic { mode = "val" }
local scales = {}
for s in cfg.scales:gmatch("[^,]+") do scales[#scales + 1] = tonumber(s) end
evaluate.evaluate(model, ds, { transforms = T.Compose { T.Normalize() }, num_classes = nc,
  num_workers = cfg.num_workers, aug = { is_slide = cfg.is_slide, crop_size = cfg.crop_size, stride = cfg.stride,
    flip_horizontal = cfg.aug_eval and cfg.flip_horizontal, flip_vertical = cfg.aug_eval and cfg.flip_vertical,
    scales = cfg.aug_eval and scales or nil } })
