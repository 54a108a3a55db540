-- test_config.lua: PaddleSeg YAML configs: libyaml reading and typing, _base_ merging, the
-- registry's builds (num_classes/ignore_index flow, coef repetition, optimizers, warmup,
-- test_config, PP-LiteSeg widths, pretrained URLs), and errors that name file, line and key path.
local H = require "harness"
local ms = require "moonseg"
local config = require "moonseg.config"
local Fx = require "config_fixture"

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp .. "/sub/deeper")
local data = Fx.optic_disc(tmp .. "/optic", { train = 4, val = 2, size = 32 })
local function write(name, text) return Fx.write(tmp .. "/" .. name, text) end
local function quick(extra) return Fx.quick_start(data, 32) .. (extra or "") end
-- A one-layer model registered the way a new model is (one registry line), to keep the cases
-- that do not look at PP-LiteSeg fast.
config.registry.models.TinyNet = { args = { width = "int" }, defaults = {} }
ms.models.TinyNet = function(a)
  local m = ms.nn.Conv2d(3, a.num_classes, 1)
  m.num_classes, m.width = a.num_classes, a.width
  return m
end
local function tiny(text) return (text:gsub("model:\n  type: PPLiteSeg\n  backbone:\n    type: STDC2\n", "model:\n  type: TinyNet\n")) end
local function build(path, flags, warns)
  local cfg = config.load(path)
  return config.build(cfg, flags or { iters = 10 }, { warn = function(m) if warns then warns[#warns + 1] = m end end })
end

H.case("YAML scalars are typed as PyYAML types them; quoted ones stay strings", function()
  local t = config.parse_yaml([[
i: 12
neg: -3
f: 0.5
e1: 4.0e-5
e2: 1e-4
s: hello world
q: "12"
sq: 'yes'
b1: True
b2: no
n1: ~
n2:
list: [1, 2.5, a]
nested: {a: {b: [x, y]}}
block: |
  two
  lines
]], "t.yml")
  H.eq(t.i, 12) H.eq(t.neg, -3) H.eq(t.f, 0.5) H.eq(t.e1, 4e-5) H.eq(t.e2, 1e-4)
  H.eq(t.s, "hello world") H.eq(t.q, "12") H.eq(t.sq, "yes")
  H.eq(t.b1, true) H.eq(t.b2, false)
  H.eq(t.n1, config.null) H.eq(t.n2, config.null)
  H.same_list(t.list, { 1, 2.5, "a" })
  H.same_list(t.nested.a.b, { "x", "y" })
  H.eq(t.block, "two\nlines\n")
end)

H.case("YAML features moonseg does not support are refused with file:line", function()
  H.raises(function() config.parse_yaml("a: 1\nb: &anc 2\n", "f.yml") end, "f.yml:2", "anchor", "anc")
  H.raises(function() config.parse_yaml("a: 1\nb: *anc\n", "f.yml") end, "f.yml:2", "alias")
  H.raises(function() config.parse_yaml("a: !!float 1\n", "f.yml") end, "f.yml:1", "tag")
  H.raises(function() config.parse_yaml("a: 1\n---\nb: 2\n", "f.yml") end, "f.yml:2", "second")
  H.raises(function() config.parse_yaml("a: 1\nb: 2\na: 3\n", "f.yml") end, "f.yml:3", "'a' appears twice")
  H.raises(function() config.parse_yaml("a: [1,\n  2\nb: 3\n", "f.yml") end, "f.yml:", "YAML syntax error")
  H.raises(function() config.parse_yaml("a: \255\254\n", "f.yml") end, "f.yml:1", "YAML syntax error")
  H.eq(config.parse_yaml("", "f.yml"), config.null)
  H.raises(function() config.load(write("empty.yml", "# nothing\n")) end, "empty.yml", "must be a YAML mapping")
  H.raises(function() config.load(write("list.yml", "- a\n- b\n")) end, "list.yml", "must be a YAML mapping")
end)

H.case("_base_ chains merge as PaddleSeg: mappings key by key, lists whole, _inherited_: False", function()
  write("sub/deeper/grand.yml", [[
iters: 100
model: {type: PPLiteSeg, backbone: {type: STDC2, use_conv_last: True}, cm_out_ch: 64}
loss: {types: [{type: CrossEntropyLoss}], coef: [1, 1, 1]}
keep: {a: 1, b: 2}
]])
  write("sub/parent.yml", "_base_: deeper/grand.yml\niters: 200\nkeep: {b: 3, c: 4}\n")
  local child = write("child.yml", [[
_base_: sub/parent.yml
model:
  backbone:
    _inherited_: False
    type: STDC1
loss: {coef: [1]}
]])
  local c = config.load(child)
  H.eq(c.iters, 200, "parent overrides grandparent")
  H.eq(c.model.type, "PPLiteSeg", "kept from the grandparent")
  H.eq(c.model.cm_out_ch, 64)
  H.eq(c.model.backbone.type, "STDC1")
  H.eq(c.model.backbone.use_conv_last, nil, "_inherited_: False drops the base's keys")
  H.eq(c.model.backbone._inherited_, nil)
  H.same_list(c.loss.coef, { 1 }, "lists are replaced whole")
  H.eq(#c.loss.types, 1, "sibling keys of a merged mapping stay")
  H.eq(c.keep.a, 1) H.eq(c.keep.b, 3) H.eq(c.keep.c, 4)
  -- each key remembers where it was set
  H.eq(config.pos(c, "iters"), tmp .. "/sub/parent.yml:2")
  H.eq(config.pos(c.model, "cm_out_ch"), tmp .. "/sub/deeper/grand.yml:2")
  local dump = config.dump(c)
  H.eq(dump:match("iters: (%d+)"), "200")
  H.eq(dump:find("cm_out_ch: 64  # " .. tmp .. "/sub/deeper/grand.yml:2", 1, true) ~= nil, true)
  -- a list of bases: PaddleSeg merges the config over the first, that over the second, so
  -- the first base wins over the second
  write("b1.yml", "iters: 1\nbatch_size: 1\n")
  write("b2.yml", "iters: 2\nlog: 5\n")
  c = config.load(write("two.yml", "_base_: [b1.yml, b2.yml]\n"))
  H.eq(c.iters, 1) H.eq(c.batch_size, 1) H.eq(c.log, 5)
  -- loops and missing bases
  write("loop_a.yml", "_base_: loop_b.yml\n")
  write("loop_b.yml", "_base_: loop_a.yml\n")
  H.raises(function() config.load(tmp .. "/loop_a.yml") end, "loop_a.yml", "loops")
  local miss = write("miss.yml", "iters: 1\n_base_: nowhere/base.yml\n")
  H.raises(function() config.load(miss) end, miss .. ":2: _base_", "config file not found", tmp .. "/nowhere/base.yml")
  H.raises(function() config.load(tmp .. "/absent.yml") end, "config file not found", "absent.yml")
end)

H.case("a quick-start config builds the PaddleSeg parts", function()
  local p = build(write("q.yml", quick()), { iters = 10 })
  H.eq(p.model.num_classes, 2, "num_classes flows from train_dataset into the model")
  H.eq(p.train_dataset:size(), 4) H.eq(p.val_dataset:size(), 2)
  H.eq(#p.losses.types, 3, "one loss type repeated to the length of coef")
  H.eq(p.losses.types[1], p.losses.types[3])
  H.eq(p.optimizer.momentum, 0.9) H.eq(p.optimizer.weight_decay, 4e-5)
  H.near(p.lr_schedule(0), 0.01, 1e-12)
  H.near(p.lr_schedule(5), 0.01 * (1 - 5 / 10) ^ 0.9, 1e-12)
  H.eq(#p.train_transforms.transforms, 5)
  H.eq(p.train_transforms.transforms[2].p[1], 32, "crop_size W")
  -- PaddleSeg's PPLiteSeg widths when absent: arm_out_chs [64, 96, 128], seg_head_inter_chs [64, 64, 64]
  local sd = p.model:state_dict()
  H.eq(sd["seg_heads.0.conv_out.weight"]:size(2), 64)
  H.eq(sd["seg_heads.0.conv._conv.weight"]:size(2), 64)
  H.eq(sd["seg_heads.1.conv._conv.weight"]:size(1), 64)
  H.eq(sd["seg_heads.1.conv._conv.weight"]:size(2), 96)
  -- explicit widths are honoured
  p = build(write("w.yml", quick("") :gsub("type: STDC2\n", "type: STDC1\n  arm_out_chs: [32, 64, 128]\n" ..
    "  seg_head_inter_chs: [32, 64, 64]\n")), { iters = 10 })
  sd = p.model:state_dict()
  H.eq(sd["seg_heads.0.conv._conv.weight"]:size(1), 32)
  H.eq(sd["seg_heads.0.conv._conv.weight"]:size(2), 32)
  H.eq(sd["seg_heads.1.conv._conv.weight"]:size(2), 64)
end)

H.case("ignore_index flows into every loss unless a loss sets its own; MixedLoss; OHEM", function()
  local text = quick():gsub("  num_classes: 2\n  mode: train\n", "  num_classes: 2\n  ignore_index: 254\n  mode: train\n", 1)
  text = text:gsub("loss:\n  types:\n    %- type: CrossEntropyLoss\n  coef: %[1, 1, 1%]\n", [[
loss:
  types:
    - type: OhemCrossEntropyLoss
      min_kept: 100000
    - type: MixedLoss
      losses:
        - type: CrossEntropyLoss
        - type: DiceLoss
          ignore_index: 254
      coef: [0.8, 0.2]
    - type: CrossEntropyLoss
  coef: [1, 0.5, 0.25]
]])
  local p = build(write("mix.yml", tiny(text)), { iters = 10 })
  local t = p.losses.types
  H.eq(t[1].ignore_index, 254) H.eq(t[1].min_kept, 100000)
  H.eq(t[2].losses[1].ignore_index, 254)
  H.eq(t[2].losses[2].ignore_index, 254, "an explicit ignore_index equal to the data set's")
  local f = write("mix2.yml", tiny((text:gsub("          ignore_index: 254", "          ignore_index: 7"))))
  H.raises(function() build(f) end, f .. ":", "loss.types[1].losses[1].ignore_index", "is 7 but train_dataset's ignore_index is 254")
  H.same_list(t[2].coef, { 0.8, 0.2 })
  H.eq(t[3].ignore_index, 254)
  H.same_list(p.losses.coef, { 1, 0.5, 0.25 })
  H.eq(p.ignore_index, 254)
  -- OHEM's min_kept above the valid pixels keeps them all: it equals cross-entropy there
  local logits = ms.tensor({ 0.3, -1, 2, 0.5, 1, 1, -0.2, 0.7 }):view(1, 2, 2, 2)
  local label = ms.tensor({ 0, 1, 254, 1 }, { dtype = "i64" }):view(1, 2, 2)
  local ce = ms.losses.CrossEntropyLoss { ignore_index = 254 }
  H.near(t[1](logits, label):item(), ce(logits, label):item(), 1e-5)
end)

H.case("OpticDiscSeg and Cityscapes carry their class counts; ADE20K names the folder it lacks", function()
  local text = tiny(quick()):gsub("  type: Dataset\n  dataset_root: ([^\n]*)\n  train_path: [^\n]*\n  num_classes: 2\n",
    "  type: OpticDiscSeg\n  dataset_root: %1\n", 1)
  local p = build(write("od.yml", text))
  H.eq(p.model.num_classes, 2) H.eq(p.train_dataset:size(), 4)
  H.eq(p.train_dataset:sample(1):sub(-#"JPEGImages/N0001.jpg"), "JPEGImages/N0001.jpg")
  local f = write("od2.yml", (text:gsub("type: OpticDiscSeg", "type: OpticDiscSeg\n  num_classes: 3")))
  H.raises(function() build(f) end, f .. ":", "train_dataset.num_classes", "unknown argument of OpticDiscSeg")
  f = write("cs.yml", (text:gsub("type: OpticDiscSeg\n  dataset_root: [^\n]*", "type: Cityscapes\n  dataset_root: " ..
    tmp .. "/no_cityscapes")))
  H.raises(function() build(f) end, f .. ":", "train_dataset", "no city folders")
  f = write("ade.yml", (text:gsub("type: OpticDiscSeg", "type: ADE20K")))
  H.raises(function() build(f) end, f .. ":", "train_dataset", "ADE20K", "no *.jpg images in " .. data .. "/images/training")
end)

H.case("optimizers and schedules as Paddle builds them", function()
  local function opt(o, s)
    local text = quick():gsub("optimizer:\n  type: sgd\n  momentum: 0.9\n  weight_decay: 4.0e%-5\n", o)
    if s then text = text:gsub("lr_scheduler:\n.-power: 0.9\n", s) end
    return build(write("o.yml", tiny(text)), { iters = 10 })
  end
  H.eq(opt("optimizer: {type: sgd}\n").optimizer.momentum, 0.9, "sgd is Paddle's Momentum (0.9)")
  H.eq(opt("optimizer: {type: SGD}\n").optimizer.momentum, 0, "plain SGD")
  local p = opt("optimizer: {type: SGD, momentum: 0.8, weight_decay: 0.001}\n")
  H.eq(p.optimizer.momentum, 0.8) H.eq(p.optimizer.weight_decay, 0.001)
  p = opt("optimizer: {type: AdamW, beta1: 0.8, weight_decay: 0.05}\n")
  H.eq(p.optimizer.beta1, 0.8) H.eq(p.optimizer.beta2, 0.999) H.eq(p.optimizer.weight_decay, 0.05)
  -- warmup longer than the run: decay_steps = max(iters - warmup_iters, 1), still warming at the end
  p = opt("optimizer: {type: sgd}\n",
    "lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1, warmup_iters: 50, warmup_start_lr: 0.001}\n")
  H.near(p.lr_schedule(0), 0.001, 1e-12)
  H.near(p.lr_schedule(9), 0.001 + (0.1 - 0.001) * 9 / 50, 1e-12)
  -- PaddleSeg's PolynomialDecay defaults: end_lr 0, power 0.9
  p = opt("optimizer: {type: sgd}\n", "lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1}\n")
  H.near(p.lr_schedule(5), 0.1 * 0.5 ^ 0.9, 1e-12)
  local f = write("o3.yml", tiny(quick():gsub("  power: 0.9\n", "  power: 0.9\n  warmup_iters: 3\n")))
  H.raises(function() build(f) end, f .. ":", "lr_scheduler.warmup_iters", "warmup_start_lr")
  -- the 2.0-era learning_rate block
  p = opt("optimizer: {type: sgd}\n", "learning_rate: {value: 0.02, decay: {type: poly, power: 0.9, end_lr: 0}}\n")
  H.near(p.lr_schedule(5), 0.02 * 0.5 ^ 0.9, 1e-12)
  -- --learning_rate overrides the config
  local cfg = config.load(write("o2.yml", tiny(quick())))
  p = config.build(cfg, { iters = 10, learning_rate = 0.5 }, { warn = function() end })
  H.near(p.lr_schedule(0), 0.5, 1e-12)
end)

H.case("test_config drives evaluation (scales as a number or a list, flips only with aug_eval)", function()
  local p = build(write("t1.yml", tiny(quick("test_config: {aug_eval: True, scales: 0.75, flip_horizontal: True}\n"))))
  H.same_list(p.eval_aug.scales, { 0.75 }) H.eq(p.eval_aug.flip_horizontal, true)
  p = build(write("t2.yml", tiny(quick("test_config: {aug_eval: True, scales: [0.5, 1.0]}\n"))))
  H.same_list(p.eval_aug.scales, { 0.5, 1.0 })
  p = build(write("t3.yml", tiny(quick("test_config: {scales: [0.5, 1.0], flip_horizontal: True}\n"))))
  H.eq(p.eval_aug.scales, nil, "without aug_eval PaddleSeg ignores scales")
  H.eq(p.eval_aug.flip_horizontal, false)
  p = build(write("t4.yml", tiny(quick("test_config: {is_slide: True, crop_size: [16, 16], stride: [8, 12]}\n"))))
  H.eq(p.eval_aug.is_slide, true) H.same_list(p.eval_aug.crop_size, { 16, 16 }) H.same_list(p.eval_aug.stride, { 8, 12 })
  local f = write("t5.yml", quick("test_config: {is_slide: True}\n"))
  H.raises(function() build(f) end, f .. ":", "test_config.is_slide", "crop_size")
end)

H.case("pretrained URLs come from the local weights cache, never the network", function()
  local cache = tmp .. "/cache"
  local url = "https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.tar.gz"
  local text = quick():gsub("    type: STDC2\n", "    type: STDC2\n    pretrained: " .. url .. "\n")
  local f = write("pre.yml", text)
  local weights = config.weights
  weights.cache_dir = function() return cache end -- the test's own cache (MOONSEG_CACHE's role)
  H.eq(weights.cache_name(url), "bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.safetensors")
  H.eq(weights.cache_name("http://x.org/a/model.pdparams?raw=1"), "x.org/a/model.safetensors")
  -- absent: a warning naming the URL, the cache path and the command; training from scratch
  local warns = {}
  local path = weights.cache_dir() .. "/" .. weights.cache_name(url)
  os.remove(path)
  build(f, nil, warns)
  H.eq(#warns, 1)
  for _, frag in ipairs { f .. ":", "model.backbone.pretrained", url, path, "convert_pdparams.py --cache " .. url, "from scratch" } do
    H.eq(warns[1]:find(frag, 1, true) ~= nil, true, "warning names " .. frag)
  end
  -- present: loaded
  os.execute("mkdir -p '" .. path:match("^(.*)/[^/]*$") .. "'")
  local bb = ms.models.STDC2 {}
  local sd = bb:state_dict()
  ms.no_grad(function() sd["features.0.conv.weight"]:fill_(0.25) end)
  ms.save(path, sd)
  warns = {}
  local p = build(f, nil, warns)
  H.eq(#warns, 0)
  H.eq(p.model:state_dict()["backbone.features.0.conv.weight"]:max():item(), 0.25)
  os.remove(path)
  -- a local path that is not there is an error naming the key
  local g = write("pre2.yml", quick():gsub("    type: STDC2\n", "    type: STDC2\n    pretrained: /no/such.safetensors\n"))
  H.raises(function() build(g) end, g .. ":", "model.backbone.pretrained", "not found", "/no/such.safetensors")
end)

H.case("typos, wrong types and missing files name the file, the line and the key path", function()
  local function bad(name, text, ...)
    local f = write(name, text)
    H.raises(function() build(f) end, f .. ":", ...)
  end
  -- typos
  bad("e1.yml", quick("iter: 5\n"), "iter: unknown key", "iters")
  bad("e2.yml", quick():gsub("type: STDC2", "type: STDC3"), "model.backbone.type", "STDC3", "moonseg offers", "STDC1, STDC2")
  bad("e3.yml", quick():gsub("  backbone:\n    type: STDC2\n", "  backbone:\n    tpye: STDC2\n"), "model.backbone",
    "no type: key")
  bad("e4.yml", quick():gsub("min_scale_factor", "min_scale_fator"), "train_dataset.transforms[0].min_scale_fator",
    "unknown argument of ResizeStepScaling", "min_scale_factor")
  bad("e5.yml", quick():gsub("type: RandomHorizontalFlip", "type: RandomFlip"), "train_dataset.transforms[2].type",
    "RandomFlip", "RandomHorizontalFlip")
  bad("e6.yml", quick():gsub("type: CrossEntropyLoss", "type: CrossEntropy"), "loss.types[0].type", "CrossEntropyLoss")
  bad("e7.yml", quick():gsub("type: sgd", "type: Adam"), "optimizer.type", "Adam", "AdamW")
  bad("e8.yml", quick():gsub("  end_lr: 0\n", "  end_learning_rate: 0\n"), "lr_scheduler.end_learning_rate", "end_lr")
  bad("e9.yml", quick():gsub("type: PPLiteSeg", "type: PPLiteSeg\n  arm_out_ch: [1]"), "model.arm_out_ch", "arm_out_chs")
  bad("n1.yml", quick():gsub("type: PPLiteSeg", "type: PPLiteSeg\n  num_classes: 3"), "model.num_classes",
    "is 3 but train_dataset has 2 classes")
  bad("e10.yml", quick():gsub("type: PPLiteSeg", "type: PPLiteSegg"), "model.type", "PPLiteSeg")
  bad("e11.yml", quick("test_config: {aug_evl: True}\n"), "test_config.aug_evl", "aug_eval")
  -- wrong types
  bad("t1.yml", quick():gsub("crop_size: %[32, 32%]", "crop_size: [a, b]"), "train_dataset.transforms[1].crop_size",
    "[width, height]")
  bad("t2.yml", quick():gsub("coef: %[1, 1, 1%]", "coef: one"), "loss.coef", "list of numbers")
  bad("t3.yml", quick():gsub("momentum: 0.9", "momentum: fast"), "optimizer.momentum", "a number", "'fast'")
  bad("t4.yml", quick():gsub("  num_classes: 2\n  mode: train", "  num_classes: two\n  mode: train"),
    "train_dataset.num_classes", "an integer")
  bad("t5.yml", quick():gsub("type: RandomDistort\n      brightness_range: 0.5", "type: RandomDistort\n      brightness_range: [1]"),
    "train_dataset.transforms[3].brightness_range", "a number")
  bad("t6.yml", quick():gsub("  coef: %[1, 1, 1%]", "  coef: [1, 1, 1]\n  types2: []"), "loss.types2", "coef, types")
  bad("t7.yml", quick():gsub("types:\n    %- type: CrossEntropyLoss\n", "types:\n    - type: CrossEntropyLoss\n    - type: DiceLoss\n"),
    "loss.coef", "3 entries for 2 loss types")
  bad("t8.yml", quick():gsub("max_scale_factor: 2.0", "max_scale_factor: 0.25"), "train_dataset.transforms[0]",
    "min_scale_factor must be less than max_scale_factor")
  -- missing files
  bad("m1.yml", quick():gsub("train_path: [^\n]*", "train_path: " .. tmp .. "/nolist.txt"),
    "train_dataset.train_path", "file list not found", "nolist.txt")
  bad("m2.yml", quick():gsub("  dataset_root: [^\n]*\n  train_path: [^\n]*\n", "  dataset_root: " .. tmp .. "/nodata\n", 1),
    "train_dataset.dataset_root", "no train_list.txt in " .. tmp .. "/nodata")
  bad("m3.yml", (quick():gsub("train_dataset:.-\nval_dataset", "val_dataset")), "train_dataset", "missing")
  -- the line points at the offending key in the file that set it
  write("sub/base_bad.yml", quick():gsub("type: sgd", "type: sgdd"))
  local f = write("inh.yml", "_base_: sub/base_bad.yml\niters: 3\n")
  local line
  local i = 0
  for l in io.lines(tmp .. "/sub/base_bad.yml") do
    i = i + 1
    if l:find("sgdd", 1, true) then line = i end
  end
  H.raises(function() build(f) end, tmp .. "/sub/base_bad.yml:" .. line .. ": optimizer.type", "sgdd")
end)

os.execute("rm -rf " .. tmp)
H.done()
