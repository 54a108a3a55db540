-- segformer.lua: train SegFormer-B0. With no arguments: a short schedule on the built-in
-- synthetic data set (small crops; a few minutes on a 2-core CPU), evaluating and keeping
-- best_model. With --dataset_root: PaddleSeg's segformer_b0_cityscapes_1024x1024_160k on a
-- Cityscapes tree, or a PaddleSeg-format set with train_list.txt (batch 2, crop 1024x1024, 160k
-- iters, AdamW betas 0.9/0.999 weight decay 0.01, lr 6e-5 poly power 1, cross-entropy;
-- sliding-window evaluation, window 1024x1024 (the crop), stride 768x768).
--   luajit recipes/segformer.lua [--dataset_root data/cityscapes] [--with_cp] [--pretrained mit_b0.safetensors]
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
  iters = 160000, batch_size = 2, learning_rate = 6e-5, num_classes = 19, crop_size = { 1024, 1024 },
  save_interval = 4000, do_eval = true, num_workers = 4,
} or {
  -- the built-in set: five classes, 128x128 crops; from scratch (no ImageNet weights) a
  -- transformer wants a larger step than the fine-tuning 6e-5
  iters = 200, batch_size = 4, learning_rate = 1e-3, num_classes = 5, crop_size = { 128, 128 },
  save_interval = 200, do_eval = true, num_workers = 2, log_iters = 10,
}

defaults.extra_flags = { { "with_cp", "bool", false,
  "gradient checkpointing of the backbone's blocks: recomputed in backward (less memory, slower)" } }
local cfg = recipe.parse(defaults, argv, "recipes/segformer.lua")

recipe.run(cfg, function(c)
  -- a PaddleSeg-format set (train_list.txt, val_list.txt) gets the same settings as Cityscapes
  local train_ds, val_ds = recipe.datasets(c)
  local model_spec = { name = "SegFormer", args = { num_classes = c.num_classes, embedding_dim = 256,
    backbone = { name = "MixVisionTransformer_B0", args = { with_cp = c.with_cp } } } }
  local model = ms.models.build(model_spec) -- recorded in checkpoints' state.json
  if c.pretrained then pretrained.load_matching(model.backbone, c.pretrained, "--pretrained") end
  local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
  return {
    description = string.format("SegFormer-B0, %d classes, %s", c.num_classes,
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
    -- PaddleSeg's test_config: is_slide, window 1024x1024 (the crop), stride 768x768 (3/4 of it)
    eval_aug = c.dataset_root and { is_slide = true, crop_size = c.crop_size,
      stride = { math.floor(c.crop_size[1] * 3 / 4), math.floor(c.crop_size[2] * 3 / 4) } } or nil,
    losses = { types = { ce }, coef = { 1 } },
    optimizer = ms.optim.AdamW { model, lr = c.learning_rate, betas = { 0.9, 0.999 }, weight_decay = 0.01 },
    lr_schedule = ms.optim.PolynomialDecay { learning_rate = c.learning_rate, decay_steps = c.iters,
      end_lr = 0, power = 1 },
  }
end)
