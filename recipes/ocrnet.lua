-- ocrnet.lua: train OCRNet + HRNet_W18. With no arguments: a short schedule on the built-in
-- synthetic data set (small crops; a few minutes on a 2-core CPU), evaluating and keeping
-- best_model. With --dataset_root: PaddleSeg's ocrnet_hrnetw18_cityscapes_1024x512_160k on a
-- Cityscapes tree, or a PaddleSeg-format set with train_list.txt (batch 2, crop 1024x512, 160k
-- iters, SGD momentum 0.9 weight decay 4e-5, lr 0.01 poly 0.9, cross-entropy on both heads with
-- coefficients 1 and 0.4).
--   luajit recipes/ocrnet.lua [--dataset_root data/cityscapes] [--with_cp] [--pretrained hrnet_w18.safetensors]
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local recipe = require "moonseg.engine.recipe"
local pretrained = require "moonseg.models.pretrained"
local T = ms.data.transforms

local argv = arg or {}
local on_dataset = false
for _, a in ipairs(argv) do if a == "--dataset_root" or a:match("^%-%-dataset_root=") then on_dataset = true end end

local defaults = on_dataset and {
  iters = 160000, batch_size = 2, learning_rate = 0.01, num_classes = 19, crop_size = { 1024, 512 },
  save_interval = 4000, do_eval = true, num_workers = 4,
} or {
  -- the built-in set: five classes, 64x64 crops, sized for minutes on a 2-core CPU
  iters = 120, batch_size = 4, learning_rate = 0.05, num_classes = 5, crop_size = { 64, 64 },
  save_interval = 120, do_eval = true, num_workers = 2, log_iters = 10,
}

defaults.extra_flags = { { "with_cp", "bool", false,
  "gradient checkpointing of the backbone's blocks: recomputed in backward (less memory, slower)" } }
local cfg = recipe.parse(defaults, argv, "recipes/ocrnet.lua")

recipe.run(cfg, function(c)
  -- a PaddleSeg-format set (train_list.txt, val_list.txt) gets the same settings as Cityscapes
  local train_ds, val_ds = recipe.datasets(c)
  local model_spec = { name = "OCRNet", args = { num_classes = c.num_classes, backbone_indices = { 0 },
    backbone = { name = "HRNet_W18", args = { with_cp = c.with_cp } } } }
  local model = ms.models.build(model_spec) -- recorded in checkpoints' state.json
  if c.pretrained then pretrained.load_matching(model.backbone, c.pretrained, "--pretrained") end
  local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
  return {
    description = string.format("OCRNet-HRNet_W18, %d classes, %s", c.num_classes,
      (c.dataset_root or "built-in synthetic data set") .. (c.with_cp and ", with_cp" or "")),
    model = model, train_dataset = train_ds, val_dataset = val_ds,
    train_transforms = T.Compose {
      T.ResizeStepScaling(0.5, 2.0, 0.25),
      T.RandomPaddingCrop(c.crop_size),
      T.RandomHorizontalFlip(),
      T.RandomDistort { brightness_range = 0.4, contrast_range = 0.4, saturation_range = 0.4 },
      T.Normalize(),
    },
    val_transforms = T.Compose { T.Normalize() },
    losses = { types = { ce, ce }, coef = { 1, 0.4 } },
    optimizer = ms.optim.SGD { model, lr = c.learning_rate, momentum = 0.9, weight_decay = 4e-5 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = c.learning_rate, decay_steps = c.iters,
      end_lr = 0, power = 0.9 },
  }
end)
