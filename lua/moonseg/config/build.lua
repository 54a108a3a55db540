-- config/build.lua: a merged PaddleSeg config -> the parts moonseg's engine trains with (model,
-- data sets, transforms, losses, optimizer, schedule, evaluation settings), applying PaddleSeg's
-- rules: num_classes and ignore_index flow from the training set into the model and every loss,
-- one loss with a longer coef list is repeated, sgd is Momentum, decay_steps = iters -
-- warmup_iters (at least 1). Every key is used or is an error naming file:line, the key path and
-- what moonseg accepts there.
local ms = require "moonseg"
local yaml = require "moonseg.config.yaml"
local load = require "moonseg.config.load"
local R = require "moonseg.config.registry"
local weights = require "moonseg.config.weights"

local M = {}

local TOP = { "_base_", "batch_size", "iters", "train_dataset", "val_dataset", "test_config", "model", "loss",
  "optimizer", "lr_scheduler", "learning_rate", "export", "to_static_training" }

local function fail(t, k, path, msg) error(string.format("%s: %s: %s", load.pos(t, k), path, msg), 0) end

local function join(path, k) return path == "" and tostring(k) or (path .. "." .. tostring(k)) end

local function is_list(v) return type(v) == "table" and v ~= yaml.null and (yaml.where(v) or {}).list end
local function is_map(v) return type(v) == "table" and v ~= yaml.null and not is_list(v) end

local function show(v)
  if v == yaml.null then return "null" end
  if type(v) == "string" then return "'" .. v .. "'" end
  if is_list(v) then return "a list" end
  if type(v) == "table" then return "a mapping" end
  return tostring(v)
end

local function int(v) return type(v) == "number" and v == math.floor(v) and v == v end

-- check(kind, value) -> value (normalised) or nil, what was expected.
local checks = {
  int = function(v) return int(v) and v or nil, "an integer" end,
  num = function(v) return type(v) == "number" and v or nil, "a number" end,
  str = function(v) return type(v) == "string" and v or nil, "a string" end,
  path = function(v) return type(v) == "string" and v or nil, "a file path" end,
  bool = function(v)
    if type(v) == "boolean" then return v end
    return nil, "True or False"
  end,
  any = function(v) return v end,
  ints = function(v)
    if int(v) then return { v } end
    if not is_list(v) then return nil, "a list of integers" end
    for _, x in ipairs(v) do if not int(x) then return nil, "a list of integers" end end
    return v
  end,
  nums = function(v)
    if type(v) == "number" then return { v } end
    if not is_list(v) then return nil, "a list of numbers" end
    for _, x in ipairs(v) do if type(x) ~= "number" then return nil, "a list of numbers" end end
    return v
  end,
  size = function(v)
    if int(v) and v > 0 then return { v, v } end
    if is_list(v) and #v == 2 and int(v[1]) and int(v[2]) and v[1] > 0 and v[2] > 0 then return { v[1], v[2] } end
    return nil, "[width, height] (two positive integers) or one integer"
  end,
  scales = function(v)
    if type(v) == "number" then return { v } end
    if is_list(v) and #v > 0 then
      for _, x in ipairs(v) do if type(x) ~= "number" or x <= 0 then return nil, "a number or a list of numbers" end end
      return v
    end
    return nil, "a number or a list of numbers"
  end,
  node = function(v) return is_map(v) and v or nil, "a mapping with a type: key" end,
  nodes = function(v)
    if not is_list(v) then return nil, "a list of mappings with a type: key" end
    for _, x in ipairs(v) do if not is_map(x) then return nil, "a list of mappings with a type: key" end end
    return v
  end,
}

-- args(t, path, spec, extra) -> a table of the checked values of t (type: excluded). Unknown
-- keys and values of the wrong kind are errors. extra: more {name = kind} accepted.
local function args(t, path, spec, extra, what)
  local r = {}
  for k, v in pairs(t) do
    if k ~= "type" then
      local kind = spec[k] or (extra and extra[k])
      if not kind then
        local names = R.names(spec)
        for n in pairs(extra or {}) do names[#names + 1] = n end
        table.sort(names)
        fail(t, k, join(path, k), string.format("unknown argument of %s; it accepts: %s", what,
          #names > 0 and table.concat(names, ", ") or "no arguments"))
      end
      if v ~= yaml.null then
        local val, expected = checks[kind](v)
        if val == nil then fail(t, k, join(path, k), "must be " .. expected .. ", got " .. show(v)) end
        r[k] = val
      end
    end
  end
  return r
end

local function type_of(t, path, tbl, family)
  local ty = t.type
  if ty == nil then
    fail(t, nil, path, "has no type: key; " .. family .. " types: " .. table.concat(R.names(tbl), ", "))
  end
  if type(ty) ~= "string" or not tbl[ty] then
    fail(t, "type", join(path, "type"), string.format("unknown %s type %s; moonseg offers: %s", family, show(ty),
      table.concat(R.names(tbl), ", ")))
  end
  return ty, tbl[ty]
end

local function need(t, path, r, names)
  for _, n in ipairs(names or {}) do
    if r[n] == nil then fail(t, nil, path, "needs " .. n .. ":") end
  end
end

-- pretrained: a local .safetensors, or a URL in the weights cache (warning and nil when absent).
local function pretrained(t, path, value, warn)
  if value == nil then return nil end
  local p, w = weights.resolve(value, load.pos(t, "pretrained") .. ": " .. join(path, "pretrained"))
  if w then warn(w) end
  return p
end

-- ---- transforms ----------------------------------------------------------------------------
local function transforms(list, t, path)
  local T = ms.data.transforms
  local ops = {}
  for i, node in ipairs(list or {}) do
    local p = string.format("%s[%d]", path, i - 1)
    local ty, spec = type_of(node, p, R.transforms, "transform")
    local a = args(node, p, spec.args, nil, ty)
    local ok, op = pcall(T[ty], a)
    if not ok then fail(node, nil, p, tostring(op):gsub("^[^:]*:%d+: ", "")) end
    ops[#ops + 1] = op
  end
  local ok, c = pcall(T.Compose, ops)
  if not ok then fail(t, "transforms", path, tostring(c):gsub("^[^:]*:%d+: ", "")) end
  return c
end

-- ---- data sets -----------------------------------------------------------------------------
local function dataset(t, path, mode)
  local ty, spec = type_of(t, path, R.datasets, "dataset")
  local a = args(t, path, spec.args, nil, ty)
  need(t, path, a, spec.required)
  if a.edge then fail(t, "edge", join(path, "edge"), "edge: True (edge labels) is not supported by moonseg") end
  if a.img_channels and a.img_channels ~= 3 then
    fail(t, "img_channels", join(path, "img_channels"), "moonseg reads 3-channel images only")
  end
  local m = a.mode or mode
  if m ~= "train" and m ~= "val" and m ~= "test" then
    fail(t, "mode", join(path, "mode"), "must be train, val or test, got " .. show(m))
  end
  local root = a.dataset_root or spec.default_root
  local ds
  local function try(f)
    local ok, r = pcall(f)
    if not ok then fail(t, "dataset_root", path, tostring(r):gsub("^[^:]*:%d+: ", "")) end
    return r
  end
  if ty == "Cityscapes" then
    ds = try(function() return ms.data.Cityscapes { dataset_root = root, mode = m } end)
  elseif ty == "ADE20K" then -- annotations shifted by the loader (0 -> 255, c -> c - 1)
    if m == "test" then fail(t, a.mode and "mode" or nil, join(path, "mode"), "ADE20K has train and val only") end
    ds = try(function() return ms.data.ADE20K { dataset_root = root, mode = m } end)
  else
    local list = a[m .. "_path"]
    if list then
      local f = io.open(list, "rb")
      if not f then fail(t, m .. "_path", join(path, m .. "_path"), "file list not found: " .. list) end
      f:close()
    else
      local f = io.open(root .. "/" .. m .. "_list.txt", "rb")
      if not f then
        fail(t, a.dataset_root and "dataset_root" or nil, join(path, "dataset_root"),
          "no " .. m .. "_list.txt in " .. root .. (a.dataset_root and "" or " (the default dataset_root)"))
      end
      f:close()
    end
    ds = try(function()
      return ms.data.PaddleSegDataset { dataset_root = root, mode = m, [m .. "_path"] = list,
        separator = a.separator, num_classes = a.num_classes or spec.num_classes, ignore_index = a.ignore_index }
    end)
  end
  ds.num_classes = a.num_classes or spec.num_classes
  ds.ignore_index = a.ignore_index or 255
  return ds, transforms(a.transforms, t, join(path, "transforms"))
end

-- ---- model ---------------------------------------------------------------------------------
local function lookup(name)
  return ms.models[name] or (ms.models.backbones and ms.models.backbones[name])
end

local function backbone(t, path, warn)
  local ty, spec = type_of(t, path, R.backbones, "backbone")
  local a = args(t, path, spec.args, { pretrained = "path" }, ty)
  a.pretrained = pretrained(t, path, a.pretrained, warn)
  local ctor = lookup(ty)
  if not ctor then
    fail(t, "type", join(path, "type"), "backbone " .. ty .. " is not in this build of moonseg (ms.models." .. ty .. ")")
  end
  return ctor(a)
end

local function model(t, path, num_classes, warn)
  local ty, spec = type_of(t, path, R.models, "model")
  local a = args(t, path, spec.args, { num_classes = "int", pretrained = "path" }, ty)
  for k, v in pairs(spec.defaults) do if a[k] == nil then a[k] = v end end
  if a.num_classes == nil then a.num_classes = num_classes end
  if a.num_classes == nil then fail(t, nil, path, "num_classes is neither set here nor known from train_dataset") end
  if a.backbone then a.backbone = backbone(t.backbone, join(path, "backbone"), warn) end
  if a.backbone_indices then -- PaddleSeg counts from 0, moonseg from 1
    local b = {}
    for i, v in ipairs(a.backbone_indices) do b[i] = v + 1 end
    a.backbone_indices = b
  end
  a.pretrained = pretrained(t, path, a.pretrained, warn)
  local ctor = lookup(ty)
  if not ctor then
    fail(t, "type", join(path, "type"), "model " .. ty .. " is not in this build of moonseg (ms.models." .. ty .. ")")
  end
  local ok, m = pcall(ctor, a)
  if not ok then fail(t, nil, path, tostring(m):gsub("^[^:]*:%d+: ", "")) end
  return m
end

-- ---- losses --------------------------------------------------------------------------------
local function loss(t, path, ignore_index)
  local ty, spec = type_of(t, path, R.losses, "loss")
  local a = args(t, path, spec.args, nil, ty)
  need(t, path, a, spec.required)
  if ty == "MixedLoss" then
    local parts = {}
    for i, sub in ipairs(t.losses) do parts[i] = loss(sub, string.format("%s.losses[%d]", path, i - 1), ignore_index) end
    if #parts ~= #a.coef then
      fail(t, "coef", join(path, "coef"), string.format("has %d entries for %d losses", #a.coef, #parts))
    end
    return ms.losses.MixedLoss { losses = parts, coef = a.coef }
  end
  if a.top_k_percent_pixels and a.top_k_percent_pixels ~= 1 then
    fail(t, "top_k_percent_pixels", join(path, "top_k_percent_pixels"), "only 1.0 (all pixels) is supported")
  end
  if a.data_format and a.data_format ~= "NCHW" then
    fail(t, "data_format", join(path, "data_format"), "only NCHW is supported")
  end
  a.top_k_percent_pixels, a.data_format = nil, nil
  if a.ignore_index ~= nil and a.ignore_index ~= ignore_index then
    fail(t, "ignore_index", join(path, "ignore_index"), string.format("is %d but train_dataset's ignore_index is %d; " ..
      "they must be the same (leave it out to take the data set's)", a.ignore_index, ignore_index))
  end
  a.ignore_index = ignore_index
  local ok, l = pcall(ms.losses[ty], a)
  if not ok then fail(t, nil, path, tostring(l):gsub("^[^:]*:%d+: ", "")) end
  return l
end

local function losses(t, path, ignore_index)
  if not is_map(t) then fail(t, nil, path, "must be a mapping with types: and coef:") end
  args(t, path, { types = "nodes", coef = "nums" }, nil, "loss")
  if t.types == nil or t.coef == nil then fail(t, nil, path, "needs types: and coef:") end
  local types, coef = {}, t.coef
  for i, node in ipairs(t.types) do types[i] = loss(node, string.format("%s.types[%d]", path, i - 1), ignore_index) end
  if #types ~= #coef then
    if #types ~= 1 then
      fail(t, "coef", join(path, "coef"), string.format("has %d entries for %d loss types (one type is repeated; " ..
        "otherwise the numbers must match)", #coef, #types))
    end
    for i = 2, #coef do types[i] = types[1] end
  end
  local c = {}
  for i, v in ipairs(coef) do c[i] = v end
  return { types = types, coef = c }
end

-- ---- optimizer and schedule ----------------------------------------------------------------
local function schedule(cfg, iters, lr_flag)
  local t, path = cfg.lr_scheduler, "lr_scheduler"
  local o
  if t == nil and is_map(cfg.learning_rate) then -- PaddleSeg 2.0-2.4: learning_rate: {value, decay: {type: poly}}
    local lt = cfg.learning_rate
    local a = args(lt, "learning_rate", { value = "num", decay = "node" }, nil, "learning_rate")
    o = { learning_rate = a.value, end_lr = 0, power = 0.9 }
    if a.decay then
      local d = args(lt.decay, "learning_rate.decay", { type = "str", power = "num", end_lr = "num" }, nil, "decay")
      if lt.decay.type ~= "poly" then
        fail(lt.decay, "type", "learning_rate.decay.type", "only poly is supported, got " .. show(lt.decay.type))
      end
      o.power, o.end_lr = d.power or o.power, d.end_lr or o.end_lr
    end
  elseif t ~= nil then
    if cfg.learning_rate ~= nil then
      fail(cfg, "learning_rate", "learning_rate", "give either learning_rate: or lr_scheduler:, not both")
    end
    if not is_map(t) then fail(cfg, "lr_scheduler", path, "must be a mapping with a type: key") end
    local _, spec = type_of(t, path, R.lr_schedulers, "lr_scheduler")
    o = args(t, path, spec.args, nil, "PolynomialDecay")
    if o.cycle then fail(t, "cycle", "lr_scheduler.cycle", "cycle: True is not supported") end
    o.end_lr = o.end_lr or 0 -- PaddleSeg's defaults (not paddle.optimizer.lr's)
    o.power = o.power or 0.9
    if o.warmup_iters and not o.warmup_start_lr then
      fail(t, "warmup_iters", "lr_scheduler.warmup_iters", "needs warmup_start_lr: as well (PaddleSeg's rule)")
    end
  else
    fail(cfg, nil, path, "missing: a config needs lr_scheduler: {type: PolynomialDecay, learning_rate: ...}")
  end
  o.learning_rate = lr_flag or o.learning_rate
  if o.learning_rate == nil then fail(t or cfg, nil, path, "needs learning_rate:") end
  local warm = o.warmup_iters or 0
  o.decay_steps = o.decay_steps or math.max(iters - warm, 1)
  return ms.optim.PolynomialDecay(o), o
end

-- optimizer(t, path) -> function(model, lr) (the config is checked before the model is built).
local function optimizer(t, path)
  if not is_map(t) then fail(t, nil, path, "missing or not a mapping: give optimizer: {type: sgd, ...}") end
  local ty, spec = type_of(t, path, R.optimizers, "optimizer")
  local a = args(t, path, spec.args, nil, ty)
  if a.use_nesterov then fail(t, "use_nesterov", join(path, "use_nesterov"), "Nesterov momentum is not supported") end
  return function(model, lr)
    if ty == "AdamW" then
      return ms.optim.AdamW { model, lr = lr, betas = { a.beta1 or 0.9, a.beta2 or 0.999 }, eps = a.epsilon or 1e-8,
        weight_decay = a.weight_decay or 0.01 }
    end
    return ms.optim.SGD { model, lr = lr, momentum = a.momentum or spec.momentum, weight_decay = a.weight_decay or 0 }
  end
end

-- ---- test_config ---------------------------------------------------------------------------
local function eval_aug(t)
  if t == nil then return nil end
  if not is_map(t) then fail(t, nil, "test_config", "must be a mapping") end
  local a = args(t, "test_config", { aug_eval = "bool", scales = "scales", flip_horizontal = "bool",
    flip_vertical = "bool", is_slide = "bool", crop_size = "size", stride = "size" }, nil, "test_config")
  if a.is_slide and not (a.crop_size and a.stride) then
    fail(t, "is_slide", "test_config.is_slide", "sliding-window evaluation needs crop_size: and stride:")
  end
  return { is_slide = a.is_slide, crop_size = a.crop_size, stride = a.stride,
    flip_horizontal = a.aug_eval == true and a.flip_horizontal == true,
    flip_vertical = a.aug_eval == true and a.flip_vertical == true,
    scales = a.aug_eval and a.scales or nil }
end

-- check_top(cfg): unknown top-level keys are errors; export/to_static_training are reported.
function M.check_top(cfg, warn)
  local known = {}
  for _, k in ipairs(TOP) do known[k] = true end
  for k in pairs(cfg) do
    if not known[k] then
      fail(cfg, k, k, "unknown key; a PaddleSeg config has: " .. table.concat(TOP, ", ", 2))
    end
  end
  if cfg.export ~= nil then warn(load.pos(cfg, "export") .. ": export: not used by moonseg training (ignored)") end
  if cfg.to_static_training then
    warn(load.pos(cfg, "to_static_training") .. ": to_static_training: moonseg has no static graph mode (ignored)")
  end
end

-- build(cfg, flags, o) -> parts for engine.train. flags: iters, batch_size, learning_rate (CLI
-- overrides already applied). o.warn(msg) receives warnings; o.only = "eval" skips training parts.
function M.build(cfg, flags, o)
  o = o or {}
  local warn = o.warn or function(m) io.stderr:write("warning: ", m, "\n") end
  M.check_top(cfg, warn)
  local parts = { warnings = {} }
  local function need_map(k)
    if not is_map(cfg[k]) then fail(cfg, cfg[k] ~= nil and k or nil, k, "missing or not a mapping") end
    return cfg[k]
  end
  local train_ds, train_tf, val_ds, val_tf
  if o.only ~= "eval" then train_ds, train_tf = dataset(need_map("train_dataset"), "train_dataset", "train") end
  if cfg.val_dataset ~= nil then val_ds, val_tf = dataset(need_map("val_dataset"), "val_dataset", "val") end
  local ref = train_ds or val_ds
  if not ref then fail(cfg, nil, "val_dataset", "missing: evaluation needs val_dataset:") end
  local nc, ig = ref.num_classes, ref.ignore_index
  -- PaddleSeg's rule: model, train_dataset and val_dataset must agree on num_classes
  local mcfg = need_map("model")
  for _, s in ipairs { { train_ds, "train_dataset" }, { val_ds, "val_dataset" }, { mcfg, "model" } } do
    local v = s[1] and s[1].num_classes
    if v ~= nil and v ~= yaml.null and nc ~= nil and v ~= nc then
      local t = s[2] == "model" and mcfg or cfg[s[2]]
      fail(t, "num_classes", s[2] .. ".num_classes", string.format("is %s but %s has %d classes; they must agree",
        tostring(v), train_ds and "train_dataset" or "val_dataset", nc))
    end
  end
  nc = nc or (type(mcfg.num_classes) == "number" and mcfg.num_classes or nil)
  parts.train_dataset, parts.train_transforms = train_ds, train_tf
  parts.val_dataset, parts.val_transforms = val_ds, val_tf
  parts.eval_aug = eval_aug(cfg.test_config)
  local make_opt, so
  if o.only ~= "eval" then -- everything checked before the (slow) model construction
    parts.losses = losses(cfg.loss, "loss", ig)
    parts.lr_schedule, so = schedule(cfg, flags.iters, flags.learning_rate)
    make_opt = optimizer(cfg.optimizer, "optimizer")
  end
  parts.model = model(need_map("model"), "model", nc, warn)
  parts.num_classes, parts.ignore_index = parts.model.num_classes or nc, ig
  if o.only == "eval" then return parts end
  parts.optimizer = make_opt(parts.model, so.learning_rate)
  parts.description = string.format("%s (%s), %d classes", cfg.model.type, o.config or "config", nc)
  return parts
end

-- values(cfg, key) -> the top-level iters / batch_size after a kind check (for flag defaults).
function M.top_int(cfg, key)
  local v = cfg[key]
  if v == nil then return nil end
  if not int(v) or v < 1 then fail(cfg, key, key, "must be a positive integer, got " .. show(v)) end
  return v
end

function M.top_lr(cfg)
  local t = cfg.lr_scheduler
  if is_map(t) and type(t.learning_rate) == "number" then return t.learning_rate end
  if is_map(cfg.learning_rate) and type(cfg.learning_rate.value) == "number" then return cfg.learning_rate.value end
  return nil
end

return M
