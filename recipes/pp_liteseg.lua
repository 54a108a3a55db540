-- pp_liteseg.lua: train PP-LiteSeg. With no arguments: PP-LiteSeg-T on the built-in synthetic
-- data set (made on first use in ~/.cache/moonseg), on the GPU when there is one, else the
-- CPU, evaluating and keeping best_model. With --dataset_root: a PaddleSeg-format data set
-- with PaddleSeg's optic-disc quick-start settings (STDC2, crop 512, batch 4, lr 0.01, 1k iters).
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local recipe = require "moonseg.engine.recipe"
local T = ms.data.transforms

local argv = arg or {}
local on_dataset = false
for _, a in ipairs(argv) do if a == "--dataset_root" or a:match("^%-%-dataset_root=") then on_dataset = true end end

local defaults = on_dataset and {
  -- PaddleSeg configs/quick_start/pp_liteseg_optic_disc_512x512_1k.yml
  iters = 1000, batch_size = 4, learning_rate = 0.01, num_classes = 2, backbone = "STDC2",
  crop_size = { 512, 512 }, save_interval = 200, do_eval = true, num_workers = 2,
} or {
  -- the built-in set: small images, five classes; sized to finish in minutes on a laptop CPU
  iters = 600, batch_size = 8, learning_rate = 0.05, num_classes = 5, backbone = "STDC1",
  crop_size = { 128, 128 }, save_interval = 200, do_eval = true, num_workers = 2, log_iters = 20,
}

local cfg = recipe.parse(defaults, argv, "recipes/pp_liteseg.lua")

recipe.run(cfg, function(c)
  local train_ds, val_ds
  if c.dataset_root then
    train_ds = ms.data.PaddleSegDataset { dataset_root = c.dataset_root, mode = "train", num_classes = c.num_classes }
    val_ds = ms.data.PaddleSegDataset { dataset_root = c.dataset_root, mode = "val", num_classes = c.num_classes }
  else
    train_ds = ms.data.Synthetic { mode = "train" }
    val_ds = ms.data.Synthetic { mode = "val" }
  end
  local train_tf = T.Compose {
    T.ResizeStepScaling(0.5, 2.0, 0.25),
    T.RandomPaddingCrop(c.crop_size),
    T.RandomHorizontalFlip(),
    T.RandomDistort { brightness_range = 0.5, contrast_range = 0.5, saturation_range = 0.5 },
    T.Normalize(),
  }
  local model = ms.models.PPLiteSeg { num_classes = c.num_classes, backbone = c.backbone, pretrained = c.pretrained }
  local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
  return {
    description = string.format("PP-LiteSeg-%s, %d classes, %s", c.backbone == "STDC1" and "T" or "B",
      c.num_classes, c.dataset_root or "built-in synthetic data set"),
    model = model, train_dataset = train_ds, val_dataset = val_ds,
    train_transforms = train_tf, val_transforms = T.Compose { T.Normalize() },
    losses = { types = { ce, ce, ce }, coef = { 1, 1, 1 } },
    optimizer = ms.optim.SGD { model, lr = c.learning_rate, momentum = 0.9, weight_decay = 4e-5 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = c.learning_rate, decay_steps = c.iters,
      end_lr = 0, power = 0.9 },
  }
end)
