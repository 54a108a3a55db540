-- cnn_recipe.lua: what the UNet, DeepLabV3+ and PSPNet recipes share: without --dataset_root
-- a short run on the built-in synthetic set; with it PaddleSeg's Cityscapes config
-- (configs/_base_/cityscapes.yml plus the model's file: batch, crop 1024x512, iterations,
-- SGD momentum 0.9 weight decay 4e-5, poly decay, loss coefficients).
local ms = require "moonseg"
local recipe = require "moonseg.engine.recipe"
local T = ms.data.transforms

local M = {}

-- --dataset_root may also name a PaddleSeg-format set (train_list.txt, val_list.txt): then
-- --num_classes says how many classes it has.
-- main{prog=, synthetic={defaults}, cityscapes={defaults}, backbones={choices} or nil,
--      spec=function(cfg, num_classes) -> model spec (models/registry.lua),
--      pretrained_into=function(model, path) or nil (--pretrained: backbone weights),
--      coef={...}, end_lr=0, describe=function(cfg) -> string}
function M.main(o, argv)
  argv = argv or {}
  local on_dataset = false
  for _, a in ipairs(argv) do if a == "--dataset_root" or a:match("^%-%-dataset_root=") then on_dataset = true end end
  local d = {}
  for k, v in pairs(on_dataset and o.cityscapes or o.synthetic) do d[k] = v end
  d.backbone_choices, d.backbone_help = o.backbones, o.backbones and ("backbone: " .. table.concat(o.backbones, " or "))
  d.backbone = d.backbone or (o.backbones and o.backbones[1])
  d.extra_flags = { { "with_cp", "bool", false, "gradient checkpointing: recompute blocks in backward (less memory, slower)" } }
  local cfg = recipe.parse(d, argv, o.prog)
  return recipe.run(cfg, function(c)
    local train_ds, val_ds, kind = recipe.datasets(c)
    local nc, distort = kind == "cityscapes" and 19 or c.num_classes, 0.4 -- Cityscapes has 19 classes
    local model = ms.models.build(o.spec(c, nc))
    if c.pretrained then o.pretrained_into(model, c.pretrained) end
    local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
    local types = {}
    for i = 1, #o.coef do types[i] = ce end
    return {
      description = o.describe(c) .. string.format(", %d classes, %s%s", nc,
        c.dataset_root or "built-in synthetic data set", c.with_cp and ", with_cp" or ""),
      model = model, train_dataset = train_ds, val_dataset = val_ds,
      train_transforms = T.Compose {
        T.ResizeStepScaling(0.5, 2.0, 0.25),
        T.RandomPaddingCrop(c.crop_size),
        T.RandomHorizontalFlip(),
        T.RandomDistort { brightness_range = distort, contrast_range = distort, saturation_range = distort },
        T.Normalize(),
      },
      val_transforms = T.Compose { T.Normalize() },
      losses = { types = types, coef = o.coef },
      optimizer = ms.optim.SGD { model, lr = c.learning_rate, momentum = 0.9, weight_decay = 4e-5 },
      lr_schedule = ms.optim.PolynomialDecay { learning_rate = c.learning_rate, decay_steps = c.iters,
        end_lr = o.end_lr or 0, power = 0.9 },
    }
  end)
end

-- Loads converted backbone weights (recipes/tools/convert_pdparams.py) into model.backbone.
function M.backbone_pretrained(model, path)
  require("moonseg.models.pretrained").load_matching(model.backbone, path, "--pretrained")
end

return M
