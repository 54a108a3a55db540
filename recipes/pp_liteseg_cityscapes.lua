-- pp_liteseg_cityscapes.lua: PaddleSeg's pp_liteseg_stdc1_cityscapes_1024x512_scale0.5_160k:
-- PP-LiteSeg-T on Cityscapes (leftImg8bit + gtFine labelTrainIds), batch 4 per device,
-- 160k iterations, SGD momentum 0.9 weight decay 5e-4, lr 0.005 with 1000 warmup iterations,
-- OHEM cross-entropy (min_kept 130000) on all three heads, evaluation at half resolution.
--   luajit recipes/pp_liteseg_cityscapes.lua --dataset_root data/cityscapes [--pretrained stdc1.safetensors]
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local recipe = require "moonseg.engine.recipe"
local T = ms.data.transforms

local cfg = recipe.parse({
  iters = 160000, batch_size = 4, learning_rate = 0.005, num_classes = 19, backbone = "STDC1",
  crop_size = { 1024, 512 }, save_interval = 4000, do_eval = true, num_workers = 4,
  dataset_root = "data/cityscapes",
}, arg or {}, "recipes/pp_liteseg_cityscapes.lua")

recipe.run(cfg, function(c)
  local ohem = ms.losses.OhemCrossEntropyLoss { thresh = 0.7, min_kept = 130000, ignore_index = 255 }
  local model = ms.models.PPLiteSeg { num_classes = 19, backbone = c.backbone, pretrained = c.pretrained }
  return {
    description = "PP-LiteSeg-T, Cityscapes 1024x512 (scale 0.5), " .. c.dataset_root,
    model = model,
    train_dataset = ms.data.Cityscapes { dataset_root = c.dataset_root, mode = "train" },
    val_dataset = ms.data.Cityscapes { dataset_root = c.dataset_root, mode = "val" },
    train_transforms = T.Compose {
      T.ResizeStepScaling(0.125, 1.5, 0.125),
      T.RandomPaddingCrop(c.crop_size),
      T.RandomHorizontalFlip(),
      T.RandomDistort { brightness_range = 0.5, contrast_range = 0.5, saturation_range = 0.5 },
      T.Normalize(),
    },
    val_transforms = T.Compose { T.Resize({ 1024, 512 }), T.Normalize() },
    losses = { types = { ohem, ohem, ohem }, coef = { 1, 1, 1 } },
    optimizer = ms.optim.SGD { model, lr = c.learning_rate, momentum = 0.9, weight_decay = 5e-4 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = c.learning_rate, end_lr = 0, power = 0.9,
      decay_steps = c.iters - 1000, warmup_iters = 1000, warmup_start_lr = 1e-5 },
  }
end)
