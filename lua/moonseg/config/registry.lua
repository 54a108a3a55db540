-- config/registry.lua: PaddleSeg's `type:` names -> what moonseg builds, with the arguments
-- each accepts (PaddleSeg's names) and their kinds. One line per type; a model or backbone
-- is looked up by name in ms.models / ms.models.backbones when the config is built, so one
-- that lands later needs only its line here.
--
-- Kinds: int, num, str, bool, path, ints, nums, size ([W, H] or one int), scales (a number or
-- a list), node (a {type: ...} mapping), nodes (a list of them), any.
local R = { models = {}, backbones = {}, datasets = {}, transforms = {}, losses = {}, optimizers = {},
  lr_schedulers = {} }

local function model(name, args, defaults) R.models[name] = { args = args, defaults = defaults or {} } end
local function backbone(name, args) R.backbones[name] = { args = args } end

-- Every model takes num_classes (from the training set when absent) and pretrained.
model("PPLiteSeg", { backbone = "node", backbone_indices = "ints", arm_type = "str", cm_bin_sizes = "ints",
  cm_out_ch = "int", arm_out_chs = "ints", seg_head_inter_chs = "ints", resize_mode = "str" },
  { arm_out_chs = { 64, 96, 128 }, seg_head_inter_chs = { 64, 64, 64 } }) -- PaddleSeg's own defaults
model("UNet", { align_corners = "bool", use_deconv = "bool", in_channels = "int" })
model("DeepLabV3P", { backbone = "node", backbone_indices = "ints", aspp_ratios = "ints",
  aspp_out_channels = "int", align_corners = "bool", data_format = "str" })
model("PSPNet", { backbone = "node", backbone_indices = "ints", pp_out_channels = "int", bin_sizes = "ints",
  enable_auxiliary_loss = "bool", align_corners = "bool" })
model("OCRNet", { backbone = "node", backbone_indices = "ints", ocr_mid_channels = "int",
  ocr_key_channels = "int", align_corners = "bool" })
model("SegFormer", { backbone = "node", embedding_dim = "int", align_corners = "bool" })

-- Every backbone takes pretrained.
backbone("STDC1", { use_conv_last = "bool" })
backbone("STDC2", { use_conv_last = "bool" })
backbone("ResNet50_vd", { output_stride = "int", multi_grid = "ints", in_channels = "int" })
backbone("HRNet_W18", { align_corners = "bool", in_channels = "int" })
backbone("MixVisionTransformer_B0", { in_channels = "int" })
backbone("Xception65_deeplab", { output_stride = "int", in_channels = "int" })

-- Data sets: `builder` names the moonseg constructor (config/build.lua).
R.datasets.Dataset = { args = { dataset_root = "path", train_path = "path", val_path = "path",
  test_path = "path", num_classes = "int", mode = "str", transforms = "nodes", separator = "str",
  ignore_index = "int", edge = "bool", img_channels = "int" }, required = { "dataset_root", "num_classes" } }
R.datasets.OpticDiscSeg = { args = { dataset_root = "path", mode = "str", transforms = "nodes", edge = "bool" },
  num_classes = 2, default_root = "data/optic_disc_seg" }
R.datasets.Cityscapes = { args = { dataset_root = "path", mode = "str", transforms = "nodes", edge = "bool" },
  num_classes = 19, default_root = "data/cityscapes" }
R.datasets.ADE20K = { args = { dataset_root = "path", mode = "str", transforms = "nodes", edge = "bool" },
  num_classes = 150, default_root = "data/ADEChallengeData2016" }

-- Transforms: PaddleSeg's argument names, in the order moonseg's constructors take them.
R.transforms.ResizeStepScaling = { args = { min_scale_factor = "num", max_scale_factor = "num", scale_step_size = "num" } }
R.transforms.RandomPaddingCrop = { args = { crop_size = "size", im_padding_value = "any", label_padding_value = "int" } }
R.transforms.Padding = { args = { target_size = "size", im_padding_value = "any", label_padding_value = "int" } }
R.transforms.RandomHorizontalFlip = { args = { prob = "num" } }
R.transforms.RandomVerticalFlip = { args = { prob = "num" } }
R.transforms.RandomDistort = { args = { brightness_range = "num", brightness_prob = "num", contrast_range = "num",
  contrast_prob = "num", saturation_range = "num", saturation_prob = "num", hue_range = "num", hue_prob = "num",
  sharpness_range = "num", sharpness_prob = "num" } }
R.transforms.Resize = { args = { target_size = "size", interp = "str" } }
R.transforms.Normalize = { args = { mean = "nums", std = "nums" } }
R.transforms.RandomScaleAspect = { args = { min_scale = "num", aspect_ratio = "num" } }

R.losses.CrossEntropyLoss = { args = { weight = "nums", ignore_index = "int", avg_non_ignore = "bool",
  top_k_percent_pixels = "num", data_format = "str" } }
R.losses.OhemCrossEntropyLoss = { args = { thresh = "num", min_kept = "int", ignore_index = "int" } }
R.losses.DiceLoss = { args = { weight = "nums", ignore_index = "int", smooth = "num" } }
R.losses.MixedLoss = { args = { losses = "nodes", coef = "nums" }, required = { "losses", "coef" } }

-- sgd is Paddle's Momentum (momentum 0.9 unless given); SGD takes momentum too.
R.optimizers.sgd = { args = { momentum = "num", weight_decay = "num", use_nesterov = "bool" }, momentum = 0.9 }
R.optimizers.SGD = { args = { momentum = "num", weight_decay = "num" }, momentum = 0 }
R.optimizers.Momentum = { args = { momentum = "num", weight_decay = "num", use_nesterov = "bool" }, momentum = 0.9 }
R.optimizers.AdamW = { args = { beta1 = "num", beta2 = "num", epsilon = "num", weight_decay = "num" } }

R.lr_schedulers.PolynomialDecay = { args = { learning_rate = "num", decay_steps = "int", end_lr = "num",
  power = "num", cycle = "bool", warmup_iters = "int", warmup_start_lr = "num" } }

function R.names(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  table.sort(r)
  return r
end

return R
