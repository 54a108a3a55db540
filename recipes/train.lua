-- train.lua: PaddleSeg's tools/train.py for moonseg: train from a PaddleSeg YAML config.
--   luajit recipes/train.lua --config my_config.yml --do_eval --use_vdl --save_interval 500 --save_dir output
--   luajit recipes/train.lua --config my_config.yml --print_config     (the merged config, then exit)
--   luajit recipes/train.lua --config my_config.yml --opts model.backbone.type=STDC1 batch_size=2
-- PaddleSeg's flags (--iters, --batch_size, --learning_rate override the config) and moonseg's
-- own (--help lists them). Configs use PaddleSeg's schema (_base_, model, train_dataset, ...).
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local recipe = require "moonseg.engine.recipe"
local config = require "moonseg.config"
local log = require "moonseg.engine.log"

local prog = "recipes/train.lua"
local function usage_error(msg)
  io.stderr:write(prog, ": ", msg, "\n")
  os.exit(2)
end
-- --opts key.path=value ... (PaddleSeg's nargs='+') is taken out before the flags are parsed.
local okx, argv, opt_items = pcall(config.opts.extract, arg or {})
if not okx then usage_error(argv) end

-- --config and --print_config first: the config gives the other flags' defaults.
local path, print_only
for i, a in ipairs(argv) do
  if a == "--config" then path = argv[i + 1] end
  if a:match("^%-%-config=") then path = a:sub(10) end
  if a == "--print_config" then print_only = true end
end
local is_help = false
for _, a in ipairs(argv) do if a == "--help" or a == "-h" then is_help = true end end
if not path and not is_help then usage_error("--config FILE.yml is required (a PaddleSeg config; see --help)") end

local cfg_tree, opt_touched
if path then
  local ok, t = pcall(config.load, path)
  if not ok then usage_error(tostring(t)) end
  cfg_tree = t
  local oko, touched = pcall(config.opts.apply, cfg_tree, opt_items)
  if not oko then usage_error(touched) end
  opt_touched = touched
  if print_only then
    io.write(config.dump(cfg_tree))
    os.exit(0)
  end
end

local defaults = { save_interval = 1000, do_eval = false }
if cfg_tree then
  local build = require "moonseg.config.build"
  local ok, err = pcall(function()
    defaults.iters = build.top_int(cfg_tree, "iters")
    defaults.batch_size = build.top_int(cfg_tree, "batch_size") or 1 -- PaddleSeg's default
    defaults.learning_rate = build.top_lr(cfg_tree)
  end)
  if not ok then usage_error(tostring(err)) end
end

local extra = {
  { "config", "string", nil, "a PaddleSeg YAML config (its _base_ files are read too)" },
  { "print_config", "bool", false, "print the merged config (each key's file:line) and exit" },
  { "use_vdl", "bool", false, "write TensorBoard event files into save_dir (VisualDL's counterpart)" },
  { "opts", "string", nil, "key.path=value ... : change the merged config (PaddleSeg's --opts; wins over " ..
    "--iters/--batch_size/--learning_rate)" },
}
-- the items go back as --opts=ITEM so the launcher hands them to every worker it spawns
local parse_argv = { unpack(argv) }
for _, item in ipairs(opt_items or {}) do parse_argv[#parse_argv + 1] = "--opts=" .. item end
local c = recipe.parse(defaults, parse_argv, prog, extra)
-- PaddleSeg applies --opts after --iters, --batch_size and --learning_rate
if opt_touched and opt_touched.iters then c.iters = defaults.iters end
if opt_touched and opt_touched.batch_size then c.batch_size = defaults.batch_size end
if opt_touched and (opt_touched["lr_scheduler.learning_rate"] or opt_touched["learning_rate.value"]) then
  c.learning_rate = defaults.learning_rate
end
for _, f in ipairs { "num_classes", "backbone", "crop_size", "pretrained", "dataset_root" } do
  if c[f] ~= nil then
    usage_error("--" .. f .. " belongs to the Lua recipes; with --config set it in " .. path ..
      " (model.num_classes, model.backbone, a transform's crop_size, model.pretrained, train_dataset.dataset_root)" ..
      " or with --opts key.path=value")
  end
end
if not c.iters then usage_error("iters: set it in " .. path .. " or pass --iters") end
if not c.batch_size then usage_error("batch_size: set it in " .. path .. " or pass --batch_size") end

recipe.run(c, function(f)
  local ok, parts = pcall(config.build, cfg_tree, f, { config = path, warn = log.warn })
  if not ok then
    io.stderr:write(prog, ": ", tostring(parts), "\n")
    os.exit(2)
  end
  parts.tensorboard = f.use_vdl
  return parts
end)
