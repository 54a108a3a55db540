-- test_config_opts.lua: PaddleSeg's --opts key.path=value on a merged config: values read as
-- Python literals (ast.literal_eval) or kept as text, changes landing at the key path (lists
-- indexed from 0), errors naming the item and key path, the values reaching what the config
-- builds, and the command-line extraction (nargs='+', --opts=ITEM).
local H = require "harness"
local ms = require "moonseg"
local config = require "moonseg.config"
local Fx = require "config_fixture"
local O = config.opts

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
local data = Fx.optic_disc(tmp .. "/optic", { train = 4, val = 2, size = 32 })
config.registry.models.TinyNet = { args = { width = "int" }, defaults = {} }
ms.models.TinyNet = function(a)
  local m = ms.nn.Conv2d(3, a.num_classes, 1)
  m.num_classes = a.num_classes
  return m
end
local text = Fx.quick_start(data, 32):gsub("model:\n  type: PPLiteSeg\n  backbone:\n    type: STDC2\n",
  "model:\n  type: TinyNet\n  width: 8\n")
local path = Fx.write(tmp .. "/c.yml", text)
local function loaded() return config.load(path) end

local function is_list(v) return type(v) == "table" and (require("moonseg.config.yaml").where(v) or {}).list end

H.case("values are Python literals as ast.literal_eval reads them; anything else is the text", function()
  local V = O.value
  H.eq(V("2"), 2) H.eq(V("-3"), -3) H.eq(V("+4"), 4) H.eq(V("0.5"), 0.5) H.eq(V("1e-4"), 1e-4)
  H.eq(V("4.0e-5"), 4e-5) H.eq(V(".25"), 0.25) H.eq(V("5."), 5) H.eq(V("1_000"), 1000) H.eq(V("0x10"), 16)
  H.eq(V("True"), true) H.eq(V("False"), false) H.eq(V("None"), config.null)
  H.eq(V("'12'"), "12") H.eq(V('"a b"'), "a b") H.eq(V("'it\\'s'"), "it's")
  -- not literals: kept as written (PaddleSeg's `except: pass`)
  H.eq(V("STDC1"), "STDC1") H.eq(V("data/x"), "data/x") H.eq(V("true"), "true") H.eq(V("007"), "007")
  H.eq(V("1-2"), "1-2") H.eq(V("a,b"), "a,b") H.eq(V("[1, x]"), "[1, x]") H.eq(V("'open"), "'open") H.eq(V(""), "")
  H.eq(V("inf"), "inf")
  -- lists and tuples (a bare comma list is a tuple) become config lists
  local l = V("[1, 2.5, 'a', True]")
  H.eq(is_list(l), true) H.same_list(l, { 1, 2.5, "a", true })
  local t = V("0.75,1.0,1.25")
  H.eq(is_list(t), true) H.same_list(t, { 0.75, 1.0, 1.25 })
  H.same_list(V("(512, 256)"), { 512, 256 }) H.same_list(V("(1,)"), { 1 }) H.same_list(V("[]"), {})
  H.same_list(V("[1, 2,]"), { 1, 2 })
  local n = V("[[1, 2], [3]]")
  H.same_list(n[1], { 1, 2 }) H.same_list(n[2], { 3 })
end)

H.case("apply changes the key path in place; lists indexed from 0; positions say --opts", function()
  local cfg = loaded()
  local touched = O.apply(cfg, { "batch_size=3", "model.width=16", "train_dataset.transforms.1.crop_size=48,40",
    "lr_scheduler.learning_rate=0.05", "loss.coef=[1, 0.5]", "val_dataset.mode=val" })
  H.eq(cfg.batch_size, 3) H.eq(cfg.model.width, 16) H.eq(cfg.lr_scheduler.learning_rate, 0.05)
  H.same_list(cfg.train_dataset.transforms[2].crop_size, { 48, 40 })
  H.same_list(cfg.loss.coef, { 1, 0.5 })
  H.eq(cfg.iters, 4, "untouched keys keep their value")
  H.eq(touched.batch_size, true) H.eq(touched["lr_scheduler.learning_rate"], true) H.eq(touched.iters, nil)
  H.eq(config.pos(cfg, "batch_size"), "--opts batch_size=3")
  H.eq(config.pos(cfg.model, "width"), "--opts model.width=16")
  H.eq(config.pos(cfg, "iters"), path .. ":2")
  local dump = config.dump(cfg)
  H.eq(dump:find("batch_size: 3  # --opts batch_size=3", 1, true) ~= nil, true, dump)
  H.eq(dump:find("coef: [1, 0.5]  # --opts loss.coef=[1, 0.5]", 1, true) ~= nil, true, dump)
  -- what the config builds sees the new values
  local parts = config.build(cfg, { iters = 4 }, { warn = function() end })
  H.eq(parts.model.num_classes, 2)
  H.eq(#parts.losses.types, 2, "two coefficients: the one loss repeated twice")
  H.same_list(parts.losses.coef, { 1, 0.5 })
  H.near(parts.lr_schedule(0), 0.05, 1e-12)
end)

H.case("unknown key paths, bad items and bad values are errors naming the item and the key path", function()
  local function bad(items, ...)
    local cfg = loaded()
    H.raises(function()
      O.apply(cfg, items)
      config.build(cfg, { iters = 4 }, { warn = function() end })
    end, ...)
  end
  bad({ "model.widht=8" }, "--opts model.widht=8", "model.widht is not in the config", "model has: type, width")
  bad({ "modle.width=8" }, "--opts modle.width=8", "modle is not in the config")
  bad({ "batch_size" }, "--opts batch_size:", "key.path=value")
  bad({ "a=b=c" }, "--opts a=b=c", "one '='")
  bad({ "=3" }, "'' is not a key path")
  bad({ "model..width=3" }, "'model..width' is not a key path")
  bad({ "iters.x=1" }, "--opts iters.x=1", "iters.x", "iters is the value 4, not a mapping")
  bad({ "train_dataset.transforms.9.prob=1" }, "train_dataset.transforms.9", "a list of 5", "index it from 0")
  bad({ "train_dataset.transforms.x=1" }, "train_dataset.transforms.x", "index it from 0")
  -- the value is checked where the config is built, and the message names the --opts item
  bad({ "model.width=wide" }, "--opts model.width=wide: model.width: must be an integer, got 'wide'")
  bad({ "model.type=TinyNett" }, "--opts model.type=TinyNett: model.type: unknown model type 'TinyNett'")
  bad({ "train_dataset.transforms.0.min_scale_factor=True" },
    "--opts train_dataset.transforms.0.min_scale_factor=True", "must be a number")
end)

H.case("extract takes --opts items up to the next flag (and --opts=ITEM), keeping the rest", function()
  local rest, items = O.extract { "--config", "c.yml", "--opts", "a=1", "b.c=[1, 2]", "--iters", "5", "--opts=d=x" }
  H.same_list(rest, { "--config", "c.yml", "--iters", "5" })
  H.same_list(items, { "a=1", "b.c=[1, 2]", "d=x" })
  local r2, i2 = O.extract { "--config", "c.yml" }
  H.same_list(r2, { "--config", "c.yml" }) H.eq(i2, nil)
  H.raises(function() O.extract { "--opts", "--iters", "3" } end, "--opts needs at least one key.path=value")
  H.raises(function() O.extract { "--opts" } end, "--opts needs at least one")
end)

os.execute("rm -rf " .. tmp)
H.done()
