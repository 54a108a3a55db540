-- recipe.lua: what recipes share: PaddleSeg's train flags, building the run from a recipe
-- config plus flag overrides, device selection, and the call into the training loop.
local ms = require "moonseg"
local flags = require "moonseg.engine.flags"
local log = require "moonseg.engine.log"

local M = {}

-- The flags of PaddleSeg's tools/train.py plus moonseg's own; defaults come from the recipe.
function M.spec(d)
  local spec = {
    { "iters", "int", d.iters, "training iterations", min = 1 },
    { "batch_size", "int", d.batch_size, "images per device per iteration", min = 1 },
    { "learning_rate", "float", d.learning_rate, "base learning rate", min = 0 },
    { "save_dir", "string", d.save_dir or "output", "where checkpoints, logs and TensorBoard files go" },
    { "num_workers", "int", d.num_workers or 2, "data loading threads (0: in the training thread)", min = 0 },
    { "do_eval", "bool", d.do_eval or false, "evaluate at every save_interval and keep best_model" },
    { "save_interval", "int", d.save_interval or 1000, "iterations between checkpoints (and evaluations)", min = 1 },
    { "log_iters", "int", d.log_iters or 10, "iterations between [TRAIN] log lines", min = 1 },
    { "resume_model", "string", nil, "resume from save_dir/iter_N" },
    { "keep_checkpoint_max", "int", d.keep_checkpoint_max or 5, "iter_N checkpoints kept (0: all)", min = 0 },
    { "seed", "int", d.seed or 0, "random seed (weights, shuffling, augmentation)" },
    { "early_stop_intervals", "int", nil, "stop after this many evaluations without a better mIoU", min = 1 },
    { "use_ema", "bool", false, "evaluate and save an exponential moving average of the weights" },
    { "device", "string", d.device or "auto", "auto (a GPU when it can train the recipe), cpu, cpu:N, gpu, gpu:N, cuda:N" },
    { "dataset_root", "string", nil, "a PaddleSeg-format data set (train_list.txt, val_list.txt)" },
    { "num_classes", "int", d.num_classes, "number of classes", min = 1 },
    { "backbone", "string", d.backbone, d.backbone_help or "STDC1 (PP-LiteSeg-T) or STDC2 (PP-LiteSeg-B)",
      choices = d.backbone_choices or { "STDC1", "STDC2" } },
    { "crop_size", "size", d.crop_size, "training crop W H" },
    { "pretrained", "string", nil, "weights to start from (safetensors; see recipes/tools/convert_pdparams.py)" },
    { "precision", "string", "fp32", "fp32, or mixed precision fp16 / bf16 (bf16 is native on AVX512-BF16 CPUs)",
      choices = { "fp32", "fp16", "bf16" } },
    { "amp_level", "string", "O1", "O1 (autocast) or O2 (half weights, f32 masters) with --precision fp16/bf16",
      choices = { "O1", "O2" } },
    { "scale_loss", "string", nil, "fp16 loss scaling: dynamic (default, init 1024) or a static number" },
    { "threads", "int", nil, "CPU threads (default: all cores; launched workers: cores / workers per node)", min = 1 },
    { "log_dir", "string", nil, "also append the log to log_dir/train.log (launching: workerlog.N, default log)" },
    { "skip_bad", "bool", false, "skip unreadable or invalid samples (logged, counted) instead of stopping" },
    { "batch_invariant", "bool", true, "convolutions give each sample the same result at any batch size " ..
      "(N workers x B = 1 x N*B); false: batched Winograd, faster on large crops" },
  }
  for _, f in ipairs(d.extra_flags or {}) do spec[#spec + 1] = f end -- a recipe's own flags
  -- [distributed] the launch and data-parallel flags (engine/launch.lua)
  for _, f in ipairs(require("moonseg.engine.launch").spec()) do spec[#spec + 1] = f end
  return spec
end

local devices = require "moonseg.engine.device"

-- parse(defaults, argv, prog, extra) -> cfg (flags merged over the recipe's defaults); extra:
-- more flag specs the recipe accepts (recipes/train.lua's --config).
function M.parse(defaults, argv, prog, extra)
  M.prog = prog
  local spec = M.spec(defaults)
  for _, f in ipairs(extra or {}) do spec[#spec + 1] = f end
  local ok, cfg = pcall(flags.parse, spec, argv or {}, prog)
  if not ok then -- a usage error: the message, no traceback
    io.stderr:write(prog, ": ", tostring(cfg), "\n")
    os.exit(2)
  end
  for k, v in pairs(defaults) do if cfg[k] == nil then cfg[k] = v end end
  local function usage_error(msg)
    io.stderr:write(prog, ": ", msg, "\n")
    os.exit(2)
  end
  -- [distributed] --nproc/--gpus/--ips: become the launcher of the workers (unless this
  -- process already is one rank of a job: torchrun-style or Slurm environment)
  local launch = require "moonseg.engine.launch"
  if launch.wanted(cfg) then
    local okl, code = pcall(launch.run, cfg, argv or {})
    if not okl then usage_error(tostring(code)) end
    os.exit(code)
  end
  local okd, dev = pcall(devices.parse, cfg.device)
  if not okd then usage_error(dev) end
  cfg.device = dev -- "auto" is settled in run(), once the model exists to ask about
  -- [amp] --scale_loss is for fp16 only
  if cfg.scale_loss ~= nil then
    if cfg.precision == "bf16" then
      usage_error("--scale_loss: not with --precision bf16: bf16 has f32's exponent range, so gradients " ..
        "do not underflow and need no loss scaling")
    elseif cfg.precision ~= "fp16" then
      usage_error("--scale_loss: loss scaling is for --precision fp16 (got --precision " .. cfg.precision .. ")")
    end
    local v = tonumber(cfg.scale_loss)
    if cfg.scale_loss ~= "dynamic" and not (v and v > 0 and v < math.huge) then
      usage_error("--scale_loss must be 'dynamic' or a number > 0, got '" .. cfg.scale_loss .. "'")
    end
  end
  if cfg.threads then ms.set_num_threads(cfg.threads) end
  ms.set_batch_invariant(cfg.batch_invariant ~= false)
  return cfg
end

-- Runs a recipe: build(cfg) returns the table train() takes (model, datasets, transforms,
-- losses, optimizer, lr_schedule); flags fill the rest. A user error (data, checkpoint) ends
-- the program with its message alone; internal errors keep their traceback (moonseg.errors).
function M.run(cfg, build)
  return require("moonseg.errors").main(M.prog or "recipe", M.run_unguarded, cfg, build)
end

function M.run_unguarded(cfg, build)
  -- [distributed] one rank of a multi-process job: join the group before building
  local ddp, dctx = require "moonseg.engine.ddp", nil
  if require("moonseg.engine.launch").in_job() and ms.dist.resolve_env().world_size > 1 then
    dctx = ddp.init { timeout = cfg.dist_timeout, liveness = cfg.dist_liveness }
  end
  ms.manual_seed(cfg.seed)
  local parts = build(cfg)
  require("moonseg.engine.checkpoint").model_spec = rawget(parts.model, "model_spec")
  for k, v in pairs(cfg) do if parts[k] == nil then parts[k] = v end end
  local okd, dev = pcall(devices.resolve, cfg, parts, log.info)
  if not okd then
    io.stderr:write(tostring(dev), "\n")
    os.exit(2)
  end
  cfg.device, parts.device = dev, dev
  parts.model:to(dev) -- in place: the optimizer built with the model still holds its parameters
  if dctx then ddp.attach(dctx, parts, cfg) end
  if cfg.log_dir then
    require("moonseg.engine.checkpoint").mkdir(cfg.log_dir)
    log.attach(cfg.log_dir .. "/train.log")
  end
  log.info(string.format("moonseg %s | %s | device %s, %d threads | %s", ms.version, ms.build_info(),
    cfg.device, ms.get_num_threads(), parts.description or ""))
  log.info(string.format("model: %d parameters; train samples: %d%s", parts.model:num_parameters(),
    parts.train_dataset:size(), parts.val_dataset and ("; val samples: " .. parts.val_dataset:size()) or ""))
  local result = require("moonseg.engine.train").train(parts)
  if dctx then dctx:finish() end
  return result
end

-- The train and val sets a recipe's run uses: a --dataset_root holding train_list.txt is a
-- PaddleSeg-format set (file lists, --num_classes), another --dataset_root Cityscapes' layout
-- (leftImg8bit/, gtFine/), none the built-in synthetic set. Returns train, val and the kind:
-- "list", "cityscapes" or "synthetic".
function M.datasets(c)
  local listed = c.dataset_root and io.open(c.dataset_root .. "/train_list.txt", "rb")
  if listed then
    listed:close()
    return ms.data.PaddleSegDataset { dataset_root = c.dataset_root, mode = "train", num_classes = c.num_classes },
      ms.data.PaddleSegDataset { dataset_root = c.dataset_root, mode = "val", num_classes = c.num_classes }, "list"
  elseif c.dataset_root then
    return ms.data.Cityscapes { dataset_root = c.dataset_root, mode = "train" },
      ms.data.Cityscapes { dataset_root = c.dataset_root, mode = "val" }, "cityscapes"
  end
  return ms.data.Synthetic { mode = "train" }, ms.data.Synthetic { mode = "val" }, "synthetic"
end

return M
