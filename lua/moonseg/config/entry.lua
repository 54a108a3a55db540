-- config/entry.lua: recipes/val.lua and recipes/predict.lua with --config (PaddleSeg's val.py
-- and predict.py): the model, val_dataset and its transforms, and test_config come from the
-- config; the flags of val.py/predict.py (--aug_eval, --scales, --is_slide, ...) override it.
local ms = require "moonseg"
local flags = require "moonseg.engine.flags"
local config = require "moonseg.config"
local log = require "moonseg.engine.log"

local M = {}

local aug_spec = {
  { "flip_horizontal", "bool", nil, "add horizontally flipped predictions" },
  { "flip_vertical", "bool", nil, "add vertically flipped predictions" },
  { "scales", "string", nil, "comma-separated scales" },
  { "is_slide", "bool", nil, "sliding-window inference" },
  { "crop_size", "size", nil, "sliding window W H" },
  { "stride", "size", nil, "sliding stride W H" },
  { "threads", "int", nil, "CPU threads" },
}

local function parse(prog, spec, argv)
  for _, f in ipairs(aug_spec) do spec[#spec + 1] = f end
  spec[#spec + 1] = { "opts", "string", nil, "key.path=value ... : change the config (PaddleSeg's --opts)" }
  local ok, c = pcall(function()
    local rest, items = config.opts.extract(argv or {})
    local r = flags.parse(spec, rest, prog)
    r.opts = items
    return r
  end)
  if not ok then
    io.stderr:write(prog, ": ", tostring(c), "\n")
    os.exit(2)
  end
  return c
end

local function fail(prog, msg)
  io.stderr:write(prog, ": ", msg, "\n")
  os.exit(2)
end

-- The model and evaluation settings of a config, with weights from model_path.
local function setup(prog, c, aug_flag)
  if c.threads then ms.set_num_threads(c.threads) end
  if not c.model_path then fail(prog, "--model_path is required (see --help)") end
  local ok, parts = pcall(function()
    local cfg = config.load(c.config)
    config.opts.apply(cfg, c.opts)
    return config.build(cfg, {}, { only = "eval", warn = log.warn, config = c.config })
  end)
  if not ok then fail(prog, tostring(parts)) end
  local weights = c.model_path
  if weights:match("%.pdparams$") then
    fail(prog, "--model_path " .. weights .. " is a Paddle checkpoint; convert it once with\n  python3 " ..
      "recipes/tools/convert_pdparams.py " .. weights .. " model.safetensors\nand pass that file")
  end
  if not weights:match("%.safetensors$") then weights = weights .. "/model.safetensors" end
  local okw, err = pcall(function() parts.model:load_state_dict(ms.load(weights)) end)
  if not okw then fail(prog, "--model_path " .. c.model_path .. ": " .. tostring(err)) end
  local aug = parts.eval_aug or {}
  local on = c[aug_flag]
  if on == nil then on = aug.scales ~= nil or aug.flip_horizontal or aug.flip_vertical end
  local scales = aug.scales
  if c.scales then
    scales = {}
    for s in c.scales:gmatch("[^,]+") do scales[#scales + 1] = tonumber(s) end
  end
  local function pick(flag, v) if c[flag] ~= nil then return c[flag] end return v end
  aug = { is_slide = pick("is_slide", aug.is_slide), crop_size = pick("crop_size", aug.crop_size),
    stride = pick("stride", aug.stride), flip_horizontal = on and pick("flip_horizontal", aug.flip_horizontal) or false,
    flip_vertical = on and pick("flip_vertical", aug.flip_vertical) or false, scales = on and scales or nil }
  if aug.is_slide and not (aug.crop_size and aug.stride) then
    fail(prog, "sliding-window inference needs crop_size and stride (test_config or --crop_size/--stride)")
  end
  return parts, aug
end

function M.val(argv)
  local prog = "recipes/val.lua"
  local c = parse(prog, {
    { "config", "string", nil, "a PaddleSeg YAML config (model, val_dataset, test_config)" },
    { "model_path", "string", nil, "a checkpoint directory (best_model, iter_N) or a model .safetensors" },
    { "aug_eval", "bool", nil, "test-time augmentation (default: test_config's aug_eval)" },
    { "num_workers", "int", 0, "data loading threads" },
  }, argv)
  local parts, aug = setup(prog, c, "aug_eval")
  return require("moonseg.engine.evaluate").evaluate(parts.model, parts.val_dataset, {
    transforms = parts.val_transforms, num_classes = parts.num_classes, ignore_index = parts.ignore_index,
    num_workers = c.num_workers, aug = aug })
end

function M.predict(argv)
  local prog = "recipes/predict.lua"
  local c = parse(prog, {
    { "config", "string", nil, "a PaddleSeg YAML config (model, val_dataset's transforms, test_config)" },
    { "model_path", "string", nil, "a checkpoint directory (best_model, iter_N) or a model .safetensors" },
    { "image_path", "string", nil, "an image, or a directory of .jpg/.png images" },
    { "save_dir", "string", "output/result", "where pseudo_color_prediction/ and added_prediction/ go" },
    { "aug_pred", "bool", nil, "test-time augmentation (default: test_config's aug_eval)" },
  }, argv)
  if not c.image_path then fail(prog, "--image_path is required (see --help)") end
  local parts, aug = setup(prog, c, "aug_pred")
  local predict = require "moonseg.engine.predict"
  return predict.predict(parts.model, predict.collect(c.image_path), { save_dir = c.save_dir,
    num_classes = parts.num_classes, transforms = parts.val_transforms, aug = aug })
end

-- wants(argv): --config given?
function M.wants(argv)
  for _, a in ipairs(argv or {}) do
    if a == "--config" or a:match("^%-%-config=") then return true end
  end
  return false
end

return M
